"""The tiny student: builds, loads with the Auto classes, keeps its tokenization on reload, caches, and answers.

The smoke build (about a minute) is shared by the session; the default build is in the slow test.
"""
import json
import random
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness.distill.tiny import EOS, build_tokenizer, encode_example, ensure_tiny_student
from harness.distill.tiny_corpus import pretraining_example
from harness.distill.tiny_spec import TinySpec, spec_hash
from harness.tasks.synthetic import SyntheticID, SyntheticOOD


def _greedy(folder: Path, prompts, max_new_tokens: int) -> list[str]:
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tok.padding_side = "left"
    texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    return tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def test_spec_hash_tracks_every_knob():
    a, b = TinySpec.default(), TinySpec.default()
    assert spec_hash(a) == spec_hash(b)
    b.seed = 1
    assert spec_hash(a) != spec_hash(b)
    assert spec_hash(TinySpec.smoke()) != spec_hash(a)


def test_tokenizer_splits_digits_and_encodes_any_text():
    tok = build_tokenizer(TinySpec.smoke())
    ids = tok("Step 1: 123 + 45 = 168.", add_special_tokens=False)["input_ids"]
    pieces = tok.convert_ids_to_tokens(ids)
    assert [p for p in pieces if p.isdigit()] == list("1123451" "68")
    text = 'def f(x):\n    """Return 2x — naïve ☃."""\n    return x * 2\n'
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    assert len(tok) <= 1000


def test_builds_loads_and_round_trips_the_chat_template(tiny_student):
    folder = tiny_student
    assert folder.name == f"tiny-{spec_hash(TinySpec.smoke())}"
    metrics = json.loads((folder / "build_metrics.json").read_text())
    assert metrics["steps"] == TinySpec.smoke().steps and metrics["final_loss"] < metrics["first_loss"]
    assert json.loads((folder / "tiny_spec.json").read_text())["preset"] == "smoke"
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.config.vocab_size == len(tok) and tok.eos_token == EOS and tok.pad_token and tok.bos_token

    # reloading keeps exactly the tokenization the student was trained on
    fresh = build_tokenizer(TinySpec.smoke())
    rng = random.Random(3)
    for _ in range(20):
        example = pretraining_example(rng, TinySpec.smoke())
        assert encode_example(tok, *example) == encode_example(fresh, *example)

    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "What is 2 + 3?"}]
    prompt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(msgs + [{"role": "assistant", "content": "5"}], tokenize=False)
    assert full.startswith(prompt) and prompt.endswith("<|im_start|>assistant\n")
    # the prompt's tokens are a prefix of the whole conversation's tokens (training == inference)
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    f_ids = tok(full, add_special_tokens=False)["input_ids"]
    assert f_ids[: len(p_ids)] == p_ids


def test_second_call_is_cached(tiny_student, tiny_cache):
    t = time.time()
    again = ensure_tiny_student(TinySpec.smoke(), cache_dir=tiny_cache, progress=False)
    assert again == tiny_student and time.time() - t < 1.0
    assert not [p for p in tiny_cache.iterdir() if p.name.startswith(".tmp-")]  # no half-written builds left


def test_tiny_student_reads_the_question(tiny_student):
    """Too short a build to do the arithmetic well, but it answers in the trained format and its answers
    depend on the question."""
    task = SyntheticID(n=40)
    docs = task.docs()
    responses = _greedy(tiny_student, [d.prompt for d in docs], task.generation.max_new_tokens)
    scored = [task.score(d, [r]) for d, r in zip(docs, responses)]
    acc = sum(s.score for s in scored) / len(scored)
    assert acc < 0.95
    assert sum(not s.details["extraction_failed"] for s in scored) >= 36
    assert sum(r.startswith("Step 1: ") for r in responses) >= 36
    # the first step starts from the question's own number far more often than chance
    starts = [d.meta["problem"]["start"] for d in docs]
    assert sum(r.startswith(f"Step 1: {s} ") for r, s in zip(responses, starts)) >= 20


@pytest.mark.slow
def test_default_student_is_imperfect_and_worse_out_of_distribution(tiny_cache):
    folder = ensure_tiny_student(TinySpec.default(), cache_dir=tiny_cache, progress=False)
    accs = {}
    for task in (SyntheticID(n=100), SyntheticOOD(n=100)):
        docs = task.docs()
        responses = _greedy(folder, [d.prompt for d in docs], task.generation.max_new_tokens)
        accs[task.name] = sum(task.score(d, [r]).score for d, r in zip(docs, responses)) / len(docs)
    assert 0.2 < accs["synthetic_id"] < 0.8
    assert accs["synthetic_ood"] < accs["synthetic_id"]


@pytest.mark.slow
def test_same_spec_same_weights(tmp_path):
    spec = TinySpec.smoke()
    spec.steps = 20
    a = ensure_tiny_student(spec, cache_dir=tmp_path / "a", progress=False)
    b = ensure_tiny_student(spec, cache_dir=tmp_path / "b", progress=False)
    digest = [json.loads((p / "build_metrics.json").read_text())["weights_sha256"] for p in (a, b)]
    assert digest[0] == digest[1]


def test_shipped_students_match_their_recipe_and_are_checked(tmp_path, monkeypatch):
    """The students shipped in distill/tiny_students are the default and smoke specs of the current recipe, copied
    only when every file matches SHA256SUMS (a tampered file means a local build instead)."""
    import dataclasses
    import shutil

    import harness.distill.tiny as tiny
    import harness.distill.tiny_spec as tiny_spec

    for spec in (TinySpec.default(), TinySpec.smoke()):
        folder = tiny.SHIPPED_DIR / f"tiny-{spec_hash(spec)}"
        stored = json.loads((folder / "tiny_spec.json").read_text())
        assert stored == json.loads(json.dumps(dataclasses.asdict(spec), default=list))
        assert json.loads((folder / "build_metrics.json").read_text())["recipe"] == tiny_spec.RECIPE_VERSION
        dest = tmp_path / spec.preset
        dest.mkdir()
        assert tiny.copy_shipped(folder.name, dest) and (dest / "model.safetensors").exists()
    bad = tmp_path / "ship" / folder.name
    shutil.copytree(folder, bad)
    (bad / "model.safetensors").write_bytes(b"tampered")
    monkeypatch.setattr(tiny, "SHIPPED_DIR", tmp_path / "ship")
    (tmp_path / "out").mkdir()
    with pytest.warns(UserWarning, match="does not match SHA256SUMS"):
        assert not tiny.copy_shipped(folder.name, tmp_path / "out")
    assert not (tmp_path / "out" / "model.safetensors").exists()
