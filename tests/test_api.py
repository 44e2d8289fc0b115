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
    # tracking is on here (and not in the CLI's run): it is no part of the run id or the rows; see test_tracking
    tracking = {"mlflow": {"tracking_uri": f"file:{tmp_path / 'mlruns'}", "experiment": "t"},
                "wandb": {"mode": "offline", "dir": str(tmp_path / "wandb"), "project": "t"},
                "tensorboard": {"log_dir": str(tmp_path / "tb")}}
    run = harness.compare(**ARGS, set=SET, output_dir=tmp_path / "api", run_id="r", tracking=tracking)
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
    check_tracked(tmp_path, run)


def check_tracked(tmp_path: Path, run) -> None:
    """Read back what each tracker logged: the final metrics equal results.json, the loss curve the trainer's."""
    import json

    from mlflow.tracking import MlflowClient

    results = json.loads((run.path / "results.json").read_text())
    expected = {f"{r['model']}/{r['task']}/{r['metric']}": r["value"] for r in results["rows"]}
    curve = run.manifest.models["sft"].train.loss_curve
    assert expected and curve
    client = MlflowClient(tracking_uri=f"file:{tmp_path / 'mlruns'}")
    runs = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parent) == 1 and parent[0].info.run_name == "r"
    logged = parent[0].data.metrics
    for key, value in expected.items():
        assert logged[key] == pytest.approx(value, abs=1e-12), key
    row = next(r for r in results["rows"] if r["ci_low"] is not None)
    assert logged[f"{row['model']}/{row['task']}/{row['metric']}_ci_low"] == pytest.approx(row["ci_low"])
    assert parent[0].data.params["train.learning_rate"] == json.dumps(run.manifest.config["train"]["learning_rate"])
    assert {a.path for a in client.list_artifacts(parent[0].info.run_id)} >= {"report.html", "results.json"}
    assert [c.data.tags["harness.method"] for c in children] == ["sft"]
    assert children[0].data.tags["mlflow.parentRunId"] == parent[0].info.run_id
    history = client.get_metric_history(children[0].info.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(int(s), pytest.approx(v)) for s, v in curve]
    # W&B offline: the run's record file holds the same final metrics (summary) and the method's loss history
    wb = {name: recs for name, recs in map(read_wandb_offline, (tmp_path / "wandb").rglob("run-*.wandb"))}
    assert set(wb) == {"r", "r/sft"}, set(wb)
    for key, value in expected.items():
        assert json.loads(wb["r"]["summary"][key]) == pytest.approx(value, abs=1e-12), key
    assert [json.loads(h["train/loss"]) for h in wb["r/sft"]["history"]] == pytest.approx([v for _, v in curve])
    # TensorBoard: event files with the same scalars
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb" / "r"))
    acc.Reload()
    for key, value in expected.items():
        assert acc.Scalars(key)[0].value == pytest.approx(value, abs=1e-6), key


@pytest.mark.parametrize("call, error, needle", [
    (lambda o: harness.compare(tasks="no_such_task", output_dir=o), "UnknownTask", "no_such_task"),
    (lambda o: harness.compare(run_id="../escaped", output_dir=o), "UsageError", "../escaped"),
    (lambda o: harness.compare(methods="sft,sft", output_dir=o), "UsageError", "more than once"),
    (lambda o: harness.compare(output_dir=o, frobnicate=1), "ConfigError", "frobnicate"),
    (lambda o: harness.evaluate(name="mine", output_dir=o), "UsageError", "--model"),
    (lambda o: harness.evaluate("tiny", name="base", output_dir=o), "UsageError", "--name base"),
    (lambda o: harness.evaluate("tiny", adapter=ROOT / "README.md", output_dir=o), "UsageError", "is a file"),
    (lambda o: harness.evaluate("tiny", adapter=o / "nowhere", output_dir=o), "UsageError", "not found"),
    (lambda o: harness.train(run_id="a/b", output_dir=o), "UsageError", "a/b"),
    (lambda o: harness.train(config=ROOT / "configs", output_dir=o), "UsageError", "is a folder"),
    (lambda o: harness.compare(output_dir=ROOT / "README.md" / "x", dry_run=True), "UsageError", "cannot be written"),
    (lambda o: harness.load_run(o), "UsageError", "results.json"),
])
def test_errors_are_the_clis_exceptions(tmp_path, call, error, needle):
    with pytest.raises(harness.api.user_error_types()) as e:
        call(tmp_path / "out")
    assert type(e.value).__name__ == error and needle in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "escaped").exists()


