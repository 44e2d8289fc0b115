"""Does a prompt's output depend on what else is in its batch? (The question behind eval.shards: lm-eval #1751.)

    python scripts/batch_invariance.py hf|vllm

Generates for 64 synthetic_id prompts with the tiny smoke student, greedy and sampled (temperature 0.8), as one
call, as 2 and 3 contiguous shards, and (first 16) one prompt at a time, and prints how many outputs differ from
the single call. Measured on the CPU (docs/cluster.md): hf greedy 0/64, hf sampled 61-62/64 (seeds are per
batch), vllm 0/64 both ways (seeds are per prompt)."""
from __future__ import annotations

import sys
import time

from harness.distill.tiny import TinySpec, ensure_tiny_student
from harness.engines import build_engine
from harness.engines.base import SamplingParams
from harness.tasks.synthetic import SyntheticID


def main(backend: str) -> None:
    student = ensure_tiny_student(TinySpec.smoke(), progress=False)
    prompts = [d.prompt for d in SyntheticID(n=64).docs()[:64]]
    options = {"options": {"cpu_kvcache_gib": 1}} if backend == "vllm" else {}
    engine = build_engine(backend, student, batch_size=16, **options)
    for temperature in (0.0, 0.8):
        p = SamplingParams(max_new_tokens=32, temperature=temperature, seed=0)
        t0 = time.time()
        run = lambda ranges: [c[0].text for a, b in ranges for c in engine.generate(prompts[a:b], p)]  # noqa: E731
        whole = run([(0, 64)])
        halves, thirds = run([(0, 32), (32, 64)]), run([(0, 21), (21, 43), (43, 64)])
        alone = run([(i, i + 1) for i in range(16)])
        differ = lambda other: sum(x != y for x, y in zip(whole, other))  # noqa: E731
        print(f"{backend} temperature {temperature}: outputs differing from one call: 2 shards {differ(halves)}/64, "
              f"3 shards {differ(thirds)}/64, one prompt at a time {differ(alone)}/16 ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "hf")
