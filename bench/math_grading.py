"""Grading throughput on real data: every MATH-500 gold solution graded against its own answer.

    python bench/math_grading.py [--workers N] [--timeout S] [--limit N]

Prints items/s, primary (math-verify) and second-grader (Qwen-style) accuracy, the number of disagreements and
timeouts, and lists the disagreeing items. A gold solution should be judged correct by both graders, so every
miss here is a grader or gold-format problem worth reading.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=None, help="worker processes (default: CPUs, at most 8)")
    ap.add_argument("--timeout", type=float, default=5.0, help="wall-clock seconds per grader call")
    ap.add_argument("--limit", type=int, default=None, help="grade only the first N problems")
    args = ap.parse_args()

    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    os.environ.setdefault("HARNESS_DATA_DIR", str(shared))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from harness.tasks.scorers.math import MathGradingPool
    from harness.tasks.scorers.worker_pool import default_workers
    from harness.tasks.math_tasks import Math500Task

    task = Math500Task()
    docs = task.docs()[: args.limit]
    pairs = [(d.meta["solution"], d.gold) for d in docs]
    workers = args.workers or default_workers()

    t0 = time.perf_counter()
    with MathGradingPool(workers=workers, timeout=args.timeout) as pool:
        t1 = time.perf_counter()
        grades = pool.grade(pairs, progress=True)
        t2 = time.perf_counter()

    n = len(grades)
    print(f"MATH-500 gold solutions vs answers: n={n}, workers={workers}, timeout={args.timeout:g} s")
    print(f"pool start-up: {t1 - t0:.2f} s; grading: {t2 - t1:.2f} s = {n / (t2 - t1):.1f} items/s "
          f"({n / (t2 - t0):.1f} items/s including start-up)")
    print(f"accuracy (math-verify): {sum(g.correct for g in grades) / n:.4f} ({sum(g.correct for g in grades)}/{n})")
    print(f"accuracy (qwen-style):  {sum(g.second_grader_correct for g in grades) / n:.4f} "
          f"({sum(g.second_grader_correct for g in grades)}/{n})")
    print(f"disagreements: {sum(g.grader_disagreement for g in grades)}; timeouts: {sum(g.timed_out for g in grades)} "
          f"(second grader: {sum(g.second_grader_timed_out for g in grades)}); "
          f"extraction failures: {sum(g.extraction_failed for g in grades)}; errors: {sum(bool(g.error) for g in grades)}")
    for d, g in zip(docs, grades):
        if g.grader_disagreement or not g.correct:
            print(f"  {d.id}: gold={d.gold!r} extracted={g.extracted!r} math-verify={g.correct} "
                  f"qwen={g.second_grader_correct} timed_out={g.timed_out}")


if __name__ == "__main__":
    main()
