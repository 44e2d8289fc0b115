"""cgd: Critique-Guided Distillation (the paper's method), (x, y', c) -> r."""
from __future__ import annotations

from harness.distill.items import TrainItem
from harness.distill.methods.base import Method


class CGD(Method):
    name = "cgd"
    description = "Critique-guided distillation: (question, student answer, critique) -> teacher's refined answer r."
    needs = frozenset({"probe", "critique", "refine"})

    def build_example(self, item: TrainItem) -> dict | None:
        if not (item.probe and item.critique and item.refined):
            return None
        prompt = self.prompts.messages_for(
            "cgd_input", question=item.question, answer=item.probe, critique=item.critique
        )
        return {"prompt": prompt, "completion": [{"role": "assistant", "content": item.refined}]}
