"""Time the report statistics at benchmark sizes: bootstrap CIs, paired tests and a whole build_results.

    python bench/bootstrap.py [--resamples 2000]

Sizes are the real benchmark sizes (AMC23 40, GPQA Diamond 198, MATH-500 500, GSM8K 1319, BBH 6511).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from harness.reports.intervals import bootstrap_ci, bootstrap_statistic_ci
from harness.reports.paired_tests import paired_difference
from harness.reports.stats import Resampling, TaskScores, build_results
from harness.tasks.base import Scored

SIZES = {"amc23": 40, "gpqa_diamond": 198, "math500": 500, "gsm8k": 1319, "bbh": 6511}


def _time(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resamples", type=int, default=2000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"resamples={args.resamples}; best of 3, milliseconds")
    print(f"{'task':<14}{'n':>6}{'ci(binary)':>12}{'paired bin':>12}{'paired cont':>13}{'generic stat':>14}")
    for task, n in SIZES.items():
        a = (rng.random(n) < 0.5).astype(float)
        b = (rng.random(n) < 0.4).astype(float)
        c = rng.random(n)
        groups = rng.integers(0, 10, size=n)

        def macro(idx: np.ndarray) -> float:
            g, s = groups[idx], a[idx]
            return float(np.mean([s[g == k].mean() for k in np.unique(g)]))

        t_ci = _time(lambda: bootstrap_ci(a, n_resamples=args.resamples))
        t_pb = _time(lambda: paired_difference(a, b, n_resamples=args.resamples))
        t_pc = _time(lambda: paired_difference(c, b, n_resamples=args.resamples))
        t_ms = _time(lambda: bootstrap_statistic_ci(n, macro, n_resamples=args.resamples), repeat=1)
        print(f"{task:<14}{n:>6}{1e3 * t_ci:>12.1f}{1e3 * t_pb:>12.1f}{1e3 * t_pc:>13.1f}{1e3 * t_ms:>14.1f}")

    # A paper-sized run: 6 models x the 15 paper tasks (sizes cycled), 3 per-sample metrics each.
    sizes = list(SIZES.values()) * 3
    per = {}
    for model in ("base", "sft", "distilled_sft", "cft", "cgd", "refine_only"):
        for i, n in enumerate(sizes):
            s = (rng.random(n) < 0.5).astype(float)
            scored = [Scored(str(j), float(v), {"accuracy": float(v), "m2": float(v), "m3": float(1 - v)})
                      for j, v in enumerate(s)]
            per[(model, f"task{i}")] = TaskScores(scored=scored, aggregate={"accuracy": s.mean(), "m2": s.mean(),
                                                                            "m3": 1 - s.mean()})
    primary = {f"task{i}": "accuracy" for i in range(len(sizes))}
    t = time.perf_counter()
    res = build_results("bench", per, primary, resampling=Resampling(n_resamples=args.resamples))
    print(f"build_results: 6 models x {len(sizes)} tasks x 3 metrics -> {len(res.rows)} rows, "
          f"{len(res.comparisons)} comparisons in {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
