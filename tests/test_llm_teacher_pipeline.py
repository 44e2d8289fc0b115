"""The LLM teacher pipeline end to end with real parts: a real tiny chat model (conftest's random 2-layer Qwen2) as
student and as the teacher model behind a real
OpenAI-compatible server on loopback (vLLM when importable, else `transformers serve`; if neither starts, the
same model through the hf backend), a real compare (probe, critique, refine, train, evaluate).

Checked: cgd trains on the teacher's refinements (not the gold solutions); a spending cap stops the run with
exit-code-2 semantics and everything kept, and a raised cap resumes it in the same folder; a re-run makes no
teacher request (the call cache); the critique-content modes give visibly different critiques."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.config import load_config
from harness.pipeline import run
from harness.stages.plan import plan_run
from harness.stages.training_data import BudgetExceeded, derangement

BASE = ["--preset", "smoke"]


@pytest.fixture(scope="module")
def teacher_backend(random_chat_model, tmp_path_factory):
    """(engine section for the teacher, description); the server is stopped at the end of the module.

    HARNESS_TEST_TEACHER_SERVER=1 serves the teacher over HTTP; by default the hf backend is used, because
    `transformers serve` returns empty texts for this random model (its greedy and sampled outputs decode to
    whitespace / undecodable bytes there), which leaves cgd nothing to train on."""
    if os.environ.get("HARNESS_TEST_TEACHER_SERVER") != "1":
        yield {"backend": "hf", "batch_size": 8, "options": {}}, "hf"
        return
    try:
        from servers.openai_server import start_openai_server

        srv = start_openai_server(random_chat_model, tmp_path_factory.mktemp("server_logs"), startup_s=240)
    except Exception as e:  # noqa: BLE001 - any failure to start: fall back to the in-process engine
        print(f"OpenAI-compatible server did not start ({str(e).splitlines()[0][:200]}); using the hf backend")
        yield {"backend": "hf", "batch_size": 8}, "hf"
        return
    try:
        yield ({"backend": "openai", "options": {"base_url": srv.base_url, "served_model": srv.served_model,
                                                 "api_key_env": "HARNESS_TEST_KEY", "concurrency": 4,
                                                 "price_per_mtok_in": 1.0, "price_per_mtok_out": 2.0}},
               srv.kind)
    finally:
        srv.stop()


def config(out: Path, engine: dict, teacher_model: Path, **teacher):
    extra = {"methods": ["cgd"], "output_dir": str(out), "student": {"model": str(teacher_model)},
             "pool": {"n": 8},
             "teacher": {"kind": "llm", "model": str(teacher_model), "engine": engine, "max_new_tokens": 40,
                         "temperature": 1.0, "batch_size": 4, **teacher},
             # sampled (seeded): greedy decoding of a random model is only newlines, i.e. empty texts
             "probe": {"max_new_tokens": 48, "temperature": 1.0},
             "train": {"max_steps": 2, "per_device_batch_size": 4, "max_length": 2048},
             "eval": {"tasks": ["synthetic_id"], "limit": 2, "max_new_tokens": {"*": 24}}}
    return load_config(None, "smoke", None, extra)


def items_of(rd) -> list[dict]:
    return [json.loads(x) for x in rd.items.read_text().splitlines()]


def test_cap_stop_resume_targets_and_cache(teacher_backend, random_chat_model, tmp_path, monkeypatch):
    engine, kind = teacher_backend
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))  # a fresh cache: the first run pays
    monkeypatch.setenv("HARNESS_TEST_KEY", "not-a-secret")
    capped = config(tmp_path / "runs", engine, random_chat_model, max_tokens=1)
    plan = plan_run(capped)
    with pytest.raises(BudgetExceeded, match="raise.*teacher.max_tokens|higher cap"):
        run(plan)
    kept = items_of(plan.run_dir)
    done = [it for it in kept if it["critique"] is not None]
    assert len(done) == 4 and all(it["meta"]["usage"]["critique"]["tokens_out"] > 0 for it in done)
    assert not plan.run_dir.manifest.exists()

    # a raised cap: the same run folder (the cap is not part of the run id), resumed through the cache
    raised = config(tmp_path / "runs", engine, random_chat_model, max_tokens=10**9)
    plan2 = plan_run(raised)
    assert plan2.run_dir.root == plan.run_dir.root
    rd = run(plan2)
    m = json.loads(rd.manifest.read_text())
    td = m["training_data"]
    # the 4 critiques made before the cap are kept (made under the same key): only the other shard is asked for,
    # so they were not paid again (and not even asked of the cache)
    assert td["critique"]["reused"] == 4 and td["critique"]["computed"] == 4
    assert td["critique"]["this_run"]["requests"] >= 4 and td["critique"]["this_run"]["cache_hits"] == 0
    assert td["critique"]["tokens_in"] > 0 and td["refine"]["tokens_out"] > 0
    assert td["teacher_total"]["tokens"] == sum(td[s]["tokens_in"] + td[s]["tokens_out"]
                                                for s in ("critique", "refine"))
    if kind != "hf":
        assert td["teacher_total"]["cost_usd"] > 0
    else:  # a self-hosted teacher without a price: its cost is unknown, never $0
        assert td["teacher_total"]["cost_usd"] is None and td["critique"]["cost_usd"] is None
    assert {"flagged", "retries", "right", "wrong", "mean_chars"} <= set(td["critique"])

    # cgd's targets are the teacher's refinements, not the gold solutions
    items = {it["id"]: it for it in items_of(rd)}
    rows = [json.loads(x) for x in rd.train_data("cgd").read_text().splitlines()]
    assert len(rows) == len(items) == 8
    for row, it in zip(rows, items.values()):
        target = row["completion"][0]["content"]
        assert target == it["refined"] and target != it["gold_solution"]
        assert it["critique"] in " ".join(msg["content"] for msg in row["prompt"])

    # a re-run without the stored training data asks the teacher nothing: every call comes from the cache
    rd.items.unlink()
    rd3 = run(plan_run(raised))
    td3 = json.loads(rd3.manifest.read_text())["training_data"]
    for s in ("critique", "refine"):
        this = td3[s]["this_run"]
        assert this["requests"] == this["cache_hits"] > 0 and this["tokens_in"] == this["tokens_out"] == 0
    assert {it["id"]: it["refined"] for it in items_of(rd3)} == {k: v["refined"] for k, v in items.items()}
    html = rd3.report.read_text()
    assert "Training data" in html


def test_critique_modes_differ_visibly(teacher_backend, random_chat_model, tmp_path, monkeypatch):
    engine, _ = teacher_backend
    monkeypatch.setenv("HARNESS_TEST_KEY", "not-a-secret")
    out = {}
    for mode in ("specific", "irrelevant", "generic"):
        cfg = config(tmp_path / "runs", engine, random_chat_model, critique_mode=mode)
        cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"limit": 1})})
        plan = plan_run(cfg)
        from harness.stages.training_data import build_items
        from harness.models import student_of
        from harness.store import CallCache, default_cache_dir

        cache = CallCache(default_cache_dir() / "calls.sqlite")
        built = build_items(plan, student_of(cfg), cache)
        cache.close()
        out[mode] = built.items
        assert built.stages["critique"].fingerprint not in {r for r in getattr(test_critique_modes_differ_visibly,
                                                                            "_seen", set())}
        test_critique_modes_differ_visibly._seen = {*getattr(test_critique_modes_differ_visibly, "_seen", set()),
                                                    built.stages["critique"].fingerprint}
    spec, irr, gen = out["specific"], out["irrelevant"], out["generic"]
    own = {it.id: it.critique for it in spec}
    # irrelevant: each item trains on ANOTHER item's critique (a derangement fixed by the seed)
    assert all(it.meta.critique_swap.came_from != it.id and it.critique == own[it.meta.critique_swap.came_from]
               for it in irr)
    assert sorted(it.meta.critique_swap.came_from for it in irr) == sorted(own)
    assert all(it.meta.critique_swap.specific == own[it.id] for it in irr)
    # generic: one fixed critique for all
    assert len({it.critique for it in gen}) == 1 and gen[0].critique not in own.values()
    # refinements are written from the specific critique in every mode (so only the student's input changes)
    assert [it.refined for it in irr] == [it.refined for it in spec] == [it.refined for it in gen]


def test_derangement_has_no_fixed_point():
    for n in (2, 3, 10, 101):
        for seed in (0, 1):
            p = derangement(n, seed)
            assert sorted(p) == list(range(n)) and all(p[i] != i for i in range(n))
            assert p == derangement(n, seed)
