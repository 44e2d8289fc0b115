"""The folders a training run leaves under its output folder, and reading them back::

    checkpoints/checkpoint-N/   the latest Trainer checkpoint (save_total_limit=1), resumed after a crash
    steps/step-N/               with ``select_checkpoint``: the weights (no optimiser state) every ``every_steps``
                                steps, for selection on held-out questions; the last step is final/
    request.json                what was asked for (distill/train_request.py); a resume must match it
    final/                      adapter (or full model) + tokenizer + train_metrics.json, written atomically
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from harness.distill.hf_compat import renamed_api_warning_silenced
from harness.distill.train_config import TrainError


@dataclass
class TrainResult:
    model_dir: Path  # out_dir/final
    adapter: bool  # True: a peft adapter over the base model; False: a full model
    metrics: dict


def result_from(final: Path) -> TrainResult:
    metrics = json.loads((final / "train_metrics.json").read_text())
    return TrainResult(model_dir=final, adapter=(final / "adapter_config.json").exists(), metrics=metrics)


def last_checkpoint(ckpt_root: Path) -> Path | None:
    """The newest complete checkpoint: a kill while saving leaves a checkpoint-N without trainer_state.json
    (written last), which must not be resumed from."""
    if not ckpt_root.is_dir():
        return None
    done = [p for p in ckpt_root.glob("checkpoint-*")
            if p.name.rsplit("-", 1)[1].isdigit() and (p / "trainer_state.json").exists()]
    return max(done, key=lambda p: int(p.name.rsplit("-", 1)[1]), default=None)


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
        with renamed_api_warning_silenced():  # peft 0.21 reads the renamed attribute too
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
