"""The synthetic generator, its two tasks and the format probe (no model needed)."""
from harness.tasks.format_probe import INSTRUCTIONS, FormatProbe, answer_line_ok, boxed_last_ok, only_number_ok
from harness.tasks.registry import get_task
from harness.distill.pools import synthetic_pool
from harness.tasks.synthetic_problems import ID_STEPS, OOD_STEPS, Problem, eval_problems, parse_question, split_of


def test_pool_is_deterministic_and_seeded():
    a, b = synthetic_pool(50, seed=3), synthetic_pool(50, seed=3)
    assert [i.to_dict() for i in a] == [i.to_dict() for i in b]
    assert [i.question for i in synthetic_pool(50, seed=4)] != [i.question for i in a]
    assert len({i.question for i in a}) == 50


def test_pool_items_carry_a_consistent_structured_problem():
    for item in synthetic_pool(40, seed=0):
        p = Problem.from_meta(item.meta.problem)
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


# ---- pool.answer_style (issue 9 item 5: the premise testbed) ---------------------------------------------
import hashlib
import json
from collections import Counter

from harness.tasks.synthetic_problems import format_solution
from harness.tasks.synthetic_web import WEB_SHARES

# Digests of the default (gold) pools computed before answer_style existed: the default must stay byte-identical.
FROZEN_GOLD_POOL = {(200, 0): "5e5d1a450fe01da940802bda1b4acf295b213049bfcb275c1f1fbd86ec43dc8a",
                    (60, 7): "295056d047fccbd3b38bdd0891f5521d4d88843bdecaba01df8d951e0665417f"}


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def test_default_pool_is_byte_identical_to_before_answer_style():
    for (n, seed), digest in FROZEN_GOLD_POOL.items():
        assert _digest([i.to_dict() for i in synthetic_pool(n, seed=seed)]) == digest
        assert _digest([i.to_dict() for i in synthetic_pool(n, seed=seed, answer_style="gold")]) == digest


def test_web_pool_shares_are_near_the_targets_and_seeded():
    for seed in (0, 1, 2):
        gold, web = synthetic_pool(480, seed=seed), synthetic_pool(480, seed=seed, answer_style="web")
        assert [i.to_dict() for i in web] == [i.to_dict() for i in synthetic_pool(480, seed=seed, answer_style="web")]
        # same questions, ids and true answers; only y* changes
        assert [(g.id, g.question, g.gold_answer) for g in gold] == [(w.id, w.question, w.gold_answer) for w in web]
        kinds = Counter(i.meta.web_kind for i in web)
        for kind, share in WEB_SHARES.items():
            assert abs(kinds[kind] / len(web) - share) < 0.06, (seed, kinds)
        for g, w in zip(gold, web):
            p = Problem.from_meta(w.meta.problem)
            stated = w.gold_solution.rsplit("\\boxed{", 1)[1].split("}")[0]
            kind = w.meta.web_kind
            if kind == "full":
                assert w.gold_solution == g.gold_solution
            elif kind == "terse":
                assert "Step" not in w.gold_solution and "\n" not in w.gold_solution and "=" not in w.gold_solution
                assert stated == w.gold_answer
            else:  # one slipped step, carried through: same ops, a wrong final answer, one arithmetic error
                assert stated != w.gold_answer and w.gold_solution.startswith("Step 1: ")
                lines = w.gold_solution.splitlines()[:-1]
                assert len(lines) == len(p.ops)
                bad = 0
                for line, o in zip(lines, p.ops):
                    a, op, b, _, r = line.split(": ", 1)[1].rstrip(".").split(" ")
                    assert (op, int(b)) == (o.op, o.k)
                    bad += {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b),
                            "/": int(a) // int(b)}[op] != int(r)
                assert bad == 1
    a, b = synthetic_pool(100, seed=0, answer_style="web"), synthetic_pool(100, seed=1, answer_style="web")
    assert [i.meta.web_kind for i in a] != [i.meta.web_kind for i in b]
    # an item's y* depends on the pool seed and its index only, not on the pool size
    assert [i.to_dict() for i in synthetic_pool(480, seed=0, answer_style="web")[:100]] == [i.to_dict() for i in a]


def test_web_style_is_synthetic_only_and_validated():
    import pytest

    from harness.distill.pools import PoolConfig, load_pool_spec

    with pytest.raises(ValueError, match="answer_style"):
        synthetic_pool(5, answer_style="forum")
    with pytest.raises(ValueError, match="answer_style"):
        PoolConfig(answer_style="forum")
    # one rule, in the one pool model the config and the loader share: other pools keep their own answers
    assert PoolConfig(source="gsm8k_train", n=3, answer_style="web").answer_style == "gold"
    items, _ = load_pool_spec(PoolConfig(source="synthetic", n=20, seed=0, answer_style="web"))
    assert [i.to_dict() for i in items] == [i.to_dict() for i in synthetic_pool(20, seed=0, answer_style="web")]
    assert format_solution([(1, "+", 2, 3)], 3) == "Step 1: 1 + 2 = 3.\nThe answer is \\boxed{3}."
