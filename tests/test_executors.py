"""The ray executor on a local Ray cluster (2 CPUs) against the local executor: equal results.json rows for a
compare whose first training worker is SIGKILLed mid-unit (retried under a fresh name, the run completes), and
for a 2-seed sweep; the manifest names the executor and the cluster's resources.

One cluster for the module (it starts in ~4 s); the driver is this test process, as `harness compare --executor
ray` is. The kill comes from outside the unit: the worker is found by the process title Ray gives it while it
runs a task (``ray::train/sft#1``), as an operator would find it, with no test hook in the harness."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from harness.cli import app

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

runner = CliRunner()
SMALL = ["--preset", "smoke", "--set", "pool.n=32", "--set", "train.per_device_batch_size=8", "--limit", "6",
         "--tasks", "synthetic_id,format_probe"]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield ray.cluster_resources()
    ray.shutdown()


def compare(out: Path, run_id: str, executor: str, *extra: str) -> Path:
    os.environ["HARNESS_CACHE_DIR"] = str(out / f"cache-{run_id}")  # each run makes its own model calls
    try:
        res = runner.invoke(app, ["compare", *SMALL, *extra, "--executor", executor, "--output-dir", str(out),
                                  "--run-id", run_id])
    finally:
        os.environ.pop("HARNESS_CACHE_DIR", None)
    assert res.exit_code == 0, res.output
    return out / run_id


def rows(run: Path) -> list[dict]:
    return json.loads((run / "results.json").read_text())["rows"]


class KillFirst(threading.Thread):
    """SIGKILL the first Ray worker process seen running a unit whose title starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__(daemon=True)
        self.prefix, self.killed, self.stop = f"ray::{prefix}", None, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and self.killed is None:
            for p in psutil.Process().children(recursive=True):
                try:
                    title = (p.cmdline() or [""])[0]
                except psutil.Error:
                    continue
                if title.startswith(self.prefix):
                    os.kill(p.pid, signal.SIGKILL)
                    self.killed = title
                    return
            time.sleep(0.05)


def test_ray_equals_local_and_survives_a_killed_worker(cluster, tiny_cache, tmp_path):
    local = compare(tmp_path, "local", "local", "--methods", "sft")
    killer = KillFirst("train/sft#1")
    killer.start()
    try:
        on_ray = compare(tmp_path, "ray", "ray", "--methods", "sft")
    finally:
        killer.stop.set()
    assert killer.killed == "ray::train/sft#1"  # the first attempt died mid-unit ...
    logs = sorted(p.name for p in (on_ray / "logs" / "units").iterdir())
    assert logs == ["train__sft.attempt-1.log"]  # ... was logged, retried once under a fresh name, and
    assert rows(on_ray) == rows(local)  # the run completed with every row, equal to the local executor's
    assert {(r["model"], r["task"]) for r in rows(on_ray)} == {
        (m, t) for m in ("base", "sft") for t in ("synthetic_id", "format_probe")}
    manifest = json.loads((on_ray / "manifest.json").read_text())
    assert manifest["executor"]["kind"] == "ray" and manifest["executor"]["resources"]["CPU"] == 2.0
    assert manifest["models"]["sft"]["train"]["reused"] is False
    assert json.loads((local / "manifest.json").read_text())["executor"]["kind"] == "local"


