"""Aggregate and report: results.json from the stored per-sample records (no model is loaded), manifest.json,
and report.html. ``harness report`` and ``harness rescore`` come here too, with the run's own model order."""
from __future__ import annotations

from typing import Any

from common.artifacts import Manifest, Results, read_samples
from harness.store import RunDir
from tasks.base import Scored, Task
from tasks.registry import get_task


def task_for_results(name: str, options: dict[str, Any]) -> Task:
    if name == "pool_validation":
        from tasks.pool_validation import PoolValidation

        return PoolValidation(items=[])
    return get_task(name, **options)


def _scored(r) -> Scored:
    return Scored(id=r.id, score=r.score, metrics=r.metrics, extracted=r.extracted, details=r.details)


def aggregate(run_dir: RunDir, manifest: Manifest, *, params: dict | None = None, inputs: str | None = None) -> Results:
    """Write results.json from every stored (model, task) sample file of the run."""
    from reports.stats import build_results, write_results

    per: dict[tuple[str, str], dict] = {}
    primary: dict[str, str] = {}
    tasks: dict[str, Task] = {}
    for model, task_name, path in run_dir.sample_files():
        if model not in manifest.models or (task_name not in manifest.tasks and task_name != "pool_validation"):
            continue  # a leftover of another configuration of this folder: not part of this run
        info = manifest.tasks.get(task_name)
        task = tasks.get(task_name) or tasks.setdefault(task_name, task_for_results(
            task_name, info.options if info else {}))
        records = read_samples(path)
        primary[task_name] = task.primary_metric
        scored = [_scored(r) for r in records]
        entry: dict[str, Any] = {
            "scored": [s.to_dict() for s in scored],
            "aggregate": task.aggregate(scored),
            "aggregate_fn": (lambda recs, t=task: t.aggregate([Scored(**r) for r in recs])),
        }
        if task.output_type == "generate":
            entry["truncated"] = [r.truncated / max(1, len(r.responses or [None])) for r in records]
        per[(model, task_name)] = entry
    partial = {t: info.full_n for t, info in manifest.tasks.items() if info.partial and info.full_n}
    results = build_results(run_dir.root.name, per, primary, model_order=manifest.model_order, partial=partial,
                            params=params or {}, seed=manifest.seeds.get("run"))
    if inputs is not None:  # lets a re-run that computed nothing new leave results and report as they are
        results.stats["inputs"] = inputs
    write_results(run_dir.results, results)
    return results


def render(run_dir: RunDir) -> Any:
    from reports.html import render_report

    return render_report(run_dir.root)
