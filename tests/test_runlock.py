"""One driver per run folder: a second `harness compare` on a folder another process holds exits 2 with one line
naming the holder, and leaves the folder as it was; the lock dies with its holder (no stale lock)."""
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.runlock import RunFolderBusy, run_lock

ROOT = Path(__file__).resolve().parents[1]
HOLD = ("import sys, time; from pathlib import Path; from harness.runlock import run_lock\n"
        "with run_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(120)\n")


def hold(folder: Path) -> subprocess.Popen:
    """Another real process holding the folder's lock, as a running `harness compare` does."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_driver_exits_2_naming_the_holder(tmp_path):
    folder = tmp_path / "runs" / "busy"
    holder = hold(folder)
    try:
        before = sorted(p.name for p in folder.iterdir())
        res = subprocess.run([sys.executable, "-m", "harness.cli", "compare", "--preset", "smoke", "--methods", "sft",
                              "--output-dir", str(tmp_path / "runs"), "--run-id", "busy"],
                             capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert res.returncode == 2, res.stderr
        lines = [x for x in res.stderr.splitlines() if x.strip()]
        errors = [x for x in lines if x.startswith("error:")]
        assert len(errors) == 1 and lines[-1] == errors[0], res.stderr  # the plan table, then one line
        assert f"pid {holder.pid} on {socket.gethostname()}, started 20" in errors[0] and "--run-id" in errors[0]
        assert sorted(p.name for p in folder.iterdir()) == before  # nothing half-written
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_dies_with_its_holder(tmp_path):
    holder = hold(tmp_path)
    with pytest.raises(RunFolderBusy, match=f"pid {holder.pid}"):
        with run_lock(tmp_path):
            pass
    os.kill(holder.pid, signal.SIGKILL)  # no clean-up runs: the kernel drops the lock with the process
    holder.wait()
    with run_lock(tmp_path) as lock:
        assert f'"pid": {os.getpid()}' in lock.read_text()


FORK = ("import os, sys, time; from pathlib import Path; from harness.runlock import run_lock\n"
        "with run_lock(Path(sys.argv[1])):\n    child = os.fork()\n"
        "    if child: print(child, flush=True)\n    time.sleep(120)\n")


def test_a_forked_child_does_not_keep_the_folder_busy(tmp_path):
    """A child forked while the driver holds the lock (a sandboxed program, a grader) outlives the SIGKILLed
    driver; it holds a copy of the lock's descriptor but not the lock (with flock it would)."""
    driver = subprocess.Popen([sys.executable, "-c", FORK, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    child = int(driver.stdout.readline())
    try:
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        os.kill(child, 0)  # still alive
        with run_lock(tmp_path):
            pass
    finally:
        os.kill(child, signal.SIGKILL)
