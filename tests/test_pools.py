"""Training pools beyond the local mirror: JSONL files and hf: datasets (through datasets.load_dataset on local
copies, offline), configurable fields, and decontamination against evaluation sets (real MATH train vs MATH-500)."""
from __future__ import annotations

import json

import pytest

from harness.distill.pools import (Decontaminator, PoolConfig, PoolError, check_source, load_pool_spec, math_train_candidates,
                           normalise, prompt_text)
from harness.config import ConfigError, load_config
from harness.tasks.data import local_path

ROWS = [{"uid": f"q{i}", "question": f"What is {i} plus {i}? Give the sum of the two numbers please.",
         "answer": f"Add them: {i} + {i} = {2 * i}. The answer is \\boxed{{{2 * i}}}.", "final": str(2 * i)}
        for i in range(30)]


@pytest.fixture()
def jsonl(tmp_path):
    p = tmp_path / "pool.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return p


def test_jsonl_pool_fields_and_gold(jsonl):
    items, rep = load_pool_spec(PoolConfig(source=str(jsonl), n=10, seed=1, id_field="uid"))
    assert len(items) == 10 and rep.candidates == 30 and rep.removed == 0
    by_id = {r["uid"]: r for r in ROWS}
    for it in items:
        row = by_id[it.id]
        assert it.question == row["question"] and it.gold_solution == row["answer"]
        assert it.gold_answer == row["final"]  # the solution's last \boxed{}
    # same seed, same sample; answer_field overrides the boxed gold
    again, _ = load_pool_spec(PoolConfig(source=str(jsonl), n=10, seed=1, id_field="uid", answer_field="final"))
    assert [it.id for it in again] == [it.id for it in items]


def test_hf_pool_from_a_local_dataset_folder(jsonl, tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "train.jsonl").write_text(jsonl.read_text())
    items, rep = load_pool_spec(PoolConfig(source=f"hf:{folder}", n=5, seed=0, split="train"))
    assert len(items) == 5 and rep.candidates == 30
    assert all(it.id.startswith(f"hf:{folder}/train/") for it in items)


def test_pool_errors_are_one_line(jsonl, tmp_path):
    with pytest.raises(PoolError, match="pool.question_field='problem' is not a column; its columns are uid"):
        load_pool_spec(PoolConfig(source=str(jsonl), question_field="problem"))
    with pytest.raises(PoolError, match="not found"):
        load_pool_spec(PoolConfig(source=str(tmp_path / "nope.jsonl")))
    with pytest.raises(PoolError, match="could not be loaded.*fix:"):  # offline here: the hub is unreachable
        load_pool_spec(PoolConfig(source="hf:TIGER-Lab/WebInstructSub", n=3))
    with pytest.raises(ValueError, match="unknown pool source"):
        check_source("webinstruct")
    with pytest.raises(ConfigError, match="pool.source"):
        load_config(overrides=["pool.source=webinstruct"])


def test_decontamination_ngram_and_short_exact():
    evals = {"bench": ["Solve: What is 7 plus 7? Give the sum of the two numbers please, and box it.\n\n"
                       "Compute 2+2.", "A long unrelated question about triangles and their areas in the plane."]}
    d = Decontaminator(evals, n=10)
    assert d.match("what is 7 plus 7?  give the SUM of the two numbers please!") == ("bench", "ngram")
    assert d.match("Compute 2 + 2") == ("bench", "exact")  # shorter than n words: contained whole
    assert d.match("What is 9 plus 9? Give the sum of the two numbers please.") is None
    assert normalise("$\\frac{1}{2}$, Done.") == ["frac", "1", "2", "done"]
    assert prompt_text([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]) == "U"


def test_jsonl_pool_decontaminated_walks_on_to_n(jsonl):
    d = Decontaminator({"bench": [ROWS[i]["question"] for i in range(0, 30, 2)]}, n=13)
    items, rep = load_pool_spec(PoolConfig(source=str(jsonl), n=10, seed=0, id_field="uid"), d)
    assert len(items) == 10 and rep.removed > 0 and rep.removed == rep.examined - 10
    assert all(int(it.id[1:]) % 2 == 1 for it in items)
    assert rep.removed_by_task == {"bench": rep.removed} and rep.removed_by_rule == {"ngram": rep.removed}


def test_math_train_against_math500():
    """The MATH train split and MATH-500 (from MATH test) share templated problems: 13-gram overlap finds them."""
    if local_path("math_train", "train.jsonl") is None or local_path("math500", "test.jsonl") is None:
        pytest.skip("MATH mirrors not found")
    from harness.tasks.registry import get_task

    d = Decontaminator({"math500": [prompt_text(x.prompt) for x in get_task("math500").docs()]}, 13)
    items, rep = load_pool_spec(PoolConfig(source="math_train", n=10**6, seed=0), d)
    assert rep.candidates == len(math_train_candidates()) == rep.examined
    assert rep.removed == 160 and rep.kept == rep.candidates - 160  # measured on the shared mirror
    assert rep.removed_by_task == {"math500": 160}
    kept = {it.id for it in items}
    assert not any(e["id"] in kept for e in rep.removed_examples)
