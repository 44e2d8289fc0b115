"""refine_only: the CGD ablation without the critique in the input, (x, y') -> r.

r is still the teacher's refinement written from (x, y', c), so the critique stage runs; the student just never
sees c."""
from __future__ import annotations

from harness.distill.items import TrainItem
from harness.distill.methods.base import Method


class RefineOnly(Method):
    name = "refine_only"
    description = "Ablation: (question, student answer) -> teacher's refined answer r, critique withheld."
    needs = frozenset({"probe", "critique", "refine"})

    def build_example(self, item: TrainItem) -> dict | None:
        if not (item.probe and item.refined):
            return None
        prompt = self.prompts.messages_for("refine_only_input", question=item.question, answer=item.probe)
        return {"prompt": prompt, "completion": [{"role": "assistant", "content": item.refined}]}
