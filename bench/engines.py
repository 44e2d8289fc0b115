"""Our hf engine against lm-eval's hf backend (``lm_eval.models.huggingface.HFLM``) on the same local model,
prompts and budgets, run alternately (ours, lm-eval, ours, lm-eval, ...) so that load from other processes falls
on both. Prints figures; it is not a timed test.

  (a) mc2        TruthfulQA MC2 log-likelihoods (every choice of a question shares its context, and every question
                 the six-question primer): time, requests/s, ratio, and that the scores are identical.
  (b) bbh        BBH 3-shot chain-of-thought generation (the few-shot prefix every prompt of a subtask shares):
                 time, generated tokens/s, ratio, and the prefill share of our time (a 1-token budget's time over
                 the full budget's).
  (c) synthetic  200 synthetic_id chat prompts, greedy, 160 new tokens, batch 32.

    python bench/engines.py                       # all three on the default tiny student, one torch thread
    python bench/engines.py --parts mc2 --threads 2 --repeats 3
    python bench/engines.py --threads 1,2 --no-lm-eval   # ours only: 1 vs 2 torch threads, alternately

The machine (cpu count, load average before and after each run) is printed with every figure: on a shared
machine the load from other processes moves these numbers more than anything measured here.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HARNESS_DATA_DIR", str(ROOT.parent / "shared" / "data"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def machine() -> str:
    la = os.getloadavg()
    return f"cpus={os.cpu_count()} load={la[0]:.1f}/{la[1]:.1f}/{la[2]:.1f}"


def timed(fn: Callable[[], Any]) -> tuple[float, Any, str]:
    before = machine()
    t0 = time.perf_counter()
    res = fn()
    return time.perf_counter() - t0, res, f"{before} -> {os.getloadavg()[0]:.1f}"


def alternate(label: str, runs: dict[str, Callable[[], Any]], repeats: int) -> dict[str, tuple[list[float], Any]]:
    """Run each callable ``repeats`` times, interleaved; print every time with the load it ran under."""
    out: dict[str, tuple[list[float], Any]] = {k: ([], None) for k in runs}
    for rep in range(repeats):
        for name, fn in runs.items():
            sec, res, load = timed(fn)
            out[name][0].append(sec)
            out[name] = (out[name][0], res)
            print(f"  {label} {name:<8} run {rep + 1}: {sec:7.2f}s  [{load}]", flush=True)
    return out


def summary(label: str, times: dict[str, list[float]], work: dict[str, float], unit: str) -> None:
    best = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    for k in times:
        print(f"  {label} {k:<8} best {best[k]:7.2f}s median {med[k]:7.2f}s  {work[k] / best[k]:9.1f} {unit}/s (best)")
    if "lm-eval" in times and "ours" in times:
        print(f"  {label} speed-up ours vs lm-eval: {best['lm-eval'] / best['ours']:.2f}x best, "
              f"{med['lm-eval'] / med['ours']:.2f}x median")


# ---- the two engines -------------------------------------------------------------------------------------
def our_engine(model: Path, batch_size: int, prefix_reuse: bool = True):
    from harness.engines.hf import HFEngine

    eng = HFEngine(model, batch_size=batch_size, dtype="float32", device="cpu")
    eng.prefix_reuse = prefix_reuse
    return eng


def lm_eval_engine(model: Path, batch_size: int):
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(model), device="cpu", batch_size=batch_size, dtype="float32")


def lm_eval_loglikelihood(lm, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
    from lm_eval.api.instance import Instance

    inst = [Instance(request_type="loglikelihood", doc={}, arguments=r, idx=i) for i, r in enumerate(requests)]
    return lm.loglikelihood(inst, disable_tqdm=True)


def lm_eval_generate(lm, texts: list[str], max_new: int, stop: list[str]) -> list[str]:
    from lm_eval.api.instance import Instance

    kw: dict[str, Any] = {"max_gen_toks": max_new, "do_sample": False}
    if stop:  # without ``until`` lm-eval stops at the end-of-sequence token, as we do
        kw["until"] = list(stop)
    inst = [Instance(request_type="generate_until", doc={}, arguments=(t, dict(kw)), idx=i)
            for i, t in enumerate(texts)]
    return lm.generate_until(inst, disable_tqdm=True)


# ---- parts ------------------------------------------------------------------------------------------------
def bench_mc2(model: Path, args) -> None:
    from harness.tasks.registry import get_task

    task = get_task("truthfulqa_mc2")
    docs = task.docs()[: args.mc2_docs]
    reqs = [(d.prompt, c) for d in docs for c in d.choices]
    print(f"(a) TruthfulQA MC2: {len(docs)} questions, {len(reqs)} log-likelihood requests, batch {args.batch_size}")
    ours = our_engine(model, args.batch_size)
    lm = None if args.no_lm_eval else lm_eval_engine(model, args.batch_size)
    runs = runners(lambda: ours.loglikelihood(reqs), lm and (lambda: lm_eval_loglikelihood(lm, reqs)), args)
    if args.plain:
        plain = our_engine(model, args.batch_size, prefix_reuse=False)
        runs["plain"] = with_threads(int(str(args.threads).split(",")[0]), lambda: plain.loglikelihood(reqs))
    res = alternate("mc2", runs, args.repeats)
    summary("mc2", {k: v[0] for k, v in res.items()}, {k: len(reqs) for k in res}, "requests")
    if "lm-eval" not in res:
        return
    a, b = res[next(iter(res))][1], res["lm-eval"][1]
    diff = max(abs(x[0] - y[0]) for x, y in zip(a, b))
    greedy_same = sum(x[1] == y[1] for x, y in zip(a, b))
    pos, mine, theirs = 0, [], []
    for d in docs:
        k = len(d.choices)
        mine.append(task.score_loglikelihoods(d, a[pos : pos + k]).score)
        theirs.append(task.score_loglikelihoods(d, b[pos : pos + k]).score)
        pos += k
    print(f"  mc2 scores: max |ours - lm-eval| log-likelihood {diff:.2e}; greedy flags equal {greedy_same}/{len(a)}; "
          f"mc2 ours {sum(mine) / len(mine):.6f} lm-eval {sum(theirs) / len(theirs):.6f}")


def bench_generation(label: str, model: Path, prompts: list, max_new: int, stop: list[str], args,
                     prefill_share: bool) -> None:
    from harness.engines.base import SamplingParams

    ours = our_engine(model, args.batch_size)
    lm = None if args.no_lm_eval else lm_eval_engine(model, args.batch_size)
    texts = [ours.render(p) for p in prompts]
    n_prompt = sum(len(ours._encode(t, chat=not isinstance(p, str))) for p, t in zip(prompts, texts))
    params = SamplingParams(max_new_tokens=max_new, temperature=0.0, stop=tuple(stop))
    print(f"  {label}: {len(prompts)} prompts, {n_prompt / len(prompts):.0f} prompt tokens each on average, "
          f"{max_new} new tokens at most, stop {stop}, batch {args.batch_size}")
    runs = runners(lambda: ours.generate(prompts, params),
                   lm and (lambda: lm_eval_generate(lm, texts, max_new, stop)), args)
    if args.plain:
        plain = our_engine(model, args.batch_size, prefix_reuse=False)
        runs["plain"] = with_threads(int(str(args.threads).split(",")[0]), lambda: plain.generate(prompts, params))
    res = alternate(label, runs, args.repeats)
    first = next(iter(res))
    comps = res[first][1]
    new_tokens = sum(c[0].completion_tokens for c in comps)
    line = f"  {label}: {new_tokens} new tokens ({new_tokens / len(prompts):.0f} per prompt)"
    if "lm-eval" in res:
        line += f"; texts equal to lm-eval's {sum(c[0].text == t for c, t in zip(comps, res['lm-eval'][1]))}"
    if "plain" in res:
        line += f"; equal to no-reuse's {sum(c[0].text == p[0].text for c, p in zip(comps, res['plain'][1]))}"
    print(line + f" /{len(prompts)}")
    summary(label, {k: v[0] for k, v in res.items()}, {k: new_tokens for k in res}, "new tokens")
    if prefill_share:
        one = SamplingParams(max_new_tokens=1, temperature=0.0)
        for name, eng in [("ours", ours)] + ([("plain", plain)] if args.plain else []):
            t1 = [timed(with_threads(int(str(args.threads).split(",")[0]), lambda: eng.generate(prompts, one)))[0]
                  for _ in range(args.repeats)]
            print(f"  {label}: {name} prefill (1-token budget) {min(t1):.2f}s = "
                  f"{100 * min(t1) / min(res[name if name in res else first][0]):.0f}% of its full-budget time")


def bench_bbh(model: Path, args) -> None:
    from harness.tasks.registry import get_task

    task = get_task("bbh")
    docs = task.docs()
    per: dict[str, list] = {}
    for d in docs:
        per.setdefault(d.id.split("/")[0], []).append(d)
    picked = [d for sub in sorted(per)[: args.bbh_subtasks] for d in per[sub][: args.bbh_docs]]
    print(f"(b) BBH 3-shot CoT generation: {len(picked)} prompts from {min(len(per), args.bbh_subtasks)} subtasks")
    bench_generation("bbh", model, [d.prompt for d in picked], args.bbh_new_tokens, list(task.generation.stop), args,
                     prefill_share=True)


def bench_synthetic(model: Path, args) -> None:
    from harness.tasks.registry import get_task

    docs = get_task("synthetic_id").docs()[: args.synthetic_n]
    print("(c) synthetic_id: greedy generation")
    bench_generation("synthetic", model, [d.prompt for d in docs], 160, [], args, prefill_share=True)


def with_threads(n: int, fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        import torch

        torch.set_num_threads(n)
        return fn()

    return run


def runners(ours_fn: Callable[[], Any], lm_fn: Callable[[], Any] | None, args) -> dict[str, Callable[[], Any]]:
    """ours (at each thread count of --threads) and lm-eval (at the first), interleaved."""
    threads = [int(t) for t in str(args.threads).split(",")]
    runs = {("ours" if len(threads) == 1 else f"ours/{t}t"): with_threads(t, ours_fn) for t in threads}
    if lm_fn is not None and not args.no_lm_eval:
        runs["lm-eval"] = with_threads(threads[0], lm_fn)
    print(f"  torch threads: {threads}  [{machine()}]")
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="local model folder (default: the default tiny student)")
    ap.add_argument("--parts", default="mc2,bbh,synthetic")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", default="1", help="torch threads; a comma list times ours at each (lm-eval: first)")
    ap.add_argument("--no-lm-eval", action="store_true", help="time only our engine")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--mc2-docs", type=int, default=817)
    ap.add_argument("--bbh-subtasks", type=int, default=3)
    ap.add_argument("--bbh-docs", type=int, default=16)
    ap.add_argument("--bbh-new-tokens", type=int, default=128)
    ap.add_argument("--synthetic-n", type=int, default=200)
    ap.add_argument("--plain", action="store_true", help="also time our engine without prefix reuse")
    args = ap.parse_args()
    model = args.model
    if model is None:
        from harness.distill.tiny import ensure_tiny_student
        from harness.distill.tiny_spec import TinySpec

        model = ensure_tiny_student(TinySpec.default(), progress=False)
    import torch

    print(f"model {model}; torch {torch.__version__}; {machine()}")
    for part in args.parts.split(","):
        {"mc2": bench_mc2, "bbh": bench_bbh, "synthetic": bench_synthetic}[part](model, args)
    print(f"done [{machine()}]")


if __name__ == "__main__":
    main()
