"""Checkpoint selection: score each kept checkpoint of a trained model on held-out questions (the plan's
held-out task, pool_validation) and evaluate the best, or on a test benchmark the config spells out (marked as
test-set selection, as the paper did). Never falls back to a test set silently."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.common.files import stable_hash, write_json_atomic
from harness.config import ConfigError
from harness.common.progress import console
from harness.stages.plan import Plan
from harness.stages.pool_split import HELD_OUT_TASK

SELECTION_TASK = HELD_OUT_TASK  # the default of train.select_checkpoint.on: the plan's held-out task


def check_selection(plan: Plan) -> None:
    """Checkpoint selection needs held-out training questions; it never falls back to a test benchmark."""
    sel = plan.config.train.select_checkpoint
    if sel is None:
        return
    if sel.on != SELECTION_TASK:
        if sel.on not in plan.tasks:
            raise ConfigError(f"train.select_checkpoint.on={sel.on!r} is not a task of this run; name one of "
                              f"{', '.join(plan.tasks)} or use the default pool_validation (held-out pool questions)")
        primary = plan.task_objs[sel.on].primary_metric
        if sel.metric != primary:
            raise ConfigError(f"train.select_checkpoint.metric={sel.metric!r}: selection on {sel.on} uses its "
                              f"primary metric; set train.select_checkpoint.metric={primary}")
        return
    if plan.held_out is None:  # the plan holds one when the run trains and pool.validation_n > 0
        raise ConfigError("train.select_checkpoint scores checkpoints on held-out training questions, but "
                          "pool.validation_n=0; set pool.validation_n (e.g. 32) or unset train.select_checkpoint")
    if sel.metric != "accuracy":
        raise ConfigError(f"train.select_checkpoint.metric={sel.metric!r} is not a metric of {SELECTION_TASK}; "
                          "use accuracy")


def selection_docs(plan: Plan):
    """The items checkpoint selection sees: the pool's validation split (task pool_validation), or the test
    benchmark the config spells out in train.select_checkpoint.on (marked as test-set selection)."""
    on = plan.config.train.select_checkpoint.on
    if on != SELECTION_TASK:
        return plan.task_objs[on], plan.docs[on]
    if plan.held_out is None:
        raise ConfigError("checkpoint selection needs the pool_validation task (pool.validation_n > 0)")
    return plan.held_out.task, plan.held_out.docs


def step_dirs(model_dir: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every kept checkpoint, final/ (the last step) included, in step order."""
    final = model_dir / "final"
    last = json.loads((final / "train_metrics.json").read_text())["steps"]
    steps = [(int(p.name.split("-", 1)[1]), p) for p in (model_dir / "steps").glob("step-*") if p.is_dir()]
    return sorted(steps) + [(last, final)]


def select_checkpoint(plan: Plan, student: Path | str, method: str, adapter: bool, fingerprint: str,
                      cache) -> dict[str, Any]:
    """Score each kept checkpoint of ``method`` on pool_validation; the best by the declared metric wins.
    Stored in models/<method>/selection.json (reused while the model's fingerprint and the docs match)."""
    from harness.models import serve
    from harness.stages.evaluate import evaluate_task
    from harness.tasks.base import Scored, docs_digest

    sel = plan.config.train.select_checkpoint
    task, docs = selection_docs(plan)
    model_dir = plan.run_dir.model_dir(method)
    key = stable_hash({"model": fingerprint, "docs": docs_digest(docs), "metric": sel.metric,
                       "eval": plan.config.eval.engine.model_dump(mode="json"),
                       **({"on": sel.on} if sel.on != SELECTION_TASK else {})})
    path = model_dir / "selection.json"
    if path.exists():
        stored = json.loads(path.read_text())
        if stored.get("key") == key:
            return {**stored, "selected_dir": str(model_dir / stored["selected"])}
    curve = []
    for step, folder in step_dirs(model_dir):
        engine = (serve(plan.config.eval.engine, student, folder, cache) if adapter
                  else serve(plan.config.eval.engine, folder, None, cache))
        records = evaluate_task(engine, task, docs, plan, f"select {method}@{step}")
        agg = task.aggregate([Scored(id=r.id, score=r.score, metrics=r.metrics) for r in records])
        curve.append({"step": step, "value": agg.get(sel.metric), "dir": str(folder.relative_to(model_dir)),
                      "cache_hits": engine.hits, "cache_misses": engine.misses})
        del engine
    values = [c["value"] if c["value"] is not None else -1.0 for c in curve]
    best = max(values)
    idx = [i for i, v in enumerate(values) if v == best]
    chosen = curve[idx[-1] if sel.ties == "last" else idx[0]]
    test_set = sel.on != SELECTION_TASK
    out = {"key": key, "on": sel.on, "n": len(docs), "metric": sel.metric, "every_steps": sel.every_steps,
           "ties": sel.ties, "curve": curve, "selected_step": chosen["step"], "selected": chosen["dir"],
           "last_step": curve[-1]["step"], "selected_is_last": chosen is curve[-1], "test_set_selection": test_set}
    write_json_atomic(path, out)
    out["selected_dir"] = str(model_dir / chosen["dir"])
    where = (f"{len(docs)} items of the TEST benchmark {sel.on} (test-set selection, as the paper did: "
             f"{sel.on}'s numbers for this model are optimistic)" if test_set else f"{len(docs)} held-out pool questions")
    console.print(f"[bold]select[/] {method}: step {chosen['step']} ({sel.metric} {chosen['value']:.3f} on "
                  f"{where}; curve " +
                  ", ".join(f"{c['step']}:{c['value']:.2f}" for c in curve) + ")", highlight=False)
    return out
