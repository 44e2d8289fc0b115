"""A unit that still fails after its retries ends the CLI with one stderr line naming the unit, its error log and
the fix, exit code 1 (the input was fine; the work failed), everything finished kept: a real failure, a student
whose weights file is damaged, so the training unit raises on its Ray worker (the driver never loads the weights
under the oracle teacher) on every attempt."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytestmark = pytest.mark.slow


def test_failed_unit_is_one_line_with_its_log_and_the_fix(tmp_path, random_chat_model):
    student = tmp_path / "student"
    shutil.copytree(random_chat_model, student)
    (student / "model.safetensors").write_bytes(b"not a safetensors file" * 10)
    env = {**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "cache")}
    res = subprocess.run(
        [sys.executable, "-m", "harness.cli", "compare", "--preset", "smoke", "--methods", "sft", "--student",
         str(student), "--executor", "ray", "--set", "executor.max_retries=1", "--limit", "4", "--tasks",
         "synthetic_id", "--output-dir", str(tmp_path / "runs"), "--run-id", "r"],
        capture_output=True, text=True, timeout=300, env=env, cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 1, res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stderr[-3000:]
    line = errors[0]
    run = tmp_path / "runs" / "r"
    last_log = run / "logs" / "units" / "train__sft.attempt-2.log"  # one retry: two attempts, each logged
    assert "train/sft (SafetensorError" in line and str(last_log) in line and "run again to resume" in line, line
    assert "SafetensorError" in last_log.read_text() and (run / "logs" / "units" / "train__sft.attempt-1.log").exists()
    assert (run / "data" / "items.jsonl").stat().st_size > 0  # the finished training-data stage is kept
