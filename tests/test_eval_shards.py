"""Evaluation shards in the driver (harness/stages/eval_shards.py): contiguous ranges, only the vllm engine and
never lm-eval tasks shard, each shard is committed with a done record as it ends, a re-run schedules only the
missing shards, and the merged samples file is in doc order with the shard files gone. No engine is loaded: the
units' outputs are handed to the batch's commit as the executor would (the engines' own equality across shard
counts is tests/test_engine_actors.py's)."""
from __future__ import annotations

from harness.common.artifacts import EngineDescription, read_samples
from harness.common.units import EvalOutput, Outcome
from harness.config import load_config
from harness.stages.eval_shards import shard_count, shard_ranges
from harness.stages.evaluate import ModelToEvaluate, eval_batch, make_record
from harness.stages.plan import config_hash, plan_run
from harness.store import CallCache
from harness.tasks.base import OutputType, Scored


def test_ranges_cover_the_docs_in_order():
    assert shard_ranges(7, 3) == [(0, 3), (3, 5), (5, 7)]
    assert shard_ranges(2, 4) == [(0, 1), (1, 2)]  # never an empty shard
    assert shard_ranges(5, 1) == [(0, 5)]
    vllm = load_config(None, "smoke", extra={"eval": {"shards": "auto", "engine": {"backend": "vllm"}}})
    assert shard_count(vllm, OutputType.GENERATE, 4) == 4 and shard_count(vllm, OutputType.LM_EVAL, 4) == 1
    hf = load_config(None, "smoke", extra={"eval": {"shards": 3}})
    assert shard_count(hf, OutputType.GENERATE, 4) == 1  # the hf engine's batches depend on the task's prompts
    assert vllm.eval.shards == load_config(None, "smoke").eval.shards == "auto"  # the default: 1 locally
    assert config_hash(vllm) == config_hash(load_config(None, "smoke", extra={"eval": {
        "shards": 2, "engine": {"backend": "vllm"}}}))  # shards change where docs are evaluated, not the run


def output(plan, task_name: str, start: int, stop: int) -> EvalOutput:
    task, docs = plan.task(task_name), plan.task_docs(task_name)[start:stop]
    records = [make_record(task, d, Scored(id=d.id, score=0.0), responses=[f"answer {d.id}"]) for d in docs]
    return EvalOutput(records=records, engine=EngineDescription(backend="vllm"), hits=0, misses=len(records),
                      seconds=1.0)


def test_a_rerun_schedules_only_the_missing_shards(tiny_student, tmp_path):
    cfg = load_config(None, "smoke", extra={"output_dir": str(tmp_path), "eval": {
        "shards": 2, "tasks": ["synthetic_id"], "limit": 5, "engine": {"backend": "vllm"}}})
    plan = plan_run(cfg, run_id="r", train=False)
    cache = CallCache(tmp_path / "cache.sqlite")
    models = [ModelToEvaluate("base", tiny_student)]
    first = eval_batch(plan, models, cache)
    assert [j.unit.name for j in first.jobs] == ["eval/base/synthetic_id/1of2", "eval/base/synthetic_id/2of2"]
    assert [j.args[-1] for j in first.jobs] == [(0, 3), (3, 5)]
    first.commit(1, Outcome(first.jobs[1].unit, output(plan, "synthetic_id", 3, 5)))  # 1of2 never ends
    shards = plan.run_dir.samples("base", "synthetic_id").with_suffix(".shards")
    assert sorted(p.name for p in shards.iterdir()) == ["2of2.done.json", "2of2.jsonl"]
    assert not plan.run_dir.samples("base", "synthetic_id").exists()

    again = eval_batch(plan, models, cache)  # the re-run: only the missing shard
    assert [j.unit.name for j in again.jobs] == ["eval/base/synthetic_id/1of2"]
    again.commit(0, Outcome(again.jobs[0].unit, output(plan, "synthetic_id", 0, 3)))
    merged = read_samples(plan.run_dir.samples("base", "synthetic_id"))
    assert [r.id for r in merged] == [d.id for d in plan.task_docs("synthetic_id")]  # doc order
    assert not shards.exists()
    stats = again.finish()
    assert stats["base"].tasks["synthetic_id"].reused is None
    assert eval_batch(plan, models, cache).jobs == []  # the merged samples file is reused
