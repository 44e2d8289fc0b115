"""The anthropic engine at the HTTP boundary: the official SDK against a local server that speaks the Messages
API (system parameter, stop sequences, max_tokens), with 429 + Retry-After and 529 overloaded answered first;
the number of requests made is asserted."""
from __future__ import annotations

import time

import pytest

pytest.importorskip("anthropic")

from harness.common.types import SamplingParams  # noqa: E402
from harness.engines import EngineUnavailable, build_engine, engine_identity  # noqa: E402
from harness.engines.http_limits import APIRequestError  # noqa: E402
from servers.messages_server import MessagesServer, reply_text  # noqa: E402

FAST = {"backoff_base_s": 0.05, "backoff_max_s": 0.2, "timeout_s": 10, "max_retries": 4}


@pytest.fixture()
def server():
    s = MessagesServer().start()
    yield s
    s.stop()


def make(server, **opts):
    return build_engine("anthropic", "claude-test", options={"base_url": server.base_url, **FAST, **opts})


def test_messages_system_and_usage(server, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-0001")
    e = make(server, price_per_mtok_in=3.0, price_per_mtok_out=15.0, concurrency=3)
    prompts = [[{"role": "system", "content": "be brief"}, {"role": "user", "content": f"how many apples {i}"}]
               for i in range(6)] + ["plain string prompt"]
    out = e.generate(prompts, SamplingParams(max_new_tokens=64))
    assert len(server.requests) == 7 and all(r["has_key"] for r in server.requests)
    first = server.requests[0]["body"]
    assert first["system"] == "be brief" and all(m["role"] != "system" for m in first["messages"])
    assert "system" not in server.requests[-1]["body"]
    assert [c[0].text for c in out[:6]] == [reply_text({"system": "be brief", "messages": p[1:]}) for p in prompts[:6]]
    assert out[6][0].text == reply_text({"messages": [{"role": "user", "content": "plain string prompt"}]})
    u = e.usage
    assert u.requests == 7 and u.input_tokens == sum(c[0].prompt_tokens for c in out) > 0
    assert u.cost_usd == pytest.approx((u.input_tokens * 3 + u.output_tokens * 15) / 1e6)
    assert "sk-ant" not in str(e.describe()) + e.identity
    e.close()


def test_max_tokens_stop_sequences_and_n(server):
    e = make(server)
    p = [{"role": "user", "content": "one two three four five"}]
    cut = e.generate([p], SamplingParams(max_new_tokens=2))[0][0]
    assert cut.finish_reason == "length" and cut.text == "five four"
    stop = e.generate([p], SamplingParams(max_new_tokens=50, stop=("three",)))[0][0]
    assert stop.finish_reason == "stop" and stop.text == "five four "
    server.requests.clear()
    three = e.generate([p], SamplingParams(max_new_tokens=50, n=3, temperature=0.7))
    assert len(three[0]) == 3 and len(server.requests) == 3  # no `n` in the Messages API: one request each
    e.close()


def test_429_retry_after_and_529_overloaded(server):
    server.script.extend([server.rate_limited(1.0), server.overloaded(), server.overloaded()])
    e = make(server)
    t0 = time.perf_counter()
    out = e.generate([[{"role": "user", "content": "hello there"}]], SamplingParams(max_new_tokens=8))
    assert time.perf_counter() - t0 >= 1.0  # Retry-After: 1 honoured
    assert out[0][0].text == "there hello |"
    assert len(server.requests) == 4  # 429, 529, 529, then the answer
    assert e.usage.retries == 3 and e.usage.errors == {"429": 1, "529": 2}
    e.close()


def test_gives_up_after_max_retries(server):
    server.script.extend([server.overloaded()] * 10)
    e = make(server, max_retries=2)
    with pytest.raises(APIRequestError, match="529.*after 3 attempts"):
        e.generate([[{"role": "user", "content": "x"}]], SamplingParams(max_new_tokens=8))
    assert len(server.requests) == 3
    e.close()


def test_bad_request_not_retried(server):
    server.script.append((400, {}, {"type": "error", "error": {"type": "invalid_request_error",
                                                                  "message": "max_tokens too large"}}))
    e = make(server)
    with pytest.raises(APIRequestError, match="400.*max_tokens too large.*not retried"):
        e.generate([[{"role": "user", "content": "x"}]], SamplingParams(max_new_tokens=8))
    assert len(server.requests) == 1
    e.close()


def test_loglikelihood_unavailable_and_identity():
    with pytest.raises(EngineUnavailable, match="no log-probabilities"):
        build_engine("anthropic", "claude-test").loglikelihood([("a", "b")])
    a = engine_identity("anthropic", "claude-test")
    assert a.endswith(":anthropic") and a != engine_identity("anthropic", "claude-test",
                                                             options={"model_revision": "2025-01-01"})


def test_sampling_params_sent_as_the_config_says(server):
    p = [{"role": "user", "content": "x"}]
    make(server).generate([p], SamplingParams(max_new_tokens=4, temperature=0.0))
    assert server.requests[-1]["body"]["temperature"] == 0.0  # greedy is sent, not left to the API's default
    make(server).generate([p], SamplingParams(max_new_tokens=4, temperature=0.5))
    assert server.requests[-1]["body"]["temperature"] == 0.5
    off = make(server, send_sampling_params=False)
    off.generate([p], SamplingParams(max_new_tokens=4, temperature=0.5))
    assert "temperature" not in server.requests[-1]["body"]
    assert off.identity != make(server).identity  # the model's own sampling is cached apart
