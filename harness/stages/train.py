"""Train: one student per method on its prompt-completion examples, with the same optimiser settings and the
same number of optimiser steps for every method. A trained model is reused only when its fingerprint (student
identity, examples digest, training config, seed) matches; a stale one is trained again and the run says so."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from common.files import stable_hash, write_json_atomic, write_jsonl_atomic
from distill.items import TrainItem
from distill.methods import build_dataset, get_method
from distill.mix import mix_by_conclusion
from harness.config import ConfigError, RunConfig
from harness.models import identity_of
from harness.progress import console
from harness.stages.plan import Plan

#: Warn when a method loses more than this share of its target tokens to max_length truncation.
TRUNCATION_WARN = 0.01


def shared_train_config(cfg: RunConfig, datasets: dict[str, list[dict]]):
    """The one TrainConfig every method gets: the run seed, and max_steps fixed by the smallest dataset when not
    given, so no method sees more updates than another."""
    tcfg = cfg.train.model_copy()
    if tcfg.seed is None:
        tcfg.seed = cfg.seed
    if tcfg.max_steps is None:
        per_step = tcfg.per_device_batch_size * tcfg.gradient_accumulation_steps
        smallest = min(len(r) for r in datasets.values())
        tcfg.max_steps = max(1, (smallest * tcfg.num_epochs) // per_step)
    return tcfg


def truncation_stats(student: Path | str, rows: list[dict], max_length: int) -> dict[str, int]:
    """How many examples exceed max_length, and how many target (completion) tokens the cut removes.

    Counted the way TRL builds conversational prompt-completion examples: the prompt rendered with the
    generation prompt, the completion as the rest of the full conversation; truncation keeps the start."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(student))

    def n_tokens(messages: list[dict], **kw) -> int:
        text = tok.apply_chat_template(messages, tokenize=False, **kw)
        return len(tok(text, add_special_tokens=False)["input_ids"])  # the template holds the special tokens

    out = {"examples": len(rows), "examples_truncated": 0, "examples_dropped": 0, "target_tokens": 0,
           "target_tokens_lost": 0}
    for r in rows:
        n_prompt = n_tokens(r["prompt"], add_generation_prompt=True)
        n_full = n_tokens(r["prompt"] + r["completion"])
        target = max(0, n_full - n_prompt)
        lost = min(target, max(0, n_full - max_length))
        out["target_tokens"] += target
        out["target_tokens_lost"] += lost
        out["examples_truncated"] += n_full > max_length
        out["examples_dropped"] += n_prompt >= max_length  # nothing of the target is left: TRL drops these
    return out


def train_methods(plan: Plan, student: Path | str, items: list[TrainItem]) -> dict[str, dict[str, Any]]:
    cfg = plan.config
    chosen = mix_by_conclusion(items, cfg.right_fraction, cfg.seed) if cfg.right_fraction is not None else items
    datasets = {m: build_dataset(get_method(m, cfg.prompts), chosen) for m in plan.methods}
    for m, rows in datasets.items():
        if not rows:
            raise ConfigError(f"method {m} has no training examples (its teacher stage produced nothing)")
    tcfg = shared_train_config(cfg, datasets)
    student_id = identity_of(cfg.eval.engine, student)
    out: dict[str, dict[str, Any]] = {}
    for m, rows in datasets.items():
        rd = plan.run_dir
        fingerprint = stable_hash({"student": student_id, "examples": stable_hash(rows),
                                   "train": tcfg.model_dump(mode="json")})
        fp_path = rd.model_dir(m) / "fingerprint.json"
        stored = json.loads(fp_path.read_text()) if fp_path.exists() else None
        if stored is not None and stored.get("fingerprint") != fingerprint:
            console.print(f"[yellow]train[/] {m}: the stored model was trained from other data, student or "
                          "settings; training again")
            shutil.rmtree(rd.model_dir(m))
            stored = None
        reused = stored is not None and (rd.model_dir(m) / "final").exists()
        if not reused:
            write_jsonl_atomic(rd.train_data(m), rows)
            truncation = truncation_stats(student, rows, tcfg.max_length)
            if truncation["examples_dropped"] == len(rows):
                raise ConfigError(f"method {m}: every training prompt is longer than train.max_length="
                                  f"{tcfg.max_length} tokens, so nothing is left to learn; raise train.max_length")
            console.print(f"[bold]train[/] {m}: {len(rows)} examples, {tcfg.max_steps} steps")
            from distill.train import train_student
            from harness.progress import quiet_hf_progress

            quiet_hf_progress()
            res = train_student(student, rows, rd.model_dir(m), tcfg, progress=True)
            stored = {"fingerprint": fingerprint, "truncation": truncation, "adapter": res.adapter}
            write_json_atomic(fp_path, stored)
        truncation = stored["truncation"]
        lost = truncation["target_tokens_lost"] / max(1, truncation["target_tokens"])
        if lost > TRUNCATION_WARN:
            console.print(f"[yellow]warning[/] {m}: train.max_length={tcfg.max_length} cuts {100 * lost:.1f}% of "
                          f"its target tokens ({truncation['examples_truncated']} examples); raise max_length")
        final = rd.model_dir(m) / "final"
        out[m] = {"model_dir": str(final), "adapter": stored["adapter"], "examples": len(rows),
                  "fingerprint": fingerprint, "truncation": truncation, "reused": reused,
                  "metrics": json.loads((final / "train_metrics.json").read_text())}
    return out
