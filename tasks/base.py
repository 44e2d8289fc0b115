"""What a benchmark task is: load -> prompts -> (generate) -> extract -> score -> aggregate.

One module per benchmark registers a ``Task`` subclass with ``@register_task``. Tasks are either
``generate`` (the engine writes a response that is extracted and scored) or ``multiple_choice``
(the engine scores each choice's log-likelihood; no generation).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar, Sequence

from common.types import Prompt


@dataclass
class Doc:
    """One evaluation item, ready to prompt."""

    id: str  # the dataset's own id where it has one, else "<subset>/<0-based row index>"
    prompt: Prompt
    gold: Any
    choices: list[str] | None = None  # multiple_choice: the continuations to score
    meta: dict = field(default_factory=dict)


@dataclass
class Scored:
    """The score of one item. ``score`` is the task's primary per-sample metric in [0, 1]."""

    id: str
    score: float
    metrics: dict[str, float] = field(default_factory=dict)
    extracted: Any = None
    details: dict = field(default_factory=dict)  # e.g. grader_disagreement, extraction_failed, timed_out, status

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = 1024
    temperature: float = 0.0
    n: int = 1
    stop: tuple[str, ...] = ()


def generation_from_options(base: GenerationConfig, options: dict[str, Any]) -> GenerationConfig:
    """The class default generation settings with any of max_new_tokens/temperature/n/stop overridden."""
    over = {k: options[k] for k in ("max_new_tokens", "temperature", "n") if options.get(k) is not None}
    if options.get("stop") is not None:
        over["stop"] = tuple(options["stop"])
    return replace(base, **over)


class Task(ABC):
    """Base class of every benchmark task."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    output_type: ClassVar[str] = "generate"  # or "multiple_choice"
    primary_metric: ClassVar[str] = "accuracy"
    #: Folder under HARNESS_DATA_DIR holding the local mirror (None = no local data needed).
    local_dir: ClassVar[str | None] = None
    #: Hugging Face hub dataset id used when the local mirror is missing (None = no hub fallback).
    hf_dataset: ClassVar[str | None] = None
    #: Questions may not be written in plain text to results, reports or logs (GPQA).
    sensitive: ClassVar[bool] = False
    generation: ClassVar[GenerationConfig] = GenerationConfig()

    def __init__(self, **options: Any) -> None:
        self.options = options

    @abstractmethod
    def docs(self) -> list[Doc]:
        """Load every item (raises ``tasks.data.DataMissing`` with a fix when the data is absent)."""

    def score(self, doc: Doc, responses: Sequence[str]) -> Scored:
        """Score the generated response(s) of one doc (generate tasks)."""
        raise NotImplementedError(f"{self.name} does not score generations")

    def score_many(self, docs: Sequence[Doc], responses: Sequence[Sequence[str]]) -> list[Scored]:
        """Score many docs; tasks with slow or unsafe graders override this to use worker processes."""
        return [self.score(d, r) for d, r in zip(docs, responses)]

    def score_loglikelihoods(self, doc: Doc, loglikelihoods: Sequence[tuple[float, bool]]) -> Scored:
        """Score one doc from the log-likelihood of each of ``doc.choices`` (multiple_choice tasks)."""
        raise NotImplementedError(f"{self.name} does not score log-likelihoods")

    def aggregate(self, scored: Sequence[Scored]) -> dict[str, float]:
        """Task-level metrics; by default the mean of each per-sample metric (and of ``score``)."""
        if not scored:
            return {}
        names = {self.primary_metric} | {k for s in scored for k in s.metrics}
        out = {}
        for name in sorted(names):
            vals = [s.metrics.get(name, s.score if name == self.primary_metric else None) for s in scored]
            vals = [v for v in vals if v is not None]
            if vals:
                out[name] = sum(vals) / len(vals)
        return out

    def count(self) -> int:
        return len(self.docs())
