"""distilled_sft: imitate the teacher's own direct answer, x -> t."""
from __future__ import annotations

from harness.distill.items import TrainItem
from harness.distill.methods.base import Method


class DistilledSFT(Method):
    name = "distilled_sft"
    description = "Fine-tuning on the teacher's direct answers: question -> teacher answer t."
    needs = frozenset({"direct"})

    def build_example(self, item: TrainItem) -> dict | None:
        if not item.direct:
            return None
        return {
            "prompt": self.prompts.messages_for("question", question=item.question),
            "completion": [{"role": "assistant", "content": item.direct}],
        }