def test_two_seed_sweep_on_ray_equals_local(cluster, tiny_cache, tmp_path, monkeypatch):
    from harness.executors.ray_cluster import RayExecutor

    local = compare(tmp_path, "local", "local", "--methods", "sft", "--seeds", "0,1")
    calls: list[list[tuple[str, str]]] = []
    ray_run = RayExecutor.run

    def recording_run(self, jobs, log_dir=None, on_done=None):
        calls.append([(j.unit.name, j.log_dir.parent.parent.name) for j in jobs])
        return ray_run(self, jobs, log_dir, on_done)

    monkeypatch.setattr(RayExecutor, "run", recording_run)
    from harness.common.progress import DriverBars

    events = []
    driver_apply = DriverBars.apply
    monkeypatch.setattr(DriverBars, "apply", lambda self, evs: (events.extend(evs), driver_apply(self, evs))[1])
    on_ray = compare(tmp_path, "ray", "ray", "--methods", "sft", "--seeds", "0,1")
    assert rows(on_ray) == rows(local)
    assert {0, 1} <= {r["seed"] for r in rows(on_ray)}  # per-seed rows, beside the mean over seeds
    # Both seeds' training went out in one call (side by side on the 2 CPUs), and their evaluations in the
    # next, where the base model's evaluation (the same in both cells) is one unit, not two.
    train, evaluate = calls
    assert sorted(name for name, _ in train) == ["train/sft", "train/sft"]
    assert len({cell for _, cell in train}) == 2
    assert sorted(name for name, _ in evaluate) == sorted(
        [f"eval/base/{t}" for t in ("synthetic_id", "format_probe")] +
        [f"eval/sft/{t}" for t in ("synthetic_id", "format_probe") for _ in (0, 1)])
    cells = sorted((on_ray / "cells").iterdir())
    second = json.loads((cells[1] / "manifest.json").read_text())["models"]["base"]["eval"]
    assert second["synthetic_id"]["shared_from"] == str(cells[0])  # computed once, stored in both cells
    # The workers' own bars reached the driver's display: each evaluation counted its 6 items there.
    counted = {}
    for e in events:
        counted[e.description] = counted.get(e.description, 0) + e.advance
    assert counted.get("eval sft/synthetic_id") == 12 and counted.get("eval base/format_probe") == 6, counted


def test_ray_checks_visibility_and_capacity_before_anything_starts(cluster, tmp_path):
    """A path a node cannot see, and a unit no node can hold, are one-line errors before any unit runs (a unit
    needing a GPU on this CPU-only cluster would otherwise wait forever: a silent hang)."""
    from harness.common.units import Resources, Unit
    from harness.config import ConfigError, ExecutorConfig
    from harness.executors import Job, build_executor

    ex = build_executor(ExecutorConfig(kind="ray"))
    ex.check_visible([tmp_path])  # seen
    with pytest.raises(ConfigError, match=f"{tmp_path / 'elsewhere'} is not visible from Ray node"):
        ex.check_visible([tmp_path, tmp_path / "elsewhere"])
    job = Job(Unit("eval", "eval/base/gsm8k", "fp", Resources(gpus=1)), os.getpid)
    with pytest.raises(ConfigError, match="unit eval/base/gsm8k needs 1 CPUs and 1 GPUs, more than any node"):
        ex.run([job])
    assert ex.describe()["resources"]["CPU"] == 2.0


def test_grouped_jobs_run_on_engine_actors(cluster, tmp_path):
    """Jobs of one group run in turn on one long-lived actor process (at most ``executor.engine_actors``); the
    actor is ended when its group is done; an actor that does not start in time fails its unit's attempts with one
    line naming the unit (no silent wait), and the other units finish."""
    from harness.common.units import Resources, Unit
    from harness.config import ExecutorConfig
    from harness.executors import Job, build_executor

    def jobs(group: str, n: int) -> list[Job]:
        return [Job(Unit("eval", f"eval/{group}/t{i}", f"{group}{i}", Resources(cpus=1)), os.getpid, (), tmp_path,
                    group=group) for i in range(n)]

    ex = build_executor(ExecutorConfig(kind="ray", engine_actors=1))
    out = ex.run(jobs("a", 3) + jobs("b", 2))
    pids = [o.value for o in out]
    assert len(set(pids[:3])) == 1 and len(set(pids[3:])) == 1  # one process per group, serving all its units
    assert pids[0] != pids[3] and pids[0] != os.getpid()  # group a's actor ended before group b's started
    assert not psutil.pid_exists(pids[0]) or psutil.Process(pids[0]).status() == psutil.STATUS_ZOMBIE
    assert ex.engine_slots(Resources(cpus=1)) == 1 and build_executor(ExecutorConfig(kind="ray")).engine_slots(
        Resources(cpus=1)) == 2  # as many as the cluster holds, capped by executor.engine_actors

    slow = build_executor(ExecutorConfig(kind="ray", engine_actors=1, actor_start_timeout_s=0.001, max_retries=1))
    failed = slow.run(jobs("c", 1))[0]
    assert failed.attempts == 2 and failed.error.startswith("ActorStartTimeout: engine actor engine:c#")
    assert "for unit eval/c/t0 did not start within 0.001 s" in failed.error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval__c__t0.attempt-1.log", "eval__c__t0.attempt-2.log"]
