"""Paired significance tests of two models on the same items: exact McNemar for 0/1 scores, a sign-flip
permutation test otherwise, a paired bootstrap of any statistic's difference; Holm's adjustment across tests."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

import numpy as np
from scipy.stats import binomtest

from harness.reports.intervals import (
    BLOCK_ELEMENTS, MULTINOMIAL_MAX_LEVELS, as_array, bootstrap_ci, check_confidence, percentiles,
)

R = TypeVar("R")  # a per-sample record with an ``id``

# Sign-flip tests enumerate all 2**n sign patterns up to this n (exact), and sample above it.
_EXACT_PERMUTATION_MAX_N = 12


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
    d = as_array(differences)
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
    if len(levels) <= MULTINOMIAL_MAX_LEVELS:
        # Few distinct differences: the flipped sum is sum_v v * (2 * Binomial(count_v, 1/2) - count_v),
        # the same distribution as flipping each item, drawn at O(distinct) per permutation.
        plus = rng.binomial(counts, 0.5, size=(n_permutations, len(levels)))
        means = np.abs((2 * plus - counts) @ levels / n)
        return (int(np.sum(means >= observed - tol)) + 1) / (n_permutations + 1)
    rows_per_block = max(1, BLOCK_ELEMENTS // n)
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
    a_arr, b_arr = as_array(a), as_array(b)
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
    check_confidence(confidence)
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
    lo, hi = percentiles(boots, confidence)
    if np.all(boots == 0):
        return (delta, lo, hi, 1.0)
    p = min(1.0, 2.0 * min(float(np.mean(boots <= 0)), float(np.mean(boots >= 0))))
    return (delta, lo, hi, p)


def align_by_id(records_a: Sequence[R], records_b: Sequence[R]) -> tuple[list[str], list[R], list[R]]:
    """The ids both record lists share (in ``records_a``'s order) and the matching records of each (records with
    an ``id``: ``harness.tasks.base.Scored``)."""
    index_b: dict[str, R] = {}
    for r in records_b:
        if r.id in index_b:
            raise ValueError(f"duplicate sample id {r.id!r}; each item must be scored once per model")
        index_b[r.id] = r
    ids, out_a, out_b, seen = [], [], [], set()
    for r in records_a:
        if r.id in seen:
            raise ValueError(f"duplicate sample id {r.id!r}; each item must be scored once per model")
        seen.add(r.id)
        if r.id in index_b:
            ids.append(r.id)
            out_a.append(r)
            out_b.append(index_b[r.id])
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
