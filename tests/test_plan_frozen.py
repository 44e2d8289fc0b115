"""The plan is fixed once made: nothing can be assigned into it, it pickles (the ray executor ships it), and the
held-out task pool_validation it holds from the start is exactly the validation split build_items trains without."""
from __future__ import annotations

import dataclasses
import pickle

import pytest

from harness.common.frozen import FrozenMap
from harness.common.units import Student
from harness.config import load_config
from harness.stages.plan import plan_run
from harness.stages.training_data import build_items
from harness.store import CallCache


def _plan(tmp_path, *overrides):
    # math_train is a real pool, decontaminated against math500's prompts; sft needs no model call to build items
    cfg = load_config(None, "smoke", overrides=["methods=[sft]", "pool.source=math_train", "pool.n=40",
                                                "pool.validation_n=8", "eval.tasks=[math500]", "eval.limit=5",
                                                f"output_dir={tmp_path}", *overrides])
    return plan_run(cfg, run_id="frozen")


def test_plan_cannot_be_changed(tmp_path):
    plan = _plan(tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.tasks = ("math500", "gsm8k")
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.held_out = None
    with pytest.raises(TypeError):
        plan.docs["pool_validation"] = ()
    with pytest.raises(TypeError):
        plan.task_objs["pool_validation"] = plan.task("pool_validation")
    with pytest.raises(AttributeError):
        plan.tasks.append("gsm8k")
    with pytest.raises(TypeError):
        plan.docs["math500"] += ()  # the docs are tuples in a read-only map
    # a variant is a new plan, as frozen as the first; the first is unchanged
    other = dataclasses.replace(plan, tasks=["math500"], skipped={"gsm8k": "no data"})
    assert other.tasks == ("math500",) and isinstance(other.skipped, FrozenMap)
    with pytest.raises(TypeError):
        other.skipped["x"] = "y"
    assert dict(plan.skipped) == {}


def test_held_out_task_is_the_split_build_items_trains_without(tmp_path):
    plan = _plan(tmp_path)
    # known at planning, loaded on first use (a dry run never loads a pool)
    assert plan.eval_tasks == ("math500", "pool_validation") and plan.tasks == ("math500",)
    assert plan.held_out.n == 8 and not plan.pool.loaded
    cache = CallCache(tmp_path / "calls.sqlite")
    try:
        data = build_items(plan, Student("tiny", "student-id"), cache)
    finally:
        cache.close()
    assert plan.pool.loaded
    docs = plan.task_docs("pool_validation")
    assert [d.id for d in docs] == [it.id for it in data.validation] and len(docs) == 8
    assert [d.gold for d in docs] == [it.gold_answer for it in data.validation]
    trained = {it.id for it in data.items}
    assert len(trained) == 32 and not trained & {d.id for d in docs}  # no held-out question is trained on
    assert plan.task("pool_validation") is plan.held_out.task
    # building items again (a resume in the same process) sees the same split, and the plan's items stay as loaded
    assert all(it.probe is None and not it.meta.calls for it in plan.pool.split().train)


def test_plan_pickles_with_its_held_out_task(tmp_path):
    plan = _plan(tmp_path)
    plan.pool.split()
    back = pickle.loads(pickle.dumps(plan))
    assert back.eval_tasks == plan.eval_tasks
    assert [d.id for d in back.task_docs("pool_validation")] == [d.id for d in plan.task_docs("pool_validation")]
    assert not back.pool.loaded  # the held-out docs travel, the training pool stays with the driver
    assert [it.id for it in back.pool.split().train] == [it.id for it in plan.pool.split().train]  # same if reloaded
    assert back.docs == plan.docs and isinstance(back.docs, FrozenMap)
    with pytest.raises(TypeError):
        back.partial["math500"] = 1


def test_no_held_out_without_validation_split_or_training(tmp_path):
    assert _plan(tmp_path, "pool.validation_n=0").held_out is None
    evaluating = plan_run(load_config(None, "smoke", overrides=["pool.validation_n=8", f"output_dir={tmp_path}"]),
                          run_id="e", train=False)
    assert evaluating.held_out is None and evaluating.pool is None and evaluating.eval_tasks == evaluating.tasks


def test_dry_run_counts_the_held_out_task_without_loading_the_pool(tmp_path):
    from harness.stages.plan import estimate_cost

    plan, without = _plan(tmp_path), _plan(tmp_path, "pool.validation_n=0")
    assert plan.eval_counts == {"math500": 5, "pool_validation": 8} and without.eval_counts == {"math500": 5}
    more = estimate_cost(plan)["eval_tokens_max"] - estimate_cost(without)["eval_tokens_max"]
    assert more > 0 and not plan.pool.loaded  # 8 held-out items x 2 models counted; the pool stays unread
