"""The Teacher interface: every teacher (oracle, reference, LLM) critiques, refines and answers in batches."""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from harness.common.types import Completion, Prompt, ProgressFn, SamplingParams
from harness.distill.items import TrainItem


@runtime_checkable
class TextModel(Protocol):
    """What an LLM teacher needs from a model (the harness passes its cached engine; tests may pass any object)."""

    identity: str

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams,
                 progress: ProgressFn | None = None) -> list[list[Completion]]:
        ...


@runtime_checkable
class Teacher(Protocol):
    #: Stable identity (part of cache keys and the manifest).
    identity: str

    def critique(self, items: Sequence[TrainItem]) -> list[str]:
        """c for each item's (x, y'); each ends with one line 'Conclusion: right' or 'Conclusion: wrong'."""
        ...

    def refine(self, items: Sequence[TrainItem]) -> list[str]:
        """r for each item's (x, y', c): a complete improved answer."""
        ...

    def answer(self, items: Sequence[TrainItem]) -> list[str]:
        """t for each item's x: the teacher's own direct answer."""
        ...
