"""Reference teacher on real MATH train problems; LLM teacher's batching, prompts and Conclusion handling, both
with a scripted engine (to force each case) and with real generation from a tiny model through HFEngine."""
from __future__ import annotations

from dataclasses import replace

import pytest

from harness.distill.items import CritiqueSwap, TrainItem
from harness.distill.prompts import PromptTemplates
from harness.distill.teachers.base import Teacher
from harness.distill.teachers.llm import LLMTeacher, conclusion_of
from harness.distill.teachers.reference import ReferenceTeacher, answers_match, with_boxed_answer
from harness.engines.base import Completion, SamplingParams
from harness.tasks.data import local_path, read_jsonl
from harness.tasks.scorers.extract import last_boxed


@pytest.fixture(scope="module")
def math_items() -> list[TrainItem]:
    path = local_path("math_train", "train.jsonl")
    if path is None:
        pytest.skip("MATH train mirror not found under HARNESS_DATA_DIR")
    items = []
    for row in read_jsonl(path)[:400]:
        gold = last_boxed(row["solution"])
        if gold:
            items.append(TrainItem(id=row["unique_id"], question=row["problem"], gold_solution=row["solution"],
                                   gold_answer=gold))
    return items


def test_reference_teacher_verdicts_on_real_math_problems(math_items):
    t = ReferenceTeacher()
    assert isinstance(t, Teacher) and t.identity == "reference-v1"
    by_id = {it.id: it for it in math_items}
    a0, a3 = by_id["train/algebra/0.json"], by_id["train/algebra/3.json"]  # gold answers 0 and 8+4i
    assert (a0.gold_answer, a3.gold_answer) == ("0", "8+4i")
    cases = [
        (a0, a0.gold_solution, "right"),  # the gold solution itself
        (a3, "Adding the parts gives \\boxed{4i+8}.", "right"),  # equivalent form, judged by math-verify
        (a3, "So A-O+P+S equals \\boxed{8-4i}.", "wrong"),
        (a0, "The answer is 0.", "right"),  # no box: 'the answer is'
        (a0, "I am not sure how to continue.", "wrong"),  # nothing to extract
        (a3, a0.gold_solution, "wrong"),  # another problem's solution
    ]
    items = [replace(it, probe=probe) for it, probe, _ in cases]
    critiques = t.critique(items)
    for crit, (_, _, verdict) in zip(critiques, cases):
        assert crit.strip().splitlines()[-1] == f"Conclusion: {verdict}"
        assert replace(items[0], critique=crit).conclusion == verdict


def test_reference_teacher_cross_checks_many_real_items(math_items):
    # Each of 60 problems answered with its own solution -> right; with the next problem's solution -> wrong
    # unless the two gold answers happen to be equivalent.
    t = ReferenceTeacher()
    items = math_items[:60]
    own = t.critique([replace(it, probe=it.gold_solution) for it in items])
    assert all(conclusion_of(c) == "right" for c in own)
    shifted = [replace(it, probe=items[(i + 1) % len(items)].gold_solution) for i, it in enumerate(items)]
    verdicts = [conclusion_of(c) for c in t.critique(shifted)]
    expected = ["right" if answers_match(it.gold_answer, items[(i + 1) % len(items)].gold_answer) else "wrong"
                for i, it in enumerate(items)]
    assert verdicts == expected and verdicts.count("wrong") >= 50


def test_reference_refine_and_answer_end_with_the_boxed_gold(math_items):
    t = ReferenceTeacher()
    it = math_items[0]
    assert t.refine([it]) == [it.gold_solution] and t.answer([it]) == [it.gold_solution]
    unboxed = TrainItem(id="u", question="q", gold_solution="Half of 8 is 4.", gold_answer="4")
    out = t.refine([unboxed])[0]
    assert out.startswith("Half of 8 is 4.") and last_boxed(out) == "4"
    assert with_boxed_answer("x \\boxed{5}", "5") == "x \\boxed{5}"
    with pytest.raises(ValueError, match="probe"):
        t.critique([unboxed])


