"""The Python API (issue 16, item 4): harness.compare / harness.evaluate / harness.load_run return typed values,
the same rows as the CLI for the same arguments, and raise the CLI's one-line errors as exceptions."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import harness

ROOT = Path(__file__).resolve().parents[1]
ARGS = dict(preset="smoke", methods="sft", tasks="synthetic_id", limit=4)
SET = ["pool.n=16", "train.per_device_batch_size=8"]


def _rows(run) -> list[tuple]:
    return sorted((r.model, r.task, r.metric, r.value, r.ci_low, r.ci_high, r.n) for r in run.results.rows)


def test_compare_returns_the_clis_rows(tmp_path, tiny_cache):
    run = harness.compare(**ARGS, set=SET, output_dir=tmp_path / "api", run_id="r")
    assert isinstance(run, harness.Run) and run.path == tmp_path / "api" / "r" and run.report.is_file()
    assert {m for m, _ in run.table()} == {"base", "sft"} and run.manifest.methods == ["sft"]
    cli = subprocess.run([sys.executable, "-m", "harness.cli", "compare", "--preset", "smoke", "--methods", "sft",
                          "--tasks", "synthetic_id", "--limit", "4", *sum((["--set", s] for s in SET), []),
                          "--output-dir", str(tmp_path / "cli"), "--run-id", "r"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert _rows(harness.load_run(tmp_path / "cli" / "r")) == _rows(run)
    assert _rows(harness.load_run(tmp_path / "api" / "r" / "results.json")) == _rows(run)


@pytest.mark.parametrize("call, error, needle", [
    (lambda o: harness.compare(tasks="no_such_task", output_dir=o), "UnknownTask", "no_such_task"),
    (lambda o: harness.compare(run_id="../escaped", output_dir=o), "UsageError", "../escaped"),
    (lambda o: harness.compare(methods="sft,sft", output_dir=o), "UsageError", "more than once"),
    (lambda o: harness.compare(output_dir=o, frobnicate=1), "ConfigError", "frobnicate"),
    (lambda o: harness.evaluate(name="mine", output_dir=o), "UsageError", "--model"),
    (lambda o: harness.load_run(o), "UsageError", "results.json"),
])
def test_errors_are_the_clis_exceptions(tmp_path, call, error, needle):
    with pytest.raises(harness.api.user_error_types()) as e:
        call(tmp_path / "out")
    assert type(e.value).__name__ == error and needle in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "escaped").exists()


def test_import_is_cheap():
    res = subprocess.run([sys.executable, "-c", "import sys, harness, harness.cli; "
                          "print(sorted(m for m in ('torch', 'transformers', 'lm_eval', 'datasets', 'harness.api') "
                          "if m in sys.modules))"], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.stdout.strip() == "[]", res.stdout + res.stderr
