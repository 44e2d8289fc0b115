"""An experiment's combined results.json: every cell's rows and comparisons, plus rows aggregated over seeds
(seed None, params["aggregate"]="mean_over_seeds", value = mean of the per-seed values, sd, seeds) and
comparisons that account for both seed and item variance (``hierarchical_bootstrap``). harness/sweep.py builds
and runs the cells, then hands them here.

The seed test (two-level bootstrap, paired on items): each resample draws the items once (with replacement,
shared by both models: the pairing) and, independently for each model, its seeds (with replacement); the statistic
is the difference of the means over the drawn seeds and items. Its percentile interval covers both the item
sampling and the training-seed variance, which a per-seed McNemar test ignores; the p-value is the share of
centred resamples at least as far from 0 as the observed difference (two-sided).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from harness.common.artifacts import (
    ExperimentCell, ReasoningLength, ResultRow, Results, ResultsExperiment, ResultsStats,
)
from harness.common.files import stable_hash
from harness.common.labels import model_label

AGGREGATE = "mean_over_seeds"
SEED_TEST = "hierarchical_bootstrap"
SEED_TEST_TEXT = ("two-level bootstrap over training seeds and items, paired on items: each resample draws the "
                  "items once for both models and each model's seeds independently; 95% percentile interval, "
                  "two-sided p from the centred resamples")



def _per_sample(rd, model: str, task: str, metric: str, primary: str) -> dict[str, float] | None:
    from harness.common.artifacts import read_samples

    path = rd.samples(model, task)
    if not path.exists():
        return None
    out = {}
    for r in read_samples(path):
        v = r.metrics.get(metric, r.score if metric == primary else None)
        if v is None:
            return None
        out[r.id] = float(v)
    return out


def hierarchical_ci(matrix: np.ndarray, n_resamples: int = 2000, seed: int = 0,
                    confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the grand mean of a (seeds x items) matrix, resampling seeds then items."""
    k, n = matrix.shape
    rng = np.random.default_rng(seed)
    stats = np.empty(n_resamples)
    for b in range(n_resamples):
        s = rng.integers(0, k, size=k)
        i = rng.integers(0, n, size=n)
        stats[b] = matrix[np.ix_(s, i)].mean()
    a = (1 - confidence) / 2
    lo, hi = np.quantile(stats, [a, 1 - a])
    return float(lo), float(hi)


