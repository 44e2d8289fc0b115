"""Time the embedded default end to end and print each stage's seconds (from manifest.json).

    python bench/compare_tiny.py [--preset smoke] [--fresh]

--fresh uses an empty cache folder, so the tiny student is built and every model call is paid for.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default=None)
    ap.add_argument("--fresh", action="store_true")
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    env = dict(os.environ)
    if args.fresh:
        env["HARNESS_CACHE_DIR"] = str(out / "cache")
    cmd = [sys.executable, "-m", "harness.cli", "compare", "--methods", "sft,cft,cgd", "--output-dir", str(out),
           "--run-id", "bench"] + (["--preset", args.preset] if args.preset else [])
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    manifest = json.loads((out / "bench" / "manifest.json").read_text())
    print(f"preset={args.preset or 'default'} fresh={args.fresh} wall={wall:.1f}s")
    for stage, sec in manifest["timings_seconds"].items():
        print(f"  {stage:<14} {sec:8.1f}s")
    results = json.loads((out / "bench" / "results.json").read_text())
    prim = results["primary_metrics"]
    for r in results["rows"]:
        if r["metric"] == prim[r["task"]]:
            print(f"  {r['model']:<5} {r['task']:<14} {r['metric']:<10} {100 * r['value']:5.1f}  n={r['n']}")


if __name__ == "__main__":
    main()
