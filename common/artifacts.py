"""Pydantic models of everything a run writes and reads back: per-sample records and their file's fingerprint,
results.json, manifest.json and the CI baseline. Every writer and reader goes through these, so a field renamed
in one place cannot silently read as missing in another, and a folder from an older schema is refused with a
one-line message (``SchemaMismatch``) instead of a KeyError.

Schema history: 1 = the first release (no fingerprints, no params/seed/partial); 2 = this file.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal, Optional, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.common.files import CorruptFile, read_jsonl, write_json_atomic, write_jsonl_atomic
from harness.common.output_type import OutputType

SCHEMA_VERSION = 2
UPGRADE_HINT = "re-create it with `harness rescore RUN` (stored responses) or `harness report RUN` after upgrading"


class SchemaMismatch(ValueError):
    """A stored artifact written by another schema version, or not readable as one; the message says the fix."""


class Artifact(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


# ---- per-sample records ---------------------------------------------------------------------------------
class SampleRecord(Artifact):
    """One evaluated item of one model on one task."""

    id: str
    #: Absent for sensitive tasks (GPQA): questions and golds never leave memory in plain text.
    prompt: Any = None
    gold: Any = None
    response: Optional[str] = None  # the first completion (generate tasks)
    responses: Optional[list[str]] = None  # all n completions
    finish_reason: Optional[str] = None  # of the first completion: "stop" | "length"
    #: How many of the n completions stopped at the token budget (generation truncation).
    truncated: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cached: bool = False
    loglikelihoods: Optional[list[list[Any]]] = None  # multiple_choice: [logprob, is_greedy] per choice
    score: float
    metrics: dict[str, float] = Field(default_factory=dict)
    extracted: Any = None
    details: dict[str, Any] = Field(default_factory=dict)


class Fingerprint(Artifact):
    """What produced a stored result. ``key`` is the hash compared for reuse; the parts say what differs."""

    key: str
    parts: dict[str, Any]


class SampleFileMeta(Artifact):
    """The sidecar of samples/<model>/<task>.jsonl: reused only when both fingerprints match."""

    schema_version: int = SCHEMA_VERSION
    model: str
    task: str
    n: int
    #: model identity + engine settings + task fingerprint (data, prompts, few-shot set) + generation params
    generation: Fingerprint
    #: generation key + grader versions: when only this differs, scores are recomputed from stored responses
    scoring: Fingerprint
    created: str


class ShardDone(Artifact):
    """The done record of one shard of a (model, task) evaluation: samples/<model>/<task>.shards/<k>of<n>.done.json,
    written after the shard's records (<k>of<n>.jsonl). A re-run reuses the shard when its fingerprint matches."""

    schema_version: int = SCHEMA_VERSION
    fingerprint: str  # the generation fingerprint's key + the shard's doc range
    start: int  # first doc (index into the task's docs)
    stop: int  # one past the last
    n: int  # records written
    seconds: float
    hits: int
    misses: int
    engine: dict[str, Any]


# ---- results.json -----------------------------------------------------------------------------------------
def _finite_or_none(v: Optional[float]) -> Optional[float]:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


class ResultRow(Artifact):
    model: str
    task: str
    metric: str
    value: float = Field(ge=0.0, le=1.0)
    n: int = Field(ge=0)
    ci_low: Optional[float] = None
    ci_high: Optional[float] = None
    ci_method: Optional[str] = None
    #: The experiment cell's parameters (sweeps) and seed; empty / None for a plain run.
    params: dict[str, Any] = Field(default_factory=dict)
    seed: Optional[int] = None
    #: Rows aggregated over training seeds (seed None, params["aggregate"] == "mean_over_seeds"): the sd of the
    #: per-seed values and the seeds; None on per-seed rows and in older files.
    sd: Optional[float] = None
    seeds: Optional[list[int]] = None
    #: The task ran on part of its benchmark (e.g. MuSR's 30-question viewer subset): full_n is the real size.
    partial: bool = False
    full_n: Optional[int] = None

    _finite = field_validator("ci_low", "ci_high")(_finite_or_none)


class Comparison(Artifact):
    model: str
    baseline: str
    task: str
    metric: str
    delta: Optional[float] = None
    ci_low: Optional[float] = None
    ci_high: Optional[float] = None
    p_value: Optional[float] = Field(None, ge=0.0, le=1.0)
    n: int = Field(ge=0)
    wins: int = Field(ge=0)
    losses: int = Field(ge=0)
    test: Optional[str] = None
    params: dict[str, Any] = Field(default_factory=dict)
    seed: Optional[int] = None

    _finite = field_validator("delta", "ci_low", "ci_high")(_finite_or_none)


class Results(Artifact):
    schema_version: Literal[2] = SCHEMA_VERSION
    run_id: str
    #: Row order of models: base first, then the methods as configured (report/rescore keep it).
    model_order: list[str] = Field(default_factory=list)
    primary_metrics: dict[str, str]
    stats: dict[str, Any] = Field(default_factory=dict)
    rows: list[ResultRow]
    comparisons: list[Comparison] = Field(default_factory=list)


# ---- manifest.json ----------------------------------------------------------------------------------------
class ModelRecord(Artifact):
    """One evaluated (or trained) model of a run."""

    path: str
    adapter: Optional[str] = None
    identity: Optional[str] = None  # the engine identity that made its samples (None until evaluated)
    engine: dict[str, Any] = Field(default_factory=dict)  # engine.describe(): parts and settings, no secrets
    method: Optional[str] = None
    #: train_metrics.json of a trained model, with its fingerprint and truncation counts.
    train: dict[str, Any] = Field(default_factory=dict)
    eval: dict[str, Any] = Field(default_factory=dict)  # per task: seconds, reused or not, cache hits


