"""How much of its data a method's training sees: the optimiser steps a budget (epochs, tokens or a fixed step
count) asks for, counted as the Trainer walks its rows, and the rows and tokens of one pass before any model loads.
"""
from __future__ import annotations

from pathlib import Path

from harness.common.artifacts import TrainExposure  # the record itself: train_metrics.json and the manifest hold it
from harness.distill.train_config import TrainConfig, TrainError
from harness.distill.train_request import model_ref


def plan_exposure(rows: int, tokens_per_pass: int, cfg: TrainConfig, world_size: int, packing: bool,
                  examples: int) -> TrainExposure:
    """Optimiser steps for the budget, counted the way transformers' Trainer walks its data: per process
    ceil(ceil(rows / batch) / processes) batches a pass (accelerate gives every process the same number),
    ceil(batches / accumulation) optimiser steps a pass, the last one short when they do not divide."""
    import math

    acc = cfg.accumulation(world_size)
    g = cfg.per_device_batch_size * acc * world_size
    batches = math.ceil(math.ceil(rows / cfg.per_device_batch_size) / world_size)
    per_pass = max(1, math.ceil(batches / acc))
    budget_tokens = None
    if cfg.max_steps is not None:
        budget, steps = "steps", cfg.max_steps
    elif cfg.budget == "epochs":
        budget, steps, budget_tokens = "epochs", cfg.num_epochs * per_pass, cfg.num_epochs * tokens_per_pass
    else:
        if cfg.budget_tokens is None:
            raise TrainError("train.budget=tokens needs train.budget_tokens (the pipeline fills it in from the "
                             "smallest method); set it or use train.budget=epochs")
        budget, budget_tokens = "tokens", cfg.budget_tokens
        passes = budget_tokens / max(1, tokens_per_pass)
        whole = math.floor(passes)
        steps = whole * per_pass + min(per_pass, round((passes - whole) * rows / g))
        steps = max(1, steps)
    whole, rest = divmod(steps, per_pass)
    seen = whole * rows + min(rows, rest * g)
    return TrainExposure(budget=budget, examples=examples, rows=rows, packing=packing,
                         tokens_per_pass=tokens_per_pass, budget_tokens=budget_tokens, world_size=world_size,
                         per_device_batch=cfg.per_device_batch_size, accumulation=acc, global_batch=g,
                         steps_per_pass=per_pass, steps=steps, rows_seen=seen, data_passes=seen / max(1, rows))


def count_rows(base_model: str | Path, examples: list[dict], cfg: TrainConfig) -> tuple[int, int]:
    """(rows, tokens) of one pass before any model is loaded: each example tokenised as TRL does for
    conversational prompt-completion data (chat template; prompt with the generation prompt), then packed by
    TRL's own pack_dataset (its SFTConfig's default strategy) when packing, else cut at max_length with the
    examples that lose their whole completion dropped (as TRL does)."""
    import datasets
    from transformers import AutoTokenizer
    from trl import SFTConfig, pack_dataset

    tok = AutoTokenizer.from_pretrained(model_ref(base_model))

    def ids(messages: list[dict], **kw) -> list[int]:
        out = tok.apply_chat_template(messages, tokenize=True, return_dict=True, **kw)
        return list(out["input_ids"])

    seqs = []
    for e in examples:
        prompt = ids(e["prompt"], add_generation_prompt=True)
        full = ids(e["prompt"] + e["completion"])
        if not cfg.packing:
            if len(prompt) >= cfg.max_length:
                continue  # nothing of the completion is left
            full = full[:cfg.max_length]
        seqs.append(full)
    if not cfg.packing:
        return len(seqs), sum(len(x) for x in seqs)
    strategy = SFTConfig.__dataclass_fields__["packing_strategy"].default
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        packed = pack_dataset(datasets.Dataset.from_dict({"input_ids": seqs}), cfg.max_length, strategy)
    finally:
        if bars:
            datasets.enable_progress_bars()
    return len(packed), sum(len(x) for x in packed["input_ids"])


def pass_size(ds) -> tuple[int, int]:
    """(rows, tokens) of the dataset the Trainer walks: TRL's tokenised (and packed) training set."""
    return len(ds), sum(len(x) for x in ds["input_ids"])
