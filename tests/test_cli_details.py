"""CLI details a user trips on (issue 16, item 6): --name without --model, --version, `harness runs`, user-given
paths of the wrong kind, repeated entries in list options, and run ids that are not plain names: each one line on
stderr, exit 2, nothing written."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def harness(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)


def one_line(res: subprocess.CompletedProcess, *needles: str) -> None:
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert res.returncode == 2 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_version():
    res = harness("--version")
    assert res.returncode == 0 and res.stdout.startswith("harness ") and res.stdout.split()[1][0].isdigit()


@pytest.mark.parametrize("args, needles", [
    (["eval", "--name", "N", "--dry-run"], ["--name", "--model"]),
    (["compare", "--run-id", "../escaped", "--dry-run"], ["../escaped", "plain folder name"]),
    (["eval", "--run-id", "a/b", "--dry-run"], ["a/b"]),
    (["compare", "--methods", "sft,cgd,sft", "--dry-run"], ["--methods", "sft", "more than once"]),
    (["compare", "--tasks", "synthetic_id,synthetic_id", "--dry-run"], ["--tasks", "synthetic_id"]),
    (["compare", "--seeds", "1,1", "--dry-run"], ["--seeds", "repeats"]),
    (["compare", "--set", "pool.n=8", "--set", "pool.n=9", "--dry-run"], ["--set", "pool.n", "more than once"]),
    (["compare", "--config", "configs", "--dry-run"], ["--config", "is a folder"]),
    (["compare", "--output-dir", "README.md", "--dry-run"], ["--output-dir", "is a file"]),
    (["compare", "--output-dir", "README.md/sub", "--dry-run"], ["--output-dir", "cannot be written"]),
    (["eval", "--model", "tiny", "--adapter", "README.md", "--dry-run"], ["--adapter", "is a file"]),
    (["runs", "README.md"], ["is a file"]),
    (["score", "--task", "synthetic_id", "--input", "configs"], ["--input", "is a folder"]),
])
def test_bad_paths_lists_and_names_are_one_line(tmp_path, args, needles):
    one_line(harness(*args, cwd=ROOT), *needles)
    assert not (ROOT / "escaped").exists() and not (ROOT / "a").exists()


def test_runs_lists_status_methods_tasks_age(tmp_path):
    done = tmp_path / "done"
    (done / "samples" / "base").mkdir(parents=True)
    (done / "samples" / "base" / "synthetic_id.jsonl").write_text("")
    (done / "manifest.json").write_text(json.dumps({"methods": ["sft", "cgd"], "tasks": {"synthetic_id": {}}}))
    (done / "results.json").write_text("{}")
    (done / "report.html").write_text("")
    (tmp_path / "stopped" / "models" / "cgd").mkdir(parents=True)
    (tmp_path / "stopped" / "data").mkdir()
    (tmp_path / "not-a-run").mkdir()
    res = subprocess.run([sys.executable, "-m", "harness.cli", "runs", str(tmp_path)], capture_output=True,
                         text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"})
    assert res.returncode == 0, res.stderr
    rows = {l.split("│")[1].strip(): [c.strip() for c in l.split("│")[2:-1]] for l in res.stderr.splitlines()
            if l.count("│") > 4}
    assert rows["done"][:3] == ["complete", "sft,cgd", "synthetic_id"] and rows["done"][3].endswith("s")
    assert rows["stopped"][0] == "partial: stopped in train (cgd)"
    assert "not-a-run" not in rows