class ScriptedEngine:
    """Replies by rule, recording every call: for forcing the Conclusion cases deterministically."""

    identity = "scripted@1"

    def __init__(self, reply):
        self.reply = reply
        self.calls: list[list] = []

    def generate(self, prompts, params, progress=None):
        self.calls.append(list(prompts))
        if progress:
            progress(len(prompts))
        return [[Completion(text=self.reply(p))] for p in prompts]

    def loglikelihood(self, requests, progress=None):
        raise NotImplementedError


def _items(n: int) -> list[TrainItem]:
    return [TrainItem(id=f"q{i}", question=f"What is {i} + {i}?", gold_solution=f"\\boxed{{{2 * i}}}",
                      gold_answer=str(2 * i), probe=f"I think {i} + {i} = {2 * i + i % 2}.") for i in range(n)]


def test_llm_teacher_conclusion_retry_and_flagging():
    def reply(msgs):
        last = msgs[-1]["content"]
        if last == PromptTemplates().conclusion_reminder:  # the follow-up turn
            q = msgs[1]["content"]
            return "Conclusion: wrong" if "1 + 1" in q else "I cannot decide."
        if "0 + 0" in last:
            return "Looks fine.\nConclusion: right"
        return "The sum is off."  # no verdict line

    engine = ScriptedEngine(reply)
    advanced = []
    t = LLMTeacher(engine, PromptTemplates(), SamplingParams(max_new_tokens=64), batch_size=2,
                   progress=advanced.append)
    assert isinstance(t, Teacher)
    crits = t.critique(_items(5))
    assert [len(c) for c in engine.calls] == [2, 2, 1, 2, 2]  # 3 batches, then the 4 misses again in batches
    assert sum(advanced) == 5  # progress counts items, not follow-up requests
    follow = engine.calls[-1][0]
    assert follow[-2] == {"role": "assistant", "content": "The sum is off."}
    assert [conclusion_of(c) for c in crits] == ["right", "wrong", None, None, None]
    assert crits[1] == "The sum is off.\nConclusion: wrong"  # the retried verdict is appended
    assert crits[2] == "The sum is off."  # kept but flagged
    assert t.last_stats == {"critiques": 5, "missing_conclusion": 4, "fixed_by_retry": 1, "flagged": 3}
    # the critique request carries x and y'
    first = engine.calls[0][0]
    assert first[0]["role"] == "system" and "What is 0 + 0?" in first[1]["content"]
    assert "I think 0 + 0 = 0." in first[1]["content"]


def test_llm_teacher_refine_answer_prompts_and_identity():
    engine = ScriptedEngine(lambda msgs: "  solution \\boxed{2}  ")
    t = LLMTeacher(engine, PromptTemplates(), SamplingParams(max_new_tokens=64))
    items = [replace(it, critique="Wrong sum.\nConclusion: wrong") for it in _items(2)]
    assert t.refine(items) == ["solution \\boxed{2}"] * 2
    req = engine.calls[-1][1][1]["content"]
    assert "What is 1 + 1?" in req and "I think 1 + 1 = 3." in req and "Wrong sum." in req
    t.answer(items)
    assert "What is 0 + 0?" in engine.calls[-1][0][1]["content"] and "I think" not in engine.calls[-1][0][1]["content"]
    with pytest.raises(ValueError, match="critique"):
        t.refine(_items(1))
    other = LLMTeacher(engine, PromptTemplates(direct_request="Solve: {question}"), SamplingParams())
    assert t.identity.startswith("llm:scripted@1#") and other.identity != t.identity
    assert LLMTeacher(engine, PromptTemplates(), SamplingParams(max_new_tokens=64)).identity == t.identity
    assert LLMTeacher(engine, identity="my-teacher").identity == "my-teacher"


