"""The engine protocol every generation backend implements.

A prompt is either a list of chat messages (``[{"role": "user", "content": ...}]``), rendered with the
model's chat template, or a plain string, fed to the model as-is (used by few-shot completion-style tasks).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol, Sequence, Union, runtime_checkable

Message = dict[str, str]
Prompt = Union[list[Message], str]


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 512
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    n: int = 1  # completions per prompt
    seed: int = 0
    stop: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


@dataclass
class Completion:
    text: str
    finish_reason: str = "stop"  # "stop" (eos or stop string) | "length"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cached: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


ProgressFn = Callable[[int], None]  # called with the number of prompts just finished


@runtime_checkable
class Engine(Protocol):
    """What the pipeline needs from a model backend."""

    #: Stable identity of the weights being served: base model + adapter digest. Part of every cache key.
    identity: str

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


@dataclass
class EngineSpec:
    """How to build an engine: which backend, which weights, which adapter."""

    backend: str = "hf"
    model: str = "tiny"
    adapter: str | None = None
    options: dict = field(default_factory=dict)
