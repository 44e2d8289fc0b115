"""Pydantic models of everything a run writes and reads back: per-sample records and their file's fingerprint,
results.json, manifest.json (each section typed: engines, evaluations, training, versions, hardware, seeds, ...)
and the CI baseline. Every writer and reader goes through these, so a field renamed in one place cannot silently
read as missing in another, and a file from another schema is refused with a one-line message
(``SchemaMismatch``) that says what to do, instead of a KeyError.

Schema history: 1 = the first release (no fingerprints, no params/seed/partial); 2 = fingerprints, params, seeds,
partial tasks; 3 = this file: the manifest's and results.json's sections typed (``models[m].train`` a
``TrainRecord``, ``models[m].eval[task]`` a ``TaskEvalRecord`` with the cache counts beside them, ``engine`` an
``EngineDescription``, ``stats`` a ``ResultsStats``, ...), ``exposure.budget_tokens`` (was ``target_tokens``) and
``train.completion_tokens_per_epoch`` (was ``target_tokens_per_epoch``). Version 2 sample sidecars, shard records
and baselines have the shape of version 3 and are read as they are; a version 2 manifest.json or results.json is
refused (re-running its command rewrites it, reusing every stored model and sample).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Optional, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.common.files import CorruptFile, read_jsonl, write_json_atomic, write_jsonl_atomic
from harness.common.output_type import OutputType

SCHEMA_VERSION = 3
UPGRADE_HINT = "re-create it with `harness rescore RUN` (stored responses) or `harness report RUN` after upgrading"
RERUN_HINT = ("re-run the command that made the run (manifest.json's `command`) with this harness: it reuses every "
              "trained model and sample whose fingerprint matches and rewrites the run's manifest.json, results.json "
              "and report.html")
BASELINE_FIX = "write a new one with `harness check RUN --write-baseline FILE` on a good run"


class SchemaMismatch(ValueError):
    """A stored artifact written by another schema version, or not readable as one; the message says the fix."""


class Artifact(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    #: What to do about a stored file of another schema version, and about one that does not validate.
    stale_fix: ClassVar[str] = UPGRADE_HINT
    invalid_fix: ClassVar[str] = UPGRADE_HINT


# ---- engines: what served a model -------------------------------------------------------------------
class ServedBy(Artifact):
    """The process that served a unit of evaluation (on Ray, an engine actor: base and adapters share one)."""

    host: str
    pid: int


class EngineDescription(Artifact):
    """``engine.describe()``: what names the model (identity, model, adapter and the digests in ``parts``) and the
    settings it was served with. A backend's own settings (vLLM's options, an API's host and rate limits) are kept
    as the engine gave them, so any engine plugin can describe itself."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    backend: str
    identity: Optional[str] = None
    model: Optional[str] = None
    adapter: Optional[str] = None
    #: Local engines: digests of name, revision, weights, tokenizer, chat template and adapter.
    parts: Optional[dict[str, Optional[str]]] = None
    device: Optional[str] = None
    dtype: Optional[str] = None
    batch_size: Optional[int] = None
    served_by: Optional[ServedBy] = None

    #: What names the model itself (differs between base and a trained model by design), not a setting.
    OWN: ClassVar[frozenset[str]] = frozenset({"identity", "adapter", "path", "model", "parts", "load_seconds",
                                                "note"})

    @property
    def chat_template(self) -> Optional[str]:
        """The chat template's digest (the same template must frame every model's prompts)."""
        return (self.parts or {}).get("chat_template")

    def settings(self) -> dict[str, Any]:
        """The settings it was served with, as the engine described them: what names the model left out, and a
        typed field the backend does not have (None: an API engine has no dtype) left out too."""
        typed = type(self).model_fields
        return {k: v for k, v in self.model_dump(mode="json").items()
                if k not in self.OWN and not (k in typed and v is None)}


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

    schema_version: Literal[3] = SCHEMA_VERSION
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

    schema_version: Literal[3] = SCHEMA_VERSION
    fingerprint: str  # the generation fingerprint's key + the shard's doc range
    start: int  # first doc (index into the task's docs)
    stop: int  # one past the last
    n: int  # records written
    seconds: float
    hits: int
    misses: int
    engine: EngineDescription


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
    #: per-seed values and the seeds; None on per-seed rows.
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