def test_llm_teacher_with_real_generation(tmp_path_factory):
    """Real generation through HFEngine: a random tiny model never gives a verdict (flagged after the retry);
    the same model fine-tuned for 40 steps to end its reviews with a verdict does."""
    from test_train import build_tiny_model  # the tiny random Qwen2 built by test_train.py

    from harness.distill.train_config import TrainConfig
    from harness.distill.trainer import train_student

    hf = pytest.importorskip("harness.engines.hf")
    model_dir = build_tiny_model(tmp_path_factory.mktemp("tiny_model"))
    prompts = PromptTemplates()
    params = SamplingParams(max_new_tokens=12)
    items = _items(4)

    random_teacher = LLMTeacher(hf.HFEngine(model_dir, batch_size=4, device="cpu", dtype="float32"), prompts,
                                params, batch_size=3)
    crits = random_teacher.critique(items)
    assert len(crits) == 4 and all(conclusion_of(c) is None for c in crits)
    assert random_teacher.last_stats == {"critiques": 4, "missing_conclusion": 4, "fixed_by_retry": 0, "flagged": 4}
    assert random_teacher.critique(items) == crits  # greedy: deterministic
    assert len(random_teacher.answer(items)) == 4

    examples = [{"prompt": prompts.messages_for("critique_request", question=it.question, answer=it.probe),
                 "completion": [{"role": "assistant", "content": "Checked the sum.\nConclusion: right"}]}
                for it in items]
    trained = train_student(model_dir, examples, tmp_path_factory.mktemp("teacher"),
                            TrainConfig(use_lora=False, max_steps=40, learning_rate=3e-3, per_device_batch_size=4,
                                        warmup_ratio=0.0), progress=False)
    teacher = LLMTeacher(hf.HFEngine(trained.model_dir, batch_size=4, device="cpu", dtype="float32"), prompts,
                         params, batch_size=3)
    crits = teacher.critique(_items(6))  # two questions it was not trained on
    assert [conclusion_of(c) for c in crits] == ["right"] * 6
    assert teacher.last_stats["flagged"] == 0


def test_llm_teacher_bounded_retries_continue_the_conversation_and_count_usage():
    """Up to conclusion_retries follow-ups, each one turn further (a greedy model is never asked the same thing
    twice, so the call cache cannot answer a retry with the previous reply); tokens and flags per item."""
    reminder = PromptTemplates().conclusion_reminder

    def reply(msgs):
        turns = sum(m["content"] == reminder for m in msgs)
        q = msgs[1]["content"]
        if turns == 0:
            return "Hmm."
        if "1 + 1" in q and turns == 2:
            return "Conclusion: right"
        return f"still thinking ({turns})"

    class Counting(ScriptedEngine):
        def generate(self, prompts, params, progress=None):
            out = super().generate(prompts, params, progress)
            return [[Completion(text=c[0].text, prompt_tokens=10, completion_tokens=3, cached=False)] for c in out]

    engine = Counting(reply)
    t = LLMTeacher(engine, PromptTemplates(), SamplingParams(max_new_tokens=64), batch_size=8, conclusion_retries=3)
    crits = t.critique(_items(3))
    assert [conclusion_of(c) for c in crits] == [None, "right", None]
    second_retry = [p for p in engine.calls[2] if "1 + 1" in p[1]["content"]][0]
    assert [m["content"] for m in second_retry[2:]] == ["Hmm.", reminder, "still thinking (1)", reminder]
    u = [x.to_dict() for x in t.last_usage]
    assert [x["retries"] for x in u] == [3, 2, 3] and [x["flagged"] for x in u] == [True, False, True]
    assert u[0]["requests"] == 4 and u[0]["tokens_in"] == 40 and u[0]["tokens_out"] == 12
    assert t.last_stats == {"critiques": 3, "missing_conclusion": 3, "fixed_by_retry": 1, "flagged": 2}
    none = LLMTeacher(Counting(reply), conclusion_retries=0).critique(_items(2))
    assert [conclusion_of(c) for c in none] == [None, None]


def test_refine_reads_the_specific_critique():
    engine = ScriptedEngine(lambda msgs: "ok")
    it = _items(1)[0]
    it.critique = "GENERIC"
    it.meta.critique_swap = CritiqueSwap(specific="the teacher's own words", came_from="generic")
    LLMTeacher(engine).refine([it])
    sent = engine.calls[0][0][-1]["content"]
    assert "the teacher's own words" in sent and "GENERIC" not in sent
