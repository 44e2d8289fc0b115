"""Confidence intervals, paired significance tests and the ``results.json`` a run ends with.

results.json (schema_version 1)
-------------------------------
::

    {
      "schema_version": 1,
      "run_id": "<run id>",
      "primary_metrics": {"<task>": "<metric>"},
      "stats": {"confidence": 0.95, "n_resamples": 2000, "seed": 0,            # how the numbers below were made
                "ci": "...", "p_value": "..."},                                  # (informational, optional)
      "rows": [                                                                  # one per (model, task, metric)
        {"model": str, "task": str, "metric": str,
         "value": float in [0, 1],
         "n": int,                                                               # samples behind the value
                                                                                 # (the subtask's for "m/<subtask>")
         "ci_low": float | null, "ci_high": float | null,                        # 95% percentile bootstrap
         "ci_method": "bootstrap_mean" | "bootstrap_statistic" | null}           # (optional)
      ],
      "comparisons": [                                                           # paired, on the shared ids
        {"model": str, "baseline": str, "task": str, "metric": str,
         "delta": float,                                                         # model - baseline, [-1, 1]
         "ci_low": float | null, "ci_high": float | null,
         "p_value": float | null,                                                # two-sided
         "n": int,                                                               # ids both models have
         "wins": int, "losses": int,                                             # items model > / < baseline
         "test": "mcnemar_exact" | "sign_flip_permutation" | "bootstrap"}        # (optional)
      ]
    }

Subtask rows ``"<metric>/<subtask>"`` whose value is the mean over the samples with ids ``"<subtask>/..."`` (the
BBH and MuSR convention) get a bootstrap CI of that mean, with n = the subtask's size.

Comparisons: every model other than the baseline model against it, for every metric that is a per-sample mean,
plus each pair of non-baseline models on the task's primary metric (``model`` is the later of the two in run
order). Metrics that are not a per-sample mean (macro averages, instruction-level rates) get a CI only when an
``aggregate_fn`` is given; their comparisons use a paired bootstrap of the statistic.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from scipy.stats import binomtest

SCHEMA_VERSION = 1
# Bound on the size of one (resamples x n) index block, so large tasks (BBH: 6.5K items) stay in memory.
_BLOCK_ELEMENTS = 2_000_000
# Up to this many distinct score values, bootstrap means are drawn as multinomial counts (see _resampled_means).
_MULTINOMIAL_MAX_LEVELS = 32
# Sign-flip tests enumerate all 2**n sign patterns up to this n (exact), and sample above it.
_EXACT_PERMUTATION_MAX_N = 12

ROW_KEYS = ("model", "task", "metric", "value", "n", "ci_low", "ci_high")
COMPARISON_KEYS = ("model", "baseline", "task", "metric", "delta", "ci_low", "ci_high", "p_value", "n", "wins",
                   "losses")


# --------------------------------------------------------------------------------------------- intervals
def _as_array(values: Iterable[float]) -> np.ndarray:
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D sequence of numbers, got shape {arr.shape}")
    return arr


def _resampled_means(values: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_resamples`` bootstrap resamples.

    Scores with few distinct values (0/1 accuracy, paired differences in {-1, 0, 1}) are resampled as multinomial
    counts over the distinct values: the same distribution as resampling items, at O(distinct) per resample
    instead of O(n). Other scores resample item indices, in blocks to bound memory.
    """
    n = len(values)
    levels, counts = np.unique(values, return_counts=True)
    if len(levels) <= _MULTINOMIAL_MAX_LEVELS:
        draws = rng.multinomial(n, counts / n, size=n_resamples)
        return draws @ levels / n
    rows_per_block = max(1, _BLOCK_ELEMENTS // n)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, rows_per_block):
        stop = min(n_resamples, start + rows_per_block)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    return means


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return (math.nan, math.nan)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(samples, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``.

    n = 0 gives (nan, nan); one value, or all values equal, gives (v, v): resampling cannot vary them.
    """
    _check_confidence(confidence)
    arr = _as_array(values)
    if arr.size == 0:
        return (math.nan, math.nan)
    if arr.size == 1 or np.all(arr == arr[0]):
        return (float(arr[0]), float(arr[0]))
    means = _resampled_means(arr, n_resamples, np.random.default_rng(seed))
    return _percentiles(means, confidence)


def bootstrap_statistic_ci(
    n_items: int,
    statistic: Callable[[np.ndarray], float],
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of any statistic of ``n_items`` items (e.g. a macro average over subtasks).

    ``statistic`` receives an array of item indices (with repeats) and returns the statistic of those items;
    NaN results (a resample that left a subtask empty) are dropped before taking percentiles.
    """
    _check_confidence(confidence)
    if n_items <= 0:
        return (math.nan, math.nan)
    if n_items == 1:
        v = float(statistic(np.zeros(1, dtype=np.int64)))
        return (v, v)
    rng = np.random.default_rng(seed)
    stats = np.array([float(statistic(rng.integers(0, n_items, size=n_items))) for _ in range(n_resamples)])
    return _percentiles(stats, confidence)


# --------------------------------------------------------------------------------------------- paired tests
@dataclass(frozen=True)
class PairedResult:
    """Model a minus model b on the same items."""

    delta: float  # mean(a - b)
    ci_low: float
    ci_high: float
    p_value: float  # two-sided
    n: int  # paired items
    wins: int  # items where a > b
    losses: int  # items where a < b
    test: str = ""  # "mcnemar_exact" | "sign_flip_permutation" | "bootstrap"


def _is_binary(arr: np.ndarray) -> bool:
    return bool(np.all((arr == 0.0) | (arr == 1.0)))


def mcnemar_exact_p(wins: int, losses: int) -> float:
    """Exact (binomial) McNemar test on the discordant pairs; 1.0 when there are none."""
    if wins + losses == 0:
        return 1.0
    return float(binomtest(wins, wins + losses, 0.5, alternative="two-sided").pvalue)


def sign_flip_p(
    differences: Sequence[float] | np.ndarray, n_permutations: int = 10_000, seed: int = 0
) -> float:
    """Two-sided paired permutation test of mean(differences) = 0 by random sign flips.

    Exact (all 2**n sign patterns) for n <= 12; otherwise ``n_permutations`` random patterns from a fixed seed,
    with the (count + 1) / (permutations + 1) estimate so p is never 0.
    """
    d = _as_array(differences)
    n = d.size
    if n == 0:
        return math.nan
    if np.all(d == 0):
        return 1.0
    observed = abs(d.mean())
    tol = 1e-12 * max(1.0, observed)  # floating-point ties count as "as extreme"
    if n <= _EXACT_PERMUTATION_MAX_N:
        patterns = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1) * 2 - 1
        means = np.abs((patterns * d).mean(axis=1))
        return float(np.mean(means >= observed - tol))
    rng = np.random.default_rng(seed)
    levels, counts = np.unique(d[d != 0], return_counts=True)
    if len(levels) <= _MULTINOMIAL_MAX_LEVELS:
        # Few distinct differences: the flipped sum is sum_v v * (2 * Binomial(count_v, 1/2) - count_v),
        # the same distribution as flipping each item, drawn at O(distinct) per permutation.
        plus = rng.binomial(counts, 0.5, size=(n_permutations, len(levels)))
        means = np.abs((2 * plus - counts) @ levels / n)
        return (int(np.sum(means >= observed - tol)) + 1) / (n_permutations + 1)
    rows_per_block = max(1, _BLOCK_ELEMENTS // n)
    extreme = 0
    for start in range(0, n_permutations, rows_per_block):
        rows = min(rows_per_block, n_permutations - start)
        signs = rng.integers(0, 2, size=(rows, n)) * 2 - 1
        extreme += int(np.sum(np.abs((signs * d).mean(axis=1)) >= observed - tol))
    return (extreme + 1) / (n_permutations + 1)


def paired_difference(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    n_permutations: int = 10_000,
) -> PairedResult:
    """Compare per-sample scores ``a`` and ``b`` of the same items (aligned: see ``align_by_id``).

    CI: percentile bootstrap of mean(a - b) over items (a paired bootstrap). p-value: exact McNemar when both
    are 0/1 scores, else a sign-flip permutation test with a fixed seed.
    """
    a_arr, b_arr = _as_array(a), _as_array(b)
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"paired scores must have equal length, got {a_arr.size} and {b_arr.size}")
    n = int(a_arr.size)
    if n == 0:
        return PairedResult(math.nan, math.nan, math.nan, math.nan, 0, 0, 0, "")
    d = a_arr - b_arr
    wins, losses = int(np.sum(d > 0)), int(np.sum(d < 0))
    lo, hi = bootstrap_ci(d, confidence=confidence, n_resamples=n_resamples, seed=seed)
    if _is_binary(a_arr) and _is_binary(b_arr):
        p, test = mcnemar_exact_p(wins, losses), "mcnemar_exact"
    else:
        p, test = sign_flip_p(d, n_permutations=n_permutations, seed=seed), "sign_flip_permutation"
    return PairedResult(float(d.mean()), lo, hi, p, n, wins, losses, test)


def paired_statistic_difference(
    n_items: int,
    statistic_difference: Callable[[np.ndarray], float],
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float, float]:
    """Paired bootstrap of a statistic difference over ``n_items`` aligned items (for non-mean metrics).

    ``statistic_difference(indices)`` returns statistic(a[indices]) - statistic(b[indices]). Returns
    (delta, ci_low, ci_high, p_value), the p-value being the two-sided bootstrap estimate
    2 * min(P(delta* <= 0), P(delta* >= 0)), capped at 1.
    """
    _check_confidence(confidence)
    if n_items <= 0:
        return (math.nan, math.nan, math.nan, math.nan)
    delta = float(statistic_difference(np.arange(n_items)))
    rng = np.random.default_rng(seed)
    boots = np.array(
        [float(statistic_difference(rng.integers(0, n_items, size=n_items))) for _ in range(n_resamples)]
    )
    boots = boots[np.isfinite(boots)]
    if boots.size == 0:
        return (delta, math.nan, math.nan, math.nan)
    lo, hi = _percentiles(boots, confidence)
    if np.all(boots == 0):
        return (delta, lo, hi, 1.0)
    p = min(1.0, 2.0 * min(float(np.mean(boots <= 0)), float(np.mean(boots >= 0))))
    return (delta, lo, hi, p)


def align_by_id(
    records_a: Sequence[Mapping[str, Any]], records_b: Sequence[Mapping[str, Any]]
) -> tuple[list[str], list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """The ids both record lists share (in ``records_a``'s order) and the matching records of each."""
    index_b: dict[str, Mapping[str, Any]] = {}
    for r in records_b:
        if r["id"] in index_b:
            raise ValueError(f"duplicate sample id {r['id']!r}; each item must be scored once per model")
        index_b[r["id"]] = r
    ids, out_a, out_b, seen = [], [], [], set()
    for r in records_a:
        if r["id"] in seen:
            raise ValueError(f"duplicate sample id {r['id']!r}; each item must be scored once per model")
        seen.add(r["id"])
        if r["id"] in index_b:
            ids.append(r["id"])
            out_a.append(r)
            out_b.append(index_b[r["id"]])
    return ids, out_a, out_b


def holm_adjust(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone); None/NaN entries stay None and do not count."""
    valid = [(i, float(p)) for i, p in enumerate(p_values) if p is not None and not math.isnan(float(p))]
    m = len(valid)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (i, p) in enumerate(sorted(valid, key=lambda t: t[1])):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


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
    rows_per_block = max(1, _BLOCK_ELEMENTS // n)
    for start in range(0, n_resamples, rows_per_block):
        stop = min(n_resamples, start + rows_per_block)
        idx = rng.integers(0, n, size=(stop - start, n))
        cells = (np.arange(stop - start)[:, None] * n_groups + groups[idx]).ravel()
        sums = np.bincount(cells, weights=vals[idx].ravel(), minlength=(stop - start) * n_groups)
        counts = np.bincount(cells, minlength=(stop - start) * n_groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = (sums / counts).reshape(stop - start, n_groups)  # a subtask absent from a resample: NaN
        stats[start:stop] = means.mean(axis=1)
    return _percentiles(stats, confidence)


def _num(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _bootstrap_aggregate(
    records: Sequence[Mapping[str, Any]],
    aggregate_fn: Callable[[list], Mapping[str, float]] | None,
    metrics: Sequence[str],
    confidence: float,
    n_resamples: int,
    seed: int,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of several aggregate metrics from one shared set of item resamples
    (the same index draws as ``bootstrap_statistic_ci`` with this seed)."""
    if not metrics or aggregate_fn is None:
        return {}
    n = len(records)
    if n <= 1:
        out = aggregate_fn(list(records)) if n else {}
        return {m: (float(out[m]), float(out[m])) if m in out else (math.nan, math.nan) for m in metrics}
    rng = np.random.default_rng(seed)
    samples = np.full((len(metrics), n_resamples), math.nan)
    for k in range(n_resamples):
        got = aggregate_fn([records[i] for i in rng.integers(0, n, size=n)])
        for j, m in enumerate(metrics):
            v = got.get(m)
            if v is not None:
                samples[j, k] = float(v)
    return {m: _percentiles(samples[j], confidence) for j, m in enumerate(metrics)}


def build_results(
    run_id: str,
    per_model_task: Mapping[tuple[str, str], Mapping[str, Any]],
    primary_metrics: Mapping[str, str],
    baseline_model: str = "base",
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    statistic_resamples: int = 1000,
    model_order: Sequence[str] | None = None,
) -> dict:
    """Build the results.json dict (schema in this module's docstring).

    ``per_model_task[(model, task)]`` = {"scored": per-sample dicts with id/score/metrics,
    "aggregate": {metric: value}, "aggregate_fn": optional callable(list of per-sample dicts) -> {metric: value}}.
    A metric whose aggregate equals the mean of its per-sample values gets a bootstrap CI of that mean; any
    other metric gets a bootstrap of ``aggregate_fn`` over resampled items when given, else null CIs. That
    bootstrap costs one ``aggregate_fn`` call per resample (all such metrics of a (model, task) share the calls),
    hence its own, smaller ``statistic_resamples``. Comparisons of non-mean metrics are made for the primary
    metric only. Model order (rows, and which model of a pair is ``model``: the later one) is the baseline model,
    then ``model_order`` (e.g. the configured methods), then any others in ``per_model_task``'s order.
    """
    models: list[str] = []
    tasks: list[str] = []
    for model, task in per_model_task:
        if model not in models:
            models.append(model)
        if task not in tasks:
            tasks.append(task)
    models = [m for m in dict.fromkeys([baseline_model, *(model_order or []), *models]) if m in models]

    def kind(entry: Mapping[str, Any], task: str, metric: str) -> str:
        vals = per_sample_values(entry["scored"], metric, primary_metrics.get(task))
        if _is_mean_of(vals, entry["aggregate"][metric]):
            return "mean"
        if _group_values(entry["scored"], metric, primary_metrics.get(task), entry["aggregate"][metric]):
            return "group_mean"
        if _macro_base(entry, metric, primary_metrics.get(task)):
            return "macro"
        return "statistic" if entry.get("aggregate_fn") else "none"

    rows: list[dict] = []
    for model in models:
        for task in tasks:
            entry = per_model_task.get((model, task))
            if entry is None:
                continue
            scored = list(entry["scored"])
            kinds = {metric: kind(entry, task, metric) for metric in entry["aggregate"]}
            statistic_cis = _bootstrap_aggregate(
                scored, entry.get("aggregate_fn"), [m for m, k in kinds.items() if k == "statistic"],
                confidence, statistic_resamples, seed)
            for metric in sorted(entry["aggregate"]):
                value = float(entry["aggregate"][metric])
                how = kinds[metric]
                lo = hi = None
                if how == "mean":
                    vals = per_sample_values(scored, metric, primary_metrics.get(task))
                    lo, hi = bootstrap_ci(vals, confidence, n_resamples, seed)
                    n = len(scored)
                elif how == "group_mean":
                    vals = _group_values(scored, metric, primary_metrics.get(task), value)
                    lo, hi = bootstrap_ci(vals, confidence, n_resamples, seed)
                    n = len(vals)
                elif how == "macro":
                    lo, hi = _bootstrap_macro(scored, _macro_base(entry, metric, primary_metrics.get(task)),
                                              primary_metrics.get(task), confidence, n_resamples, seed)
                    n = len(scored)
                else:
                    lo, hi = statistic_cis.get(metric, (None, None))
                    n = len(scored)
                rows.append({
                    "model": model, "task": task, "metric": metric, "value": value, "n": n,
                    "ci_low": _num(lo), "ci_high": _num(hi),
                    "ci_method": {"mean": "bootstrap_mean", "group_mean": "bootstrap_mean",
                                  "macro": "bootstrap_statistic", "statistic": "bootstrap_statistic"}.get(how),
                })

    comparisons: list[dict] = []

    def compare(model: str, baseline: str, task: str, metrics: Iterable[str]) -> None:
        ea, eb = per_model_task.get((model, task)), per_model_task.get((baseline, task))
        if ea is None or eb is None:
            return
        ids, ra, rb = align_by_id(list(ea["scored"]), list(eb["scored"]))
        if not ids:
            return
        primary = primary_metrics.get(task)
        for metric in metrics:
            if metric not in ea["aggregate"] or metric not in eb["aggregate"]:
                continue
            ka, kb = kind(ea, task, metric), kind(eb, task, metric)
            if ka == kb == "mean":
                res = paired_difference(per_sample_values(ra, metric, primary), per_sample_values(rb, metric, primary),
                                        confidence, n_resamples, seed)
                delta, lo, hi, p, wins, losses, test = (res.delta, res.ci_low, res.ci_high, res.p_value,
                                                        res.wins, res.losses, res.test)
            elif metric == primary and ea.get("aggregate_fn") and eb.get("aggregate_fn") and "none" not in (ka, kb):
                fa, fb = ea["aggregate_fn"], eb["aggregate_fn"]

                def diff(idx: np.ndarray, fa=fa, fb=fb, metric=metric) -> float:
                    va = fa([ra[i] for i in idx]).get(metric)
                    vb = fb([rb[i] for i in idx]).get(metric)
                    return math.nan if va is None or vb is None else float(va) - float(vb)

                delta, lo, hi, p = paired_statistic_difference(len(ids), diff, confidence, statistic_resamples,
                                                               seed)
                sa = np.array([float(r.get("score", 0.0)) for r in ra])
                sb = np.array([float(r.get("score", 0.0)) for r in rb])
                wins, losses, test = int(np.sum(sa > sb)), int(np.sum(sa < sb)), "bootstrap"
            else:
                continue
            comparisons.append({
                "model": model, "baseline": baseline, "task": task, "metric": metric, "delta": _num(delta),
                "ci_low": _num(lo), "ci_high": _num(hi), "p_value": _num(p), "n": len(ids),
                "wins": wins, "losses": losses, "test": test,
            })

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

    results = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "primary_metrics": dict(primary_metrics),
        "stats": {
            "confidence": confidence, "n_resamples": n_resamples, "seed": seed,
            "ci": "percentile bootstrap over items (paired bootstrap for comparisons)",
            "p_value": "exact McNemar for 0/1 scores, else paired sign-flip permutation; "
                       "bootstrap for non-mean metrics",
        },
        "rows": rows,
        "comparisons": comparisons,
    }
    validate_results(results)
    return results


def _fail(msg: str) -> None:
    raise ValueError(f"invalid results.json: {msg}")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def validate_results(results: Any) -> None:
    """Raise a one-line ValueError naming the first problem found in a results.json dict."""
    if not isinstance(results, dict):
        _fail(f"top level must be an object, got {type(results).__name__}")
    if results.get("schema_version") != SCHEMA_VERSION:
        _fail(f"schema_version must be {SCHEMA_VERSION}, got {results.get('schema_version')!r}")
    for key, typ in (("run_id", str), ("primary_metrics", dict), ("rows", list), ("comparisons", list)):
        if not isinstance(results.get(key), typ):
            _fail(f"'{key}' must be a {typ.__name__}")
    for i, row in enumerate(results["rows"]):
        where = f"rows[{i}]"
        if not isinstance(row, dict):
            _fail(f"{where} must be an object")
        missing = [k for k in ROW_KEYS if k not in row]
        if missing:
            _fail(f"{where} lacks {', '.join(missing)}")
        where = f"rows[{i}] ({row['model']}/{row['task']}/{row['metric']})"
        if not _is_number(row["value"]) or not 0.0 <= row["value"] <= 1.0:
            _fail(f"{where} value must be a number in [0, 1], got {row['value']!r}")
        if not isinstance(row["n"], int) or row["n"] < 0:
            _fail(f"{where} n must be a non-negative integer, got {row['n']!r}")
        for k in ("ci_low", "ci_high"):
            if row[k] is not None and not _is_number(row[k]):
                _fail(f"{where} {k} must be a number or null, got {row[k]!r}")
    for i, c in enumerate(results["comparisons"]):
        where = f"comparisons[{i}]"
        if not isinstance(c, dict):
            _fail(f"{where} must be an object")
        missing = [k for k in COMPARISON_KEYS if k not in c]
        if missing:
            _fail(f"{where} lacks {', '.join(missing)}")
        for k in ("delta", "ci_low", "ci_high", "p_value"):
            if c[k] is not None and not _is_number(c[k]):
                _fail(f"{where} {k} must be a number or null, got {c[k]!r}")
        if c["p_value"] is not None and not 0.0 <= c["p_value"] <= 1.0:
            _fail(f"{where} p_value must be in [0, 1], got {c['p_value']!r}")
        for k in ("n", "wins", "losses"):
            if not isinstance(c[k], int) or c[k] < 0:
                _fail(f"{where} {k} must be a non-negative integer, got {c[k]!r}")


def write_results(path: str | Path, results: dict) -> Path:
    """Validate and write results.json (NaN is never written: missing numbers are null)."""
    validate_results(results)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(path)  # atomic: a crash never leaves half a results.json
    return path


def load_results(path: str | Path) -> dict:
    """Read and validate a results.json."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no results file at {path}; run the evaluation first or pass the run folder's results.json")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); regenerate it") from None
    try:
        validate_results(results)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return results


def rows_by_key(results: Mapping[str, Any]) -> dict[tuple[str, str, str], dict]:
    """Rows of a results dict keyed by (model, task, metric)."""
    return {(r["model"], r["task"], r["metric"]): r for r in results.get("rows", [])}
