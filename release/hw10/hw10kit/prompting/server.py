"""A local OpenAI-compatible server for a Hugging Face causal LM, with log-probabilities.

    python -m hw10kit.prompting.server                  # GPT-2 (124M) from the Hugging Face hub
    python -m hw10kit.prompting.server --model gpt2-medium --port 8001
    python -m hw10kit.prompting.server --tiny           # a tiny random GPT-2, no download (plumbing only)

then ``export HW10_LLM_BASE_URL=http://127.0.0.1:8000/v1`` and the notebook runs unchanged.

It serves ``GET /v1/models``, ``POST /v1/completions`` (``logprobs``: the top-k alternatives
at each position) and ``POST /v1/chat/completions`` (``logprobs``, ``top_logprobs``), the
subset of OpenAI's API the notebook uses, with ``temperature``, ``max_tokens``, ``stop``
and ``seed`` (a seeded request gives the same sample every time). Why not ``transformers
serve``: in transformers 5.25 both its endpoints list ``logprobs`` among the fields they
ignore, and the notebook's scoring needs them. This server is the standard library's
``ThreadingHTTPServer``; requests are answered one model call at a time (a lock), which is
what one student's notebook needs. An ``--api-key`` makes it answer 401 to other keys.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TINY = "tiny-random-gpt2"
MAX_TOP = 20


def gpt2_vocab_dir() -> Path | None:
    """``data/gpt2/`` (vocab.json and merges.txt, GPT-2's BPE), wherever the homework's
    data folder is; None when it is not found."""
    from .data import data_dir

    try:
        folder = data_dir("gpt2")
    except FileNotFoundError:
        return None
    return folder if (folder / "vocab.json").is_file() else None


def gpt2_tokenizer():
    """GPT-2's tokenizer from the shipped vocabulary (no download)."""
    from transformers import GPT2TokenizerFast

    folder = gpt2_vocab_dir()
    if folder is None:
        from .data import MissingData
        raise MissingData("GPT-2's vocabulary (data/gpt2/vocab.json, merges.txt) was not found: keep data/ "
                          "next to the notebook, or set HW10_DATA")
    return GPT2TokenizerFast(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))


