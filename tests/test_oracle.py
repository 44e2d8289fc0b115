"""The oracle teacher on hand-written student answers."""
from harness.distill.items import ItemMeta, TrainItem
from harness.distill.teachers.base import Teacher
from harness.distill.teachers.oracle import OracleTeacher, check
from harness.tasks.registry import get_task
from harness.tasks.synthetic_problems import OP_TEMPLATES, Op, Problem


def _problem() -> Problem:
    # 12, buys 7 -> 19, sells 5 -> 14, triples -> 42
    return Problem(name="Mia", obj="apples", start=12, ops=[Op("+", 7, 0), Op("-", 5, 5), Op("*", 3, 7)])


def _item(probe: str | None) -> TrainItem:
    p = _problem()
    return TrainItem(id="t/0", question=p.question, gold_solution=p.gold_solution(), gold_answer=str(p.answer),
                     probe=probe, meta=ItemMeta(problem=p.to_meta()))


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
                         meta=ItemMeta(problem=p.to_meta()))
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
    item.meta = ItemMeta()
    assert OracleTeacher().critique([item])[0].endswith("Conclusion: right")
    bad = TrainItem(id="x", question="What is 2 + 2?", gold_solution="4", gold_answer="4", probe="4")
    try:
        OracleTeacher().critique([bad])
    except ValueError as e:
        assert "not a synthetic problem" in str(e)
    else:
        raise AssertionError("expected a ValueError")
    assert OP_TEMPLATES[5][0] == "-"  # the 'sells' wording used above is a subtraction


# ---- teacher.style (issue 9 item 5: the premise testbed) -------------------------------------------------
import hashlib
import json
import random
import re

from harness.distill.pools import synthetic_pool
from harness.distill.teachers.oracle import parse_steps
from harness.distill.tiny_corpus import student_steps
from harness.distill.tiny_spec import TinySpec
from harness.tasks.synthetic_problems import format_step

#: The default oracle's critiques, refinements and direct answers on 200 pool items with tiny-style drafts,
#: computed before teacher.style existed: the default must stay byte-identical.
FROZEN_DEFAULT_TEACHER = "7f9f174606b7cd946c14aa83dfa4b1bfa018fc307b5044be79c110e1840b0807"


def _drafted_pool(n: int = 200) -> list[TrainItem]:
    """Pool items with drafts in the tiny student's format, its systematic mistakes always made."""
    pool = synthetic_pool(n, seed=0)
    rng, spec = random.Random("frozen-probes"), TinySpec.default()
    spec.mistake_rate = 1.0
    for it in pool:
        p = Problem.from_meta(it.meta.problem)
        steps = student_steps(p, rng, spec)
        answer = steps[-1][3] if steps else p.start
        it.probe = "\n".join([format_step(i + 1, *s) for i, s in enumerate(steps)]
                             + [f"The answer is \\boxed{{{answer}}}."])
    return pool


def test_default_style_outputs_are_byte_identical_to_before():
    pool = _drafted_pool()
    t = OracleTeacher()
    assert t.identity == OracleTeacher(style="student").identity == "oracle-synthetic-v1"
    blob = json.dumps([t.critique(pool), t.refine(pool), t.answer(pool)], sort_keys=True)
    assert hashlib.sha256(blob.encode()).hexdigest() == FROZEN_DEFAULT_TEACHER


def test_teacher_style_direct_answer_is_correct_prose():
    task = get_task("synthetic_id", n=60)
    student, teacher = OracleTeacher(), OracleTeacher(style="teacher")
    assert teacher.identity != student.identity
    for doc in task.docs():
        p = Problem.from_meta(doc.meta["problem"])
        item = TrainItem(id=doc.id, question=p.question, gold_solution=p.gold_solution(), gold_answer=doc.gold,
                         meta=ItemMeta(problem=p.to_meta()))
        direct = teacher.answer([item])[0]
        assert task.score(doc, [direct]).score == 1.0
        assert not re.search(r"(?m)^\s*Step \d+:", direct) and "Step" not in direct
        assert "The answer is" not in direct and direct.rstrip().endswith(f"\\boxed{{{p.answer}}}.")
        assert direct != student.answer([item])[0]
        # every true step is stated (the oracle's own checker reads the prose as a right solution)
        item.probe = direct
        assert teacher.critique([item])[0].endswith("Conclusion: right")


def test_refinement_is_a_minimal_repair_of_the_draft():
    pool = _drafted_pool()
    teacher, n_wrong = OracleTeacher(style="teacher"), 0
    for it in pool:
        p = Problem.from_meta(it.meta.problem)
        f = check(p, it.probe)
        refined = teacher.refine([it])[0]
        it.critique = teacher.critique([it])[0]
        assert refined == OracleTeacher().refine([it])[0]  # the refinement is the same in both styles
        draft = it.probe.splitlines()
        lines = refined.splitlines()
        # the draft's correct leading lines are kept verbatim ...
        assert lines[: f.step] == draft[: f.step]
        # ... then the true steps from the first wrong one on, in the student's own format, and the answer
        assert lines[f.step:-1] == [format_step(i + 1, *s) for i, s in enumerate(p.steps())][f.step:]
        assert lines[-1] == f"The answer is \\boxed{{{p.answer}}}."
        if f.kind is None:
            assert refined == it.probe and it.conclusion == "right"
        else:
            n_wrong += 1
            assert it.conclusion == "wrong" and refined != it.probe
            # critiques stay specific: they name the wrong step and its right result
            if f.step < len(p.ops):
                assert re.search(f"step {f.step + 1}\\b", it.critique, re.IGNORECASE)
                assert str(p.steps()[f.step][3]) in it.critique
        assert len(parse_steps(refined)[1]) == len(p.ops)
    assert 20 < n_wrong < len(pool)


def test_teacher_style_is_in_the_fingerprint_and_validated():
    import pytest

    from harness.config import load_config
    from harness.models import make_teacher, teacher_fingerprint
    from harness.stages.plan import config_hash

    default = load_config(overrides=["pool.answer_style=gold", "teacher.style=student"])
    testbed = load_config("configs/testbed.yaml")
    assert (testbed.pool.answer_style, testbed.teacher.style) == ("web", "teacher")
    assert make_teacher(testbed, None).style == "teacher"
    assert teacher_fingerprint(default) != teacher_fingerprint(testbed)
    assert teacher_fingerprint(default)["implementation"] == "oracle-synthetic-v1"
    # a config that leaves both switches at their defaults has neither in its run id's input (the run id is what
    # it would be without them)
    from harness.stages.plan import config_identity

    ident = config_identity(default)
    assert "style" not in ident["teacher"] and "answer_style" not in ident["pool"]
    before = config_hash(default)
    assert config_hash(load_config(overrides=["pool.answer_style=web", "teacher.style=student"])) != before
    assert config_hash(load_config(overrides=["pool.answer_style=gold", "teacher.style=teacher"])) != before
    assert (load_config().pool.answer_style, load_config().teacher.style) == ("web", "teacher")  # the default
    # The switches belong to the synthetic pool and the oracle: other pools and teachers are what they are.
    assert load_config(overrides=["teacher.kind=reference", "teacher.style=teacher"]).teacher.style == "student"
    assert load_config(overrides=["pool.source=gsm8k_train", "pool.answer_style=web"]).pool.answer_style == "gold"
    with pytest.raises(ValueError, match="style"):
        OracleTeacher(style="prose")
