"""The hf engine (generation, sampling, log-likelihood) and the SQLite call cache, on a real tiny model."""
import math

import pytest

from harness.engines.base import SamplingParams
from harness.engines.hf import HFEngine
from harness.engines import engine_identity
from harness.store import CachedEngine, CallCache

PROMPTS = [[{"role": "user", "content": "12 + 7"}], "The answer is", [{"role": "user", "content": "hello"}]]


@pytest.fixture(scope="module")
def engine(random_chat_model):
    return HFEngine(random_chat_model, batch_size=2)


def test_greedy_is_deterministic_and_batch_independent(engine, random_chat_model):
    params = SamplingParams(max_new_tokens=8)
    a = engine.generate(PROMPTS, params)
    other = HFEngine(random_chat_model, batch_size=1)
    b = other.generate(PROMPTS, params)
    assert [x[0].text for x in a] == [x[0].text for x in b]
    for comps in a:
        assert comps[0].finish_reason in ("stop", "length")
        assert comps[0].completion_tokens <= 8 and comps[0].prompt_tokens > 0


def test_sampling_gives_n_completions_reproducibly(engine):
    params = SamplingParams(max_new_tokens=8, temperature=1.0, n=3, seed=7)
    a = engine.generate(PROMPTS, params)
    b = engine.generate(PROMPTS, params)
    assert all(len(c) == 3 for c in a)
    assert [[c.text for c in x] for x in a] == [[c.text for c in x] for x in b]
    # A random model sampled at temperature 1 does not repeat itself three times on every prompt.
    assert any(len({c.text for c in x}) > 1 for x in a)


def test_loglikelihood_matches_greedy_continuation(engine):
    greedy = engine.generate(["hello world"], SamplingParams(max_new_tokens=4))[0][0].text
    (lp, is_greedy), (lp_other, other_greedy) = engine.loglikelihood(
        [("hello world", greedy), ("hello world", " 1 2 3 4 5 6")])
    assert is_greedy and not other_greedy
    assert lp < 0 and math.isfinite(lp_other)
    # Summed log-probabilities: a longer, non-greedy continuation is less likely than the greedy one.
    assert lp > lp_other


def model_identity(model, adapter=None):
    return engine_identity("hf", model, adapter)


def test_identity_changes_with_adapter_weights(random_chat_model, tmp_path, engine):
    base = model_identity(random_chat_model)
    assert base.startswith(random_chat_model.name + "@")
    assert model_identity(random_chat_model) == base == engine.identity  # stable, and the loaded engine agrees
    (tmp_path / "adapter_model.safetensors").write_bytes(b"x")
    (tmp_path / "adapter_config.json").write_text("{}")
    with_adapter = model_identity(random_chat_model, tmp_path)
    (tmp_path / "adapter_model.safetensors").write_bytes(b"y")
    assert with_adapter != model_identity(random_chat_model, tmp_path) and "+adapter@" in with_adapter


def test_identity_changes_with_chat_template_and_dtype(random_chat_model, tmp_path):
    import shutil

    copy = tmp_path / random_chat_model.name
    shutil.copytree(random_chat_model, copy)
    assert model_identity(copy) == model_identity(random_chat_model)  # same files, same identity
    cfg = copy / "tokenizer_config.json"
    tpl = copy / "chat_template.jinja"
    if tpl.exists():
        tpl.write_text(tpl.read_text() + "\n")
    else:
        import json

        data = json.loads(cfg.read_text())
        data["chat_template"] = data["chat_template"] + "\n"
        cfg.write_text(json.dumps(data))
    assert model_identity(copy) != model_identity(random_chat_model)
    assert engine_identity("hf", random_chat_model, dtype="bfloat16") != model_identity(random_chat_model)


def test_cache_serves_repeats_and_survives_reopen(engine, tmp_path):
    params = SamplingParams(max_new_tokens=6)
    cache = CallCache(tmp_path / "calls.sqlite")
    cached = CachedEngine(engine, cache)
    first = cached.generate(PROMPTS, params)
    assert (cached.hits, cached.misses) == (0, 3)
    again = cached.generate(PROMPTS, params)
    assert (cached.hits, cached.misses) == (3, 3)
    assert [x[0].text for x in again] == [x[0].text for x in first] and all(x[0].cached for x in again)
    # Different sampling params are a different key.
    cached.generate(PROMPTS[:1], SamplingParams(max_new_tokens=7))
    assert cached.misses == 4
    cache.close()
    reopened = CachedEngine(engine, CallCache(tmp_path / "calls.sqlite"))
    reopened.generate(PROMPTS, params)
    reopened.loglikelihood([("The answer is", " 19")])
    reopened.loglikelihood([("The answer is", " 19")])
    assert reopened.hits == 4 and reopened.misses == 1
