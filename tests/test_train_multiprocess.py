"""Multi-process training (issue 13 items 4-5): the same job through the same entry point (distill.train.launch ->
torchrun -> python -m distill.train JOB.json) on 2 CPU processes over gloo, DDP and FSDP2, follows the 1-process
loss curve for the same global batch.

Tolerance: 0.002 a step on the logged loss. The processes see the same rows in each optimiser step (the global
batch is kept, accelerate shards the same seeded order); what differs is float summation order across the
all-reduce, measured here at about 1e-4 or less on the tiny model over 8 steps."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.train import TrainConfig, TrainJob, launch
from tests.test_train import build_tiny_model

TOLERANCE = 0.002


@pytest.fixture(scope="module")
def job_parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("mp")
    model = build_tiny_model(root / "model")
    examples = root / "examples.jsonl"
    with open(examples, "w") as f:
        for a in range(64):
            f.write(json.dumps({"prompt": [{"role": "user", "content": f"What is {a} + {a}?"}],
                                "completion": [{"role": "assistant",
                                                "content": f"{a} + {a} = {2 * a} \\boxed{{{2 * a}}}"}]}) + "\n")
    return root, model, examples


def _curve(root: Path, model: Path, examples: Path, name: str, nproc: int, strategy: str) -> list[float]:
    # Full fine-tuning (FSDP shards the whole model); global batch 8 = 8 x 1 on one process, 4 x 1 x 2 on two.
    cfg = TrainConfig(use_lora=False, learning_rate=3e-3, per_device_batch_size=8 // nproc, global_batch=8,
                      logging_steps=1, warmup_ratio=0.0, seed=0, device="cpu",
                      distributed={"nproc": nproc, "strategy": strategy})
    job = TrainJob(base_model=str(model), examples=str(examples), out_dir=str(root / name), config=cfg)
    res = launch(job, progress=False, timeout=300)
    assert res.metrics["exposure"]["world_size"] == nproc
    assert res.metrics["exposure"]["data_passes"] == 1.0 and res.metrics["steps"] == 8
    assert (res.model_dir / "train_metrics.json").exists()
    return [loss for _, loss in res.metrics["loss_curve"]]


def test_two_processes_follow_one(job_parts):
    root, model, examples = job_parts
    one = _curve(root, model, examples, "one", 1, "ddp")
    assert one[-1] < one[0]  # it learns: the comparison is not between two flat lines
    for strategy in ("ddp", "fsdp"):
        two = _curve(root, model, examples, f"two-{strategy}", 2, strategy)
        assert len(two) == len(one)
        gap = max(abs(a - b) for a, b in zip(one, two))
        assert gap <= TOLERANCE, f"{strategy}: 2 processes differ from 1 by {gap:.4f} ({one} vs {two})"
