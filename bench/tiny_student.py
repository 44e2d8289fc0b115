"""Build the tiny student(s) from scratch and measure build time, size and greedy accuracy.

    python bench/tiny_student.py                      # default and smoke specs, fresh builds in a temp dir
    python bench/tiny_student.py --preset smoke --n 100
    python bench/tiny_student.py --cache-dir ~/.cache/harness   # reuse cached builds (build time = 0)
    python bench/tiny_student.py --set steps=800 --set hidden_size=160

Generation uses transformers ``generate`` directly: greedy, batched, left padding.
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.distill.tiny import ensure_tiny_student  # noqa: E402
from harness.distill.tiny_spec import TinySpec  # noqa: E402
from harness.tasks.registry import get_task  # noqa: E402

TASKS = ("synthetic_id", "synthetic_ood", "format_probe")


def greedy_generate(model, tokenizer, prompts: list, max_new_tokens: int, batch_size: int = 50) -> list[str]:
    import torch

    texts = [p if isinstance(p, str) else tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
             for p in prompts]
    tokenizer.padding_side = "left"
    out: list[str] = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        out += tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return out


def evaluate(folder: Path, n: int | None, show: int = 0) -> dict[str, dict[str, float]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    results = {}
    for name in TASKS:
        task = get_task(name, **({"n": n} if n else {}))
        docs = task.docs()
        t = time.time()
        responses = greedy_generate(model, tok, [d.prompt for d in docs], task.generation.max_new_tokens)
        scored = [task.score(d, [r]) for d, r in zip(docs, responses)]
        agg = task.aggregate(scored)
        agg["seconds"] = round(time.time() - t, 1)
        if name == "format_probe":
            for kind in sorted({s.details["kind"] for s in scored}):
                sel = [s for s in scored if s.details["kind"] == kind]
                agg[f"format_ok[{kind}]"] = sum(s.metrics["format_ok"] for s in sel) / len(sel)
        results[name] = agg
        for d, r in list(zip(docs, responses))[:show]:
            print(f"--- {d.id} gold={d.gold}\n{r}")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=["default", "smoke", "both"], default="both")
    ap.add_argument("--n", type=int, default=None, help="items per task (default: each task's own default)")
    ap.add_argument("--cache-dir", type=Path, default=None, help="reuse this cache (default: a fresh temp dir)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a TinySpec field")
    ap.add_argument("--show", type=int, default=0, help="print this many responses per task")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()

    presets = ["default", "smoke"] if args.preset == "both" else [args.preset]
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache_dir or Path(tmp)
        for preset in presets:
            spec = TinySpec.smoke() if preset == "smoke" else TinySpec.default()
            for item in args.set:
                key, _, value = item.partition("=")
                if not hasattr(spec, key):
                    raise SystemExit(f"unknown TinySpec field {key!r}")
                setattr(spec, key, ast.literal_eval(value))
            t = time.time()
            folder = ensure_tiny_student(spec, cache_dir=cache, progress=not args.no_progress)
            wall = time.time() - t
            metrics = json.loads((folder / "build_metrics.json").read_text())
            print(f"[{preset}] build wall {wall:.1f}s (recorded {metrics['seconds']}s, tokenizer "
                  f"{metrics['tokenizer_seconds']}s), params {metrics['parameters']:,}, vocab {metrics['vocab_size']}, "
                  f"final loss {metrics['final_loss']:.4f}, digest {metrics['weights_sha256'][:12]}", flush=True)
            for task, agg in evaluate(folder, args.n, args.show).items():
                shown = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) and k != "seconds" else f"{k}={v}"
                                  for k, v in agg.items())
                print(f"[{preset}] {task}: {shown}", flush=True)


if __name__ == "__main__":
    main()
