"""The engine protocol every generation backend implements, and the types it speaks.

An engine carries its own identity: ``identity`` names what produces the outputs (weights, adapter, tokenizer
and chat-template digests, dtype, backend), and ``render`` gives what the model actually sees for a prompt. The
call cache keys on both, so nothing outside an engine needs to know how a backend identifies a model.
"""
from __future__ import annotations

from typing import Any, ClassVar, Protocol, Sequence, runtime_checkable

from pydantic import BaseModel, ConfigDict

from harness.common.types import Completion, Message, Prompt, ProgressFn, SamplingParams

__all__ = ["Completion", "Engine", "EngineOptions", "Message", "Prompt", "ProgressFn", "SamplingParams"]


class EngineOptions(BaseModel):
    """Backend-specific options (``engine.options`` in the config); each engine declares its own subclass, so a
    misspelt option is an error that names the valid ones."""

    model_config = ConfigDict(extra="forbid")


@runtime_checkable
class Engine(Protocol):
    """What the pipeline needs from a model backend."""

    backend: ClassVar[str]
    #: Stable identity of what produces the outputs: backend, weights + adapter, tokenizer and chat-template
    #: digests, dtype. Part of every cache key and every sample file's fingerprint.
    identity: str

    def describe(self) -> dict[str, Any]:
        """Identity parts and settings, for the manifest (no secrets)."""
        ...

    def render(self, prompt: Prompt) -> Prompt:
        """What the model sees for ``prompt``: the text after the chat template for local engines, the messages
        themselves for chat APIs (the server applies its template)."""
        ...

    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams, progress: ProgressFn | None = None
    ) -> list[list[Completion]]:
        """Return ``params.n`` completions for every prompt, in order."""
        ...

    def loglikelihood(
        self, requests: Sequence[tuple[Prompt, str]], progress: ProgressFn | None = None
    ) -> list[tuple[float, bool]]:
        """For each (context, continuation): summed log-probability of the continuation and whether
        it is the greedy continuation. Chat contexts are rendered with the generation prompt appended."""
        ...
