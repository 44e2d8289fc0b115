"""The ``results.json`` a run ends with: rows with their intervals (reports/intervals.py) and paired comparisons
(reports/paired_tests.py).

results.json is ``harness.common.artifacts.Results`` (schema_version 2): rows (model, task, metric, value in [0, 1], n,
95% CI, ci_method, params, seed, partial, full_n) and paired comparisons (model, baseline, task, metric, delta,
CI, p_value, n, wins, losses, test, params, seed), with ``model_order`` (base first, then the methods in run order)
and ``stats`` (how the numbers were made). The pydantic model validates everything written and read.

Subtask rows ``"<metric>/<subtask>"`` whose value is the mean over the samples with ids ``"<subtask>/..."`` (the
BBH and MuSR convention) get a bootstrap CI of that mean, with n = the subtask's size.

Comparisons: every model other than the baseline model against it, for every metric that is a per-sample mean,
plus each pair of non-baseline models on the task's primary metric (``model`` is the later of the two in run
order). Metrics that are not a per-sample mean (macro averages, instruction-level rates) get a CI only when an
``aggregate_fn`` is given; their comparisons use a paired bootstrap of the statistic.

``truncation_rate`` rows (the mean over samples of the fraction of each sample's completions that stopped at the
token budget) describe the run, not the model's quality: they are never compared between models, but the report
and the gate read them.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from harness.common.artifacts import Comparison, ResultRow, Results, load_artifact, save_artifact
from harness.reports.intervals import BLOCK_ELEMENTS, bootstrap_aggregate, bootstrap_ci, percentiles
from harness.reports.paired_tests import align_by_id, paired_difference, paired_statistic_difference

#: Row metrics that describe how a model was run, not how good it is: never compared between models.
TRUNCATION_METRIC = "truncation_rate"
NON_QUALITY_METRICS = frozenset({TRUNCATION_METRIC})


# --------------------------------------------------------------------------------------------- results.json
def per_sample_values(
    scored: Sequence[Mapping[str, Any]], metric: str, primary_metric: str | None
) -> list[float] | None:
    """Per-sample values of ``metric`` (from ``metrics``, or ``score`` for the primary metric); None unless
    every sample has one."""
    vals = []
    for s in scored:
        v = (s.get("metrics") or {}).get(metric)
        if v is None and metric == primary_metric:
            v = s.get("score")
        if v is None:
            return None
        vals.append(float(v))
    return vals


def _is_mean_of(values: list[float] | None, value: float) -> bool:
    return bool(values) and abs(float(np.mean(values)) - float(value)) <= 1e-6


def _group_values(
    scored: Sequence[Mapping[str, Any]], metric: str, primary_metric: str | None, value: float
) -> list[float] | None:
    """Per-sample values behind a subtask metric ``"<metric>/<subtask>"`` (ids ``"<subtask>/..."``, the BBH and
    MuSR convention), when their mean is the reported value; else None."""
    if "/" not in metric:
        return None
    base, group = metric.split("/", 1)
    members = [s for s in scored if str(s.get("id", "")).split("/", 1)[0] == group]
    vals = per_sample_values(members, base, primary_metric)
    return vals if _is_mean_of(vals, value) else None


def _macro_base(entry: Mapping[str, Any], metric: str, primary_metric: str | None) -> str | None:
    """The base metric B when ``metric`` (named B...) is the plain mean of all the subtask rows "B/<subtask>" and
    each of those is its subtask's mean (BBH's macro average); else None."""
    agg = entry["aggregate"]
    for base in {m.split("/", 1)[0] for m in agg if "/" in m}:
        if not metric.startswith(base) or "/" in metric:
            continue
        parts = {m: v for m, v in agg.items() if m.startswith(base + "/")}
        if abs(float(np.mean(list(parts.values()))) - float(agg[metric])) > 1e-6:
            continue
        if all(_group_values(entry["scored"], m, primary_metric, v) for m, v in parts.items()):
            return base
    return None


def _bootstrap_macro(
    scored: Sequence[Mapping[str, Any]], base: str, primary_metric: str | None, confidence: float,
    n_resamples: int, seed: int,
) -> tuple[float, float]:
    """Percentile interval of the unweighted mean of subtask means, resampling all items (vectorised)."""
    vals = np.asarray(per_sample_values(scored, base, primary_metric) or [], dtype=float)
    n = len(vals)
    if n == 0:
        return (math.nan, math.nan)
    _, groups = np.unique([str(s.get("id", "")).split("/", 1)[0] for s in scored], return_inverse=True)
    n_groups = int(groups.max()) + 1
    rng = np.random.default_rng(seed)
    stats = np.empty(n_resamples)
    rows_per_block = max(1, BLOCK_ELEMENTS // n)
    for start in range(0, n_resamples, rows_per_block):
        stop = min(n_resamples, start + rows_per_block)
        idx = rng.integers(0, n, size=(stop - start, n))
        cells = (np.arange(stop - start)[:, None] * n_groups + groups[idx]).ravel()
        sums = np.bincount(cells, weights=vals[idx].ravel(), minlength=(stop - start) * n_groups)
        counts = np.bincount(cells, minlength=(stop - start) * n_groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = (sums / counts).reshape(stop - start, n_groups)  # a subtask absent from a resample: NaN
        stats[start:stop] = means.mean(axis=1)
    return percentiles(stats, confidence)


def _num(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def run_model_order(models: Iterable[str], baseline_model: str = "base",
                    model_order: Sequence[str] | None = None) -> list[str]:
    """``models`` in run order: the baseline model, then ``model_order`` (the configured methods), then any
    others in their first-seen order."""
    present = list(dict.fromkeys(models))
    return [m for m in dict.fromkeys([baseline_model, *(model_order or []), *present]) if m in present]


def _truncation_values(entry: Mapping[str, Any], model: str, task: str) -> list[float] | None:
    got = entry.get("truncated")
    if got is None:
        return None
    vals = [float(v) for v in got]
    bad = [v for v in vals if not (0.0 <= v <= 1.0)]
    if bad:
        raise ValueError(f"{model}/{task}: truncated fractions must lie in [0, 1], got {bad[0]!r}")
    if len(vals) != len(entry["scored"]):
        raise ValueError(f"{model}/{task}: {len(vals)} truncation fractions for {len(entry['scored'])} samples")
    return vals


def build_results(
    run_id: str,
    per_model_task: Mapping[tuple[str, str], Mapping[str, Any]],
    primary_metrics: Mapping[str, str],
    baseline_model: str = "base",
    confidence: float = 0.95,
    n_resamples: int = 2000,
    bootstrap_seed: int = 0,
    statistic_resamples: int = 1000,
    model_order: Sequence[str] | None = None,
    partial: Mapping[str, int] | None = None,
    params: Mapping[str, Any] | None = None,
    seed: int | None = None,
    existing: Results | None = None,
) -> Results:
    """Build results.json (``harness.common.artifacts.Results``; see this module's docstring).

    ``per_model_task[(model, task)]`` = {"scored": per-sample dicts with id/score/metrics,
    "aggregate": {metric: value}, "aggregate_fn": optional callable(list of per-sample dicts) -> {metric: value},
    "truncated": optional per-sample fractions in [0, 1] of completions that hit the token budget}.
    A metric whose aggregate equals the mean of its per-sample values gets a bootstrap CI of that mean; any
    other metric gets a bootstrap of ``aggregate_fn`` over resampled items when given, else null CIs. That
    bootstrap costs one ``aggregate_fn`` call per resample (all such metrics of a (model, task) share the calls),
    hence its own, smaller ``statistic_resamples``. Comparisons of non-mean metrics are made for the primary
    metric only. A (model, task) with "truncated" gets a ``truncation_rate`` row (never compared).

    Model order (rows, ``Results.model_order``, and which model of a pair is ``model``: the later one) is the
    baseline model, then ``model_order`` (the manifest's), else ``existing.model_order`` (the results.json being
    re-aggregated, so ``harness report``/``rescore`` keep cft - sft as cft - sft), then any others.
    ``partial`` = {task: full_n} stamps that task's rows ``partial=True, full_n``; ``params`` and ``seed`` (the
    experiment cell of a sweep) are stamped on every row and comparison. ``bootstrap_seed`` seeds the resampling.
    """
    if model_order is None and existing is not None and existing.model_order:
        model_order = existing.model_order
    partial = dict(partial or {})
    params = dict(params or {})
    stamp = {"params": params, "seed": seed}
    tasks = list(dict.fromkeys(task for _, task in per_model_task))
    models = run_model_order((m for m, _ in per_model_task), baseline_model, model_order)

    def kind(entry: Mapping[str, Any], task: str, metric: str) -> str:
        vals = per_sample_values(entry["scored"], metric, primary_metrics.get(task))
        if _is_mean_of(vals, entry["aggregate"][metric]):
            return "mean"
        if _group_values(entry["scored"], metric, primary_metrics.get(task), entry["aggregate"][metric]):
            return "group_mean"
        if _macro_base(entry, metric, primary_metrics.get(task)):
            return "macro"
        return "statistic" if entry.get("aggregate_fn") else "none"

    rows: list[ResultRow] = []
    for model in models:
        for task in tasks:
            entry = per_model_task.get((model, task))
            if entry is None:
                continue
            truncated = _truncation_values(entry, model, task)
            scored = list(entry["scored"])
            quality = [m for m in entry["aggregate"] if not (truncated is not None and m == TRUNCATION_METRIC)]
            kinds = {metric: kind(entry, task, metric) for metric in quality}
            statistic_cis = bootstrap_aggregate(
                scored, entry.get("aggregate_fn"), [m for m, k in kinds.items() if k == "statistic"],
                confidence, statistic_resamples, bootstrap_seed)
            task_stamp = {**stamp, "partial": task in partial, "full_n": partial.get(task)}
            for metric in sorted(quality):
                value = float(entry["aggregate"][metric])
                how = kinds[metric]
                lo = hi = None
                if how == "mean":
                    vals = per_sample_values(scored, metric, primary_metrics.get(task))
                    lo, hi = bootstrap_ci(vals, confidence, n_resamples, bootstrap_seed)
                    n = len(scored)
                elif how == "group_mean":
                    vals = _group_values(scored, metric, primary_metrics.get(task), value)
                    lo, hi = bootstrap_ci(vals, confidence, n_resamples, bootstrap_seed)
                    n = len(vals)
                elif how == "macro":
                    lo, hi = _bootstrap_macro(scored, _macro_base(entry, metric, primary_metrics.get(task)),
                                              primary_metrics.get(task), confidence, n_resamples, bootstrap_seed)
                    n = len(scored)
                else:
                    lo, hi = statistic_cis.get(metric, (None, None))
                    n = len(scored)
                rows.append(ResultRow(
                    model=model, task=task, metric=metric, value=value, n=n, ci_low=_num(lo), ci_high=_num(hi),
                    ci_method={"mean": "bootstrap_mean", "group_mean": "bootstrap_mean",
                               "macro": "bootstrap_statistic", "statistic": "bootstrap_statistic"}.get(how),
                    **task_stamp))
            if truncated is not None and truncated:
                lo, hi = bootstrap_ci(truncated, confidence, n_resamples, bootstrap_seed)
                rows.append(ResultRow(model=model, task=task, metric=TRUNCATION_METRIC,
                                      value=float(np.mean(truncated)), n=len(truncated), ci_low=_num(lo),
                                      ci_high=_num(hi), ci_method="bootstrap_mean", **task_stamp))

    comparisons: list[Comparison] = []

    def compare(model: str, baseline: str, task: str, metrics: Iterable[str]) -> None:
        ea, eb = per_model_task.get((model, task)), per_model_task.get((baseline, task))
        if ea is None or eb is None:
            return
        ids, ra, rb = align_by_id(list(ea["scored"]), list(eb["scored"]))
        if not ids:
            return
        primary = primary_metrics.get(task)
        for metric in metrics:
            if metric in NON_QUALITY_METRICS:
                continue
            if metric not in ea["aggregate"] or metric not in eb["aggregate"]:
                continue
            ka, kb = kind(ea, task, metric), kind(eb, task, metric)
            if ka == kb == "mean":
                res = paired_difference(per_sample_values(ra, metric, primary), per_sample_values(rb, metric, primary),
                                        confidence, n_resamples, bootstrap_seed)
                delta, lo, hi, p, wins, losses, test = (res.delta, res.ci_low, res.ci_high, res.p_value,
                                                        res.wins, res.losses, res.test)
            elif metric == primary and ea.get("aggregate_fn") and eb.get("aggregate_fn") and "none" not in (ka, kb):
                fa, fb = ea["aggregate_fn"], eb["aggregate_fn"]

                def diff(idx: np.ndarray, fa=fa, fb=fb, metric=metric) -> float:
                    va = fa([ra[i] for i in idx]).get(metric)
                    vb = fb([rb[i] for i in idx]).get(metric)
                    return math.nan if va is None or vb is None else float(va) - float(vb)

                delta, lo, hi, p = paired_statistic_difference(len(ids), diff, confidence, statistic_resamples,
                                                               bootstrap_seed)
                sa = np.array([float(r.get("score", 0.0)) for r in ra])
                sb = np.array([float(r.get("score", 0.0)) for r in rb])
                wins, losses, test = int(np.sum(sa > sb)), int(np.sum(sa < sb)), "bootstrap"
            else:
                continue
            comparisons.append(Comparison(
                model=model, baseline=baseline, task=task, metric=metric, delta=_num(delta), ci_low=_num(lo),
                ci_high=_num(hi), p_value=_num(p), n=len(ids), wins=wins, losses=losses, test=test, **stamp))

    others = [m for m in models if m != baseline_model]
    for task in tasks:
        if baseline_model in models:
            for model in others:
                entry = per_model_task.get((model, task))
                if entry is not None:
                    compare(model, baseline_model, task, sorted(entry["aggregate"]))
        primary = primary_metrics.get(task)
        if primary is not None:
            for j, model in enumerate(others):
                for other in others[:j]:
                    compare(model, other, task, [primary])

    return Results(
        run_id=run_id,
        model_order=models,
        primary_metrics=dict(primary_metrics),
        stats={
            "confidence": confidence, "n_resamples": n_resamples, "seed": bootstrap_seed,
            "ci": "percentile bootstrap over items (paired bootstrap for comparisons)",
            "p_value": "exact McNemar for 0/1 scores, else paired sign-flip permutation; "
                       "bootstrap for non-mean metrics",
        },
        rows=rows,
        comparisons=comparisons,
    )


def write_results(path: str | Path, results: Results) -> Path:
    """Write results.json atomically (NaN is never written: missing numbers are null)."""
    if not isinstance(results, Results):
        raise TypeError(f"write_results takes a harness.common.artifacts.Results, got {type(results).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_artifact(path, Results.model_validate(results.model_dump()))  # re-validate: rows may have been edited
    return path


def load_results(path: str | Path) -> Results:
    """Read a results.json; a missing file is a ValueError, an old or invalid one a one-line SchemaMismatch."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no results file at {path}; run the evaluation first or pass the run folder's results.json")
    return load_artifact(Results, path, "results.json")
