"""--eval-seeds: sampled tasks drawn once per sampling seed, with per-seed rows and mean ± sd rows, and no new
teacher call or training step (the teacher's cache keys, the probe and training never read eval.seed)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import sweep
from harness.config import ConfigError, load_config
from harness.models import teacher_params
from harness.stages.plan import generation_params, make_task
from harness.stages.training_data import probe_params

ROOT = Path(__file__).resolve().parents[1]
SAMPLED = "eval.task_options.synthetic_ood={samples: 4, temperature: 0.8}"


def test_eval_seed_cells_touch_sampled_tasks_only():
    cfg = load_config(None, "smoke", [SAMPLED], extra={"eval_seeds": "0,1"})
    cells = sweep.expand(cfg)
    assert [c.seed for c in cells] == [0, 1] and cells[0].group == cells[1].group
    a, b = cells[0].config, cells[1].config
    assert (a.eval.seed, b.eval.seed) == (0, 1) and a.train.seed == b.train.seed and a.seed == b.seed
    assert teacher_params(a) == teacher_params(b) and probe_params(a) == probe_params(b)
    ood, idt = make_task(a, "synthetic_ood"), make_task(a, "synthetic_id")
    assert generation_params(a, ood).seed != generation_params(b, ood).seed  # sampled: drawn again
    assert generation_params(a, idt) == generation_params(b, idt)  # greedy: shared
    with pytest.raises(ConfigError, match="not both"):
        sweep.expand(load_config(None, "smoke", extra={"eval_seeds": "0,1", "seeds": "0,1"}))


def test_eval_seeds_rows_without_teacher_call_or_training(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "harness.cli", "compare", "--preset", "smoke", "--methods", "cft",
           "--tasks", "synthetic_id,synthetic_ood", "--limit", "6", "--set", "pool.n=24", "--set", SAMPLED,
           "--eval-seeds", "0,1", "--output-dir", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    (top,) = [p for p in out.iterdir() if p.is_dir()]
    res = json.loads((top / "results.json").read_text())
    rows = [x for x in res["rows"] if x["task"] == "synthetic_ood" and x["model"] == "cft"
            and x["metric"] == res["primary_metrics"]["synthetic_ood"]]
    assert sorted(x["seed"] for x in rows if x["seed"] is not None) == [0, 1]
    agg = [x for x in rows if x["seed"] is None]
    assert len(agg) == 1 and agg[0]["seeds"] == [0, 1] and agg[0]["sd"] is not None
    assert res["stats"]["experiment"]["seed_kind"] == "eval"
    # the second cell trained nothing and asked the teacher nothing: every stage and model reused
    cells = sorted((top / "cells").iterdir())
    second = json.loads((cells[1] / "manifest.json").read_text())
    first = json.loads((cells[0] / "manifest.json").read_text())
    for stage, rec in second["training_data"].items():
        if isinstance(rec, dict) and "computed" in rec:
            assert rec["computed"] == 0, stage
            assert rec["fingerprint"] == first["training_data"][stage]["fingerprint"], stage  # same cache keys
    assert all(m["train"]["reused"] for name, m in second["models"].items() if m.get("train"))
    # the sampled task was drawn again; the greedy one was shared
    def responses(cell, task):
        return [json.loads(x)["responses"] if "responses" in json.loads(x) else json.loads(x)["response"]
                for x in (cell / "samples" / "cft" / f"{task}.jsonl").read_text().splitlines()]

    assert responses(cells[0], "synthetic_ood") != responses(cells[1], "synthetic_ood")
    assert responses(cells[0], "synthetic_id") == responses(cells[1], "synthetic_id")
