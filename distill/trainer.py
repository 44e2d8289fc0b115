"""Fine-tune the student on one method's prompt-completion examples, in this process: TRL SFTTrainer + peft
LoRA (or full FT). One process of a multi-process job runs this too (distill/train.py launches them).

Every method trains the same way; they differ only in their examples. The loss is on the completion only
(TRL's ``completion_only_loss``, set explicitly). What it writes under ``out_dir`` (checkpoints/, steps/,
request.json, final/) is described in distill/train_outputs.py. A second call with an existing ``final/`` returns
it without training.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from harness.common.files import write_json_atomic
from harness.common.resources import shipped
from harness.distill.exposure import pass_size, plan_exposure
from harness.distill.hf_compat import checkpointing_kwarg, renamed_api_warning_silenced
from harness.distill.train_config import TrainConfig, TrainError
from harness.distill.train_outputs import TrainResult, export_steps, last_checkpoint, result_from
from harness.distill.train_progress import rich_progress_callback
from harness.distill.train_request import check_request, model_ref, train_request


def world_size() -> int:
    """Processes of this training job (torchrun and accelerate set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


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
    request = train_request(base_model, examples, cfg)
    if final.exists():
        check_request(out_dir, request, final)
        return result_from(final)
    if not examples:
        raise TrainError(f"no training examples for {out_dir}; the method's teacher stage produced nothing")
    ckpt_root = out_dir / "checkpoints"
    last = last_checkpoint(ckpt_root)
    if last is not None:
        check_request(out_dir, request, last)
    main = is_main_process()
    # One name for every process: under FSDP all of them take part in writing the weights.
    tmp = out_dir / ".final.tmp"
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out_dir / "request.json", request)
        shutil.rmtree(tmp, ignore_errors=True)

    t0 = time.perf_counter()
    trainer = build_trainer(base_model, examples, out_dir, cfg, progress=progress, callbacks=callbacks)
    # Packing keeps every example (pack_dataset's bfd cuts an over-long one to max_length, it drops none).
    exposure = plan_exposure(*pass_size(trainer.train_dataset), cfg, world_size(), cfg.packing,
                             len(examples) if cfg.packing else len(trainer.train_dataset))
    trainer.args.max_steps = exposure.steps  # read by Trainer.train(), which also derives the warmup from it
    try:
        with renamed_api_warning_silenced():
            output = trainer.train(resume_from_checkpoint=str(last) if last else None)
    finally:
        for cb in trainer.callback_handler.callbacks:
            if type(cb).__name__ == "RichTrainProgress":
                cb.close()
    seconds = time.perf_counter() - t0
    exposure.tokens_trained = int(trainer.state.num_input_tokens_seen)

    with renamed_api_warning_silenced():
        trainer.save_model(str(tmp))  # the adapter only for a PeftModel, else the full model; all processes
    if not main:
        _release(trainer)
        return TrainResult(model_dir=final, adapter=cfg.use_lora, metrics={})
    trainer.processing_class.save_pretrained(str(tmp))
    metrics = _metrics(trainer, output, base_model, examples, cfg, seconds, resumed_from=last)
    metrics["exposure"] = exposure.model_dump()
    write_json_atomic(tmp / "train_metrics.json", metrics)
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
    return result_from(final)


def build_trainer(base_model: str | Path, examples: list[dict], out_dir: Path, cfg: TrainConfig,
                  progress: bool = True, callbacks: list | None = None):
    """The configured TRL SFTTrainer (train_student calls this; tests use it to inspect collated batches)."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import SFTConfig, SFTTrainer

    base = model_ref(base_model)
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
        **{checkpointing_kwarg(SFTConfig): cfg.gradient_checkpointing},
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
        with renamed_api_warning_silenced():
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
ACCELERATE_CONFIGS = shipped("configs", "accelerate")


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
        "base_model": model_ref(base_model),
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
