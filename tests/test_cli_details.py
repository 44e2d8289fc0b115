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
    _manifest(done, methods=["sft", "cgd"], tasks=["synthetic_id"])
    (done / "results.json").write_text("{}")
    (done / "report.html").write_text("")
    (tmp_path / "stopped" / "models" / "cgd").mkdir(parents=True)
    (tmp_path / "stopped" / "data").mkdir()
    (tmp_path / "not-a-run").mkdir()
    rows = _runs_table(tmp_path)
    assert rows["done"][:3] == ["complete", "sft,cgd", "synthetic_id"] and rows["done"][3].endswith("s")
    assert rows["stopped"][0] == "partial: stopped in train (cgd)"
    assert "not-a-run" not in rows


def test_runs_names_a_damaged_or_old_manifest_in_one_status_line(tmp_path):
    """manifest.json is read as the typed artifact: a torn file or an older release's schema is the run's status
    (what its files show, then why the manifest does not read), never a crash; the other runs still list."""
    torn = tmp_path / "torn"
    (torn / "samples" / "base").mkdir(parents=True)
    (torn / "samples" / "base" / "synthetic_id.jsonl").write_text("")
    (torn / "manifest.json").write_text('{"schema_version": 2, "run_id": "to')
    old = tmp_path / "old"
    (old / "models" / "sft" / "final").mkdir(parents=True)
    (old / "manifest.json").write_text(json.dumps({"schema_version": 1, "run_id": "old", "methods": ["x"]}))
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "manifest.json").write_text(json.dumps({"schema_version": 3, "run_id": "wrong", "methods": 3}))
    _manifest(tmp_path / "fine", methods=["cgd"], tasks=["format_probe"])
    rows = _runs_table(tmp_path)
    assert rows["torn"][0].startswith("partial: stopped in evaluate; manifest.json is not valid JSON")
    assert rows["torn"][2] == "synthetic_id"  # tasks from the samples
    assert rows["old"][0] == "partial: stopped before evaluate; manifest.json was written by schema version 1 " \
        "(this harness reads 3)"
    assert rows["old"][1] == "sft"  # methods from the models folder, not the unreadable manifest
    assert rows["wrong"][0].startswith("empty (stopped in plan); manifest.json: invalid manifest (")
    assert rows["fine"][:3] == ["empty (stopped in plan)", "cgd", "format_probe"]


def _manifest(run: Path, methods: list[str], tasks: list[str]) -> None:
    """A manifest.json of this schema as a run writes it (the typed artifact)."""
    from harness.common.artifacts import Manifest, TaskRecord, save_artifact

    run.mkdir(parents=True, exist_ok=True)
    task = TaskRecord(n=1, output_type="generate", primary_metric="accuracy", fingerprint="f")
    save_artifact(run / "manifest.json", Manifest(run_id=run.name, created="2025-01-01T00:00:00", config={},
                                                  methods=methods, model_order=["base", *methods], models={},
                                                  tasks={t: task for t in tasks}))


def _runs_table(root: Path) -> dict[str, list[str]]:
    """`harness runs ROOT` as run -> [status, methods, tasks, age] (a wide terminal: one table row a line)."""
    res = subprocess.run([sys.executable, "-m", "harness.cli", "runs", str(root)], capture_output=True,
                         text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "400"})
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    return {l.split("│")[1].strip(): [c.strip() for c in l.split("│")[2:-1]] for l in res.stderr.splitlines()
            if l.count("│") > 4}
