"""train.select_checkpoint.on: a test benchmark only when spelled out, and then marked as test-set selection."""
from __future__ import annotations

import json

import pytest

from harness.common.artifacts import SampleRecord
from harness.config import ConfigError, load_config
from harness.stages import select_checkpoint as train_stage
from harness.stages.plan import plan_run


def _plan(tmp_path, on):
    extra = {"output_dir": str(tmp_path), "eval": {"tasks": ["synthetic_id", "synthetic_ood"], "limit": 6},
             "pool": {"n": 40}, "train": {"select_checkpoint": {"every_steps": 2, "on": on}}}
    return plan_run(load_config(None, "smoke", extra=extra))


def test_selection_on_a_named_test_task_is_marked(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="not a task of this run"):
        train_stage.check_selection(_plan(tmp_path, "math500"))
    plan = _plan(tmp_path, "synthetic_ood")
    train_stage.check_selection(plan)  # no pool.validation_n needed: the benchmark is spelled out
    model_dir = plan.run_dir.model_dir("cgd")
    (model_dir / "final").mkdir(parents=True)
    (model_dir / "final" / "train_metrics.json").write_text(json.dumps({"steps": 4}))
    (model_dir / "steps" / "step-2").mkdir(parents=True)
    seen = []

    class FakeEngine:
        hits = misses = 0

        def __init__(self, folder):
            self.step = 4 if folder.name == "final" else 2

    monkeypatch.setattr("harness.models.serve", lambda e, model, adapter, cache: FakeEngine(adapter))

    def fake_eval(engine, task, docs, plan_, label):
        seen.append(task.name)
        return [SampleRecord(id=d.id, score=float(engine.step == 2), metrics={"accuracy": float(engine.step == 2)})
                for d in docs]

    monkeypatch.setattr("harness.stages.evaluate.evaluate_task", fake_eval)
    out = train_stage.select_checkpoint(plan, "student", "cgd", True, "fp", cache=None)
    assert set(seen) == {"synthetic_ood"} and out["on"] == "synthetic_ood" and out["n"] == 6
    assert out["test_set_selection"] is True and out["selected_step"] == 2 and not out["selected_is_last"]


def test_report_marks_test_set_selection():
    from types import SimpleNamespace

    from harness.common.artifacts import CheckpointSelection
    from harness.reports.sections.training import selection_section

    sel = CheckpointSelection.model_validate(
        {"on": "math500", "n": 4, "metric": "accuracy", "selected_step": 2, "last_step": 4, "selected": "steps/step-2",
         "curve": [{"step": 2, "value": 0.5, "dir": "steps/step-2"}, {"step": 4, "value": 0.25, "dir": "final"}],
         "test_set_selection": True})
    rows, _ = selection_section(SimpleNamespace(models={"cgd": SimpleNamespace(train=SimpleNamespace(selection=sel))}))
    assert rows[0]["test_set"] is True and rows[0]["on"] == "math500"
