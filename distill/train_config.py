"""What a training run is asked to do: the optimiser, adapter and budget settings (TrainConfig) and their parts.

Pure pydantic, so that loading a config imports neither torch nor transformers.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


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
