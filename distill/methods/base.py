"""What a distillation method is: which teacher outputs it needs and how it turns a TrainItem into one
prompt-completion training example. Every method is plain SFT with loss on the completion only."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from harness.common.stages import STAGES  # noqa: F401  (stages a method can need, in pipeline order; re-exported)
from harness.distill.items import TrainItem


class Method(ABC):
    name: ClassVar[str]
    description: ClassVar[str] = ""
    #: Pipeline stages whose outputs this method's examples use.
    needs: ClassVar[frozenset[str]] = frozenset()
    #: Pool config fields (harness PoolConfig) that must be set for this method, e.g. given critique data.
    pool_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, prompts=None) -> None:
        from harness.distill.prompts import PromptTemplates

        self.prompts = prompts or PromptTemplates()

    @abstractmethod
    def build_example(self, item: TrainItem) -> dict | None:
        """{"prompt": [messages], "completion": [{"role": "assistant", "content": ...}]}, or None to skip."""
