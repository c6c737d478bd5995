"""One client for every OpenAI-compatible provider: OpenAI itself, vLLM, Ollama,
llama.cpp's server, or this kit's own local server (``python -m hw10kit.prompting.server``).

* **Settings** come from environment variables (or ``Settings(...)`` in the notebook's
  settings cell): ``HW10_LLM_BASE_URL`` (unset: OpenAI), ``HW10_LLM_API_KEY`` (else
  ``OPENAI_API_KEY``), ``HW10_LLM_LARGE`` and ``HW10_LLM_SMALL`` (model names),
  ``HW10_LLM_API`` (``completions`` or ``chat``), ``HW10_LLM_CACHE`` (the cache folder).
* **Log-probabilities**: every call asks for the sampled tokens' log-probabilities and the
  ``top_logprobs`` most likely alternatives at each position (the API's ``logprobs``
  options), normalised to one ``Completion`` whichever endpoint answered.
* **Cache**: every response is stored on disk, keyed by the full request (endpoint, base
  URL, model, prompt, every sampling option and the seed), and never requested again: a
  re-run costs nothing, and a TA who copies a student's cache folder replays their run
  without a key or a server.
* **Errors**: transient errors and rate limits go through the ``openai`` client's own
  retries with exponential back-off (``max_retries``); what is left becomes
  ``LMUnavailable``, one line that says what to set.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

OPENAI_DEFAULTS = {"large": "gpt-4o-mini", "small": "gpt-4.1-nano", "api": "chat"}
LOCAL_DEFAULTS = {"large": "gpt2", "small": "gpt2", "api": "completions"}
HOW_TO_SET = ("set OPENAI_API_KEY (OpenAI), or HW10_LLM_BASE_URL and HW10_LLM_API_KEY (any OpenAI-compatible "
              "server), or start the local model with `python -m hw10kit.prompting.server` and set "
              "HW10_LLM_BASE_URL=http://127.0.0.1:8000/v1")


class LMUnavailable(RuntimeError):
    """No answer can be had from the language model; the message says what to set. Shown
    by Jupyter as one line."""

    def _render_traceback_(self):
        return [f"\u26a0 {self}"]


@dataclass(frozen=True)
class Settings:
    base_url: str | None = None        # None: OpenAI's own API
    api_key: str = ""
    large: str = OPENAI_DEFAULTS["large"]
    small: str = OPENAI_DEFAULTS["small"]
    api: str = OPENAI_DEFAULTS["api"]   # "completions" (raw text) or "chat" (one user message)
    cache_dir: str = "llm_cache"
    timeout: float = 60.0
    max_retries: int = 5
    label: str = ""                     # how outputs are labelled ("tiny random GPT-2", ...)

    @property
    def where(self) -> str:
        return self.base_url or "OpenAI (https://api.openai.com/v1)"


def settings_from_env(env=None, **overrides) -> Settings:
    """Settings from ``HW10_LLM_*`` variables (and ``OPENAI_API_KEY``); ``overrides`` win."""
    env = os.environ if env is None else env
    base_url = env.get("HW10_LLM_BASE_URL") or None
    defaults = LOCAL_DEFAULTS if base_url else OPENAI_DEFAULTS
    values = dict(
        base_url=base_url,
        api_key=env.get("HW10_LLM_API_KEY") or env.get("OPENAI_API_KEY") or ("EMPTY" if base_url else ""),
        large=env.get("HW10_LLM_LARGE") or defaults["large"],
        small=env.get("HW10_LLM_SMALL") or defaults["small"],
        api=env.get("HW10_LLM_API") or defaults["api"],
        cache_dir=env.get("HW10_LLM_CACHE") or "llm_cache",
    )
    if env.get("HW10_LLM_TIMEOUT"):
        values["timeout"] = float(env["HW10_LLM_TIMEOUT"])
    values.update(overrides)
    return Settings(**values)


@dataclass
class Completion:
    """One answer: the text, its tokens with their log-probabilities, and at each position
    the top alternatives ``{token: logprob}`` (the sampled token among them)."""
    text: str
    tokens: list = field(default_factory=list)
    logprobs: list = field(default_factory=list)
    top_logprobs: list = field(default_factory=list)
    model: str = ""
    cached: bool = False

    @property
    def first_top(self) -> dict:
        """The alternatives for the first generated token (``{}`` when none came back)."""
        return dict(self.top_logprobs[0]) if self.top_logprobs else {}


def parse_response(api: str, response: dict, model: str = "", cached: bool = False) -> Completion:
    """A Completion from a raw response dict of either endpoint."""
    choice = (response.get("choices") or [{}])[0]
    if api == "chat":
        text = ((choice.get("message") or {}).get("content")) or ""
        content = ((choice.get("logprobs") or {}).get("content")) or []
        tokens = [c.get("token", "") for c in content]
        logprobs = [c.get("logprob") for c in content]
        tops = []
        for c in content:
            top = {}
            for alt in c.get("top_logprobs") or []:
                if alt.get("token") not in top:  # the first (most likely) entry wins a duplicate
                    top[alt["token"]] = float(alt["logprob"])
            tops.append(top)
    else:
        text = choice.get("text") or ""
        lp = choice.get("logprobs") or {}
        tokens = list(lp.get("tokens") or [])
        logprobs = list(lp.get("token_logprobs") or [])
        tops = [dict(t or {}) for t in (lp.get("top_logprobs") or [])]
    return Completion(text=text, tokens=tokens, logprobs=logprobs, top_logprobs=tops,
                      model=response.get("model") or model, cached=cached)


class DiskCache:
    """JSON files under ``folder``, one per request, named by the sha256 of the request."""

    def __init__(self, folder):
        self.folder = Path(folder)

    @staticmethod
    def key(request: dict) -> str:
        return hashlib.sha256(json.dumps(request, sort_keys=True, ensure_ascii=True).encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, request: dict):
        path = self.path(self.key(request))
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return entry.get("response") if entry.get("request") == request else None

    def put(self, request: dict, response: dict) -> None:
        path = self.path(self.key(request))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"request": request, "response": response}, f, sort_keys=True)
        os.replace(tmp, path)  # atomic: a reader never sees half a file


class LM:
    """The notebook's language model: ``lm.complete(prompt, model=lm.large)``.

    ``requests`` counts the HTTP requests actually made (cache misses)."""

    def __init__(self, settings: Settings | None = None, **overrides):
        self.settings = replace(settings or settings_from_env(), **overrides) if overrides else \
            (settings or settings_from_env())
        self.cache = DiskCache(self.settings.cache_dir)
        self.requests = 0
        self._client = None
        self._lock = threading.Lock()

    @property
    def large(self) -> str:
        return self.settings.large

    @property
    def small(self) -> str:
        return self.settings.small

    def __repr__(self) -> str:
        s = self.settings
        return (f"LM({s.where}, api={s.api}, large={s.large!r}, small={s.small!r}, cache={s.cache_dir!r}"
                + (f", {s.label}" if s.label else "") + ")")

    # -------------------------------------------------------------- requests
    def request(self, prompt: str, *, model: str | None = None, max_tokens: int = 1, temperature: float = 0.0,
                top_logprobs: int = 5, stop=None, seed: int | None = None, api: str | None = None) -> dict:
        """The full request (what the cache is keyed by)."""
        api = api or self.settings.api
        body = {"model": model or self.settings.large, "max_tokens": int(max_tokens),
                "temperature": float(temperature)}
        if api == "chat":
            body.update(messages=[{"role": "user", "content": prompt}], logprobs=True,
                        top_logprobs=int(top_logprobs))
        else:
            body.update(prompt=prompt, logprobs=int(top_logprobs))
        if stop is not None:
            body["stop"] = stop
        if seed is not None:
            body["seed"] = int(seed)
        return {"api": api, "base_url": self.settings.base_url or "openai", "body": body}

    def complete(self, prompt: str, **kw) -> Completion:
        """One completion (from the cache when this exact request was made before).
        ``seed`` draws another sample at ``temperature > 0`` (and is sent to servers that
        honour it, so a draw is reproducible there)."""
        request = self.request(prompt, **kw)
        cached = self.cache.get(request)
        if cached is not None:
            return parse_response(request["api"], cached, request["body"]["model"], cached=True)
        response = self._send(request)
        self.cache.put(request, response)
        return parse_response(request["api"], response, request["body"]["model"])

    def sample(self, prompt: str, n: int, **kw) -> list:
        """``n`` samples of one prompt: seeds 0 ... n-1 (each cached on its own)."""
        return self.complete_many([prompt] * n, seeds=range(n), **kw)

    def complete_many(self, prompts, seeds=None, workers: int = 8, progress: bool = False, **kw) -> list:
        """Many completions, ``workers`` requests in flight at once; results in order."""
        from concurrent.futures import ThreadPoolExecutor

        prompts = list(prompts)
        seeds = [None] * len(prompts) if seeds is None else list(seeds)
        jobs = [dict(kw, seed=s) if s is not None else dict(kw) for s in seeds]
        if workers <= 1 or len(prompts) <= 1:
            return [self.complete(p, **j) for p, j in zip(prompts, jobs)]
        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(self.complete, p, **j) for p, j in zip(prompts, jobs)]
            if progress:
                from tqdm.auto import tqdm
                futures_iter = tqdm(futures, desc="requests")
            else:
                futures_iter = futures
            return [f.result() for f in futures_iter]

    # -------------------------------------------------------------- the wire
    def client(self):
        if self._client is None:
            with self._lock:
                if self._client is None:
                    s = self.settings
                    if not s.api_key:
                        raise LMUnavailable(f"no API key for {s.where}: {HOW_TO_SET}")
                    try:
                        from openai import OpenAI
                    except ModuleNotFoundError:
                        raise LMUnavailable("the `openai` package is missing: pip install openai") from None
                    self._client = OpenAI(base_url=s.base_url, api_key=s.api_key, timeout=s.timeout,
                                          max_retries=s.max_retries)
        return self._client

    def _send(self, request: dict) -> dict:
        import openai

        client, body, s = self.client(), dict(request["body"]), self.settings
        model = body["model"]
        with self._lock:
            self.requests += 1
        try:
            if request["api"] == "chat":
                response = client.chat.completions.create(**body)
            else:
                response = client.completions.create(**body)
        except openai.AuthenticationError:
            raise LMUnavailable(f"{s.where} refused the API key (401): set HW10_LLM_API_KEY (or "
                                "OPENAI_API_KEY) to a valid key") from None
        except openai.RateLimitError as exc:
            raise LMUnavailable(f"{s.where} kept answering 429 (rate limit or quota) after {s.max_retries} "
                                f"retries with back-off: wait and run the cell again (answers so far are cached). "
                                f"{_detail(exc)}") from None
        except openai.APITimeoutError:
            raise LMUnavailable(f"no answer from {s.where} within {s.timeout:g} s ({s.max_retries} retries): is "
                                "the server overloaded? Raise HW10_LLM_TIMEOUT or try again") from None
        except openai.APIConnectionError:
            raise LMUnavailable(f"cannot reach {s.where}: {HOW_TO_SET}") from None
        except openai.NotFoundError as exc:
            raise LMUnavailable(f"{s.where} does not serve the model {model!r} (404): set HW10_LLM_LARGE / "
                                f"HW10_LLM_SMALL to one it serves. {_detail(exc)}") from None
        except openai.BadRequestError as exc:
            raise LMUnavailable(f"{s.where} refused the request (400) for {model!r}: {_detail(exc)}. If it "
                                "does not offer log-probabilities on this endpoint, try HW10_LLM_API=chat or "
                                "=completions") from None
        return response.model_dump(mode="json", exclude_none=False) if hasattr(response, "model_dump") \
            else dict(response)


def _detail(exc) -> str:
    text = str(getattr(exc, "message", "") or exc)
    return text if len(text) < 300 else text[:300] + " ..."


def describe(settings: Settings) -> dict:
    """The settings without the key (what a notebook prints)."""
    d = asdict(settings)
    d["api_key"] = "set" if settings.api_key and settings.api_key != "EMPTY" else "(none)"
    return d
