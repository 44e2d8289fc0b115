"""Critique data given with the pool (x, y', c from a dataset) and the cft_star method trained on it (the paper's
CFT*), apart from the run's own probe and teacher critiques."""
from __future__ import annotations

import json

import pytest

from harness.distill.methods import build_dataset, stages_needed
from harness.distill.pools import PoolError, PoolConfig, load_pool_spec
from harness.config import ConfigError, load_config
from harness.stages.plan import config_identity, plan_run


@pytest.fixture
def cft_pool(tmp_path):
    path = tmp_path / "cft.jsonl"
    rows = [{"q": f"What is {i} + {i}?", "sol": f"{i} + {i} = \\boxed{{{2 * i}}}", "draft": f"It is {2 * i + 1}.",
             "review": f"The sum is {2 * i}, not {2 * i + 1}.\nConclusion: wrong"} for i in range(6)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_given_answer_and_critique_become_cft_star_examples(cft_pool):
    spec = PoolConfig(source=str(cft_pool), n=6, question_field="q", solution_field="sol",
                    student_answer_field="draft", critique_field="review")
    items, _ = load_pool_spec(spec)
    assert all(it.probe is None and it.critique is None for it in items)  # not the run's own probe/critique
    ex = build_dataset("cft_star", items)
    assert len(ex) == 6 and stages_needed(["cft_star"]) == []  # no probe, no teacher
    by_q = {e["prompt"][-1]["content"]: e["completion"][0]["content"] for e in ex}
    item = next(it for it in items if it.question == "What is 3 + 3?")
    assert by_q[next(k for k in by_q if "What is 3 + 3?" in k and "It is 7." in k)] == item.meta.given.critique
    with pytest.raises(PoolError, match="both pool.student_answer_field and pool.critique_field"):
        load_pool_spec(PoolConfig(source=str(cft_pool), n=6, question_field="q", solution_field="sol",
                                critique_field="review"))
    with pytest.raises(PoolError, match="not a column"):
        load_pool_spec(PoolConfig(source=str(cft_pool), n=6, question_field="q", solution_field="sol",
                                student_answer_field="draft", critique_field="nope"))


def test_plan_refuses_cft_star_without_given_fields_and_run_ids_stay(cft_pool):
    over = [f"pool.source={cft_pool}", "pool.question_field=q", "pool.solution_field=sol", "pool.n=6",
            "methods=[sft,cft_star]", "eval.tasks=[synthetic_id]", "eval.limit=2"]
    with pytest.raises(ConfigError, match="pool.student_answer_field is not set"):
        plan_run(load_config(overrides=over), run_id="x")
    plan = plan_run(load_config(overrides=[*over, "pool.student_answer_field=draft", "pool.critique_field=review"]),
                    run_id="x")
    assert plan.methods == ("sft", "cft_star") and plan.stages == ()
    ident = config_identity(load_config())  # unset given fields leave every run id as it was
    assert "critique_field" not in ident["pool"] and "student_answer_field" not in ident["pool"]