class ReasoningLength(Artifact):
    """Mean words and steps of one (model, task)'s completions (``harness.tasks.base.reasoning_length``): not a
    rate in [0, 1], so kept beside the rows; over seeds, the mean of the per-seed means with their sd."""

    model: str
    task: str
    words: float
    steps: float
    completions: Optional[int] = None  # completions measured (per cell; None on rows over seeds)
    words_sd: Optional[float] = None
    steps_sd: Optional[float] = None
    params: dict[str, Any] = Field(default_factory=dict)
    seed: Optional[int] = None


class ExperimentCell(Artifact):
    """Which cell of a sweep or seed experiment a run folder is (``harness.common.units.CellLabel``)."""

    cell: str
    params: dict[str, Any]  # dotted sweep key -> value (the seed apart)
    seed: Optional[int]


class ExperimentAbout(Artifact):
    """What an experiment varies (``harness.sweep.experiment_about``)."""

    sweep: dict[str, list[Any]] = Field(default_factory=dict)
    seeds: Optional[list[int]] = None
    seed_kind: Literal["train", "eval"] = "train"  # what a cell's seed sets
    table: Optional[dict[str, Any]] = None  # the config's ``experiment`` (a paper table to fill), as given


class ResultsExperiment(ExperimentAbout):
    """results.json's ``stats.experiment`` at the top of an experiment: its cells and what it varies."""

    cells: list[ExperimentCell]


class ResultsStats(Artifact):
    """How results.json's numbers were made, and what they were made from."""

    confidence: float = 0.95
    n_resamples: Optional[int] = None
    seed: Optional[int] = None  # the bootstrap's seed
    ci: Optional[str] = None  # how intervals were computed, in words
    p_value: Optional[str] = None  # which tests gave the p-values, in words
    seed_test: Optional[str] = None  # an experiment's test across seeds, in words
    #: A digest of everything the results were computed from: a re-run with the same inputs rewrites nothing.
    inputs: Optional[str] = None
    reasoning_length: list[ReasoningLength] = Field(default_factory=list)
    experiment: Optional[ResultsExperiment] = None


class Results(Artifact):
    schema_version: Literal[3] = SCHEMA_VERSION
    run_id: str
    #: Row order of models: base first, then the methods as configured (report/rescore keep it).
    model_order: list[str] = Field(default_factory=list)
    primary_metrics: dict[str, str]
    stats: ResultsStats = Field(default_factory=ResultsStats)
    rows: list[ResultRow]
    comparisons: list[Comparison] = Field(default_factory=list)

    stale_fix: ClassVar[str] = RERUN_HINT


# ---- manifest.json: how each model was evaluated --------------------------------------------------------------------
class GenerationSettings(Artifact):
    """The sampling parameters a task's generations got (``harness.common.types.SamplingParams``)."""

    max_new_tokens: int
    temperature: float
    top_p: float
    n: int
    seed: int
    stop: list[str]


class TaskEvalRecord(Artifact):
    """One (model, task) evaluation: ``models[m].eval[task]``."""

    fingerprint: str  # generation fingerprint key of its samples
    scoring: str  # scoring fingerprint key
    reused: Optional[str] = None  # "samples" | "responses (re-scored: grader changed)" | None (generated)
    seconds: Optional[float] = None
    #: The processes that evaluated it, one per unit (shard) in doc order.
    served_by: Optional[list[Optional[ServedBy]]] = None
    shared_from: Optional[str] = None  # a sweep's donor cell whose sample file was linked in
    #: The sampling this model got, where it was recorded per model (else the task's ``generation``).
    generation: Optional[GenerationSettings] = None


# ---- manifest.json: how each trained model was trained ------------------------------------------------------
class TruncationCounts(Artifact):
    """Training examples cut by ``train.max_length``, counted the way TRL builds them; target tokens are the
    completion's (what the loss is on)."""

    examples: int
    examples_truncated: int
    examples_dropped: int  # nothing of the completion is left: TRL drops these
    target_tokens: int
    target_tokens_lost: int

    @property
    def lost_share(self) -> float:
        return self.target_tokens_lost / self.target_tokens if self.target_tokens else 0.0


