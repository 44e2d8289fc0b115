"""Aggregate and report: results.json from the stored per-sample records (no model is loaded), manifest.json,
and report.html. ``harness report`` and ``harness rescore`` come here too, with the run's own model order."""
from __future__ import annotations

from typing import Any

from harness.common.artifacts import Manifest, Results, read_samples
from harness.store import RunDir
from harness.tasks.base import Scored, Task
from harness.tasks.registry import get_task


def task_for_results(name: str, options: dict[str, Any]) -> Task:
    if name == "pool_validation":
        from harness.tasks.pool_validation import PoolValidation

        return PoolValidation(items=[])
    return get_task(name, **options)


def _scored(r) -> Scored:
    return Scored(id=r.id, score=r.score, metrics=r.metrics, extracted=r.extracted, details=r.details)


def reasoning_lengths(records) -> dict[str, float]:
    """Mean words and steps over every completion of a (model, task) (harness.tasks.base.reasoning_length)."""
    from harness.tasks.base import reasoning_length

    lengths = [reasoning_length(t) for r in records for t in (r.responses or ([r.response] if r.response else []))]
    if not lengths:
        return {}
    return {"words": sum(w for w, _ in lengths) / len(lengths), "steps": sum(s for _, s in lengths) / len(lengths),
            "completions": len(lengths)}


def aggregate(run_dir: RunDir, manifest: Manifest, *, params: dict | None = None, inputs: str | None = None,
              seed: int | None = None) -> Results:
    """Write results.json from every stored (model, task) sample file of the run. A sweep cell's params and seed
    come from ``manifest.experiment`` unless given."""
    from harness.reports.stats import build_results, write_results

    per: dict[tuple[str, str], dict] = {}
    primary: dict[str, str] = {}
    tasks: dict[str, Task] = {}
    lengths: dict[tuple[str, str], dict[str, float]] = {}
    cell = manifest.experiment if manifest.experiment and "cell" in manifest.experiment else {}
    if params is None:
        params = cell.get("params") or {}
    if seed is None:
        seed = cell["seed"] if cell.get("seed") is not None else manifest.seeds.get("run")
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
        if task.output_type.generates:
            entry["truncated"] = [r.truncated / max(1, len(r.responses or [None])) for r in records]
            lengths[(model, task_name)] = reasoning_lengths(records)
        per[(model, task_name)] = entry
    partial = {t: info.full_n for t, info in manifest.tasks.items() if info.partial and info.full_n}
    results = build_results(run_dir.root.name, per, primary, model_order=manifest.model_order, partial=partial,
                            params=params or {}, seed=seed)
    # Reasoning length (words, steps) is not a rate in [0, 1]: kept beside the rows, stamped the same way.
    results.stats["reasoning_length"] = [
        {"model": m, "task": t, **v, "params": params or {}, "seed": seed} for (m, t), v in lengths.items() if v]
    if inputs is not None:  # lets a re-run that computed nothing new leave results and report as they are
        results.stats["inputs"] = inputs
    write_results(run_dir.results, results)
    return results


def render(run_dir: RunDir) -> Any:
    from harness.reports.html import render_report

    return render_report(run_dir.root)