def hierarchical_paired_test(a: np.ndarray, b: np.ndarray, n_resamples: int = 2000, seed: int = 0,
                             confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(delta, ci_low, ci_high, p) of mean(a) - mean(b) for (seeds x items) matrices on the same items: items
    resampled once for both (paired), seeds resampled independently per model."""
    ka, n = a.shape
    kb, nb = b.shape
    if n != nb:
        raise ValueError(f"paired test needs the same items: {n} != {nb}")
    delta = float(a.mean() - b.mean())
    rng = np.random.default_rng(seed)
    stats = np.empty(n_resamples)
    for r in range(n_resamples):
        i = rng.integers(0, n, size=n)
        sa = rng.integers(0, ka, size=ka)
        sb = rng.integers(0, kb, size=kb)
        stats[r] = a[np.ix_(sa, i)].mean() - b[np.ix_(sb, i)].mean()
    al = (1 - confidence) / 2
    lo, hi = np.quantile(stats, [al, 1 - al])
    centred = stats - stats.mean()
    p = float((np.sum(np.abs(centred) >= abs(delta) - 1e-12) + 1) / (n_resamples + 1)) if delta != 0 else 1.0
    return delta, float(lo), float(hi), min(1.0, p)


def combine(rid: str, cells: Sequence[tuple[Any, Any]], about: dict[str, Any]):
    """The top results.json: every cell's rows and comparisons, then per group of cells that differ only in
    their seed: rows aggregated over seeds and the hierarchical comparisons (vs base and between methods; and
    between groups for the same method, e.g. cgd at one learning rate vs another). ``cells``: (sweep.Cell, its
    RunDir); ``about``: what the experiment varies (sweep.experiment_about), recorded beside the cells."""
    from harness.reports.stats import load_results

    rows, comps, primary, order, lengths = [], [], {}, [], []
    per_cell = []
    for cell, rd in cells:
        res = load_results(rd.results)
        per_cell.append((cell, rd, res))
        rows += res.rows
        comps += res.comparisons
        primary.update(res.primary_metrics)
        order += [m for m in res.model_order if m not in order]
        lengths += res.stats.reasoning_length
    groups: dict[str, list] = {}
    for item in per_cell:
        groups.setdefault(item[0].group, []).append(item)
    agg_rows: list[ResultRow] = []
    matrices: dict[tuple[str, str, str], tuple[np.ndarray, list[str], dict]] = {}  # (group, model, task)
    for g, members in groups.items():
        params = {**members[0][0].params, "aggregate": AGGREGATE}
        seeds = [c.seed for c, _, _ in members if c.seed is not None]
        keys = list(dict.fromkeys((r.model, r.task, r.metric) for _, _, res in members for r in res.rows))
        for model, task, metric in keys:
            found = [(c, rd, next(r for r in res.rows if (r.model, r.task, r.metric) == (model, task, metric)))
                     for c, rd, res in members
                     if any((r.model, r.task, r.metric) == (model, task, metric) for r in res.rows)]
            if len(found) != len(members):
                continue
            row, matrix = _row_over_seeds([(rd, r) for _, rd, r in found], primary.get(task, ""), params, seeds)
            agg_rows.append(row)
            if matrix is not None and metric == primary.get(task):
                matrices[(g, model, task)] = (*matrix, params)
        for task in {t for (_, t, _) in keys}:
            for model in {m for (m, t, _) in keys if t == task}:
                got = [x for x in lengths if x.model == model and x.task == task and stable_hash(x.params)[:12] == g]
                if got:
                    lengths.append(_mean_length(model, task, params, got))
    seed_comps = _seed_comparisons(matrices, order, primary)
    experiment = ResultsExperiment(cells=[ExperimentCell(cell=c.id, params=c.params, seed=c.seed) for c, _ in cells],
                                   **about)
    return Results(run_id=rid, model_order=order, primary_metrics=primary, rows=rows + agg_rows,
                   comparisons=comps + seed_comps,
                   stats=ResultsStats(confidence=0.95, n_resamples=2000,
                                      ci="per cell: percentile bootstrap over items; over seeds: " + SEED_TEST_TEXT,
                                      p_value="per cell: exact McNemar / sign-flip; over seeds: " + SEED_TEST_TEXT,
                                      seed_test=SEED_TEST_TEXT, reasoning_length=lengths, experiment=experiment))


def _row_over_seeds(found: list[tuple[Any, ResultRow]], primary: str, params: dict[str, Any],
                    seeds: list[int]) -> tuple[ResultRow, tuple[np.ndarray, list[str]] | None]:
    """One (model, task, metric) over the seeds of a group of cells (``found``: each cell's RunDir and row): the
    mean with its sd and the two-level bootstrap interval, and the (seeds x items) matrix behind it (None when
    the cells' samples give no per-item values)."""
    model, task, metric = found[0][1].model, found[0][1].task, found[0][1].metric
    vals = np.array([r.value for _, r in found])
    lo = hi = None
    matrix = None
    per = [_per_sample(rd, model, task, metric, primary) for rd, _ in found]
    if all(p is not None for p in per) and per and per[0]:
        ids = sorted(set.intersection(*(set(p) for p in per)))
        if ids:
            mat = np.array([[p[i] for i in ids] for p in per])
            lo, hi = hierarchical_ci(mat)
            matrix = (mat, ids)
    first = found[0][1]
    row = ResultRow(model=model, task=task, metric=metric, value=float(np.clip(vals.mean(), 0, 1)), n=first.n,
                    ci_low=lo, ci_high=hi, ci_method=f"{SEED_TEST}(seeds,items)" if lo is not None else None,
                    params=params, seed=None, sd=float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                    seeds=seeds or None, partial=first.partial, full_n=first.full_n)
    return row, matrix


def _mean_length(model: str, task: str, params: dict[str, Any], got: list[ReasoningLength]) -> ReasoningLength:
    """One (model, task)'s reasoning length over the seeds of a group of cells: the mean of the per-seed means."""
    words, steps = [x.words for x in got], [x.steps for x in got]
    return ReasoningLength(model=model, task=task, params=params, seed=None, words=float(np.mean(words)),
                           steps=float(np.mean(steps)),
                           words_sd=float(np.std(words, ddof=1)) if len(got) > 1 else 0.0,
                           steps_sd=float(np.std(steps, ddof=1)) if len(got) > 1 else 0.0)


def _seed_comparisons(matrices, order: list[str], primary: dict[str, str]):
    from harness.common.artifacts import Comparison

    out = []

    def add(key_a, key_b, model: str, baseline: str, params: dict) -> None:
        (ma, ia, _), (mb, ib, _) = matrices[key_a], matrices[key_b]
        ids = sorted(set(ia) & set(ib))
        if not ids:
            return
        a = ma[:, [ia.index(i) for i in ids]]
        b = mb[:, [ib.index(i) for i in ids]]
        delta, lo, hi, p = hierarchical_paired_test(a, b)
        wins = int(np.sum(a.mean(0) > b.mean(0)))
        losses = int(np.sum(a.mean(0) < b.mean(0)))
        out.append(Comparison(model=model, baseline=baseline, task=key_a[2], metric=primary[key_a[2]],
                              delta=delta, ci_low=lo, ci_high=hi, p_value=p, n=len(ids), wins=wins, losses=losses,
                              test=SEED_TEST, params=params, seed=None))

    by_group: dict[str, dict[tuple[str, str], tuple]] = {}
    for (g, m, t) in matrices:
        by_group.setdefault(g, {})[(m, t)] = (g, m, t)
    for g, entries in by_group.items():
        params = matrices[next(iter(entries.values()))][2]
        tasks = list(dict.fromkeys(t for _, t in entries))
        models = [m for m in order if any((m, t) in entries for t in tasks)]
        for t in tasks:
            present = [m for m in models if (m, t) in entries]
            for j, m in enumerate(present):
                for other in present[:j]:
                    add(entries[(m, t)], entries[(other, t)], m, other, params)
    # the same method across groups (e.g. cgd at two learning rates): labelled models
    groups = list(by_group)
    for j, g in enumerate(groups):
        for h in groups[:j]:
            for (m, t), key in by_group[g].items():
                if m == "base" or (m, t) not in by_group[h]:
                    continue
                pa, pb = matrices[key][2], matrices[by_group[h][(m, t)]][2]
                add(key, by_group[h][(m, t)], model_label(m, pa), model_label(m, pb),
                    {"aggregate": AGGREGATE, "across": [pa, pb]})
    return out