class TrainExposure(Artifact):
    """How much of its data one method's training saw (``harness.distill.exposure.plan_exposure``). A pass is one
    sweep over the examples TRL trains on (packed rows when packing: each holds whole examples), so data_passes =
    examples seen / examples."""

    budget: Literal["epochs", "tokens", "steps"]
    examples: int  # examples TRL trains on (after it drops the ones truncation emptied)
    rows: int  # rows per pass: packed rows when packing, else = examples
    packing: bool
    tokens_per_pass: int  # prompt + completion tokens in one pass
    budget_tokens: Optional[int]  # prompt + completion tokens the budget asks for (None for a fixed step count)
    world_size: int
    per_device_batch: int
    accumulation: int
    global_batch: int  # rows per optimiser step, all processes
    steps_per_pass: int
    steps: int  # optimiser steps
    rows_seen: int
    data_passes: float  # rows_seen / rows
    tokens_trained: Optional[int] = None  # measured: non-padding tokens the Trainer fed (all processes)

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        # train_metrics.json written before schema 3 called budget_tokens "target_tokens" (the same count): a
        # trained model stays reusable.
        if isinstance(data, dict) and "target_tokens" in data and "budget_tokens" not in data:
            data = {("budget_tokens" if k == "target_tokens" else k): v for k, v in data.items()}
        return data

    @property
    def repeats_data(self) -> bool:
        return self.data_passes > 1.0 + 1e-9


class SelectionPoint(Artifact):
    step: int
    value: Optional[float]  # the selection metric at this step (None: the task gave none)
    dir: str  # the checkpoint's folder under models/<method>/
    cache_hits: int = 0
    cache_misses: int = 0


class CheckpointSelection(Artifact):
    """Which checkpoint of a trained model is evaluated (harness/stages/select_checkpoint.py): without
    ``train.select_checkpoint``, the last (``on`` None); else the best on ``on``'s ``metric`` over ``curve``."""

    on: Optional[str] = None  # the task scored: pool_validation (held-out pool questions) or a test benchmark
    selected: str  # the folder evaluated (relative to models/<method>/), or how it was chosen
    n: Optional[int] = None  # items scored per checkpoint
    metric: Optional[str] = None
    every_steps: Optional[int] = None
    ties: Optional[Literal["last", "first"]] = None
    curve: list[SelectionPoint] = Field(default_factory=list)
    selected_step: Optional[int] = None
    last_step: Optional[int] = None
    selected_is_last: Optional[bool] = None
    test_set_selection: bool = False  # chosen on a test benchmark (optimistic numbers for it, as the paper did)
    selected_dir: Optional[str] = None


class TrainRecord(Artifact):
    """One method's trained student: ``models[method].train``. Most fields are the trainer's train_metrics.json
    (harness/distill/trainer.py), read by the train stage; the stage adds the fingerprint, reuse, truncation,
    checkpoint selection, recipe and exposure warnings."""

    fingerprint: str  # student identity + examples digest + training config: a stored model is reused on a match
    reused: bool  # trained by an earlier run of this folder (or a sweep cell it shares with)
    examples: int  # the method's training examples
    truncation: TruncationCounts
    selection: CheckpointSelection
    #: The method's own recipe (``train.recipes[method]``: the settings set in it; their values are in ``config``);
    #: None when it trained with the shared settings.
    recipe: Optional[dict[str, Union[float, int, str]]] = None
    exposure: Optional[TrainExposure] = None
    exposure_warnings: list[str] = Field(default_factory=list)  # the run's: methods saw their data unequally
    base_model: str
    adapter: bool  # a LoRA adapter over the student (else a full checkpoint)
    steps: int
    max_steps: int
    epochs: float
    examples_trained: int  # TRL drops examples whose completion was truncated away entirely
    tokens_seen: int  # non-padding prompt + completion tokens, every session
    tokens_per_epoch: int  # prompt + completion tokens of one epoch
    completion_tokens_per_epoch: Optional[int] = None  # the tokens the loss is on, in one epoch
    train_loss: float  # mean over the last session's steps
    loss_curve: list[tuple[int, float]] = Field(default_factory=list)  # (optimiser step, loss) as logged
    seconds: float  # the last session's wall time, model loading and tokenisation included
    train_runtime: Optional[float] = None
    resumed_from: Optional[str] = None
    trainable_params: int
    total_params: int
    device: str
    bf16: bool
    config: dict[str, Any]  # the TrainConfig it trained with (the method's recipe applied)
    versions: dict[str, str]  # torch, transformers, trl, peft

    @property
    def own_recipe(self) -> bool:
        return self.recipe is not None


