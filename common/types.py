"""What a prompt is, for tasks, engines and teachers alike.

A prompt is either a list of chat messages (``[{"role": "user", "content": ...}]``), rendered with the model's
chat template by the engine, or a plain string fed to the model as it is (few-shot completion-style tasks).

Sampling parameters and completions are plain data shared by engines (which produce them) and teachers (which
consume them without knowing which engine made them).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Union

Message = dict[str, str]
Prompt = Union[list[Message], str]
ProgressFn = Callable[[int], None]  # called with the number of units just finished


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
