"""The run as units of work: what an executor ships to a worker, and the typed values the stages hand each other.

A unit is a frozen value with a name (unique in the run, derived from what it computes), its fingerprint (the key
its stored output is reused under) and its resource needs. An executor (harness/executors/) runs units wherever
they fit; only the driver writes the run folder and the call cache, from the values units return.

Kinds, in the order a run's graph has them:
- ``teacher`` (a teacher-data stage over the pool: probe, critique, refine, direct) -> training items;
- ``train`` (method x seed x cell) -> ``TrainedModel``;
- ``eval`` (model x task [x shard]) -> ``TaskEval`` (the records themselves travel in ``EvalOutput``);
- ``aggregate`` -> results.json and the report.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class Resources:
    """What one unit asks a scheduler for (Ray's num_gpus / num_cpus / memory)."""

    gpus: float = 0.0
    cpus: float = 1.0
    memory_gb: float = 0.0


@dataclass(frozen=True)
class Unit:
    kind: str  # teacher | train | eval | aggregate
    name: str  # unique in the run: "train/cgd", "eval/base/gsm8k"
    fingerprint: str
    resources: Resources = Resources()
    after: tuple[str, ...] = ()  # names of the units whose outputs this one reads
    #: Estimated seconds on one unit of its resources (planning only: the dry-run schedule).
    estimate_s: float = 0.0


@dataclass
class TrainedModel:
    """One method's trained student, as the train stage hands it on (and the manifest records it)."""

    method: str
    model_dir: str  # the folder evaluated: final/ or the selected checkpoint
    adapter: bool  # a LoRA adapter over the student (else a full checkpoint)
    examples: int
    fingerprint: str
    truncation: dict[str, int]
    reused: bool
    metrics: dict[str, Any]  # train_metrics.json plus the checkpoint selection


@dataclass
class TaskEval:
    """One (model, task) pair's evaluation: its fingerprints and whether stored samples were reused."""

    model: str
    task: str
    fingerprint: str  # generation fingerprint key
    scoring: str  # scoring fingerprint key
    reused: Optional[str] = None  # "samples" | "responses (re-scored: grader changed)" | None (generated)
    seconds: Optional[float] = None
    shared_from: Optional[str] = None  # a sweep's donor cell whose sample file was linked in

    def record(self) -> dict[str, Any]:
        """The manifest's per-task entry."""
        out: dict[str, Any] = {"fingerprint": self.fingerprint, "scoring": self.scoring, "reused": self.reused}
        if self.seconds is not None:
            out["seconds"] = self.seconds
        if self.shared_from is not None:
            out["shared_from"] = self.shared_from
        return out


@dataclass
class ModelEval:
    """Every task of one model: its identity, the engine that served it (when one was loaded) and cache use."""

    name: str
    path: str
    adapter: Optional[str]
    identity: str
    tasks: dict[str, TaskEval] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=dict)
    cache_hits: int = 0
    cache_misses: int = 0
    loaded: bool = False  # an engine was loaded for this model in this run


@dataclass
class EvalOutput:
    """What an evaluation unit returns to the driver: the records to store, the engine's description, and the
    model calls it made (new call-cache rows: the driver alone writes the cache)."""

    records: list[Any]  # common.artifacts.SampleRecord
    engine: dict[str, Any]
    hits: int
    misses: int
    seconds: float = 0.0
    new_cache_rows: list[tuple[str, str, str, Any]] = field(default_factory=list)


@dataclass
class Outcome:
    """An executed unit: its value, or the error it failed with after every attempt."""

    unit: Unit
    value: Any = None
    error: Optional[str] = None
    attempts: int = 1
    log: Optional[str] = None  # per-unit error log under the run folder