# ---- manifest.json ----------------------------------------------------------------------------------------
class ModelRecord(Artifact):
    """One evaluated (or trained) model of a run."""

    path: str
    adapter: Optional[str] = None
    identity: Optional[str] = None  # the engine identity that made its samples (None until evaluated)
    engine: Optional[EngineDescription] = None  # None until an engine was loaded for it
    method: Optional[str] = None
    train: Optional[TrainRecord] = None  # a trained model's training
    eval: dict[str, TaskEvalRecord] = Field(default_factory=dict)  # per task
    #: The call cache's use by this model's engine in this run (None where no engine was loaded).
    cache_hits: Optional[int] = None
    cache_misses: Optional[int] = None


class TaskRecord(Artifact):
    n: int
    full_n: Optional[int] = None
    partial: bool = False
    output_type: OutputType
    primary_metric: str
    sensitive: bool = False
    options: dict[str, Any] = Field(default_factory=dict)
    fingerprint: str  # task fingerprint: name, options, data digest (ids, prompts, golds, choices)
    generation: Optional[GenerationSettings] = None  # the SamplingParams every model got (generate tasks)


class EvalSettings(Artifact):
    """The engine settings every model was evaluated with (``eval.engine``, ``eval.max_new_tokens``, ``eval.limit``)."""

    backend: str
    dtype: str
    device: str
    batch_size: int
    options: dict[str, Any] = Field(default_factory=dict)  # the backend's own options, as configured
    max_new_tokens: dict[str, int] = Field(default_factory=dict)  # per task ("*": every task)
    limit: Optional[int] = None


class GitInfo(Artifact):
    commit: Optional[str] = None  # None: not a git checkout, or git is missing
    dirty: Optional[bool] = None  # tracked files changed since the commit


class Hardware(Artifact):
    platform: str
    machine: str
    cpu_count: Optional[int] = None
    torch_threads: Optional[int] = None  # only when the run imported torch
    cuda: Optional[list[str]] = None  # device names
    cuda_version: Optional[str] = None
    mem_total_kb: Optional[int] = None


class Seeds(Artifact):
    run: int
    pool: int
    #: train.seed (the run seed when unset); an experiment's top manifest: its training seeds (None: it varies
    #: evaluation seeds instead).
    train: Union[int, list[int], None]
    eval: Optional[list[int]] = None  # an experiment's evaluation seeds


class Timings(Artifact):
    """Wall seconds of each phase of the run (a sweep's cells run phases side by side)."""

    student: Optional[float] = None
    training_data: Optional[float] = None
    train: Optional[float] = None
    evaluate: Optional[float] = None


class CacheRecord(Artifact):
    path: str  # the call cache's SQLite file
    corrupt_entries: int  # entries whose checksum failed: recomputed, never trusted


class ExecutorRecord(Artifact):
    """Where the units ran (``executor.describe()``)."""

    kind: str  # "local" | "ray"
    resources: dict[str, Union[int, float]] = Field(default_factory=dict)  # CPU, GPU, memory
    address: Optional[str] = None  # Ray
    nodes: Optional[int] = None
    max_retries: Optional[int] = None
    engine_actors: Optional[int] = None


class RescoreRecord(Artifact):
    at: str  # when `harness rescore` last re-scored the stored responses
    graders: dict[str, Optional[str]]  # the grader packages' versions it scored with


class TrainedSummary(Artifact):
    reused: bool
    selection: CheckpointSelection


class EvalCacheSummary(Artifact):
    hits: Optional[int] = None
    misses: Optional[int] = None
    shared_tasks: list[str] = Field(default_factory=list)  # linked in from the donor cell


class CellSummary(Artifact):
    """One cell as its experiment's top manifest records it: where it is and what it shared or computed."""

    cell: str
    params: dict[str, Any]
    seed: Optional[int]
    folder: str
    timings_seconds: Timings
    training_data: dict[str, Any] = Field(default_factory=dict)  # per stage, its manifest's without fingerprints
    trained: dict[str, TrainedSummary] = Field(default_factory=dict)
    eval_cache: dict[str, EvalCacheSummary] = Field(default_factory=dict)


