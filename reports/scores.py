"""What results.json is built from (``harness.reports.stats.build_results``): each (model, task)'s scores, the
model order, what the run stamps on its rows, and how intervals resample. Plain values, no numpy: the pipeline
imports them without paying for the statistics."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from harness.common.artifacts import Results
from harness.tasks.base import Scored


@dataclass(frozen=True)
class TaskScores:
    """One (model, task)'s scores, as results.json is built from them (harness/stages/aggregate.py makes them
    from the stored sample records)."""

    scored: Sequence[Scored]
    aggregate: Mapping[str, float]  # the task's metrics over every sample (``Task.aggregate``)
    #: The task's metrics over any resample of ``scored`` (``Task.aggregate``): the intervals and paired tests of
    #: metrics that are not a per-sample mean; None: those get null intervals and no comparison.
    aggregate_fn: Callable[[Sequence[Scored]], Mapping[str, float]] | None = None
    #: Per sample, the fraction of its completions that stopped at the token budget (generate tasks; None for
    #: log-likelihood tasks): a ``truncation_rate`` row, never compared.
    truncated: Sequence[float] | None = None


@dataclass(frozen=True)
class ModelOrder:
    """Which model the others are compared with, and the order of rows, of ``Results.model_order`` and of each
    pair (``model`` is the later of the two): the baseline, then ``configured`` (the manifest's order: the
    methods as configured), then any others in their first-seen order."""

    baseline: str = "base"
    configured: Sequence[str] | None = None

    @classmethod
    def kept_from(cls, existing: Results, baseline: str = "base") -> "ModelOrder":
        """The order of the results.json being re-aggregated (``harness report``/``rescore`` keep cft - sft)."""
        return cls(baseline, existing.model_order or None)

    def of(self, models: Iterable[str]) -> list[str]:
        return run_model_order(models, self.baseline, self.configured)


@dataclass(frozen=True)
class Stamp:
    """What a run stamps on its rows: the experiment cell's ``params`` and ``seed`` (every row and comparison),
    and per task evaluated on part of its benchmark, the benchmark's full size (its rows: ``partial``, ``full_n``)."""

    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = None
    partial: Mapping[str, int] = field(default_factory=dict)

    def on_comparisons(self) -> dict[str, Any]:
        return {"params": dict(self.params), "seed": self.seed}

    def on_rows(self, task: str) -> dict[str, Any]:
        return {**self.on_comparisons(), "partial": task in self.partial, "full_n": self.partial.get(task)}


@dataclass(frozen=True)
class Resampling:
    """How intervals and paired tests resample items. The bootstrap of a statistic that is not a per-sample mean
    costs one ``aggregate_fn`` call per resample (all such metrics of a (model, task) share the calls), hence its
    own, smaller ``statistic_resamples``."""

    confidence: float = 0.95
    n_resamples: int = 2000
    seed: int = 0
    statistic_resamples: int = 1000



def run_model_order(models: Iterable[str], baseline_model: str = "base",
                    model_order: Sequence[str] | None = None) -> list[str]:
    """``models`` in run order: the baseline model, then ``model_order`` (the configured methods), then any
    others in their first-seen order."""
    present = list(dict.fromkeys(models))
    return [m for m in dict.fromkeys([baseline_model, *(model_order or []), *present]) if m in present]
