"""Re-running a finished compare: the cost of checking every stored result's fingerprint (target: at most 3 s
for the embedded default on 2 cores). Runs the compare once if the folder is not finished, then times re-runs.

    python bench/rerun.py [--preset smoke] [--output-dir /tmp/harness-bench] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default=None)
    ap.add_argument("--output-dir", default="/tmp/harness-bench")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cmd = [sys.executable, "-m", "harness.cli", "compare", "--output-dir", args.output_dir, "--run-id", "rerun"]
    if args.preset:
        cmd += ["--preset", args.preset]
    run = Path(args.output_dir) / "rerun"
    if not (run / "results.json").exists():
        print("first run (not timed) ...", flush=True)
        subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    walls, up_to_date = [], 0
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
        up_to_date += "up to date" in out.stderr
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import harness.cli"], check=True)
    startup = time.perf_counter() - t0
    manifest = json.loads((run / "manifest.json").read_text())  # the first run's: a no-op re-run writes nothing
    pairs = sum(1 for m in manifest["models"].values() for t in m["eval"].values() if isinstance(t, dict))
    print(f"preset={args.preset or 'default'} cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f}")
    print(f"re-run wall: {' '.join(f'{w:.2f}s' for w in walls)} (best {min(walls):.2f}s; target <= 3 s)")
    print(f"  of which importing the CLI: {startup:.2f}s; {pairs} (model, task) pairs checked by fingerprint; "
          f"'up to date' in {up_to_date} of {len(walls)} re-runs")
    print("  stage timings of the first run: " + ", ".join(f"{k} {v:.1f}s"
                                                        for k, v in manifest["timings_seconds"].items()))


if __name__ == "__main__":
    main()