class Experiment(ExperimentAbout):
    """The top manifest of a sweep or seed experiment: its cells and what it varies."""

    cells: list[CellSummary]
    seed_test: str


class Manifest(Artifact):
    schema_version: Literal[3] = SCHEMA_VERSION
    run_id: str
    created: str
    command: str = ""
    config: dict[str, Any]  # the RunConfig, resolved
    methods: list[str]
    model_order: list[str]
    models: dict[str, ModelRecord]
    tasks: dict[str, TaskRecord]
    eval_settings: Optional[EvalSettings] = None
    skipped_tasks: dict[str, str] = Field(default_factory=dict)  # task -> why
    training_data: dict[str, Any] = Field(default_factory=dict)  # per stage: fingerprint, counts, reused
    versions: dict[str, Optional[str]] = Field(default_factory=dict)  # python and each package -> version or None
    git: GitInfo = Field(default_factory=GitInfo)
    hardware: Optional[Hardware] = None
    seeds: Optional[Seeds] = None
    data_dir: Optional[str] = None
    timings_seconds: Timings = Field(default_factory=Timings)
    cache: Optional[CacheRecord] = None
    executor: Optional[ExecutorRecord] = None
    warnings: list[str] = Field(default_factory=list)
    rescored: Optional[RescoreRecord] = None
    #: A sweep/seed experiment: in a cell's folder which cell it is; at the top its cells and what it varies.
    experiment: Union[ExperimentCell, Experiment, None] = None

    stale_fix: ClassVar[str] = RERUN_HINT
    invalid_fix: ClassVar[str] = RERUN_HINT


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
    schema_version: Literal[3] = SCHEMA_VERSION
    kind: Literal["baseline"] = "baseline"
    tolerance: float = Field(0.02, ge=0.0)
    #: per-task ("math500") or per-metric ("math500/accuracy") tolerances, over the file-wide one
    tolerances: dict[str, float] = Field(default_factory=dict)
    primary_metrics: dict[str, str] = Field(default_factory=dict)
    source: Optional[BaselineSource] = None
    rows: list[BaselineRow]

    stale_fix: ClassVar[str] = BASELINE_FIX
    invalid_fix: ClassVar[str] = BASELINE_FIX


# ---- reading and writing ----------------------------------------------------------------------------------
A = TypeVar("A", bound=Artifact)


def _same_shape(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "schema_version": SCHEMA_VERSION}


#: Older versions an artifact still reads: version -> the stored object in the current shape. Only where that is
#: simple and safe: sample sidecars, shard done records and baselines kept their shape from 2 to 3 (their
#: fingerprint keys are computed the same way), so their stored samples stay reusable and a committed baseline
#: keeps gating. A manifest or results.json of version 2 is refused (its sections changed shape).
MIGRATIONS: dict[type[Artifact], dict[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    SampleFileMeta: {2: _same_shape}, ShardDone: {2: _same_shape}, Baseline: {2: _same_shape}}


def _one_line(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "top level"
    return f"{loc}: {err['msg']}"


def _stale(cls: type[Artifact], path: Path, version: Any, data: dict[str, Any]) -> SchemaMismatch:
    fix = cls.stale_fix
    if isinstance(data.get("command"), str) and data["command"]:  # a manifest names the command to re-run
        fix = fix.replace("(manifest.json's `command`)", f"(`{data['command']}`)")
    return SchemaMismatch(f"{path} was written by schema version {version} (this harness reads {SCHEMA_VERSION}); "
                          f"{fix}")


def load_artifact(cls: type[A], path: str | Path, what: str | None = None) -> A:
    """Read a JSON artifact; any problem is a one-line SchemaMismatch/ValueError naming the file and the fix. A file
    of an older schema is brought to this one where ``MIGRATIONS`` says how, else refused."""
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
        migrate = MIGRATIONS.get(cls, {}).get(version)  # type: ignore[arg-type]
        if migrate is None:
            raise _stale(cls, path, version, data if isinstance(data, dict) else {})
        data = migrate(data)
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise SchemaMismatch(f"{path}: invalid {what} ({_one_line(e)}); {cls.invalid_fix}") from None


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
