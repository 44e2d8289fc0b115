"""Math benchmarks on the real data mirror, and both math graders (math-verify in worker processes, Qwen-style)."""
from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest

from harness.tasks.base import Doc
from harness.tasks.registry import get_task
from harness.tasks.scorers.extract import extract_answer
from harness.tasks.scorers.math import MathGradingPool, grade_math_batch, grade_math_one
from harness.tasks.scorers.qwen_math import qwen_math_equal, strip_answer

EXPECTED_COUNTS = {
    "math500": 500, "minerva_math": 272, "gsm8k": 1319, "olympiadbench": 675,
    "amc23": 40, "aime24": 30, "aime25": 30, "theoremqa": 800,
}

# (response, gold) pairs covering boxed LaTeX, plain text, tuples, percentages, intervals, units, wrong answers,
# no answer at all and thousands separators.
MIXED_PAIRS = [
    ("We get $x = \\frac{1}{2}$, so the answer is $\\boxed{\\frac12}$.", "\\frac{1}{2}"),
    ("Thus \\boxed{0.5}", "\\frac{1}{2}"),
    ("Therefore \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("so $\\boxed{(3, \\pi/2)}$", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("the answer is 18 dollars.", "18"),
    ("Hence \\boxed{\\$18.00}", "18"),
    ("So \\boxed{0.25}", "25\\%"),
    ("\\boxed{x = 3}", "3"),
    ("\\boxed{[2, 5)}", "[2,5)"),
    ("\\boxed{(2, 5)}", "[2,5)"),
    ("\\boxed{10\\sqrt{2}}", "\\sqrt{200}"),
    ("\\boxed{x^2 + 2x + 1}", "(x+1)^2"),
    ("\\boxed{7}", "8"),
    ("I am not sure.", "3"),
    ("\\boxed{1,3,5}", "1,3,5"),
    ("The answer is \\boxed{5 \\text{ cm}}", "5"),
    ("\\boxed{2,125}", "2125"),
]


def _rows(name: str) -> list[dict]:
    root = Path(os.environ["HARNESS_DATA_DIR"])
    return [json.loads(x) for x in (root / name / "test.jsonl").read_text().split("\n") if x.strip()]


@pytest.fixture(scope="module")
def pool():
    with MathGradingPool(workers=2, timeout=5.0) as p:
        yield p


# --- data ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,count", sorted(EXPECTED_COUNTS.items()))
def test_counts_ids_and_prompts(name, count):
    task = get_task(name)
    docs = task.docs()
    assert len(docs) == count
    assert len({d.id for d in docs}) == count
    assert all(isinstance(d.gold, str) and d.gold.strip() for d in docs)
    assert all(d.meta["source"].startswith("local:") for d in docs)
    msgs = docs[0].prompt
    assert msgs[0]["role"] == "system" and "\\boxed{}" in msgs[0]["content"]
    assert msgs[-1]["role"] == "user" and msgs[-1]["content"].strip()
    assert task.generation.max_new_tokens == 4096 and task.generation.temperature == 0.0


def test_ids_are_the_datasets_own_where_they_exist():
    assert get_task("math500").docs()[0].id == "test/precalculus/807.json"
    assert get_task("minerva_math").docs()[5].id == "5"
    assert get_task("olympiadbench").docs()[0].id == "1606"
    assert get_task("aime25").docs()[3].id == "aime25/3"
    assert get_task("gsm8k").docs()[1318].id == "gsm8k/1318"


def test_gold_answers_per_benchmark():
    assert get_task("math500").docs()[0].gold == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert get_task("amc23").docs()[0].gold == "27"  # float 27.0 in the file
    assert get_task("minerva_math").docs()[0].gold == "1.6"  # last \boxed{} of the solution
    assert get_task("aime25").docs()[0].gold == "70"
    olymp = {d.id: d.gold for d in get_task("olympiadbench").docs()}
    assert all("$" not in g for g in olymp.values())
    theorem = get_task("theoremqa").docs()
    kinds = [d.meta["answer_kind"] for d in theorem]
    assert (kinds.count("bool"), kinds.count("option"), kinds.count("list"), kinds.count("number")) == (116, 18, 73, 593)
    sci = [d for d in theorem if d.meta["raw_answer"] == "-6e+25"]
    assert sci and sci[0].gold == "-6\\times10^{25}"


def test_gsm8k_final_answer_after_hashes():
    from harness.tasks.math_tasks import gsm8k_gold

    rows = _rows("gsm8k")
    docs = get_task("gsm8k").docs()
    assert docs[0].gold == "18" and rows[0]["answer"].endswith("#### 18")
    with_commas = [i for i, r in enumerate(rows) if "," in r["answer"].rsplit("####", 1)[1]]
    assert len(with_commas) == 14
    assert all("," not in docs[i].gold and docs[i].gold.isdigit() for i in with_commas)
    assert gsm8k_gold("a <<2*3=6>>6\n#### 1,450,000") == "1450000"
    with pytest.raises(ValueError, match="####"):
        gsm8k_gold("no final answer")


def test_options_are_checked():
    task = get_task("math500", max_new_tokens=512)
    assert task.generation.max_new_tokens == 512
    assert get_task("math500").generation.max_new_tokens == 4096  # class default untouched
    with pytest.raises(ValueError, match="unknown option"):
        get_task("aime24", max_tokens=10)


# --- primary grader: math-verify in worker processes --------------------------------------------------------


def test_math500_gold_solutions_graded_correct_and_wrong_answers_not(pool):
    docs = get_task("math500").docs()
    sample = random.Random(0).sample(docs, 30)
    right = pool.grade([(d.meta["solution"], d.gold) for d in sample])
    rate = sum(g.correct for g in right) / len(right)
    print(f"MATH-500 gold solutions judged correct: math-verify {rate:.3f}, "
          f"qwen-style {sum(g.second_grader_correct for g in right) / len(right):.3f}")
    assert rate == 1.0
    assert all(g.second_grader_correct and not g.timed_out and not g.extraction_failed for g in right)
    # the same solutions with a deliberately wrong final answer
    wrong = pool.grade([(d.meta["solution"] + "\n\nCorrection: the answer is $\\boxed{1234567}$.", d.gold)
                        for d in sample])
    assert not any(g.correct for g in wrong) and not any(g.second_grader_correct for g in wrong)
    assert all(g.extracted == "1234567" for g in wrong)


def test_primary_verdict_is_exactly_the_direct_math_verify_call(pool):
    from math_verify import parse, verify

    grades = pool.grade(MIXED_PAIRS)
    direct = [bool(verify(parse("\\boxed{" + gold + "}"), parse(resp))) for resp, gold in MIXED_PAIRS]
    assert [g.correct for g in grades] == direct
    assert 0 < sum(direct) < len(direct)  # the set holds both verdicts
    # why the gold is wrapped: math-verify finds no LaTeX in a bare gold such as "\sqrt{200}"
    assert not verify(parse("\\sqrt{200}"), parse("\\boxed{10\\sqrt{2}}"))
    by_pair = dict(zip(MIXED_PAIRS, grades))
    assert by_pair[("I am not sure.", "3")].extraction_failed
    assert by_pair[("\\boxed{7}", "8")].extracted == "7"
    # the graders disagree on a closed vs half-open interval only if one is lenient: (2,5) is not [2,5)
    assert not by_pair[("\\boxed{(2, 5)}", "[2,5)")].correct
    assert all(g.grader_disagreement == (g.correct != g.second_grader_correct) for g in grades)


def test_pathological_input_is_killed_at_the_wall_clock_limit():
    from math_verify import parse, verify

    hang = "The answer is $\\boxed{9^{9^{9^{9}}}}$."
    # really slow: math-verify gives up only by its own SIGALRM timeout (without one it runs for minutes)
    t = time.monotonic()
    assert not verify(parse("\\boxed{5}"), parse(hang), timeout_seconds=2)
    assert time.monotonic() - t >= 1.9
    timeout = 1.0
    with MathGradingPool(workers=2, timeout=timeout) as p:  # 2 workers: both graders' jobs run side by side
        t = time.monotonic()
        (grade,) = p.grade([(hang, "5")])
        elapsed = time.monotonic() - t
        print(f"pathological item stopped after {elapsed:.2f} s (limit {timeout} s)")
        assert grade.timed_out and not grade.correct and grade.second_grader_timed_out
        assert elapsed < timeout + 2.0
        after = p.grade([("so \\boxed{5}", "5"), ("\\boxed{\\frac{1}{2}}", "0.5")])  # replacement workers
        assert all(g.correct and not g.timed_out for g in after)


def test_pool_grades_from_a_thread_where_math_verify_cannot():
    import threading

    from math_verify import parse

    out: dict = {}

    def direct():
        try:
            parse("\\boxed{0.5}")
        except ValueError as e:  # math-verify's SIGALRM timeouts refuse to run off the main thread
            out["direct"] = e

    def pooled():
        out["pooled"] = grade_math_one("\\boxed{0.5}", "\\frac{1}{2}")

    for fn in (direct, pooled):
        th = threading.Thread(target=fn)
        th.start()
        th.join(60)
    assert isinstance(out.get("direct"), ValueError)
    assert out["pooled"].correct


def test_grade_math_batch_and_one():
    assert grade_math_batch([]) == []
    g = grade_math_one("Therefore $\\boxed{\\dfrac{3}{4}}$.", "\\frac34")
    assert g.correct and g.second_grader_correct and g.extracted == "\\dfrac{3}{4}"


# --- second grader: Qwen2.5-Math-style equivalence ---------------------------------------------------------


@pytest.mark.parametrize("pred,gold,expected", [
    ("\\frac{1}{2}", "0.5", True),
    ("\\dfrac{3}{4}", "\\frac34", True),
    ("0.5", "\\frac12", True),
    ("\\frac{1}{3}", "0.3333", True),
    ("\\frac{1}{3}", "0.33", False),  # relative tolerance 1e-4
    ("50\\%", "0.5", True),  # percentage variants, as in Qwen's grader
    ("25", "0.25", True),
    ("x = 3", "3", True),
    ("3", "x=3", True),
    ("y = 2x+1", "y=2x+1", True),
    ("(1,2]", "(1,2]", True),
    ("[1, 2)", "(1,2)", False),  # half-open intervals must match
    ("(-\\infty, 3)", "(-\\infty,3)", True),
    ("5 \\text{ cm}", "5", True),
    ("10\\text{ dollars}", "10", True),
    ("\\$18", "18", True),
    ("90^\\circ", "90", True),
    ("\\text{(C)}", "C", True),
    ("(3, \\pi/2)", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("2\\sqrt{3}", "\\sqrt{12}", True),
    ("x^2+2x+1", "(x+1)^2", True),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),
    ("4e-05", "4\\times10^{-5}", True),
    ("3", "4", False),
    ("\\sec x", "\\cos x", False),
    (None, "1", False),
])
def test_qwen_math_equal(pred, gold, expected):
    assert qwen_math_equal(pred, gold) is expected


def test_strip_answer_normalisation():
    assert strip_answer("\\left( 3, \\dfrac{\\pi}{2} \\right).") == "(3,\\frac{\\pi}{2})"
    assert strip_answer("x = \\frac12") == "\\frac{1}{2}"
    assert strip_answer("27.0") == "27"
    assert strip_answer("4 \\times 10^{-5}") == "4\\times10^{-5}"  # "\times" is no unit
    assert strip_answer("12 \\text{ km}", skip_unit=True) == "12"  # trailing \text{} always goes


def test_qwen_symbolic_step_has_its_own_timeout():
    t = time.monotonic()
    assert not qwen_math_equal("9^{9^{9^{9}}}", "5", timeout=1.0)
    assert time.monotonic() - t < 3.0


# --- extraction (harness.tasks.scorers.extract) ---------------------------------------------------------------------


def test_extract_boxed_without_brace_does_not_take_a_later_brace():
    # regression: "\boxed 7" followed by unrelated braces used to return the braces' content
    assert extract_answer("so $\\boxed 7$, the sets are {1,2}") == ("7", "boxed")
    assert extract_answer("\\boxed {3}") == ("3", "boxed")
    assert extract_answer("first \\boxed{1}, finally \\boxed{\\frac{2}{3}}.") == ("\\frac{2}{3}", "boxed")
    assert extract_answer("The answer is 42.") == ("42", "answer_is")
    assert extract_answer("we get 3 then 12,000") == ("12000", "last_number")


# --- tasks end to end: score_many / aggregate ----------------------------------------------------------------


def test_task_scoring_and_aggregate():
    task = get_task("theoremqa")
    docs = {d.meta["raw_answer"]: d for d in task.docs()}
    cases = [  # (gold as in the file, response, expected accuracy)
        ("True", "Hence the statement holds: $\\boxed{\\text{True}}$.", 1.0),
        ("False", "So the answer is \\boxed{True}.", 0.0),
        ("(c)", "The correct option is \\boxed{(c)}", 1.0),
        ("(c)", "The correct option is \\boxed{(a)}", 0.0),
        ("[0, 5]", "The path is \\boxed{[0, 5]}", 1.0),
        ("-6e+25", "It is \\boxed{-6 \\times 10^{25}}", 1.0),
        ("11760", "There are \\boxed{11760} ways.", 1.0),
        ("11760", "There are \\boxed{11750} ways.", 0.0),
        ("11760", "There are \\boxed{11759} ways.", 0.0),  # within Qwen's 1e-4 relative tolerance
    ]
    chosen = [docs[g] for g, _, _ in cases]
    scored = task.score_many(chosen, [[r] for _, r, _ in cases])
    assert [s.score for s in scored] == [e for _, _, e in cases]
    assert [s.metrics["accuracy"] for s in scored] == [e for _, _, e in cases]
    assert [s.metrics["accuracy_qwen"] for s in scored] == [e for _, _, e in cases[:-1]] + [1.0]
    assert [s.details["grader_disagreement"] for s in scored] == [False] * (len(cases) - 1) + [True]
    assert scored[0].details["grader"] == "answer_rule" and scored[0].extracted == "\\text{True}"
    assert set(scored[-1].details) >= {"extraction_failed", "timed_out", "grader_disagreement"}
    agg = task.aggregate(scored)
    assert agg["accuracy"] == pytest.approx(5 / 9) and agg["accuracy_qwen"] == pytest.approx(6 / 9)
    assert agg["grader_disagreement_rate"] == pytest.approx(1 / 9) and agg["timeout_rate"] == 0.0


def test_score_many_with_several_responses_and_disagreement():
    task = get_task("gsm8k")
    doc = task.docs()[0]  # gold 18
    assert doc.gold == "18"
    scored = task.score_many([doc, doc], [["\\boxed{18}", "\\boxed{17}"], ["The answer is \\boxed{1800}"]])
    assert scored[0].score == 0.5 and scored[0].details["correct_per_response"] == [True, False]
    # Qwen's percentage rule accepts 1800 for 18 (x100); math-verify does not: a reported disagreement
    assert scored[1].metrics == {"accuracy": 0.0, "accuracy_qwen": 1.0}
    assert scored[1].details["grader_disagreement"] is True
    assert task.aggregate(scored)["grader_disagreement_rate"] == 0.5
    single = task.score(Doc(id="x", prompt="", gold="7"), ["so \\boxed{7}"])
    assert single.score == 1.0


def test_missing_data_names_the_fix(tmp_path, monkeypatch):
    from harness.tasks.data import DataMissing

    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataMissing, match="HuggingFaceH4/MATH-500"):
        get_task("math500").docs()
