"""Percentile bootstrap intervals over items: of a mean (``bootstrap_ci``) and of any statistic of resampled items
(``bootstrap_statistic_ci``; ``bootstrap_aggregate`` for several metrics from one set of resamples), seeded so a
run's intervals are reproducible."""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

# Bound on the size of one (resamples x n) index block, so large tasks (BBH: 6.5K items) stay in memory.
BLOCK_ELEMENTS = 2_000_000
# Up to this many distinct score values, bootstrap means are drawn as multinomial counts (see _resampled_means).
MULTINOMIAL_MAX_LEVELS = 32


def as_array(values: Iterable[float]) -> np.ndarray:
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
    if len(levels) <= MULTINOMIAL_MAX_LEVELS:
        draws = rng.multinomial(n, counts / n, size=n_resamples)
        return draws @ levels / n
    rows_per_block = max(1, BLOCK_ELEMENTS // n)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, rows_per_block):
        stop = min(n_resamples, start + rows_per_block)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    return means


def percentiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return (math.nan, math.nan)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(samples, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``.

    n = 0 gives (nan, nan); one value, or all values equal, gives (v, v): resampling cannot vary them.
    """
    check_confidence(confidence)
    arr = as_array(values)
    if arr.size == 0:
        return (math.nan, math.nan)
    if arr.size == 1 or np.all(arr == arr[0]):
        return (float(arr[0]), float(arr[0]))
    means = _resampled_means(arr, n_resamples, np.random.default_rng(seed))
    return percentiles(means, confidence)


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
    check_confidence(confidence)
    if n_items <= 0:
        return (math.nan, math.nan)
    if n_items == 1:
        v = float(statistic(np.zeros(1, dtype=np.int64)))
        return (v, v)
    rng = np.random.default_rng(seed)
    stats = np.array([float(statistic(rng.integers(0, n_items, size=n_items))) for _ in range(n_resamples)])
    return percentiles(stats, confidence)


def bootstrap_aggregate(
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
    return {m: percentiles(samples[j], confidence) for j, m in enumerate(metrics)}
