"""Offline without hanging (issue 16, item 1): with the dataset hub unreachable and no local data configured, the
harness probes the hub once (short timeout), then treats it as off: `harness tasks` lists availability from local
files in seconds and names the fix; a run needing hub-only data fails fast with one line, exit 2."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HUB_VARS = ("HARNESS_DATA_DIR", "HF_HUB_OFFLINE", "HARNESS_OFFLINE", "HF_DATASETS_OFFLINE")


@pytest.fixture(scope="module")
def silent_hub():
    """An endpoint that accepts connections and never answers (a firewall that drops replies): the probe must
    give up after its timeout."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    srv.close()


@pytest.fixture(scope="module")
def refused_hub():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connection refused
    return f"http://127.0.0.1:{port}"


def newcomer_env(tmp_path: Path, **extra: str) -> dict:
    """No local data, no offline switch, an empty HF cache, a short probe timeout."""
    env = {k: v for k, v in os.environ.items() if k not in HUB_VARS}
    env.update({"PYTHONPATH": str(ROOT), "HF_HOME": str(tmp_path / "hf"), "HARNESS_HUB_TIMEOUT": "2", **extra})
    return env


def run_outside(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                         cwd=tmp_path, env=newcomer_env(tmp_path, **env), timeout=120)
    return res, time.monotonic() - start


def test_tasks_lists_without_network_in_seconds(tmp_path, silent_hub):
    res, took = run_outside(tmp_path, "tasks", HF_ENDPOINT=silent_hub, COLUMNS="200")
    assert res.returncode == 0, res.stderr[-3000:]
    assert took < 10, took
    assert "Retrying" not in res.stderr
    lines = res.stderr.splitlines()
    row = {l.split("│")[1].strip(): l for l in lines if l.count("│") > 3}
    assert "yes" in row["synthetic_id"] and "no" in row["math500"].split("│")[5], row["math500"]
    fix = [l for l in lines if l.startswith("unavailable here:")]
    assert fix and "math500" in fix[0] and "HARNESS_DATA_DIR" in fix[0] and "--online" in fix[0], res.stderr[-2000:]


def test_tasks_online_probes_once_and_says_unreachable(tmp_path, silent_hub):
    res, took = run_outside(tmp_path, "tasks", "math500,gsm8k", "--online", HF_ENDPOINT=silent_hub, COLUMNS="200")
    assert res.returncode == 0, res.stderr[-3000:]
    assert 1.9 < took < 10, took  # one 2 s probe, not one per dataset
    assert "Retrying" not in res.stderr
    fix = [l for l in res.stderr.splitlines() if l.startswith("unavailable here:")]
    assert fix and "math500, gsm8k" in fix[0] and "unreachable" in fix[0], res.stderr[-2000:]


@pytest.mark.parametrize("hub", ["silent_hub", "refused_hub"])
def test_compare_hub_only_task_fails_fast_one_line(tmp_path, hub, request):
    res, took = run_outside(tmp_path, "compare", "--tasks", "math500", "--limit", "5",
                            HF_ENDPOINT=request.getfixturevalue(hub))
    assert took < 10, took
    assert res.returncode == 2, res.stderr[-3000:]
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert "math500" in lines[0] and "unreachable" in lines[0] and "HARNESS_DATA_DIR" in lines[0], lines[0]
    assert not (tmp_path / "results").exists()


def test_probe_once_per_process_and_skipped_when_offline(monkeypatch):
    from harness.tasks import data

    calls = []
    monkeypatch.setattr(data, "_probe", lambda: calls.append(1) or (False, "x:1 unreachable (test)"))
    for k in HUB_VARS:
        monkeypatch.delenv(k, raising=False)
    data.set_hub_access(None)
    assert not data.hub_allowed() and not data.hub_allowed("a/b") and not data.hub_allowed()
    assert calls == [1]
    assert "unreachable" in str(data.missing("t", "t/test.jsonl", "a/b"))
    data.set_hub_access(None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not data.hub_allowed() and calls == [1]
    assert "HF_HUB_OFFLINE=1" in str(data.missing("t", None, "a/b"))
    data.set_hub_access(None)


def test_cached_hub_dataset_counts_as_available(tmp_path, monkeypatch):
    from harness.tasks import data

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not data.hub_allowed("org/set")
    (tmp_path / "hub" / "datasets--org--set" / "snapshots" / "abc").mkdir(parents=True)
    assert data.hub_allowed("org/set")
