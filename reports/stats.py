"""The ``results.json`` a run ends with: rows with their intervals (reports/intervals.py) and paired comparisons
(reports/paired_tests.py).

results.json is ``harness.common.artifacts.Results`` (schema_version 3): rows (model, task, metric, value in [0, 1], n,
95% CI, ci_method, params, seed, partial, full_n) and paired comparisons (model, baseline, task, metric, delta,
CI, p_value, n, wins, losses, test, params, seed), with ``model_order`` (base first, then the methods in run order)
and ``stats`` (how the numbers were made). The pydantic model validates everything written and read.

Subtask rows ``"<metric>/<subtask>"`` whose value is the mean over the samples with ids ``"<subtask>/..."`` (the
BBH and MuSR convention) get a bootstrap CI of that mean, with n = the subtask's size.

Comparisons: every model other than the baseline model against it, for every metric that is a per-sample mean,
plus each pair of non-baseline models on the task's primary metric (``model`` is the later of the two in run
order). Metrics that are not a per-sample mean (macro averages, instruction-level rates) get a CI only when the
``TaskScores`` carry an ``aggregate_fn``; their comparisons use a paired bootstrap of the statistic.

``truncation_rate`` rows (the mean over samples of the fraction of each sample's completions that stopped at the
token budget) describe the run, not the model's quality: they are never compared between models, but the report
and the gate read them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from harness.common.artifacts import Comparison, ResultRow, Results, ResultsStats, load_artifact, save_artifact
from harness.reports.intervals import BLOCK_ELEMENTS, bootstrap_aggregate, bootstrap_ci, percentiles
from harness.reports.paired_tests import align_by_id, paired_difference, paired_statistic_difference
from harness.reports.scores import ModelOrder, Resampling, Stamp, TaskScores
from harness.tasks.base import Scored

#: Row metrics that describe how a model was run, not how good it is: never compared between models.
TRUNCATION_METRIC = "truncation_rate"
NON_QUALITY_METRICS = frozenset({TRUNCATION_METRIC})


# --------------------------------------------------------------------------------------------- results.json
def per_sample_values(scored: Sequence[Scored], metric: str, primary_metric: str | None) -> list[float] | None:
    """Per-sample values of ``metric`` (from ``metrics``, or ``score`` for the primary metric); None unless
    every sample has one."""
    vals = []
    for s in scored:
        v = s.metrics.get(metric)
        if v is None and metric == primary_metric:
            v = s.score
        if v is None:
            return None
        vals.append(float(v))
    return vals


def _is_mean_of(values: list[float] | None, value: float) -> bool:
    return bool(values) and abs(float(np.mean(values)) - float(value)) <= 1e-6


def _subtask(s: Scored) -> str:
    return str(s.id).split("/", 1)[0]


def _group_values(scored: Sequence[Scored], metric: str, primary_metric: str | None,
                  value: float) -> list[float] | None:
    """Per-sample values behind a subtask metric ``"<metric>/<subtask>"`` (ids ``"<subtask>/..."``, the BBH and
    MuSR convention), when their mean is the reported value; else None."""
    if "/" not in metric:
        return None
    base, group = metric.split("/", 1)
    vals = per_sample_values([s for s in scored if _subtask(s) == group], base, primary_metric)
    return vals if _is_mean_of(vals, value) else None


def _macro_base(entry: TaskScores, metric: str, primary_metric: str | None) -> str | None:
    """The base metric B when ``metric`` (named B...) is the plain mean of all the subtask rows "B/<subtask>" and
    each of those is its subtask's mean (BBH's macro average); else None."""
    agg = entry.aggregate
    for base in {m.split("/", 1)[0] for m in agg if "/" in m}:
        if not metric.startswith(base) or "/" in metric:
            continue
        parts = {m: v for m, v in agg.items() if m.startswith(base + "/")}
        if abs(float(np.mean(list(parts.values()))) - float(agg[metric])) > 1e-6:
            continue
        if all(_group_values(entry.scored, m, primary_metric, v) for m, v in parts.items()):
            return base
    return None


def _bootstrap_macro(scored: Sequence[Scored], base: str, primary_metric: str | None,
                     r: Resampling) -> tuple[float, float]:
    """Percentile interval of the unweighted mean of subtask means, resampling all items (vectorised)."""
    vals = np.asarray(per_sample_values(scored, base, primary_metric) or [], dtype=float)
    n = len(vals)
    if n == 0:
        return (math.nan, math.nan)
    _, groups = np.unique([_subtask(s) for s in scored], return_inverse=True)
    n_groups = int(groups.max()) + 1
    rng = np.random.default_rng(r.seed)
    stats = np.empty(r.n_resamples)
    rows_per_block = max(1, BLOCK_ELEMENTS // n)
    for start in range(0, r.n_resamples, rows_per_block):
        stop = min(r.n_resamples, start + rows_per_block)
        idx = rng.integers(0, n, size=(stop - start, n))
        cells = (np.arange(stop - start)[:, None] * n_groups + groups[idx]).ravel()
        sums = np.bincount(cells, weights=vals[idx].ravel(), minlength=(stop - start) * n_groups)
        counts = np.bincount(cells, minlength=(stop - start) * n_groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = (sums / counts).reshape(stop - start, n_groups)  # a subtask absent from a resample: NaN
        stats[start:stop] = means.mean(axis=1)
    return percentiles(stats, r.confidence)


def _num(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _truncation_values(entry: TaskScores, model: str, task: str) -> list[float] | None:
    if entry.truncated is None:
        return None
    vals = [float(v) for v in entry.truncated]
    bad = [v for v in vals if not (0.0 <= v <= 1.0)]
    if bad:
        raise ValueError(f"{model}/{task}: truncated fractions must lie in [0, 1], got {bad[0]!r}")
    if len(vals) != len(entry.scored):
        raise ValueError(f"{model}/{task}: {len(vals)} truncation fractions for {len(entry.scored)} samples")
    return vals


#: How each kind of metric gets its interval (``ResultRow.ci_method``).
_CI_METHOD = {"mean": "bootstrap_mean", "group_mean": "bootstrap_mean", "macro": "bootstrap_statistic",
              "statistic": "bootstrap_statistic"}


@dataclass(frozen=True)
class _Build:
    """One results.json in the making: the scores and how to stamp and resample them."""

    scores: Mapping[tuple[str, str], TaskScores]
    primary_metrics: Mapping[str, str]
    stamp: Stamp
    resampling: Resampling

    def kind(self, entry: TaskScores, task: str, metric: str) -> str:
        """mean (of per-sample values), group_mean (a subtask's), macro (of subtask means), statistic (anything
        else, bootstrapped through ``aggregate_fn``) or none (no interval, no comparison)."""
        primary = self.primary_metrics.get(task)
        if _is_mean_of(per_sample_values(entry.scored, metric, primary), entry.aggregate[metric]):
            return "mean"
        if _group_values(entry.scored, metric, primary, entry.aggregate[metric]):
            return "group_mean"
        if _macro_base(entry, metric, primary):
            return "macro"
        return "statistic" if entry.aggregate_fn else "none"

    def rows(self, model: str, task: str) -> list[ResultRow]:
        """Every metric of one (model, task) with its interval, then its truncation_rate row (if any)."""
        entry, r = self.scores[(model, task)], self.resampling
        truncated = _truncation_values(entry, model, task)
        quality = [m for m in entry.aggregate if not (truncated is not None and m == TRUNCATION_METRIC)]
        kinds = {metric: self.kind(entry, task, metric) for metric in quality}
        statistic_cis = bootstrap_aggregate(list(entry.scored), entry.aggregate_fn,
                                            [m for m, k in kinds.items() if k == "statistic"], r.confidence,
                                            r.statistic_resamples, r.seed)
        stamp = self.stamp.on_rows(task)
        out = []
        for metric in sorted(quality):
            n, (lo, hi) = self.interval(entry, task, metric, kinds[metric], statistic_cis)
            out.append(ResultRow(model=model, task=task, metric=metric, value=float(entry.aggregate[metric]), n=n,
                                 ci_low=_num(lo), ci_high=_num(hi), ci_method=_CI_METHOD.get(kinds[metric]), **stamp))
        if truncated:
            lo, hi = bootstrap_ci(truncated, r.confidence, r.n_resamples, r.seed)
            out.append(ResultRow(model=model, task=task, metric=TRUNCATION_METRIC, value=float(np.mean(truncated)),
                                 n=len(truncated), ci_low=_num(lo), ci_high=_num(hi), ci_method="bootstrap_mean",
                                 **stamp))
        return out

    def interval(self, entry: TaskScores, task: str, metric: str, how: str,
                 statistic_cis: Mapping[str, tuple[float, float]]) -> tuple[int, tuple[float | None, float | None]]:
        """(n, (ci_low, ci_high)) of one metric, by its kind."""
        r, primary, scored = self.resampling, self.primary_metrics.get(task), entry.scored
        if how == "mean":
            vals = per_sample_values(scored, metric, primary)
            return len(scored), bootstrap_ci(vals, r.confidence, r.n_resamples, r.seed)
        if how == "group_mean":
            vals = _group_values(scored, metric, primary, float(entry.aggregate[metric]))
            return len(vals), bootstrap_ci(vals, r.confidence, r.n_resamples, r.seed)
        if how == "macro":
            return len(scored), _bootstrap_macro(scored, _macro_base(entry, metric, primary), primary, r)
        return len(scored), statistic_cis.get(metric, (None, None))

    def comparisons(self, models: list[str], tasks: list[str], baseline: str) -> list[Comparison]:
        """Every model against the baseline on each of its metrics, then each pair of the others on the task's
        primary metric."""
        out: list[Comparison] = []
        others = [m for m in models if m != baseline]
        for task in tasks:
            if baseline in models:
                for model in others:
                    if (model, task) in self.scores:
                        out += self.compare(model, baseline, task, sorted(self.scores[(model, task)].aggregate))
            primary = self.primary_metrics.get(task)
            if primary is not None:
                for j, model in enumerate(others):
                    for other in others[:j]:
                        out += self.compare(model, other, task, [primary])
        return out

    def compare(self, model: str, baseline: str, task: str, metrics: Iterable[str]) -> list[Comparison]:
        """``model`` - ``baseline`` paired on the items both were scored on, per metric that can be compared."""
        ea, eb = self.scores.get((model, task)), self.scores.get((baseline, task))
        if ea is None or eb is None:
            return []
        ids, ra, rb = align_by_id(list(ea.scored), list(eb.scored))
        if not ids:
            return []
        out = []
        for metric in metrics:
            if metric in NON_QUALITY_METRICS or metric not in ea.aggregate or metric not in eb.aggregate:
                continue
            got = self.paired(ea, eb, ra, rb, task, metric)
            if got is not None:
                delta, lo, hi, p, wins, losses, test = got
                out.append(Comparison(model=model, baseline=baseline, task=task, metric=metric, delta=_num(delta),
                                      ci_low=_num(lo), ci_high=_num(hi), p_value=_num(p), n=len(ids), wins=wins,
                                      losses=losses, test=test, **self.stamp.on_comparisons()))
        return out

    def paired(self, ea: TaskScores, eb: TaskScores, ra: list[Scored], rb: list[Scored], task: str,
               metric: str) -> tuple | None:
        """(delta, ci_low, ci_high, p, wins, losses, test) of one metric on aligned items: a paired test of
        per-sample means, or for the primary metric a paired bootstrap of the task's statistic; else None."""
        r, primary = self.resampling, self.primary_metrics.get(task)
        ka, kb = self.kind(ea, task, metric), self.kind(eb, task, metric)
        if ka == kb == "mean":
            res = paired_difference(per_sample_values(ra, metric, primary), per_sample_values(rb, metric, primary),
                                    r.confidence, r.n_resamples, r.seed)
            return res.delta, res.ci_low, res.ci_high, res.p_value, res.wins, res.losses, res.test
        if metric != primary or not (ea.aggregate_fn and eb.aggregate_fn) or "none" in (ka, kb):
            return None
        fa, fb = ea.aggregate_fn, eb.aggregate_fn

        def diff(idx: np.ndarray) -> float:
            va = fa([ra[i] for i in idx]).get(metric)
            vb = fb([rb[i] for i in idx]).get(metric)
            return math.nan if va is None or vb is None else float(va) - float(vb)

        delta, lo, hi, p = paired_statistic_difference(len(ra), diff, r.confidence, r.statistic_resamples, r.seed)
        sa, sb = np.array([float(x.score) for x in ra]), np.array([float(x.score) for x in rb])
        return delta, lo, hi, p, int(np.sum(sa > sb)), int(np.sum(sa < sb)), "bootstrap"


