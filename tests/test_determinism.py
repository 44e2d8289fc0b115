"""Determinism (issue 10, item 3): the same config and seed give a byte-identical results.json on CPU in two
processes with fresh caches and run folders, and across a torch thread-count change (OMP_NUM_THREADS=1 vs 2).
The manifests differ only in what describes the occasion (when, where, how long), never in what was computed:
model identities, fingerprints, training metrics, data hashes and cache hit counts are equal.

What can legitimately vary, and why it does not here: the hf engine pins CPU models under 50M parameters to one
thread (harness/engines/hf.py), so evaluation of such a model does not depend on OMP_NUM_THREADS; training uses
torch's default thread count, and a tiny model's kernels give the same floats at 1 and 2 threads. A larger model
trained or evaluated on several threads may differ in the last bits of its sums (another reduction order), which
can flip a greedy token: the README says so, and the CI gate's tolerance covers it.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def compare(student: Path, out: Path, cache: Path, threads: int, keep: Path) -> Path:
    """One compare in its own process; its run folder is moved to ``keep`` (so runs can share an --output-dir)."""
    env = {**os.environ, "HARNESS_CACHE_DIR": str(cache), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    res = subprocess.run([sys.executable, "-m", "harness.cli", "compare", "--preset", "smoke", "--student", str(student),
                          "--methods", "sft,cgd", "--tasks", "synthetic_id,format_probe,humaneval", "--limit", "6",
                          "--set", "pool.n=32", "--set", "train.per_device_batch_size=4", "--set", "train.max_steps=6",
                          "--set", "train.max_length=2048", "--set", "probe.max_new_tokens=16",
                          "--set", 'eval.max_new_tokens={"*": 24}', "--output-dir", str(out), "--run-id", "d"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    (out / "d").rename(keep)
    return keep


#: Manifest fields that describe the occasion, not the result: wall-clock times and timestamps.
OCCASION = {"created", "timings_seconds", "seconds", "train_runtime", "train_samples_per_second",
            "train_steps_per_second", "runtime_s", "served_by"}


def what_was_computed(manifest: dict, tmp: Path) -> dict:
    """The manifest without timings, with the run and cache folders (chosen differently on purpose) as <dir>."""
    folder = re.compile(re.escape(str(tmp)) + r"/(out/d|(cache-)?[abc])\b")

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in OCCASION}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return folder.sub("<dir>", x) if isinstance(x, str) else x

    return strip(manifest)


def test_same_config_and_seed_give_byte_identical_results(random_chat_model, tmp_path):
    out = tmp_path / "out"
    a = compare(random_chat_model, out, tmp_path / "cache-a", threads=2, keep=tmp_path / "a")
    b = compare(random_chat_model, out, tmp_path / "cache-b", threads=2, keep=tmp_path / "b")
    c = compare(random_chat_model, out, tmp_path / "cache-c", threads=1, keep=tmp_path / "c")
    ra = (a / "results.json").read_bytes()
    assert ra == (b / "results.json").read_bytes(), "two processes, same config and seed"
    assert ra == (c / "results.json").read_bytes(), "1 vs 2 torch threads"
    text = ra.decode()
    assert str(tmp_path) not in text and not re.search(r"\d{4}-\d\d-\d\dT\d\d:", text)  # no paths, no timestamps
    ma, mb, mc = (what_was_computed(json.loads((r / "manifest.json").read_text()), tmp_path) for r in (a, b, c))
    assert ma == mb, [k for k in ma if ma[k] != mb.get(k)]
    assert ma == mc, [k for k in ma if ma[k] != mc.get(k)]
    # The trained adapters are byte-equal folders, hence one identity per method across processes.
    for m in ("sft", "cgd"):
        for f in ("adapter_model.safetensors", "adapter_config.json"):
            assert (a / "models" / m / "final" / f).read_bytes() == (b / "models" / m / "final" / f).read_bytes(), \
                (m, f)