def tiny_gpt2(seed: int = 0, n_layer: int = 2, n_embd: int = 64, initializer_range: float = 0.02, dropout=0.1):
    """A GPT-2 with GPT-2's real vocabulary and random weights (no download): the tests'
    and the offline demo's model. Its outputs mean nothing."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(n_layer=n_layer, n_head=2, n_embd=n_embd, n_positions=1024, vocab_size=50257,
                        initializer_range=initializer_range, resid_pdrop=dropout, embd_pdrop=dropout,
                        attn_pdrop=dropout)
    return GPT2LMHeadModel(config).eval(), gpt2_tokenizer()


def load_model(name: str):
    """(model, tokenizer) for a hub name or a local folder; ``tiny-random-gpt2`` offline."""
    if name == TINY:
        return tiny_gpt2()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(name).eval(), AutoTokenizer.from_pretrained(name)


class Engine:
    """Generation with log-probabilities for one model, one call at a time."""

    def __init__(self, model, tokenizer, name: str):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.lock = threading.Lock()
        self._keep_last = True
        import inspect
        params = inspect.signature(model.forward).parameters  # transformers >= 5.3x renames the cache argument
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self.max_len = int(getattr(model.config, "n_positions", None)
                           or getattr(model.config, "max_position_embeddings", 1024))

    def _forward(self, inputs, past):
        kw = {"input_ids": inputs, "use_cache": True, self._cache_arg: past}
        if self._keep_last:
            try:  # only the last position's logits: the LM head is most of a small model's cost
                return self.model(**kw, logits_to_keep=1)
            except TypeError:
                self._keep_last = False
        return self.model(**kw)

    @staticmethod
    def _past(out):
        return getattr(out, "cache", None) or getattr(out, "past_key_values", None)

    def token_text(self, token_id: int) -> str:
        return self.tokenizer.decode([int(token_id)], clean_up_tokenization_spaces=False)

    def generate(self, prompt: str, max_tokens=16, temperature=1.0, top_k=0, stop=None, seed=None) -> dict:
        import torch

        ids = self.tokenizer(prompt, return_tensors="pt")["input_ids"][0].tolist()
        if not ids:
            ids = [self.tokenizer.eos_token_id]
        max_tokens = max(0, min(int(max_tokens), self.max_len - 1))
        ids = ids[-(self.max_len - max_tokens):] if len(ids) + max_tokens > self.max_len else ids
        gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        tokens, logprobs, tops, text, finish = [], [], [], "", "length"
        with self.lock, torch.no_grad():
            past, inputs = None, torch.tensor([ids])
            for _ in range(max_tokens):
                out = self._forward(inputs, past)
                past = self._past(out)
                logp = torch.log_softmax(out.logits[0, -1].double(), -1)
                if temperature and temperature > 0:
                    probs = torch.softmax(logp / float(temperature), -1)
                    nxt = int(torch.multinomial(probs.float(), 1, generator=gen))
                else:
                    nxt = int(torch.argmax(logp))
                if top_k:
                    values, indices = torch.topk(logp, min(int(top_k), MAX_TOP))
                    top = {}
                    for v, i in zip(values.tolist(), indices.tolist()):
                        top.setdefault(self.token_text(i), v)
                    tops.append(top)
                piece = self.token_text(nxt)
                tokens.append(piece)
                logprobs.append(float(logp[nxt]))
                text += piece
                if nxt == self.tokenizer.eos_token_id:
                    finish = "stop"
                    break
                hit = [s for s in stops if s and s in text]
                if hit:
                    text, finish = text[:text.index(hit[0])], "stop"
                    break
                inputs = torch.tensor([[nxt]])
        return {"text": text, "tokens": tokens, "logprobs": logprobs, "tops": tops, "finish": finish,
                "prompt_tokens": len(ids)}


def completion_response(engine: Engine, body: dict) -> dict:
    top_k = int(body.get("logprobs") or 0)
    g = engine.generate(body.get("prompt", ""), body.get("max_tokens", 16), body.get("temperature", 1.0),
                        top_k, body.get("stop"), body.get("seed"))
    logprobs = None
    if top_k:
        offsets, pos = [], 0
        for t in g["tokens"]:
            offsets.append(pos)
            pos += len(t)
        logprobs = {"tokens": g["tokens"], "token_logprobs": g["logprobs"], "top_logprobs": g["tops"],
                    "text_offset": offsets}
    return {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
            "model": engine.name,
            "choices": [{"text": g["text"], "index": 0, "logprobs": logprobs, "finish_reason": g["finish"]}],
            "usage": {"prompt_tokens": g["prompt_tokens"], "completion_tokens": len(g["tokens"]),
                      "total_tokens": g["prompt_tokens"] + len(g["tokens"])}}


def chat_prompt(engine: Engine, messages) -> str:
    tok = engine.tokenizer
    if getattr(tok, "chat_template", None):
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(str(m.get("content", "")) for m in messages)  # a base model: the text itself


def chat_response(engine: Engine, body: dict) -> dict:
    top_k = int(body.get("top_logprobs") or 0) if body.get("logprobs") else 0
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 16
    g = engine.generate(chat_prompt(engine, body.get("messages") or []), max_tokens, body.get("temperature", 1.0),
                        max(top_k, 1) if body.get("logprobs") else 0, body.get("stop"), body.get("seed"))
    logprobs = None
    if body.get("logprobs"):
        logprobs = {"content": [
            {"token": t, "logprob": lp, "bytes": list(t.encode()),
             "top_logprobs": [{"token": k, "logprob": v, "bytes": list(k.encode())}
                              for k, v in list(top.items())[:top_k]]}
            for t, lp, top in zip(g["tokens"], g["logprobs"], g["tops"])]}
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": engine.name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": g["text"]},
                         "logprobs": logprobs, "finish_reason": g["finish"]}],
            "usage": {"prompt_tokens": g["prompt_tokens"], "completion_tokens": len(g["tokens"]),
                      "total_tokens": g["prompt_tokens"] + len(g["tokens"])}}


def make_handler(engines: dict, api_key: str | None):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet: a notebook's server prints nothing per request
            pass

        def _send(self, status: int, payload: dict):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, kind: str):
            self._send(status, {"error": {"message": message, "type": kind, "code": status}})

        def _authorised(self) -> bool:
            if api_key and self.headers.get("Authorization", "") != f"Bearer {api_key}":
                self._error(401, "Incorrect API key provided.", "invalid_request_error")
                return False
            return True

        def do_GET(self):
            if not self._authorised():
                return
            if self.path.rstrip("/").endswith("/models"):
                self._send(200, {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "local"}
                                                            for n in engines]})
            else:
                self._error(404, f"no route {self.path}", "not_found")

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if not self._authorised():
                return
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return self._error(400, "the body is not JSON", "invalid_request_error")
            route = self.path.rstrip("/")
            if not (route.endswith("/completions")):
                return self._error(404, f"no route {self.path}", "not_found")
            engine = engines.get(body.get("model")) or (next(iter(engines.values())) if len(engines) == 1
                                                        and body.get("model") in (None, "default") else None)
            if engine is None:
                return self._error(404, f"The model {body.get('model')!r} does not exist; this server serves "
                                        f"{', '.join(engines)}", "not_found")
            try:
                if route.endswith("/chat/completions"):
                    self._send(200, chat_response(engine, body))
                else:
                    self._send(200, completion_response(engine, body))
            except (TypeError, ValueError) as exc:
                self._error(400, f"bad request: {exc}", "invalid_request_error")
    return Handler


def serve(engines: dict, host="127.0.0.1", port=8000, api_key: str | None = None) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), make_handler(engines, api_key))
    server.daemon_threads = True
    return server


def serve_in_background(models=(TINY,), host="127.0.0.1", port=0, api_key: str | None = None, loaded=None):
    """Start a server in a daemon thread of this process; returns ``(base_url, server)``.
    ``loaded`` maps names to ``(model, tokenizer)`` already in memory."""
    engines = {}
    for name in models:
        model, tok = (loaded or {}).get(name) or load_model(name)
        engines[name] = Engine(model, tok, name)
    for name, (model, tok) in (loaded or {}).items():
        engines.setdefault(name, Engine(model, tok, name))
    server = serve(engines, host, port, api_key)
    threading.Thread(target=server.serve_forever, name="hw10-llm-server", daemon=True).start()
    return f"http://{host}:{server.server_address[1]}/v1", server


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m hw10kit.prompting.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", help="a Hugging Face model name or folder (repeatable; "
                                                         "default gpt2)")
    parser.add_argument("--tiny", action="store_true", help=f"serve {TINY} (random weights, no download)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=None, help="answer 401 to requests without this key")
    args = parser.parse_args(argv)
    names = (args.model or []) + ([TINY] if args.tiny else [])
    names = names or ["gpt2"]
    engines = {}
    for name in names:
        print(f"loading {name} ...", flush=True)
        model, tok = load_model(name)
        engines[name] = Engine(model, tok, name)
    server = serve(engines, args.host, args.port, args.api_key)
    print(f"serving {', '.join(names)} at http://{args.host}:{server.server_address[1]}/v1\n"
          f"  export HW10_LLM_BASE_URL=http://{args.host}:{server.server_address[1]}/v1 "
          f"HW10_LLM_LARGE={names[-1]} HW10_LLM_SMALL={names[0]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
