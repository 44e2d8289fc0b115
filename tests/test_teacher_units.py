"""Teacher-data stages as shard units (harness/stages/teacher_units.py), with an LLM teacher over a real engine (the
hf backend on conftest's random 2-layer Qwen2, as student and teacher): a run interrupted in the middle of a stage
resumes computing only the missing shards, to the items an uninterrupted run makes; on a local Ray cluster (2 CPUs)
the shards give items.jsonl byte-equal to the local executor's, the workers' model calls reach the driver's cache,
and the spending cap stops a run within one wave (2 shards at once on Ray, 1 in this process)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.config import ExecutorConfig, load_config
from harness.executors.local import LocalExecutor
from harness.models import student_of
from harness.stages.plan import plan_run
from harness.stages.training_data import BudgetExceeded, build_items
from harness.store import CallCache


def config(out: Path, model: Path, **teacher):
    return load_config(None, "smoke", None, {
        "methods": ["cgd"], "output_dir": str(out), "student": {"model": str(model)}, "pool": {"n": 8},
        "teacher": {"kind": "llm", "model": str(model), "engine": {"backend": "hf", "batch_size": 8, "options": {}},
                    "max_new_tokens": 24, "temperature": 1.0, "batch_size": 2, **teacher},
        # sampled (seeded): greedy decoding of a random model is only newlines
        "probe": {"max_new_tokens": 24, "temperature": 1.0}, "eval": {"tasks": ["synthetic_id"]}})


def build(cfg, executor, cache_dir: Path):
    plan = plan_run(cfg)
    cache = CallCache(cache_dir / "calls.sqlite")
    try:
        return build_items(plan, student_of(cfg), cache, executor), plan.run_dir
    finally:
        cache.close()


def summaries(built) -> dict:
    return {s: {k: v for k, v in rec.record().items() if k != "seconds"} for s, rec in built.stages.items()}


class Interrupted(Exception):
    pass


class Recording(LocalExecutor):
    """The local executor, recording each unit it commits; interrupted (as a kill would) after ``stop_after``."""

    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__(ExecutorConfig())
        self.ran: list[str] = []
        self.stop_after = stop_after

    def run(self, jobs, log_dir=None, on_done=None):
        def done(i, outcome):
            on_done(i, outcome)
            self.ran.append(jobs[i].unit.name)
            if len(self.ran) == self.stop_after:
                raise Interrupted

        return super().run(jobs, log_dir, done)


def test_interrupted_stage_resumes_with_only_the_missing_shards(random_chat_model, tmp_path):
    whole, whole_rd = build(config(tmp_path / "whole", random_chat_model), Recording(), tmp_path / "cache-whole")

    cfg = config(tmp_path / "runs", random_chat_model)
    first = Recording(stop_after=3)  # the probe (one unit in this process), then 2 of the 4 critique shards
    with pytest.raises(Interrupted):
        build(cfg, first, tmp_path / "cache")
    assert first.ran == ["teacher/probe/0", "teacher/critique/0", "teacher/critique/1"]
    rd = plan_run(cfg).run_dir
    meta = json.loads(rd.items_meta.read_text())
    assert "critique" not in meta["stages"] and "critique" in meta["partial"]  # done record: probe whole, critique part
    assert sum(json.loads(x)["critique"] is not None for x in rd.items.read_text().splitlines()) == 4

    again = Recording()
    resumed, rd = build(cfg, again, tmp_path / "cache")
    # only the 2 shards of the 4 items without a critique, then the refine stage; no probe unit
    assert again.ran == ["teacher/critique/0", "teacher/critique/1", *(f"teacher/refine/{k}" for k in range(4))]
    assert (resumed.stages["probe"].reused, resumed.stages["probe"].computed) == (8, 0)
    assert (resumed.stages["critique"].reused, resumed.stages["critique"].computed) == (4, 4)
    assert resumed.stages["critique"].this_run.cache_hits == 0  # the kept critiques were not asked again
    assert rd.items.read_bytes() == whole_rd.items.read_bytes()  # the same items as the uninterrupted run
    assert "partial" not in json.loads(rd.items_meta.read_text())
    assert summaries(whole)["refine"] == summaries(resumed)["refine"]


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield ray.cluster_resources()
    ray.shutdown()


@pytest.mark.slow
def test_ray_shards_equal_local_and_the_cap_stops_within_one_wave(cluster, random_chat_model, tmp_path):
    from harness.executors import build_executor

    local, local_rd = build(config(tmp_path / "local", random_chat_model), LocalExecutor(ExecutorConfig()),
                            tmp_path / "cache-local")
    on_ray = build_executor(ExecutorConfig(kind="ray"))
    calls: list[list[str]] = []
    ray_run = on_ray.run
    on_ray.run = lambda jobs, log_dir=None, on_done=None: (calls.append([j.unit.name for j in jobs]),
                                                           ray_run(jobs, log_dir, on_done))[1]
    remote, ray_rd = build(config(tmp_path / "ray", random_chat_model), on_ray, tmp_path / "cache-ray")
    assert ray_rd.items.read_bytes() == local_rd.items.read_bytes()
    # uncapped, each stage is one executor call (an engine teacher's actors load once per stage)
    assert [c for c in calls if c[0].startswith("teacher/critique")] == [[f"teacher/critique/{k}" for k in range(4)]]
    assert summaries(remote) == summaries(local)
    assert remote.stages["critique"].this_run.requests >= 8 and remote.stages["probe"].cache_misses == 8

    # the workers never wrote SQLite: the driver committed their calls, so a re-run asks the model nothing
    ray_rd.items.unlink()
    again, _ = build(config(tmp_path / "ray", random_chat_model), on_ray, tmp_path / "cache-ray")
    assert again.stages["probe"].cache_misses == 0
    for s in ("critique", "refine"):
        assert again.stages[s].this_run.requests == again.stages[s].this_run.cache_hits > 0

    # the cap is checked between waves: 2 shards of 2 items run at once on 2 CPUs, 1 shard in this process
    for executor, out, wave in ((on_ray, "ray-capped", 2), (LocalExecutor(ExecutorConfig()), "local-capped", 1)):
        cfg = config(tmp_path / out, random_chat_model, max_tokens=1)
        with pytest.raises(BudgetExceeded, match="higher cap"):
            build(cfg, executor, tmp_path / "cache-ray")
        items = [json.loads(x) for x in plan_run(cfg).run_dir.items.read_text().splitlines()]
        assert sum(it["critique"] is not None for it in items) == wave * 2, out
