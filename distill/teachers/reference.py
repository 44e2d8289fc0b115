"""The reference teacher: a cheap, deterministic teacher for real datasets that ship worked solutions.

- critique: compares the student's final answer (Qwen-style extraction) with the gold answer using math-verify,
  and writes a short review in our wording ending with the Conclusion line.
- refine and answer: the dataset's gold solution, ending with \\boxed{gold answer} (appended when it has no box).

It needs no model, so a CGD/CFT run on MATH train can be built without an LLM teacher; its critiques are far less
informative than an LLM's (they judge only the final answer).
"""
from __future__ import annotations

import threading
from typing import Sequence

from math_verify import parse, verify

from harness.distill.items import TrainItem
from harness.distill.teachers import register_teacher
from harness.tasks.scorers.extract import extract_answer, last_boxed

_TIMEOUT_S = 5  # math-verify's own default; it uses SIGALRM, which only works in the main thread


def answers_match(gold: str, predicted: str) -> bool:
    """math-verify equivalence of two bare answers (wrapped in \\boxed{} so its LaTeX extraction finds them)."""
    if gold.strip() == predicted.strip():
        return True
    timeout = _TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
    try:
        g = parse(f"\\boxed{{{gold}}}", parsing_timeout=timeout)
        p = parse(f"\\boxed{{{predicted}}}", parsing_timeout=timeout)
        return bool(g and p and verify(g, p, timeout_seconds=timeout))
    except Exception:  # math-verify timeouts and sympy errors: judge as not matching
        return False


def with_boxed_answer(solution: str, gold_answer: str) -> str:
    """The solution, with a closing \\boxed{gold} sentence when it has no box of its own."""
    if last_boxed(solution) is not None:
        return solution
    return f"{solution.rstrip()}\n\nThe final answer is $\\boxed{{{gold_answer}}}$."


def reference_critique(item: TrainItem) -> str:
    """A short review of item.probe against item.gold_answer, ending in 'Conclusion: right|wrong'."""
    predicted, how = extract_answer(item.probe or "")
    if predicted is None:
        return (
            "The response never states a final answer that can be identified: there is no \\boxed{} answer, "
            "no \"the answer is\" sentence and no final number. A solution has to commit to a final result.\n"
            f"The expected final answer is {item.gold_answer}.\n"
            "Conclusion: wrong"
        )
    where = {"boxed": "boxed", "answer_is": "stated", "last_number": "last number given"}[how]
    if answers_match(item.gold_answer, predicted):
        return (
            f"The final answer ({where}) is {predicted}, which agrees with the expected answer "
            f"{item.gold_answer}. The solution reaches the correct result.\n"
            "Conclusion: right"
        )
    return (
        f"The final answer ({where}) is {predicted}, but the expected answer is {item.gold_answer}. "
        "Somewhere the reasoning goes wrong; the steps should be rechecked against the problem's conditions.\n"
        "Conclusion: wrong"
    )


@register_teacher("reference")
class ReferenceTeacher:
    """Teacher built from the dataset's gold solutions (see the module docstring)."""

    identity = "reference-v1"
    needs_engine = False

    @classmethod
    def from_config(cls, section, prompts=None, engine=None, params=None, identity=None) -> "ReferenceTeacher":
        return cls()

    def critique(self, items: Sequence[TrainItem]) -> list[str]:
        missing = [it.id for it in items if it.probe is None]
        if missing:
            raise ValueError(f"{len(missing)} item(s) have no student answer (e.g. {missing[0]!r}); "
                             "fix: run the probe stage before the critique stage")
        return [reference_critique(it) for it in items]

    def refine(self, items: Sequence[TrainItem]) -> list[str]:
        return [with_boxed_answer(it.gold_solution, it.gold_answer) for it in items]

    def answer(self, items: Sequence[TrainItem]) -> list[str]:
        return [with_boxed_answer(it.gold_solution, it.gold_answer) for it in items]
