"""Aggregate and report: results.json from the stored per-sample records (no model is loaded), manifest.json,
and report.html. ``harness report`` and ``harness rescore`` come here too, with the run's own model order."""
from __future__ import annotations

from typing import Any, Sequence

from harness.common.artifacts import ExperimentCell, Manifest, ReasoningLength, Results, SampleRecord, read_samples
from harness.reports.scores import ModelOrder, Stamp, TaskScores
from harness.store import RunDir
from harness.tasks.base import Scored, Task
from harness.tasks.registry import get_task


def task_for_results(name: str, options: dict[str, Any]) -> Task:
    if name == "pool_validation":
        from harness.tasks.pool_validation import PoolValidation

        return PoolValidation(items=[])
    return get_task(name, **options)


def _scored(r: SampleRecord) -> Scored:
    return Scored(id=r.id, score=r.score, metrics=r.metrics, extracted=r.extracted, details=r.details)


def task_scores(task: Task, records: Sequence[SampleRecord]) -> TaskScores:
    """One (model, task)'s stored records as results.json is built from them: the scores, the task's aggregate
    (its own ``aggregate`` again over resamples) and, for generate tasks, the share of each item's completions
    that hit the token budget."""
    scored = [_scored(r) for r in records]
    truncated = ([r.truncated / max(1, len(r.responses or [None])) for r in records]
                 if task.output_type.generates else None)
    return TaskScores(scored=scored, aggregate=task.aggregate(scored), aggregate_fn=task.aggregate,
                      truncated=truncated)


def reasoning_length_of(model: str, task: str, records: Sequence[SampleRecord], stamp: Stamp) -> ReasoningLength | None:
    """Mean words and steps over every completion of a (model, task) (harness.tasks.base.reasoning_length)."""
    from harness.tasks.base import reasoning_length

    lengths = [reasoning_length(t) for r in records for t in (r.responses or ([r.response] if r.response else []))]
    if not lengths:
        return None
    return ReasoningLength(model=model, task=task, words=sum(w for w, _ in lengths) / len(lengths),
                           steps=sum(s for _, s in lengths) / len(lengths), completions=len(lengths),
                           params=dict(stamp.params), seed=stamp.seed)


def cell_stamp(manifest: Manifest, params: dict | None, seed: int | None) -> Stamp:
    """What the run's rows carry: a sweep cell's params and seed (``manifest.experiment`` unless given; else the
    run seed) and the full size of each task evaluated on part of its benchmark."""
    cell = manifest.experiment if isinstance(manifest.experiment, ExperimentCell) else None
    if params is None:
        params = cell.params if cell is not None else {}
    if seed is None:
        seed = cell.seed if cell is not None and cell.seed is not None else (
            manifest.seeds.run if manifest.seeds is not None else None)
    partial = {t: info.full_n for t, info in manifest.tasks.items() if info.partial and info.full_n}
    return Stamp(params=params or {}, seed=seed, partial=partial)


def aggregate(run_dir: RunDir, manifest: Manifest, *, params: dict | None = None, inputs: str | None = None,
              seed: int | None = None) -> Results:
    """Write results.json from every stored (model, task) sample file of the run. A sweep cell's params and seed
    come from ``manifest.experiment`` unless given."""
    from harness.reports.stats import build_results, write_results

    stamp = cell_stamp(manifest, params, seed)
    scores: dict[tuple[str, str], TaskScores] = {}
    primary: dict[str, str] = {}
    tasks: dict[str, Task] = {}
    lengths: list[ReasoningLength] = []
    for model, task_name, path in run_dir.sample_files():
        if model not in manifest.models or (task_name not in manifest.tasks and task_name != "pool_validation"):
            continue  # a leftover of another configuration of this folder: not part of this run
        info = manifest.tasks.get(task_name)
        task = tasks.get(task_name) or tasks.setdefault(task_name, task_for_results(
            task_name, info.options if info else {}))
        records = read_samples(path)
        primary[task_name] = task.primary_metric
        scores[(model, task_name)] = task_scores(task, records)
        length = reasoning_length_of(model, task_name, records, stamp) if task.output_type.generates else None
        if length is not None:
            lengths.append(length)
    results = build_results(run_dir.root.name, scores, primary, ModelOrder(configured=manifest.model_order), stamp)
    # Reasoning length (words, steps) is not a rate in [0, 1]: kept beside the rows, stamped the same way.
    results.stats.reasoning_length = lengths
    if inputs is not None:  # lets a re-run that computed nothing new leave results and report as they are
        results.stats.inputs = inputs
    write_results(run_dir.results, results)
    return results


def render(run_dir: RunDir) -> Any:
    from harness.reports.html import render_report

    return render_report(run_dir.root)
