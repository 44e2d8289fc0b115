"""Kill and resume (issue 10, item 1): SIGKILL a real `harness compare` process at several points, found by
polling the run folder, the call cache and the process tree (no test hook in the harness), then run it again.

One chain of runs on one run folder and one cache, each killed later than the one before:
  1. during the probe (the first chunk of student calls is committed to the cache, the stage is not finished),
  2. during training (the second method has written a Trainer checkpoint but no final/),
  3. during evaluation (the base model's first task is stored, its second is being generated),
  4. during scoring (a HumanEval sandbox process of the base model is running),
  5. to the end.
Last, files damaged after the fact (a torn samples file, sidecars that are not JSON) are made again through the
cache. After every kill the store must be sound (SQLite integrity_check, every samples file readable by
harness.common.artifacts.read_samples, every JSON file parseable) and no cache entry written by an earlier run may be
written again (its `created` time is unchanged: a finished model call is never made twice). The final
results.json rows and per-sample responses must equal an uninterrupted run's (same config and seed, its own
cache), and the final manifest must say that nothing finished before was redone.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.common.artifacts import read_samples

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
RUN_ID = "kr"


def compare_args(student: Path, out: Path) -> list[str]:
    # pool.n=80 > the cache's 64-call chunk, so the probe commits one chunk before it finishes; save_steps=1 so
    # the second method's training leaves checkpoints to resume from.
    return ["compare", "--preset", "smoke", "--student", str(student), "--methods", "sft,cgd",
            "--tasks", "synthetic_id,humaneval", "--limit", "4",
            "--set", "pool.n=80", "--set", "train.max_steps=4", "--set", "train.per_device_batch_size=4",
            "--set", "train.save_steps=1", "--set", "train.max_length=2048", "--set", "probe.max_new_tokens=16",
            "--set", 'eval.max_new_tokens={"*": 16}', "--set", "eval.engine.batch_size=16",
            "--output-dir", str(out), "--run-id", RUN_ID]


def env_for(cache: Path) -> dict[str, str]:
    return {**os.environ, "HARNESS_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1"}


def run_to_end(args: list[str], cache: Path) -> str:
    res = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=ROOT,
                         env=env_for(cache), timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stderr


def cache_rows(cache: Path) -> dict[str, float]:
    db = cache / "calls.sqlite"
    if not db.exists():
        return {}
    con = sqlite3.connect(str(db), timeout=30)
    try:
        return dict(con.execute("SELECT key, created FROM calls_v2"))
    except sqlite3.OperationalError:  # the table is not there yet
        return {}
    finally:
        con.close()


def run_until_killed(args: list[str], cache: Path, when, what: str, timeout: float = 600) -> str:
    """Start `harness compare`, SIGKILL its whole process group (and any sandbox child that left it) as soon as
    ``when(proc)`` is true; return what it printed. Fails when the run ends before the point was seen."""
    err = cache.parent / f"stderr-{what}.txt"
    with open(err, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *args], stdout=fh, stderr=subprocess.STDOUT,
                                cwd=ROOT, env=env_for(cache), start_new_session=True)
    ps = psutil.Process(proc.pid)
    deadline = time.monotonic() + timeout
    try:
        while True:
            assert proc.poll() is None, f"the run ended before the kill point ({what}):\n{err.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"kill point ({what}) not reached in {timeout}s"
            if when(ps):
                break
            time.sleep(0.01)
    finally:
        try:
            kids = ps.children(recursive=True)
        except psutil.Error:
            kids = []
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for k in kids:  # sandbox processes run in their own session: end the ones this run started
            try:
                k.kill()
            except psutil.Error:
                pass
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, err.read_text()[-3000:])
    return err.read_text()


def assert_store_sound(run: Path, cache: Path) -> None:
    con = sqlite3.connect(str(cache / "calls.sqlite"), timeout=30)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    for f in run.rglob("*.jsonl"):
        if f.name.startswith("."):
            continue  # a temp file of an interrupted atomic write: never read
        if f.parent.parent.name == "samples":
            read_samples(f)  # raises SchemaMismatch on a torn or invalid record
        else:
            for line in f.read_text(encoding="utf-8").split("\n"):
                if line.strip():
                    json.loads(line)
    for f in run.rglob("*.json"):
        if not f.name.startswith("."):
            json.loads(f.read_text(encoding="utf-8"))


def assert_no_call_redone(before: dict[str, float], cache: Path) -> dict[str, float]:
    after = cache_rows(cache)
    rewritten = [k for k, t in before.items() if after.get(k) != t]
    assert not rewritten, f"{len(rewritten)} cached model calls were made again"
    return after


def rows(run: Path) -> list[tuple]:
    res = json.loads((run / "results.json").read_text())
    return sorted((r["model"], r["task"], r["metric"], r["value"], r["n"]) for r in res["rows"])


def samples(run: Path) -> dict[str, list[tuple]]:
    out = {}
    for f in sorted((run / "samples").glob("*/*.jsonl")):
        out[f"{f.parent.name}/{f.stem}"] = [(r.id, r.response, r.score, r.extracted) for r in read_samples(f)]
    return out


def sandbox_running(ps: psutil.Process) -> bool:
    for k in ps.children(recursive=True):
        try:
            cmd = k.cmdline()
        except psutil.Error:
            continue
        if "-I" in cmd and "-B" in cmd:  # tasks/scorers/code.py runs each program as `python -I -B -c ...`
            return True
    return False


def test_killed_runs_resume_to_the_uninterrupted_result(random_chat_model, tmp_path):
    ref_out, out = tmp_path / "ref", tmp_path / "runs"
    ref_cache, cache = tmp_path / "ref-cache", tmp_path / "cache"
    t0 = time.monotonic()
    run_to_end(compare_args(random_chat_model, ref_out), ref_cache)
    t_ref = time.monotonic() - t0
    run = out / RUN_ID
    args = compare_args(random_chat_model, out)

    # 1. During the probe: a chunk of student answers is committed, the stage is unfinished.
    run_until_killed(args, cache, lambda ps: len(cache_rows(cache)) > 0, "probe")
    assert_store_sound(run, cache)
    seen = cache_rows(cache)
    assert seen and not (run / "data" / "items.meta.json").exists(), "killed too late: the probe had finished"

    # 2. During training: sft is final, cgd has a checkpoint and no final/.
    cgd = run / "models" / "cgd"
    run_until_killed(args, cache, lambda ps: any((cgd / "checkpoints").glob("checkpoint-*/trainer_state.json")),
                     "train")
    assert_store_sound(run, cache)
    seen = assert_no_call_redone(seen, cache)
    sft_final = run / "models" / "sft" / "final"
    assert (sft_final / "train_metrics.json").exists() and not (cgd / "final").exists()
    sft_mtime = (sft_final / "train_metrics.json").stat().st_mtime

    # 3. During evaluation: base/synthetic_id is stored, base/humaneval is not.
    # The sidecar is the pair's done record (written after the samples file): a kill between the two rightly
    # evaluates the pair again, so wait for it.
    first = run / "samples" / "base" / "synthetic_id.meta.json"
    log = run_until_killed(args, cache, lambda ps: first.exists(), "eval")
    assert "train sft" not in log, "a finished training run was trained again"
    assert_store_sound(run, cache)
    seen = assert_no_call_redone(seen, cache)
    assert not (run / "samples" / "base" / "humaneval.jsonl").exists()
    cgd_metrics = json.loads((cgd / "final" / "train_metrics.json").read_text())
    assert cgd_metrics["resumed_from"], "cgd training started over instead of resuming from its checkpoint"
    assert (sft_final / "train_metrics.json").stat().st_mtime == sft_mtime

    # 4. During scoring: base/humaneval's responses are generated (and cached), its programs are running.
    log = run_until_killed(args, cache, sandbox_running, "score")
    assert "eval base/synthetic_id" not in log, "a stored (model, task) pair was evaluated again"
    assert_store_sound(run, cache)
    seen = assert_no_call_redone(seen, cache)
    assert not (run / "samples" / "base" / "humaneval.jsonl").exists()

    # 5. To the end.
    t0 = time.monotonic()
    run_to_end(args, cache)
    t_last = time.monotonic() - t0
    assert_store_sound(run, cache)
    assert_no_call_redone(seen, cache)

    assert rows(run) == rows(ref_out / RUN_ID)
    assert samples(run) == samples(ref_out / RUN_ID)
    manifest = json.loads((run / "manifest.json").read_text())
    for stage, rec in manifest["training_data"].items():
        assert not rec.get("computed"), f"training-data stage {stage} was computed again"
    for m in ("sft", "cgd"):
        assert manifest["models"][m]["train"]["reused"] is True, m
    base = manifest["models"]["base"]["eval"]
    assert base["synthetic_id"]["reused"] == "samples"
    assert base["humaneval"]["reused"] is None  # scored in this run ...
    cache_use = manifest["models"]["base"]
    assert cache_use["cache_misses"] == 0 and cache_use["cache_hits"] == 4  # ... from responses made before the kill

    # 6. Files damaged after the fact (not by a kill: writes are atomic) are made again, never trusted: a torn
    # samples file, a fingerprint sidecar and the training-data sidecar that are not JSON.
    samples_file = run / "samples" / "base" / "synthetic_id.jsonl"
    samples_file.write_bytes(samples_file.read_bytes()[:150])
    (run / "models" / "sft" / "fingerprint.json").write_text("{torn")
    (run / "data" / "items.meta.json").write_text('{"stages": {')
    run_to_end(args, cache)
    assert_store_sound(run, cache)
    assert rows(run) == rows(ref_out / RUN_ID) and samples(run) == samples(ref_out / RUN_ID)
    manifest = json.loads((run / "manifest.json").read_text())
    base = manifest["models"]["base"]["eval"]
    assert base["synthetic_id"]["reused"] is None and base["humaneval"]["reused"] == "samples"
    assert manifest["models"]["base"]["cache_misses"] == 0 and manifest["training_data"]["probe"]["cache_misses"] == 0
    print(f"\nuninterrupted run {t_ref:.1f}s; final resume {t_last:.1f}s")


def test_a_checkpoint_torn_by_a_kill_is_not_resumed_from(random_chat_model, tmp_path):
    """A SIGKILL while the Trainer writes checkpoint-N leaves the folder without trainer_state.json (written
    last); the resume must fall back to the last complete checkpoint (or start over), not fail."""
    import shutil

    from harness.distill.train_config import TrainConfig
    from harness.distill.trainer import train_student

    rows = [{"prompt": [{"role": "user", "content": f"q{i}"}],
             "completion": [{"role": "assistant", "content": f"a{i}. Step 1"}]} for i in range(16)]
    cfg = TrainConfig(max_steps=4, per_device_batch_size=4, save_steps=1, keep_checkpoints=True, max_length=512,
                      seed=0)
    out = tmp_path / "m"
    train_student(random_chat_model, rows, out, cfg, progress=False)
    want = (out / "final" / "adapter_model.safetensors").read_bytes()
    shutil.rmtree(out / "final")
    newest = max((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    (newest / "trainer_state.json").unlink()  # killed before the Trainer wrote its state
    res = train_student(random_chat_model, rows, out, cfg, progress=False)
    assert res.metrics["steps"] == 4
    assert (out / "final" / "adapter_model.safetensors").read_bytes() == want
