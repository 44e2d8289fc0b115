"""cft_star: CFT trained on critiques given with the pool (the paper's CFT*: TIGER-Lab's released WebInstruct-CFT
critiques by GPT-4o), (x, y'_given) -> c_given. It needs no probe and no teacher: the student answer and the
critique come from the dataset (pool.student_answer_field / pool.critique_field)."""
from __future__ import annotations

from harness.distill.items import TrainItem
from harness.distill.methods.base import Method


class CFTStar(Method):
    name = "cft_star"
    description = "CFT on given critique data: (question, given answer) -> given critique (the paper's CFT*)."
    needs = frozenset()
    #: pool fields this method reads (the plan refuses a pool without them)
    pool_fields = ("student_answer_field", "critique_field")

    def build_example(self, item: TrainItem) -> dict | None:
        given = item.meta.given
        if given is None or not (given.answer and given.critique):
            return None
        return {
            "prompt": self.prompts.messages_for("cft_input", question=item.question, answer=given.answer),
            "completion": [{"role": "assistant", "content": given.critique}],
        }
