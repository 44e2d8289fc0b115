"""Held-out questions from the training pool, evaluated like a math task.

The paper selected checkpoints on MATH-500, a test set. This task gives every run a validation score
computed on training-distribution questions that no method trained on (pool.validation_n > 0).

The items are plain ``QAItem`` (id, question, gold answer): tasks know nothing of the distillation layer. Any object
with ``id``, ``question`` and ``gold_answer`` attributes (a ``harness.distill.items.TrainItem``) is accepted and copied.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from harness.tasks.base import Doc, GenerationConfig, Scored, Task
from harness.tasks.prompts import math_messages


@dataclass(frozen=True)
class QAItem:
    """One held-out question with its gold final answer."""

    id: str
    question: str
    gold_answer: str


def as_qa_item(item: Any) -> QAItem:
    if isinstance(item, QAItem):
        return item
    return QAItem(id=str(item.id), question=str(item.question), gold_answer=str(item.gold_answer))


class PoolValidation(Task):
    name = "pool_validation"
    description = "held-out training-pool questions (validation split)"
    primary_metric = "accuracy"
    generation = GenerationConfig(max_new_tokens=512)
    grader_version = "1"  # math-verify on the whole response, as the math tasks
    grader_packages = ("math-verify", "latex2sympy2_extended", "sympy")

    def __init__(self, items: Sequence[QAItem] = (), **options: Any) -> None:
        super().__init__(**options)
        self.items = [as_qa_item(it) for it in items]

    def docs(self) -> list[Doc]:
        return [Doc(id=it.id, prompt=math_messages(it.question), gold=it.gold_answer) for it in self.items]

    def score_many(self, docs: Sequence[Doc], responses: Sequence[Sequence[str]]) -> list[Scored]:
        from harness.tasks.scorers.math import grade_math_batch

        grades = grade_math_batch([(r[0], str(d.gold)) for d, r in zip(docs, responses)])
        return [Scored(id=d.id, score=float(g.correct), metrics={"accuracy": float(g.correct)},
                       extracted=g.extracted, details={"extraction_failed": g.extraction_failed,
                                                       "timed_out": g.timed_out})
                for d, g in zip(docs, grades)]
