"""The oracle teacher on hand-written student answers."""
from distill.items import TrainItem
from distill.teachers.base import Teacher
from distill.teachers.oracle import OracleTeacher, check
from tasks.registry import get_task
from tasks.synthetic import OP_TEMPLATES, Op, Problem


def _problem() -> Problem:
    # 12, buys 7 -> 19, sells 5 -> 14, triples -> 42
    return Problem(name="Mia", obj="apples", start=12, ops=[Op("+", 7, 0), Op("-", 5, 5), Op("*", 3, 7)])


def _item(probe: str | None) -> TrainItem:
    p = _problem()
    return TrainItem(id="t/0", question=p.question, gold_solution=p.gold_solution(), gold_answer=str(p.answer),
                     probe=probe, meta={"problem": p.to_meta()})


GOOD = "Step 1: 12 + 7 = 19.\nStep 2: 19 - 5 = 14.\nStep 3: 14 * 3 = 42.\nThe answer is \\boxed{42}."


def test_is_a_teacher_and_says_right_on_a_correct_solution():
    t = OracleTeacher()
    assert isinstance(t, Teacher) and t.identity == "oracle-synthetic-v1"
    crit = t.critique([_item(GOOD)])[0]
    assert crit.strip().splitlines()[-1] == "Conclusion: right"
    assert _item(GOOD).conclusion is None
    it = _item(GOOD)
    it.critique = crit
    assert it.conclusion == "right"


def test_finds_the_first_wrong_step_of_each_kind():
    p = _problem()
    cases = {
        "operation": ("Step 1: 12 + 7 = 19.\nStep 2: 19 + 5 = 24.\nStep 3: 24 * 3 = 72.\nThe answer is \\boxed{72}.", 1),
        "operand": ("Step 1: 12 + 7 = 19.\nStep 2: 19 - 5 = 14.\nStep 3: 14 * 2 = 28.\nThe answer is \\boxed{28}.", 2),
        "arithmetic": ("Step 1: 12 + 7 = 18.\nStep 2: 18 - 5 = 13.\nStep 3: 13 * 3 = 39.\nThe answer is \\boxed{39}.", 0),
        "missing": ("Step 1: 12 + 7 = 19.\nStep 2: 19 - 5 = 14.\nThe answer is \\boxed{14}.", 2),
        "start": ("Step 1: 21 + 7 = 28.\nThe answer is \\boxed{28}.", 0),
        "no_answer": ("Step 1: 12 + 7 = 19.\nStep 2: 19 - 5 = 14.\nStep 3: 14 * 3 = 42.", 3),
        "answer": ("Step 1: 12 + 7 = 19.\nStep 2: 19 - 5 = 14.\nStep 3: 14 * 3 = 42.\nThe answer is \\boxed{40}.", 3),
        "extra": (GOOD.replace("The answer", "Step 4: 42 + 1 = 43.\nThe answer"), 3),
    }
    for kind, (answer, step) in cases.items():
        f = check(p, answer)
        assert (f.kind, f.step) == (kind, step), (kind, f)
    crit = OracleTeacher().critique([_item(cases["operation"][0])])[0]
    assert crit.splitlines()[-1] == "Conclusion: wrong"
    assert "Step 2" in crit and "19 - 5 = 14" in crit and "Step 1 (12 + 7 = 19) is correct." in crit
    assert "42" in crit  # names the right final answer
    crit = OracleTeacher().critique([_item(cases["arithmetic"][0])])[0]
    assert "12 + 7 is 19, not 18" in crit


def test_robust_to_garbage():
    t = OracleTeacher()
    for junk in (None, "", "🙂" * 50, "= = = 3 + \\boxed{", "x" * 50_000, "Step 1: 1/0 = 0"):
        item = _item(junk)
        crit = t.critique([item])[0]
        assert crit.splitlines()[-1] == "Conclusion: wrong"
        assert t.refine([item])[0].endswith("\\boxed{42}.")


def test_refine_and_answer_score_correct_with_the_task_scorer():
    task = get_task("synthetic_id", n=30)
    teacher = OracleTeacher()
    for doc in task.docs():
        p = Problem.from_meta(doc.meta["problem"])
        item = TrainItem(id=doc.id, question=p.question, gold_solution=p.gold_solution(),
                         gold_answer=doc.gold, probe="Step 1: 1 + 1 = 3.\nThe answer is \\boxed{3}.",
                         meta={"problem": p.to_meta()})
        item.critique = teacher.critique([item])[0]
        refined, direct = teacher.refine([item])[0], teacher.answer([item])[0]
        assert task.score(doc, [refined]).score == 1.0
        assert task.score(doc, [direct]).score == 1.0
        assert direct != item.gold_solution
        # a refined answer is itself judged right
        item.probe = refined
        assert teacher.critique([item])[0].endswith("Conclusion: right")


def test_refine_keeps_the_correct_leading_steps():
    wrong = "Step 1: 12 + 7 = 19.\nStep 2: 19 + 5 = 24.\nThe answer is \\boxed{24}."
    refined = OracleTeacher().refine([_item(wrong)])[0]
    assert refined == GOOD


def test_works_without_meta_by_parsing_the_question():
    item = _item(GOOD)
    item.meta = {}
    assert OracleTeacher().critique([item])[0].endswith("Conclusion: right")
    bad = TrainItem(id="x", question="What is 2 + 2?", gold_solution="4", gold_answer="4", probe="4")
    try:
        OracleTeacher().critique([bad])
    except ValueError as e:
        assert "not a synthetic problem" in str(e)
    else:
        raise AssertionError("expected a ValueError")
    assert OP_TEMPLATES[5][0] == "-"  # the 'sells' wording used above is a subtraction
