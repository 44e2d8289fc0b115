"""cft: Critique Fine-Tuning (Wang et al. 2025) as reimplemented in the CGD paper, (x, y') -> c."""
from __future__ import annotations

from harness.distill.items import TrainItem
from harness.distill.methods.base import Method


class CFT(Method):
    name = "cft"
    description = "Critique fine-tuning: (question, student answer) -> teacher critique c."
    needs = frozenset({"probe", "critique"})

    def build_example(self, item: TrainItem) -> dict | None:
        if not (item.probe and item.critique):
            return None
        return {
            "prompt": self.prompts.messages_for("cft_input", question=item.question, answer=item.probe),
            "completion": [{"role": "assistant", "content": item.critique}],
        }