def test_plan_returns_warnings_and_memory_and_writes_nothing(tmp_path, tiny_student):
    """The planning step is the CLI's: the plan, its warnings as values (the CLI prints them), the memory
    estimate; a dry-run plan is for showing only."""
    planned = harness.api.plan_compare(student=str(tiny_student), methods="sft", output_dir=tmp_path / "out",
                                       dry_run=True)
    assert planned.plan.methods == ("sft",) and planned.root == tmp_path / "out" / planned.run_id
    assert len(planned.warnings) == 1 and "configs/starter.yaml" in planned.warnings[0]
    assert planned.memory.problem is None and not planned.cells
    with pytest.warns(UserWarning, match="configs/starter.yaml"):
        again = harness.compare(student=str(tiny_student), methods="sft", output_dir=tmp_path / "out", dry_run=True)
    assert again.plan.run_id == planned.plan.run_id
    with pytest.raises(harness.UsageError, match="dry-run"):
        harness.api.execute(planned)
    grid = harness.api.plan_compare(methods="sft", seeds="0,1", output_dir=tmp_path / "out", dry_run=True)
    assert [c.seed for c, _ in grid.cells] == [0, 1] and grid.plan is grid.cells[0][1]
    assert not (tmp_path / "out").exists()


def test_an_unfit_run_is_refused_by_the_api(tmp_path, monkeypatch):
    """The memory check runs in the API (it once ran only in the CLI): refused before anything is written, and a
    dry run keeps the reason beside the estimate (the CLI prints the estimate, then refuses)."""
    from harness.config import ConfigError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HARNESS_OFFLINE", "1")
    args = dict(config=ROOT / "configs" / "paper-llama31-8b.yaml", output_dir=tmp_path / "out",
                set=["train.use_lora=false", "executor.gpus=1"])
    with pytest.raises(ConfigError, match="the run cannot fit"):
        harness.compare(**args)
    with pytest.raises(ConfigError, match="the run cannot fit"):
        harness.compare(**args, dry_run=True)
    planned = harness.api.plan_compare(**args, dry_run=True)
    assert planned.memory.problem.startswith("the run cannot fit") and planned.memory.lines()
    assert not (tmp_path / "out").exists()


def test_train_is_the_clis_train(tmp_path, tiny_cache):
    """harness.train: training data and one model per method, no evaluation; the same folder `harness train`
    writes (a second call reuses every trained model)."""
    trained = harness.train(preset="smoke", methods="sft", set=SET, output_dir=tmp_path / "t", run_id="r")
    assert isinstance(trained, harness.Trained) and trained.path == tmp_path / "t" / "r"
    assert set(trained.models) == {"sft"} and (trained.models["sft"] / "adapter_config.json").is_file()
    assert not (trained.path / "results.json").exists() and not (trained.path / "samples").exists()
    manifest = harness.api.run_status(trained.path)
    assert manifest.methods == ["sft"] and manifest.status == "partial: stopped before evaluate"
    fingerprint = (trained.path / "models" / "sft" / "fingerprint.json").read_text()
    cli = subprocess.run([sys.executable, "-m", "harness.cli", "train", "--preset", "smoke", "--methods", "sft",
                          *sum((["--set", s] for s in SET), []), "--output-dir", str(tmp_path / "t"),
                          "--run-id", "r"], capture_output=True, text=True, cwd=ROOT, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert f"sft: {trained.models['sft']}" in cli.stderr.replace("\n", "")
    assert (trained.path / "models" / "sft" / "fingerprint.json").read_text() == fingerprint


def test_import_is_cheap():
    res = subprocess.run([sys.executable, "-c", "import sys, harness, harness.cli; "
                          "print(sorted(m for m in ('torch', 'transformers', 'lm_eval', 'datasets', 'harness.api') "
                          "if m in sys.modules))"], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.stdout.strip() == "[]", res.stdout + res.stderr


def read_wandb_offline(path: Path) -> tuple[str, dict]:
    """An offline W&B run file (LevelDB-log framing of protobuf Records; wandb 0.31 ships no Python reader):
    (display name, {"summary": key -> JSON, "history": [key -> JSON per step]})."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data, block, i, buf, name = path.read_bytes(), 32768, 7, b"", ""
    out: dict = {"summary": {}, "history": []}
    while i + 7 <= len(data):
        if block - i % block < 7:
            i += block - i % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[i:i + 7])
        if kind == 0 and length == 0:
            break
        buf, i = buf + data[i + 7:i + 7 + length], i + 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            which = rec.WhichOneof("record_type")
            if which == "run":
                name = rec.run.display_name
            elif which == "summary":
                out["summary"].update({u.key or "/".join(u.nested_key): u.value_json for u in rec.summary.update})
            elif which == "history":
                out["history"].append({u.key or "/".join(u.nested_key): u.value_json for u in rec.history.item})
    return name, out
