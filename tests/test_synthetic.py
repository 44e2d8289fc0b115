"""The synthetic generator, its two tasks and the format probe (no model needed)."""
from tasks.format_probe import INSTRUCTIONS, FormatProbe, answer_line_ok, boxed_last_ok, only_number_ok
from tasks.registry import get_task
from distill.pools import synthetic_pool
from tasks.synthetic import ID_STEPS, OOD_STEPS, Problem, eval_problems, parse_question, split_of


def test_pool_is_deterministic_and_seeded():
    a, b = synthetic_pool(50, seed=3), synthetic_pool(50, seed=3)
    assert [i.to_dict() for i in a] == [i.to_dict() for i in b]
    assert [i.question for i in synthetic_pool(50, seed=4)] != [i.question for i in a]
    assert len({i.question for i in a}) == 50


def test_pool_items_carry_a_consistent_structured_problem():
    for item in synthetic_pool(40, seed=0):
        p = Problem.from_meta(item.meta["problem"])
        assert p.question == item.question
        assert str(p.answer) == item.gold_answer
        assert item.gold_solution.endswith(f"\\boxed{{{p.answer}}}.")
        assert item.gold_solution.startswith("Step 1: ")
        assert len(p.ops) in ID_STEPS
        values = [p.start] + [s[3] for s in p.steps()]
        assert all(0 <= v < 1000 for v in values)


def test_eval_sets_are_disjoint_from_any_pool():
    pool_q = {i.question for seed in range(3) for i in synthetic_pool(300, seed=seed)}
    id_docs, ood_docs = get_task("synthetic_id").docs(), get_task("synthetic_ood").docs()
    assert len(id_docs) == 200 and len(ood_docs) == 200
    eval_q = [d.prompt[-1]["content"] for d in id_docs + ood_docs]
    assert not any(q.split("\n\n")[0] in pool_q for q in eval_q)
    # the split is a property of the text itself, so no pool seed can ever produce an eval question
    assert all(split_of(p.question) == "eval" for p in eval_problems(50, 0, False))
    assert all(split_of(i.question) == "train" for i in synthetic_pool(50, seed=11))


def test_ood_is_longer_and_tasks_are_deterministic():
    assert {len(p.ops) for p in eval_problems(60, 0, True)} <= set(OOD_STEPS)
    assert get_task("synthetic_ood", n=5).docs()[0].gold == get_task("synthetic_ood", n=5).docs()[0].gold
    assert get_task("synthetic_id", n=5, seed=1).docs()[0].prompt != get_task("synthetic_id", n=5).docs()[0].prompt


def test_parse_question_round_trips():
    for p in eval_problems(30, 0, False) + eval_problems(30, 0, True):
        assert parse_question(p.question).to_meta() == p.to_meta()
    assert parse_question("What is 2 + 2?") is None


def test_synthetic_scoring():
    task = get_task("synthetic_id", n=3)
    doc = task.docs()[0]
    gold = int(doc.gold)
    assert task.score(doc, [f"Step 1: blah\nThe answer is \\boxed{{{gold}}}."]).score == 1.0
    wrong = task.score(doc, [f"The answer is \\boxed{{{gold + 1}}}."])
    assert wrong.score == 0.0 and wrong.metrics["accuracy"] == 0.0 and not wrong.details["extraction_failed"]
    empty = task.score(doc, [""])
    assert empty.score == 0.0 and empty.details["extraction_failed"]


def test_format_checks_on_hand_written_responses():
    assert only_number_ok(" 42\n") and not only_number_ok("42.") and not only_number_ok("The answer is 42")
    assert answer_line_ok("Step 1: 3 + 4 = 7.\nAnswer: 7\n") and not answer_line_ok("Answer: 7\nThanks")
    assert boxed_last_ok("Step 1: 3 + 4 = 7.\n\\boxed{7}") and not boxed_last_ok("\\boxed{7}.")
    assert not boxed_last_ok("no box here")


def test_format_probe_task_scores_format_and_correctness():
    task = FormatProbe()
    docs = task.docs()
    assert len(docs) == 90
    assert {d.meta["kind"] for d in docs} == {i.kind for i in INSTRUCTIONS}
    by_kind = {d.meta["kind"]: d for d in docs}
    d = by_kind["only_number"]
    ok = task.score(d, [d.gold])
    assert ok.metrics == {"format_ok": 1.0, "correct": 1.0, "format_and_correct": 1.0}
    verbose = task.score(d, [f"Step 1: ...\nThe answer is \\boxed{{{d.gold}}}."])
    assert verbose.metrics["format_ok"] == 0.0 and verbose.metrics["correct"] == 1.0
    d = by_kind["answer_line"]
    s = task.score(d, [f"Step 1: 1 + 1 = 2.\nAnswer: {int(d.gold) + 1}"])
    assert s.metrics["format_ok"] == 1.0 and s.metrics["correct"] == 0.0 and s.details["kind"] == "answer_line"
    d = by_kind["starts_with"]
    assert task.score(d, [f"Solution:\nThe answer is \\boxed{{{d.gold}}}."]).metrics["format_and_correct"] == 1.0
    assert task.score(d, ["I think 3"]).metrics["format_ok"] == 0.0
    agg = task.aggregate([task.score(x, [x.gold]) for x in docs])
    assert agg["correct"] == 1.0 and 0 < agg["format_ok"] < 1