def build_results(run_id: str, scores: Mapping[tuple[str, str], TaskScores], primary_metrics: Mapping[str, str],
                  order: ModelOrder = ModelOrder(), stamp: Stamp = Stamp(),
                  resampling: Resampling = Resampling()) -> Results:
    """Build results.json (``harness.common.artifacts.Results``; see this module's docstring) from each
    (model, task)'s ``TaskScores``.

    A metric whose aggregate equals the mean of its per-sample values gets a bootstrap CI of that mean (a subtask
    metric: of its subtask's mean; a macro average of subtask means: of that macro); any other metric gets a
    bootstrap of ``aggregate_fn`` over resampled items when given, else null CIs. Comparisons of non-mean metrics
    are made for the primary metric only. A (model, task) with ``truncated`` gets a ``truncation_rate`` row (never
    compared). Rows and pairs follow ``order``; ``stamp`` marks every row and comparison."""
    tasks = list(dict.fromkeys(task for _, task in scores))
    models = order.of(m for m, _ in scores)
    build = _Build(scores, primary_metrics, stamp, resampling)
    rows = [row for model in models for task in tasks if (model, task) in scores for row in build.rows(model, task)]
    return Results(
        run_id=run_id,
        model_order=models,
        primary_metrics=dict(primary_metrics),
        stats=ResultsStats(
            confidence=resampling.confidence, n_resamples=resampling.n_resamples, seed=resampling.seed,
            ci="percentile bootstrap over items (paired bootstrap for comparisons)",
            p_value="exact McNemar for 0/1 scores, else paired sign-flip permutation; bootstrap for non-mean metrics"),
        rows=rows,
        comparisons=build.comparisons(models, tasks, order.baseline),
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
