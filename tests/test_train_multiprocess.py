"""Multi-process training (issue 13 items 4-5): the same job through the same entry point (harness.distill.train.launch ->
torchrun -> python -m harness.distill.train JOB.json) on 2 CPU processes over gloo, DDP and FSDP2, follows the 1-process
loss curve for the same global batch, and a 1-process checkpoint resumes on 2 processes.

Tolerance: 0.002 a step on the logged loss. The processes see the same rows in each optimiser step (the global
batch is kept, accelerate shards the same seeded order); what differs is float summation order across the
all-reduce, measured here at about 1e-4 or less on the tiny model over 8 steps."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.distill.train import TrainJob, launch
from harness.distill.train_config import TrainConfig
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


def _job(root: Path, model: Path, examples: Path, name: str, nproc: int, strategy: str,
         keep: bool = False) -> TrainJob:
    # Full fine-tuning (FSDP shards the whole model); global batch 8 = 8 x 1 on one process, 4 x 1 x 2 on two.
    # keep: every checkpoint is kept (select_checkpoint every 4 steps), for the resume test.
    cfg = TrainConfig(use_lora=False, learning_rate=3e-3, per_device_batch_size=8 // nproc, global_batch=8,
                      logging_steps=1, warmup_ratio=0.0, seed=0, device="cpu", keep_checkpoints=keep,
                      select_checkpoint={"every_steps": 4} if keep else None,
                      distributed={"nproc": nproc, "strategy": strategy})
    return TrainJob(base_model=str(model), examples=str(examples), out_dir=str(root / name), config=cfg)


def _curve(job: TrainJob) -> list[float]:
    res = launch(job, progress=False, timeout=300)
    assert res.metrics["exposure"]["world_size"] == job.config.distributed.nproc
    assert res.metrics["exposure"]["data_passes"] == 1.0 and res.metrics["steps"] == 8
    assert (res.model_dir / "train_metrics.json").exists()
    return [loss for _, loss in res.metrics["loss_curve"]]


@pytest.fixture(scope="module")
def one_process(job_parts) -> list[float]:
    root, model, examples = job_parts
    one = _curve(_job(root, model, examples, "one", 1, "ddp", keep=True))
    assert one[-1] < one[0]  # it learns: the comparison is not between two flat lines
    return one


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_follow_one(job_parts, one_process, strategy):
    root, model, examples = job_parts
    two = _curve(_job(root, model, examples, f"two-{strategy}", 2, strategy))
    assert len(two) == len(one_process)
    gap = max(abs(a - b) for a, b in zip(one_process, two))
    assert gap <= TOLERANCE, f"{strategy}: 2 processes differ from 1 by {gap:.4f} ({one_process} vs {two})"


def test_a_one_process_checkpoint_resumes_on_two(job_parts, one_process):
    """The last complete checkpoint does not depend on the world size: the 1-process run's step-4 checkpoint,
    resumed by 2 DDP processes, finishes on the same loss curve."""
    root, model, examples = job_parts
    out = root / "resumed"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copytree(root / "one" / "checkpoints" / "checkpoint-4", out / "checkpoints" / "checkpoint-4")
    shutil.copy(root / "one" / "request.json", out / "request.json")
    res = launch(_job(root, model, examples, "resumed", 2, "ddp", keep=True), progress=False, timeout=300)
    assert res.metrics["resumed_from"].endswith("checkpoint-4") and res.metrics["steps"] == 8
    resumed = [loss for _, loss in res.metrics["loss_curve"]]
    assert len(resumed) == len(one_process)
    gap = max(abs(a - b) for a, b in zip(one_process, resumed))
    assert gap <= TOLERANCE, f"resumed on 2 processes differs by {gap:.4f} ({one_process} vs {resumed})"


def test_zero3_without_deepspeed_says_how_to_get_it():
    import importlib.util

    from harness.distill.train_config import TrainError
    from harness.distill.trainer import _strategy_kwargs

    cfg = TrainConfig(per_device_batch_size=4, global_batch=8, distributed={"nproc": 2, "strategy": "zero3"})
    if importlib.util.find_spec("deepspeed") is not None:
        assert _strategy_kwargs(cfg, 2)["deepspeed"].endswith("zero3_ds.json")
    else:
        with pytest.raises(TrainError, match="pip install deepspeed"):
            _strategy_kwargs(cfg, 2)
    assert _strategy_kwargs(cfg, 1) == {}  # one process: nothing to shard
    fsdp = _strategy_kwargs(cfg.model_copy(update={"distributed": cfg.distributed.model_copy(
        update={"strategy": "fsdp"})}), 2)
    assert fsdp["fsdp_config"]["version"] == 2 and fsdp["fsdp_config"]["state_dict_type"] == "FULL_STATE_DICT"
