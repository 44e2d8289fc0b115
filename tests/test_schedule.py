"""The dry run's cluster schedule: list scheduling respects dependencies and per-unit GPU needs, and the paper
config's dry run on 64 GPUs prints units, GPU-hours per kind and the wall time."""
from __future__ import annotations

import re

from typer.testing import CliRunner

from harness.common.units import Resources, Unit
from harness.cli import app
from harness.schedule import list_schedule, teacher_tp


def test_list_schedule_respects_dependencies_and_gpu_needs():
    h = 3600.0
    units = [Unit("teacher", "teacher/critique/0", "", Resources(gpus=4), estimate_s=2 * h),
             Unit("eval", "eval/base/a", "", Resources(gpus=1), estimate_s=1 * h),
             Unit("train", "train/sft", "", Resources(gpus=8), after=("teacher/critique/0",), estimate_s=1 * h),
             Unit("eval", "eval/sft/a", "", Resources(gpus=1), after=("train/sft",), estimate_s=0.5 * h)]
    s = list_schedule(units, gpus=8)
    # base eval beside the teacher (5 of 8 GPUs), training waits for the data and all 8 GPUs, then its eval
    assert s.finish_h == {"teacher/critique/0": 2.0, "eval/base/a": 1.0, "train/sft": 3.0, "eval/sft/a": 3.5}
    assert s.wall_h == 3.5
    # On 4 GPUs the base eval waits for the teacher's GPUs (2-3 h) and the 8-GPU job, capped at 4, for it
    assert list_schedule(units, gpus=4).finish_h["train/sft"] == 4.0
    assert s.by_kind()["train"] == (1, 8.0, 8.0)
    assert teacher_tp(70) == 4 and teacher_tp(8) == 1 and teacher_tp(None) == 1


def test_paper_dry_run_prints_the_schedule_on_64_gpus():
    res = CliRunner().invoke(app, ["compare", "--config", "configs/paper-llama31-8b.yaml", "--dry-run",
                                   "--executor", "ray", "--set", "executor.gpus=64"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "schedule on 64 GPUs" in out
    for kind in ("teacher/critique", "train", "eval"):
        assert re.search(rf"{kind}: \d+ units x [\d.]+ GPUs? each, [\d,.]+ GPU-hours", out), kind
    wall = float(re.search(r"expected wall time ([\d,.]+) h on 64 GPUs", out).group(1))
    total = float(re.search(r"total ([\d,.]+) GPU-hours", out).group(1).replace(",", ""))
    assert total / 64 <= wall < total  # no faster than perfect packing, faster than one GPU


def test_evaluation_is_sharded_as_the_run_would_shard_it():
    """The paper config evaluates with vllm: eval.shards=auto cuts each task over the 64 GPUs' engine actors (as
    `harness compare --executor ray` would), so there are more eval units than (model, task) pairs; with
    eval.shards=1 there is one per pair, and the wall time is longer (one GPU per task)."""
    def run(*extra):
        res = CliRunner().invoke(app, ["compare", "--config", "configs/paper-llama31-8b.yaml", "--dry-run",
                                       "--executor", "ray", "--set", "executor.gpus=64", *extra])
        assert res.exit_code == 0, res.output
        units = int(re.search(r"eval: (\d+) units", res.output).group(1))
        return units, float(re.search(r"expected wall time ([\d,.]+) h", res.output).group(1))

    sharded, sharded_wall = run()
    whole, whole_wall = run("--set", "eval.shards=1")
    pairs = whole  # one unit per (model, task) pair
    assert sharded > pairs and sharded_wall <= whole_wall
