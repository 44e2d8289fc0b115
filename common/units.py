"""The run as units of work: what an executor ships to a worker, and the typed values the stages hand each other.

A unit is a frozen value with a name (unique in the run, derived from what it computes), its fingerprint (the key
its stored output is reused under) and its resource needs. An executor (harness/executors/) runs units wherever
they fit; only the driver writes the run folder and the call cache, from the values units return.

Kinds, in the order a run's graph has them:
- ``teacher`` (one shard of a teacher-data stage over the pool: probe, critique, refine, direct; a batch of
  ``teacher.batch_size`` items) -> ``TeacherShardOutput``, written into the training items;
- ``train`` (method x seed x cell) -> ``TrainedModel``;
- ``eval`` (model x task [x shard]) -> ``TaskEval`` (the records themselves travel in ``EvalOutput``);
- ``aggregate`` -> results.json and the report.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from harness.common.artifacts import EngineDescription, ExperimentCell, ServedBy, TaskEvalRecord, TrainRecord
from harness.common.item_meta import CallUsage
from harness.common.stages import Stage


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


@dataclass(frozen=True)
class Student:
    """The run's student, resolved once per run: where it is (a folder or a hub id) and its identity (the engine
    identity over its weights, tokenizer and chat template), computed once and handed to every stage that keys
    its fingerprints on the student (probe, train, the base model's evaluation)."""

    path: Any  # pathlib.Path | str
    identity: str


@dataclass(frozen=True)
class CellLabel:
    """Which cell of a sweep or seed experiment a run is (harness/sweep.py hands it to pipeline.run); its rows
    carry the params and seed, and the manifest records it as ``experiment``."""

    cell: str  # the cell's id
    params: dict[str, Any]  # dotted sweep key -> value (the seed apart)
    seed: Optional[int]

    def record(self) -> ExperimentCell:
        """The manifest's ``experiment`` object."""
        return ExperimentCell(cell=self.cell, params=self.params, seed=self.seed)


@dataclass
class TrainedModel:
    """One method's trained student, as the train stage hands it on: the folder evaluated and how it was trained
    (``train``: what the manifest records under ``models[method].train``)."""

    method: str
    model_dir: str  # the folder evaluated: final/ or the selected checkpoint
    adapter: bool  # a LoRA adapter over the student (else a full checkpoint)
    train: TrainRecord

    @property
    def fingerprint(self) -> str:
        return self.train.fingerprint

    @property
    def reused(self) -> bool:
        return self.train.reused


@dataclass(frozen=True)
class TrainOutput:
    """What a train unit returns to the driver: the folder it trained into and whether it holds a LoRA adapter."""

    model_dir: str
    adapter: bool


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
    #: The processes that evaluated it, one per unit (shard) in doc order (an engine actor on Ray).
    served_by: Optional[list[Optional[ServedBy]]] = None

    def record(self) -> TaskEvalRecord:
        """The manifest's per-task entry."""
        return TaskEvalRecord(fingerprint=self.fingerprint, scoring=self.scoring, reused=self.reused,
                              seconds=self.seconds, served_by=self.served_by, shared_from=self.shared_from)


@dataclass
class ModelEval:
    """Every task of one model: its identity, the engine that served it (when one was loaded) and cache use."""

    name: str
    path: str
    adapter: Optional[str]
    identity: str
    tasks: dict[str, TaskEval] = field(default_factory=dict)
    engine: Optional[EngineDescription] = None
    cache_hits: int = 0
    cache_misses: int = 0
    loaded: bool = False  # an engine was loaded for this model in this run


@dataclass
class EvalOutput:
    """What an evaluation unit returns to the driver: the records to store, the engine's description, and the
    model calls it made (new call-cache rows: the driver alone writes the cache)."""

    records: list[Any]  # harness.common.artifacts.SampleRecord
    engine: EngineDescription  # with served_by: the process that served the unit
    hits: int
    misses: int
    seconds: float = 0.0
    new_cache_rows: list[tuple[str, str, str, Any]] = field(default_factory=list)


@dataclass
class TeacherShardOutput:
    """What a teacher-data shard unit returns to the driver: one batch of one stage (probe: the student's answers;
    critique, refine, direct: the teacher's), item by item in the shard's order. The driver writes it into the
    items and saves them (items.jsonl, then items.meta.json: the done record)."""

    stage: Stage
    texts: list[str]
    usage: list[CallUsage] = field(default_factory=list)  # per item: the teacher's CallUsage (LLM teacher)
    raw: list[Optional[str]] = field(default_factory=list)  # per item: the output before its thinking was stripped
    thinking_missing: list[bool] = field(default_factory=list)  # per item: a set thinking pattern found nothing
    hits: int = 0  # probe: the student engine's call-cache use
    misses: int = 0
    seconds: float = 0.0
    new_cache_rows: list[tuple[str, str, str, Any]] = field(default_factory=list)  # a worker's calls, for the driver


@dataclass
class Outcome:
    """An executed unit: its value, or the error it failed with after every attempt."""

    unit: Unit
    value: Any = None
    error: Optional[str] = None
    attempts: int = 1
    log: Optional[str] = None  # per-unit error log under the run folder
    #: The value was computed by the identical unit (same kind and fingerprint) of another run folder's batch:
    #: that folder (harness.executors.run_batches runs shared work once).
    shared_from: Optional[str] = None


@dataclass
class StageSpend:
    """What a teacher stage asked for in this run: requests, those the cache answered, and the tokens of the
    others (paid now), priced with the teacher's prices once the stage is done."""

    tokens_in: int = 0
    tokens_out: int = 0
    requests: int = 0
    cache_hits: int = 0
    cost_usd: Optional[float] = 0.0  # None: the teacher's price is unknown (a self-hosted LLM costs GPU time)

    def add(self, u: CallUsage) -> None:
        self.requests += u.requests
        self.cache_hits += u.cached
        if u.cached < u.requests:  # not (only) from the cache: paid in this run
            self.tokens_in += u.tokens_in
            self.tokens_out += u.tokens_out

    def price(self, prices: tuple[float, float]) -> None:
        self.cost_usd = round((self.tokens_in * prices[0] + self.tokens_out * prices[1]) / 1e6, 6)

    def record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TokenTotals:
    """A teacher stage's tokens over all its items (as the engine reported them, a cached call at its original
    size: the data's cost whichever run paid it)."""

    tokens_in: int
    tokens_out: int
    cost_usd: Optional[float]  # None: unknown price


@dataclass
class ThinkingStats:
    """teacher.strip_thinking: how many outputs lost a thinking section, and how long they were before."""

    stripped: int
    not_found: int
    mean_raw_chars: float


@dataclass
class VerdictStats:
    """The critique stage's verdicts (from the teacher's own critiques) and the follow-ups asking for them."""

    right: int
    wrong: int
    no_verdict: int
    flagged: int  # still without a Conclusion line after the retries
    retries: int


@dataclass
class GoldAgreement:
    """Items checked against the gold answer, and how many passed."""

    agree: int
    checked: int


@dataclass
class StageStats:
    """Counts over a stage's items for the manifest and the report."""

    items: int  # items holding the stage's output
    mean_chars: float
    thinking: Optional[ThinkingStats] = None
    verdicts: Optional[VerdictStats] = None  # critique
    verdict_vs_gold: Optional[GoldAgreement] = None  # critique: verdicts agreeing with the draft's gold check
    answers_vs_gold: Optional[GoldAgreement] = None  # probe, refine, direct: answers reaching the gold answer
    totals: Optional[TokenTotals] = None  # teacher stages

    def record(self) -> dict[str, Any]:
        """Flat keys, as the manifest has always had them."""
        out: dict[str, Any] = {"items": self.items, "mean_chars": self.mean_chars}
        if self.thinking is not None:
            out.update(thinking_stripped=self.thinking.stripped, thinking_not_found=self.thinking.not_found,
                       mean_raw_chars=self.thinking.mean_raw_chars)
        if self.verdicts is not None:
            out.update(asdict(self.verdicts))
        if self.verdict_vs_gold is not None:
            out.update(verdict_agrees_with_gold=self.verdict_vs_gold.agree,
                       verdict_checked=self.verdict_vs_gold.checked)
        if self.answers_vs_gold is not None:
            out.update(correct_vs_gold=self.answers_vs_gold.agree, checked_vs_gold=self.answers_vs_gold.checked)
        if self.totals is not None:
            out.update(asdict(self.totals))
        return out


@dataclass
class StageSummary:
    """One training-data stage (probe, critique, refine, direct) as this run found and left it."""

    fingerprint: str
    reused: int  # items whose stored output was kept (its fingerprint matched)
    computed: int = 0  # items computed in this run
    seconds: float = 0.0
    cache_hits: Optional[int] = None  # probe: the student engine's call-cache use
    cache_misses: Optional[int] = None
    this_run: Optional[StageSpend] = None  # teacher stages: tokens, requests and cost paid in this run
    #: Counts over the items (lengths, verdicts, gold agreement) and the stage's teacher totals.
    stats: Optional[StageStats] = None

    def record(self) -> dict[str, Any]:
        """The manifest's per-stage entry (a flat object, as it has always been)."""
        out: dict[str, Any] = {"fingerprint": self.fingerprint, "reused": self.reused, "computed": self.computed,
                               "seconds": self.seconds}
        if self.cache_hits is not None:
            out.update(cache_hits=self.cache_hits, cache_misses=self.cache_misses)
        if self.this_run is not None:
            out["this_run"] = self.this_run.record()
        if self.stats is not None:
            out.update(self.stats.record())
        return out


@dataclass
class PoolReport:
    """What loading the pool did: candidates examined, how many decontamination removed and why, and how long
    it took (harness.distill.pools fills it; the manifest's ``training_data.pool``)."""

    source: str
    candidates: int = 0
    examined: int = 0
    kept: int = 0
    removed: int = 0
    removed_by_task: dict[str, int] = field(default_factory=dict)
    removed_by_rule: dict[str, int] = field(default_factory=dict)
    removed_examples: list[dict[str, str]] = field(default_factory=list)  # a few {id, task, rule}, for the report
    decontamination: str = "off"  # off | on (n-gram and containment) | not needed (synthetic)
    ngram: int = 13
    against: list[str] = field(default_factory=list)
    seconds: Optional[float] = None  # set by the stage that loaded it

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.seconds is None:
            del out["seconds"]
        return out


@dataclass
class RequestPrompt:
    """What one request was sent with: its system prompt (None: no system message) and its user template."""

    system: Optional[str]
    user_template: str


@dataclass
class TeacherRequests:
    """LLM teacher: each stage's request as sent, and the thinking pattern stripped from the outputs."""

    prompts: dict[Stage, RequestPrompt]
    strip_thinking: Optional[str] = None

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {s.value: asdict(p) for s, p in self.prompts.items()}
        if self.strip_thinking:
            out["strip_thinking"] = self.strip_thinking
        return out


@dataclass
class TeacherTotal:
    """The teacher's tokens and cost over every stage of the data (None: unknown price)."""

    tokens: int
    cost_usd: Optional[float]
    price_per_mtok_in: Optional[float]
    price_per_mtok_out: Optional[float]
    critique_mode: str


@dataclass
class FilterCount:
    """teacher.correctness_filter: items kept (their teacher targets reach the gold answer) and removed."""

    kept: int
    removed: int


@dataclass
class TrainingData:
    """What the training-data stage hands the train stage: the items, the held-out validation items, and the
    per-stage summaries the manifest records."""

    items: list[Any]  # harness.distill.items.TrainItem
    validation: list[Any]
    pool: PoolReport  # the pool's report (source, sizes, decontamination) and its seconds
    stages: dict[Stage, StageSummary] = field(default_factory=dict)
    requests: Optional[TeacherRequests] = None  # LLM teacher: each request's system prompt and template
    teacher_total: Optional[TeacherTotal] = None
    correctness_filter: Optional[FilterCount] = None

    @property
    def computed(self) -> bool:
        """Some stage computed items in this run (so the results may be new)."""
        return any(s.computed for s in self.stages.values())

    def record(self) -> dict[str, Any]:
        """The manifest's ``training_data`` object."""
        out: dict[str, Any] = {"pool": self.pool.to_dict()}
        if self.requests is not None:
            out["requests"] = self.requests.record()
        out.update({str(name): s.record() for name, s in self.stages.items()})
        if self.teacher_total is not None:
            out["teacher_total"] = asdict(self.teacher_total)
        if self.correctness_filter is not None:
            out["correctness_filter"] = asdict(self.correctness_filter)
        return out
