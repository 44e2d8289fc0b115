"""sft: plain imitation of the dataset's reference solution, x -> y*."""
from __future__ import annotations

from harness.distill.items import TrainItem
from harness.distill.methods.base import Method


class SFT(Method):
    name = "sft"
    description = "Supervised fine-tuning on the dataset's reference solutions: question -> reference answer y*."
    needs = frozenset()

    def build_example(self, item: TrainItem) -> dict | None:
        if not item.gold_solution:
            return None
        return {
            "prompt": self.prompts.messages_for("question", question=item.question),
            "completion": [{"role": "assistant", "content": item.gold_solution}],
        }
