"""Checkpoint selection scores kept checkpoints on held-out training questions only (pool_validation), never on
a test benchmark, and records the curve and the choice."""
from __future__ import annotations

import json

import pytest

from harness.common.artifacts import SampleRecord
from harness.distill.train_config import CheckpointSelection, TrainConfig
from harness.config import ConfigError, load_config
from harness.stages import select_checkpoint as train_stage
from harness.stages.plan import plan_run


def _plan(tmp_path, validation_n=8, select=True):
    extra = {"output_dir": str(tmp_path), "eval": {"tasks": ["synthetic_id", "synthetic_ood"], "limit": 20},
             "pool": {"n": 40, "validation_n": validation_n}}
    if select:
        extra["train"] = {"select_checkpoint": {"every_steps": 2}}
    return plan_run(load_config(None, "smoke", extra=extra))


def test_selection_needs_validation_split(tmp_path):
    with pytest.raises(ConfigError, match="validation_n"):
        train_stage.check_selection(_plan(tmp_path, validation_n=0))
    assert TrainConfig().select_checkpoint is None  # off: the last checkpoint, as the paper
    assert TrainConfig(select_checkpoint={"every_steps": 5}).select_checkpoint == CheckpointSelection(every_steps=5)


def test_selection_only_sees_pool_validation(tmp_path, monkeypatch):
    from harness.distill.pools import load_pool, split_validation

    plan = _plan(tmp_path)
    cfg = plan.config
    _, validation = split_validation(load_pool(cfg.pool.source, cfg.pool.n, cfg.pool.seed), cfg.pool.validation_n)
    model_dir = plan.run_dir.model_dir("cgd")
    (model_dir / "final").mkdir(parents=True)
    (model_dir / "final" / "train_metrics.json").write_text(json.dumps({"steps": 6}))
    for s in (2, 4):
        (model_dir / "steps" / f"step-{s}").mkdir(parents=True)
    seen = []
    accuracy = {2: 0.5, 4: 0.75, 6: 0.75}

    class FakeEngine:
        hits = misses = 0

        def __init__(self, folder):
            self.step = 6 if folder.name == "final" else int(folder.name.split("-")[1])

    monkeypatch.setattr("harness.models.serve", lambda e, model, adapter, cache: FakeEngine(adapter))

    def fake_eval(engine, task, docs, plan_, label):
        seen.append((task.name, [d.id for d in docs], [d.prompt for d in docs]))
        k = int(round(accuracy[engine.step] * len(docs)))
        return [SampleRecord(id=d.id, score=float(i < k), metrics={"accuracy": float(i < k)})
                for i, d in enumerate(docs)]

    monkeypatch.setattr("harness.stages.evaluate.evaluate_task", fake_eval)
    out = train_stage.select_checkpoint(plan, "student", "cgd", True, "fp", cache=None)
    assert [c["step"] for c in out["curve"]] == [2, 4, 6]
    assert out["selected_step"] == 6 and out["selected_is_last"]  # a tie goes to the later step
    assert out["on"] == "pool_validation" and out["n"] == len(validation)
    # every evaluation of the selection was on pool_validation, whose questions no test task holds
    assert {name for name, _, _ in seen} == {"pool_validation"}
    test_prompts = {str(d.prompt) for t in plan.tasks for d in plan.docs[t]}
    test_ids = {d.id for t in plan.tasks for d in plan.docs[t]}
    for _, ids, prompts in seen:
        assert not set(ids) & test_ids and not {str(p) for p in prompts} & test_prompts
    stored = json.loads((model_dir / "selection.json").read_text())
    assert stored["selected"] == "final"
    again = train_stage.select_checkpoint(plan, "student", "cgd", True, "fp", cache=None)
    assert again["selected_dir"] == str(model_dir / "final") and len(seen) == 3  # reused, not re-evaluated
