"""GPQA Diamond: loading, stable shuffle across processes, even letters, extraction, no question text in ids."""
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from harness.tasks.gpqa import GPQADiamond, fewshot_ids, load_rows
from harness.tasks.registry import get_task
from harness.tasks.scorers.choice import extract_flexible, extract_mmlu_pro, extract_strict

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def docs():
    return GPQADiamond().docs()


def test_rows_and_flags(docs):
    assert isinstance(get_task("gpqa_diamond"), GPQADiamond)
    assert GPQADiamond.sensitive is True
    assert len(docs) == 198 and len({d.id for d in docs}) == 198
    assert GPQADiamond().generation.max_new_tokens == 2048
    assert all(d.gold in "ABCD" for d in docs)


def test_no_question_text_in_id_or_meta(docs):
    rows = {r["Record ID"]: r for r in load_rows()}
    for d in docs:
        row = rows[d.id]
        visible = json.dumps({"id": d.id, "meta": d.meta, "gold": d.gold})
        assert row["Question"].strip()[:40] not in visible
        answer = str(row["Correct Answer"]).strip()
        if len(answer) >= 8:  # short answers ("4") could match by chance
            assert answer not in visible
        assert row["Question"].strip()[:40] in d.prompt[-1]["content"]  # it is in the prompt only


def test_correct_option_is_at_its_letter(docs):
    rows = {r["Record ID"]: r for r in load_rows()}
    for d in docs:
        text = d.prompt[-1]["content"]
        assert f"({d.gold}) {str(rows[d.id]['Correct Answer']).strip()}" in text


def test_shuffle_is_stable_across_processes(docs):
    code = (
        "import json; from harness.tasks.gpqa import GPQADiamond; "
        "print(json.dumps([[d.id, d.gold] for d in GPQADiamond().docs()]))"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")  # a different str hash must not change the order
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out) == [[d.id, d.gold] for d in docs]
    other = GPQADiamond(shuffle_seed=1).docs()
    assert [d.gold for d in other] != [d.gold for d in docs]


def test_correct_letters_are_evenly_spread(docs):
    from scipy.stats import chisquare

    counts = Counter(d.gold for d in docs)
    assert set(counts) == set("ABCD") and min(counts.values()) >= 30
    assert chisquare([counts[c] for c in "ABCD"]).pvalue > 0.01


def test_five_shot_excludes_its_exemplars(docs):
    five = GPQADiamond(num_fewshot=5).docs()
    shots = set(fewshot_ids(load_rows(), 5))
    assert len(five) == 193 and not shots & {d.id for d in five}
    msgs = five[0].prompt
    assert [m["role"] for m in msgs] == ["user", "assistant"] * 5 + ["user"]
    assert all(m["content"].rstrip().endswith(").") for m in msgs[1:10:2])
    with pytest.raises(ValueError, match="num_fewshot"):
        GPQADiamond(num_fewshot=7)


@pytest.mark.parametrize(
    "text, strict, flexible",
    [
        ("Reasoning...\nThe answer is (C).", "C", "C"),
        ("so the answer is B", "B", "B"),
        ("**The answer is (D)**", "D", "D"),
        ("The answer is: (A)", "A", "A"),
        ("First the answer is (A), wait, the answer is (B).", "B", "B"),
        ("the answer is Avogadro's number, i.e. (C)", None, "C"),
        ("I pick (B) over (A). Final: (D)", None, "D"),
        ("Answer: C", None, "C"),
        ("Hmm. I think it is D", None, "D"),
        ("The answer is (E)", None, None),  # not an option
        ("the answer is (a)", None, None),  # letters are capitals
        ("no idea", None, None),
    ],
)
def test_extraction(text, strict, flexible):
    assert extract_strict(text).letter == strict
    assert extract_flexible(text).letter == flexible


def test_scoring(docs):
    task = GPQADiamond()
    d = docs[0]
    wrong = next(c for c in "ABCD" if c != d.gold)
    s = task.score(d, [f"... The answer is ({d.gold})."])
    assert s.metrics == {"accuracy": 1.0, "strict_accuracy": 1.0} and s.extracted == d.gold
    s = task.score(d, [f"I would go with ({d.gold})"])
    assert s.metrics == {"accuracy": 1.0, "strict_accuracy": 0.0} and s.details["how"] == "parenthesized"
    s = task.score(d, [f"The answer is ({wrong})"])
    assert s.score == 0.0
    s = task.score(d, ["nothing"])
    assert s.score == 0.0 and s.details["extraction_failed"]


def test_mmlu_pro_official_cascade():
    assert extract_mmlu_pro("so the answer is (J).").letter == "J"
    assert extract_mmlu_pro("the answer is (B). Later the answer is (C)").letter == "B"  # first, as official
    assert extract_mmlu_pro("Answer: E\nmore").how == "answer_colon"
    assert extract_mmlu_pro("I think it is F.").letter == "F"  # last capital A-J anywhere
    assert extract_mmlu_pro("nothing here").letter is None
