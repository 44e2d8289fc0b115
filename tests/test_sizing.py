"""Runs that fit (issue 15 item 2): per-GPU memory from the model's shape, printed by --dry-run; a run that
cannot fit is refused before any model call, one line, exit 2."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.distill.train_config import DistributedConfig, TrainConfig
from harness.sizing import KNOWN_SHAPES, model_shape, train_memory

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "configs" / "paper-llama31-8b.yaml"


def _cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HARNESS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "harness.cli", "compare", "--config", str(PAPER),
                           "--output-dir", str(tmp_path), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("name,billions", [("llama-3.1-8b", 8.03), ("qwen2.5-math-7b", 7.62), ("s1.1-3b", 3.09),
                                           ("llama-3.3-70b", 70.6)])
def test_shapes_give_the_published_parameter_counts(name, billions):
    assert KNOWN_SHAPES[name].params / 1e9 == pytest.approx(billions, rel=0.01)


def test_local_config_json_wins(tiny_student):
    shape = model_shape(tiny_student)
    from transformers import AutoConfig

    assert shape is not None and shape.hidden == AutoConfig.from_pretrained(tiny_student).hidden_size


def test_full_fine_tuning_of_8b_needs_sharding():
    shape = model_shape("meta-llama/Llama-3.1-8B-Instruct")
    full = TrainConfig(use_lora=False, per_device_batch_size=4, max_length=2048, gradient_checkpointing=True)
    one = train_memory("llama", shape, full, 1, 80)
    assert one.weights + one.gradients + one.optimizer == pytest.approx(16 * shape.params / 1e9)  # ~128 GB
    assert not one.fits
    eight = train_memory("llama", shape, full.model_copy(update={"distributed": DistributedConfig(nproc=8, strategy="fsdp")}),
                         8, 80)
    assert eight.fits and eight.optimizer == pytest.approx(one.optimizer / 8)
    lora = train_memory("llama", shape, full.model_copy(update={"use_lora": True}), 1, 80)
    assert lora.fits and lora.weights == pytest.approx(one.weights / 2, rel=0.02)  # frozen bf16 base
    assert lora.gradients + lora.optimizer < 0.01 * (one.gradients + one.optimizer)


def test_dry_run_prints_memory_and_the_paper_config_fits(tmp_path):
    r = _cli("--dry-run", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout + r.stderr
    assert "train memory per GPU" in out and "sharded over 8 GPUs" in out and "serve memory per GPU" in out


def test_one_gpu_full_fine_tuning_is_refused_before_any_model_call(tmp_path):
    # Not a dry run: the refusal must come before the pipeline touches a model (none is on this machine).
    r = _cli("--set", "train.use_lora=false", "--set", "executor.gpus=1", tmp_path=tmp_path)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: the run cannot fit"), r.stderr
    assert "shard across" in lines[0] and "LoRA" in lines[0] and "8-bit optimizer" in lines[0]
    assert not any(tmp_path.rglob("*.json"))  # nothing half-written


def test_serving_a_70b_student_on_one_gpu_is_refused(tmp_path):
    r = _cli("--set", "student.model=meta-llama/Llama-3.3-70B-Instruct", "--set", "train.use_lora=true",
             "--set", "executor.gpus=1", tmp_path=tmp_path)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "cannot be served" in lines[0], r.stderr
    assert "tensor_parallel_size" in lines[0]


def test_more_processes_than_gpus_is_refused(tmp_path):
    r = _cli("--set", "train.use_lora=true", "--set", "executor.gpus=4", "--dry-run", tmp_path=tmp_path)
    assert r.returncode == 2 and "train.distributed.nproc=8 runs one process a GPU but executor.gpus=4" in r.stderr