class TaskRecord(Artifact):
    n: int
    full_n: Optional[int] = None
    partial: bool = False
    output_type: OutputType
    primary_metric: str
    sensitive: bool = False
    options: dict[str, Any] = Field(default_factory=dict)
    fingerprint: str  # task fingerprint: name, options, data digest (ids, prompts, golds, choices)
    generation: Optional[dict[str, Any]] = None  # the SamplingParams every model got


class Manifest(Artifact):
    schema_version: Literal[2] = SCHEMA_VERSION
    run_id: str
    created: str
    command: str = ""
    config: dict[str, Any]
    methods: list[str]
    model_order: list[str]
    models: dict[str, ModelRecord]
    tasks: dict[str, TaskRecord]
    #: The engine settings every model was evaluated with (backend, dtype, device, batch size, options).
    eval_settings: dict[str, Any] = Field(default_factory=dict)
    skipped_tasks: dict[str, str] = Field(default_factory=dict)
    training_data: dict[str, Any] = Field(default_factory=dict)  # per stage: fingerprint, counts, reused
    versions: dict[str, Optional[str]] = Field(default_factory=dict)
    git: dict[str, Any] = Field(default_factory=dict)
    hardware: dict[str, Any] = Field(default_factory=dict)
    seeds: dict[str, Any] = Field(default_factory=dict)
    data_dir: Optional[str] = None
    timings_seconds: dict[str, float] = Field(default_factory=dict)
    cache: dict[str, Any] = Field(default_factory=dict)
    #: Where the units ran: {"kind": "local"|"ray", "address", "nodes", "resources": {"CPU", "GPU", ...}}.
    executor: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    rescored: Optional[dict[str, Any]] = None
    #: A sweep/seed experiment: in a cell's folder {"cell", "params", "seed"}; at the top {"cells": [...], ...}.
    experiment: Optional[dict[str, Any]] = None


# ---- baseline ---------------------------------------------------------------------------------------------
class BaselineRow(Artifact):
    model: str
    task: str
    metric: str
    value: float
    n: Optional[int] = None
    ci_low: Optional[float] = None
    ci_high: Optional[float] = None
    tolerance: Optional[float] = Field(None, ge=0.0)
    params: dict[str, Any] = Field(default_factory=dict)
    seed: Optional[int] = None
    #: item id -> the item's value of this metric in the baseline's run (for `harness check
    #: --require-significance`, a paired test against the checked run's items); None when not recorded
    items: Optional[dict[str, float]] = None


class BaselineSource(Artifact):
    """Where a baseline came from, so a failing gate can say what changed."""

    run_id: str
    #: model -> engine identity that made its samples
    identities: dict[str, Optional[str]] = Field(default_factory=dict)
    #: "model/task" -> generation fingerprint key of its samples
    fingerprints: dict[str, str] = Field(default_factory=dict)
    task_fingerprints: dict[str, str] = Field(default_factory=dict)
    versions: dict[str, Optional[str]] = Field(default_factory=dict)
    git_commit: Optional[str] = None


class Baseline(Artifact):
    schema_version: Literal[2] = SCHEMA_VERSION
    kind: Literal["baseline"] = "baseline"
    tolerance: float = Field(0.02, ge=0.0)
    #: per-task ("math500") or per-metric ("math500/accuracy") tolerances, over the file-wide one
    tolerances: dict[str, float] = Field(default_factory=dict)
    primary_metrics: dict[str, str] = Field(default_factory=dict)
    source: Optional[BaselineSource] = None
    rows: list[BaselineRow]


# ---- reading and writing ----------------------------------------------------------------------------------
A = TypeVar("A", bound=Artifact)


def _one_line(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "top level"
    return f"{loc}: {err['msg']}"


def load_artifact(cls: type[A], path: str | Path, what: str | None = None) -> A:
    """Read a JSON artifact; any problem is a one-line SchemaMismatch/ValueError naming the file and the fix."""
    path = Path(path)
    what = what or cls.__name__
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SchemaMismatch(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); regenerate it") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if "schema_version" in cls.model_fields and version != SCHEMA_VERSION:
        raise SchemaMismatch(f"{path} was written by schema version {version} (this harness reads "
                             f"{SCHEMA_VERSION}); {UPGRADE_HINT}")
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise SchemaMismatch(f"{path}: invalid {what} ({_one_line(e)}); {UPGRADE_HINT}") from None


def save_artifact(path: str | Path, obj: Artifact) -> None:
    write_json_atomic(Path(path), obj.model_dump(mode="json"))


def read_samples(path: str | Path) -> list[SampleRecord]:
    try:
        rows = read_jsonl(path)
        return [SampleRecord.model_validate(r) for r in rows]
    except CorruptFile as e:
        raise SchemaMismatch(str(e)) from None
    except ValidationError as e:
        raise SchemaMismatch(f"{path}: invalid sample record ({_one_line(e)}); {UPGRADE_HINT}") from None


def write_samples(path: str | Path, records: list[SampleRecord]) -> None:
    # Absent rather than null: a sensitive task's records hold no "prompt" or "gold" key at all.
    write_jsonl_atomic(Path(path), (r.model_dump(mode="json", exclude_none=True) for r in records))
