"""The language-model client against a real HTTP server on loopback that speaks OpenAI's
completions and chat APIs with log-probabilities, backed by a real model (a tiny GPT-2
with random weights and GPT-2's real vocabulary: nothing is downloaded). The real
``openai`` client, the disk cache (a second run makes no request), and the error paths:
401, a 429 then success, a timeout, a server that is down, no key."""
import json
import socket
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("transformers")

from hw10kit.prompting import LM, LMUnavailable, Settings, settings_from_env  # noqa: E402
from hw10kit.prompting.server import TINY, serve_in_background, tiny_gpt2  # noqa: E402

PROMPT = "Question: Where do fish live?\nA. sea\nB. sky\nC. desert\nD. oven\nE. moon\nAnswer:"


@pytest.fixture(scope="module")
def tiny():
    return tiny_gpt2()


@pytest.fixture(scope="module")
def server(tiny):
    url, srv = serve_in_background((), loaded={TINY: tiny})
    yield url
    srv.shutdown()


@pytest.fixture(scope="module")
def locked_server(tiny):
    url, srv = serve_in_background((), loaded={TINY: tiny}, api_key="secret")
    yield url
    srv.shutdown()


def lm_for(url, tmp_path, **kw):
    base = dict(base_url=url, api_key="EMPTY", large=TINY, small=TINY, api="completions",
                cache_dir=str(tmp_path / "cache"), timeout=10, max_retries=0)
    return LM(Settings(**{**base, **kw}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_completions_return_the_tokens_their_logprobs_and_the_top_alternatives(server, tmp_path):
    out = lm_for(server, tmp_path).complete(PROMPT, max_tokens=3, top_logprobs=5)
    assert len(out.tokens) == 3 and out.text == "".join(out.tokens)
    assert all(len(top) == 5 for top in out.top_logprobs)
    for token, lp, top in zip(out.tokens, out.logprobs, out.top_logprobs):
        assert lp <= 0 and token in top and top[token] == pytest.approx(lp)  # greedy: the best alternative
        assert max(top.values()) == pytest.approx(lp)


def test_chat_completions_return_logprobs_too(server, tmp_path):
    out = lm_for(server, tmp_path, api="chat").complete("Say one word.", max_tokens=2, top_logprobs=4)
    assert len(out.tokens) == 2 and all(len(t) == 4 for t in out.top_logprobs)
    assert out.first_top and all(v <= 0 for v in out.first_top.values())


def test_the_cache_answers_a_second_run_without_any_request(server, tmp_path):
    first = lm_for(server, tmp_path)
    a = first.complete(PROMPT, max_tokens=2)
    assert first.requests == 1 and not a.cached
    again = lm_for(server, tmp_path)
    b = again.complete(PROMPT, max_tokens=2)
    assert again.requests == 0 and b.cached and (b.text, b.top_logprobs) == (a.text, a.top_logprobs)
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 1
    # any change to the request is another entry
    again.complete(PROMPT, max_tokens=3)
    assert again.requests == 1


def test_a_ta_replays_a_cached_run_with_the_server_down_and_no_key(server, tmp_path):
    lm_for(server, tmp_path).complete(PROMPT, max_tokens=2)
    replay = lm_for(server, tmp_path, api_key="")  # same request key: base_url is part of it
    replay._client = None
    out = replay.complete(PROMPT, max_tokens=2)
    assert out.cached and replay.requests == 0


def test_seeded_samples_are_reproducible_and_differ_across_seeds(server, tmp_path):
    lm = lm_for(server, tmp_path)
    draws = [lm.complete("Once upon a time", max_tokens=4, temperature=1.0, seed=s).text for s in range(4)]
    fresh = lm_for(server, tmp_path / "other")
    assert draws == [fresh.complete("Once upon a time", max_tokens=4, temperature=1.0, seed=s).text for s in range(4)]
    assert len(set(draws)) > 1


def test_many_requests_in_parallel_keep_their_order(server, tmp_path):
    lm = lm_for(server, tmp_path)
    prompts = [f"Number {i}:" for i in range(12)]
    together = lm.complete_many(prompts, max_tokens=1, workers=4)
    assert [o.text for o in together] == [lm_for(server, tmp_path / "b").complete(p, max_tokens=1).text
                                         for p in prompts]


def test_a_wrong_key_gives_one_message_saying_what_to_set(locked_server, tmp_path):
    with pytest.raises(LMUnavailable, match=r"401.*HW10_LLM_API_KEY"):
        lm_for(locked_server, tmp_path, api_key="wrong").complete(PROMPT)
    assert lm_for(locked_server, tmp_path, api_key="secret").complete(PROMPT).tokens


def test_an_unknown_model_names_the_served_ones(server, tmp_path):
    with pytest.raises(LMUnavailable, match=rf"404.*{TINY}"):
        lm_for(server, tmp_path, large="gpt-17").complete(PROMPT)


class Flaky:
    """A server that answers 429 to the first ``fails`` requests, then forwards to ``target``;
    or sleeps ``delay`` seconds before answering."""

    def __init__(self, target, fails=1, delay=0.0):
        self.target, self.fails, self.delay, self.seen = target, fails, delay, 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.seen += 1
                if outer.delay:
                    time.sleep(outer.delay)
                if outer.seen <= outer.fails:
                    data = json.dumps({"error": {"message": "Rate limit reached", "type": "rate_limit",
                                                 "code": 429}}).encode()
                    self.send_response(429)
                    self.send_header("retry-after-ms", "10")
                else:
                    req = urllib.request.Request(outer.target + self.path[len("/v1"):], data=body,
                                                 headers={"Content-Type": "application/json"})
                    data = urllib.request.urlopen(req, timeout=30).read()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda *a: None  # a client that gave up (the timeout test) is expected
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.httpd.shutdown()


def test_a_429_is_retried_with_back_off_and_then_succeeds(server, tmp_path):
    flaky = Flaky(server, fails=1)
    try:
        out = lm_for(flaky.url, tmp_path, max_retries=2).complete(PROMPT, max_tokens=1)
    finally:
        flaky.close()
    assert flaky.seen == 2 and out.tokens


def test_a_429_that_persists_says_so_after_the_retries(server, tmp_path):
    flaky = Flaky(server, fails=99)
    try:
        with pytest.raises(LMUnavailable, match="429"):
            lm_for(flaky.url, tmp_path, max_retries=1).complete(PROMPT)
    finally:
        flaky.close()
    assert flaky.seen == 2


def test_a_server_that_does_not_answer_in_time_gives_a_timeout_message(server, tmp_path):
    slow = Flaky(server, fails=0, delay=3.0)
    try:
        start = time.perf_counter()
        with pytest.raises(LMUnavailable, match="within 0.5 s"):
            lm_for(slow.url, tmp_path, timeout=0.5).complete(PROMPT)
        assert time.perf_counter() - start < 3.0
    finally:
        slow.close()


def test_a_server_that_is_down_says_what_to_set(tmp_path):
    with pytest.raises(LMUnavailable, match=r"cannot reach .*HW10_LLM_BASE_URL"):
        lm_for(f"http://127.0.0.1:{free_port()}/v1", tmp_path).complete(PROMPT)


def test_no_key_for_openai_says_what_to_set_before_any_request(tmp_path):
    lm = LM(Settings(base_url=None, api_key="", cache_dir=str(tmp_path)))
    with pytest.raises(LMUnavailable, match="OPENAI_API_KEY"):
        lm.complete(PROMPT)
    assert lm.requests == 0


def test_settings_come_from_the_environment():
    s = settings_from_env({"HW10_LLM_BASE_URL": "http://h:1/v1", "HW10_LLM_LARGE": "big", "HW10_LLM_SMALL": "small"})
    assert (s.base_url, s.api_key, s.large, s.small, s.api) == ("http://h:1/v1", "EMPTY", "big", "small", "completions")
    s = settings_from_env({"OPENAI_API_KEY": "sk-x"})
    assert s.base_url is None and s.api_key == "sk-x" and s.api == "chat"
