"""What a training output folder was trained for (its request.json): the base model, the examples' digest and the
settings that change what is trained. A resume or a reuse must match it; a changed request would retrain (or
refuse) every stored model, so this is kept apart from the code that trains.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from harness.distill.train_config import TrainConfig, TrainError


def model_ref(base_model: str | Path) -> str:
    # Absolute paths for local folders, so the adapter's base_model_name_or_path works from anywhere.
    p = Path(base_model).expanduser()
    return str(p.resolve()) if p.exists() else str(base_model)


def examples_digest(examples: list[dict]) -> str:
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


def train_request(base_model: str | Path, examples: list[dict], cfg: TrainConfig) -> dict:
    return {"base_model": model_ref(base_model), "examples": len(examples),
            "examples_sha256": examples_digest(examples),
            "config": {**cfg.model_dump(exclude=_BOOKKEEPING | _BATCH_SPLIT), "global_batch": cfg.global_batch_size()}}


def check_request(out_dir: Path, request: dict, found: Path) -> None:
    """Raise when ``out_dir`` holds a request.json for another request (``found``: the output that would be
    reused or resumed)."""
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
