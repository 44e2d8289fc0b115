"""Faults between the openai engine and a real server (a fault-injecting proxy on loopback): 429 with
Retry-After, 500s, stalls past the timeout, dropped connections and malformed JSON bodies. The run finishes with
every sample once, in order, equal to a fault-free run, and every retry counted; the API key never leaks."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

pytest.importorskip("openai")

from harness.common.types import SamplingParams  # noqa: E402
from harness.engines import build_engine  # noqa: E402
from harness.engines.http_limits import APIRequestError  # noqa: E402
from harness.store import CachedEngine, CallCache  # noqa: E402
from servers.fault_proxy import FAULTS, FaultProxy  # noqa: E402

PARAMS = SamplingParams(max_new_tokens=8)
CHAT = [[{"role": "user", "content": f"Tom has {i} apples"}] for i in range(20)]
TEXT = [f"Question: what is {i} times 7? Answer:" for i in range(5)]
PROMPTS = CHAT + TEXT
FAST = {"timeout_s": 1.5, "backoff_base_s": 0.05, "backoff_max_s": 0.2, "max_retries": 4, "concurrency": 4}
KIND = {"429": "429", "500": "500", "stall": "timeout", "drop": "connection", "malformed": "malformed"}


def index_of(body: dict) -> int:
    p = body.get("prompt") if "prompt" in body else body.get("messages")
    return PROMPTS.index(p) if p in PROMPTS else -1


def schedule(body: dict, attempt: int) -> str | None:
    """Prompt i: fault FAULTS[i % 5] on its first attempt; every 6th prompt a 500 on its second attempt too."""
    i = index_of(body)
    if i < 0:
        return None
    if attempt == 0:
        return FAULTS[i % len(FAULTS)]
    if attempt == 1 and i % 6 == 0:
        return "500"
    return None


@pytest.fixture(scope="module")
def model_dir(served_model_dir) -> Path:
    return served_model_dir


@pytest.fixture(scope="module")
def server(openai_server):  # one server per test session: vLLM's takes about a minute to start
    return openai_server


@pytest.fixture(scope="module")
def clean(model_dir, server):
    """The fault-free answers, straight from the server."""
    e = build_engine("openai", model_dir, options={"base_url": server.base_url, "served_model": server.served_model})
    out = e.generate(PROMPTS, PARAMS)
    e.close()
    return [[c.text for c in cs] for cs in out]


def make(model_dir, server, proxy, **opts):
    return build_engine("openai", model_dir, options={"base_url": proxy.base_url,
                                                      "served_model": server.served_model, **FAST, **opts})


def test_faults_lose_and_duplicate_nothing(model_dir, server, clean):
    proxy = FaultProxy(server.base_url, schedule, retry_after_s=0.5, stall_s=3.0).start()
    try:
        e = make(model_dir, server, proxy)
        t0 = time.perf_counter()
        out = e.generate(PROMPTS, PARAMS)
        dt = time.perf_counter() - t0
        injected = sum(proxy.faults.values())
        u = e.usage
        print(f"faults {dict(proxy.faults)} -> retries {u.retries}, errors {u.errors}, {dt:.1f}s")
        assert [[c.text for c in cs] for cs in out] == clean  # none lost, none duplicated, in order
        assert all(len(cs) == 1 for cs in out)
        assert u.retries == injected and u.requests == len(PROMPTS) + injected and u.failed == 0
        assert proxy.forwarded == len(PROMPTS)
        want: dict[str, int] = {}
        for f, n in proxy.faults.items():
            want[KIND[f]] = want.get(KIND[f], 0) + n
        assert u.errors == want
        assert set(proxy.faults) == set(FAULTS)
        e.close()
    finally:
        proxy.stop()


def test_retry_after_is_honoured(model_dir, server):
    proxy = FaultProxy(server.base_url, lambda body, attempt: "429" if attempt < 2 else None,
                       retry_after_s=1.0).start()
    try:
        e = make(model_dir, server, proxy)
        t0 = time.perf_counter()
        e.generate(CHAT[:1], PARAMS)
        assert time.perf_counter() - t0 >= 2.0  # two waits of Retry-After: 1, not the 0.05 s backoff
        assert e.usage.retries == 2 and proxy.requests == 3
        e.close()
    finally:
        proxy.stop()


def test_retries_exhausted_is_one_line_error(model_dir, server):
    proxy = FaultProxy(server.base_url, lambda body, attempt: "500").start()
    try:
        e = make(model_dir, server, proxy, max_retries=2)
        with pytest.raises(APIRequestError) as err:
            e.generate(CHAT[:1], PARAMS)
        assert "\n" not in str(err.value) and "500" in str(err.value) and "3 attempts" in str(err.value)
        assert proxy.requests == 3 and e.usage.failed == 1
        e.close()
    finally:
        proxy.stop()


def test_api_key_never_leaks(model_dir, server, tmp_path, monkeypatch, caplog):
    secret = "sk-harness-leakcheck-7f3a9c2e"
    monkeypatch.setenv("HARNESS_TEST_KEY", secret)
    for name in (None, "openai", "httpx", "httpx2", "harness"):
        caplog.set_level(logging.DEBUG, logger=name)
    monkeypatch.setenv("OPENAI_LOG", "debug")
    bad = {"Tom has 3 apples": "401-echo"}
    proxy = FaultProxy(server.base_url, lambda body, attempt: bad.get(
        (body.get("messages") or [{}])[-1].get("content", "")) or (schedule(body, attempt))).start()
    try:
        e = make(model_dir, server, proxy, api_key_env="HARNESS_TEST_KEY")
        cache = CallCache(tmp_path / "calls.sqlite")
        ce = CachedEngine(e, cache)
        ok = ce.generate(CHAT[:3] + TEXT[:2], PARAMS)  # with faults and retries, no 401
        assert len(ok) == 5
        with pytest.raises(APIRequestError) as err:
            ce.generate(CHAT[3:4], PARAMS)
        assert "401" in str(err.value) and "not retried" in str(err.value)
        assert any(secret in " ".join(h.values()) for h in proxy.headers_seen)  # the key was sent...
        texts = {"exception": str(err.value) + repr(err.value), "describe": json.dumps(e.describe()),
                 "identity": e.identity, "logs": caplog.text}
        cache.close()
        for f in tmp_path.glob("calls.sqlite*"):
            texts[f.name] = f.read_bytes().decode("latin-1")
        for where, text in texts.items():
            assert secret not in text, where  # ...and is nowhere else
        assert caplog.records  # the logs were captured (retries are logged)
        e.close()
    finally:
        proxy.stop()
