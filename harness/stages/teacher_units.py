"""Teacher-data stages as shard units: a stage's pending items (probe: the student's own answers; critique, refine,
direct: the teacher's) go out as shards an executor runs (harness/executors/). Each shard is a module-level
function over its items that returns a ``TeacherShardOutput``; the driver alone writes it into the items and saves
them at once (items.jsonl, then items.meta.json: the done record) and commits the worker's model calls to the call
cache. A killed or failed run keeps every finished shard, and a re-run schedules only the shards of the items
still missing (NeMo-Skills' lesson: each shard's output, then its done marker). The driver's side is one object
per stage (``ProbeShards``, ``TeacherShards``: its jobs, ``commit(i, outcome)``, ``finish()``, ``run_all()``) over
a ``ShardRun``, what every stage of one build shares (config, call cache, executor, log folder).

Shard sizes keep the model calls the stages made before units, so the local executor's items are byte-identical
(the hf engine seeds and pads per batch: other batches would give other samples): a teacher shard is one batch of
``teacher.batch_size`` items (one teacher call, as the batch loop made). The probe runs as one unit in this
process (one engine call whose cache misses go out 64 at a time, as before) and as shards of ``PROBE_SHARD`` items
(the call cache's chunk) on a cluster: the same batches on a cold cache, so Ray's items equal the local ones; where
the cache already holds part of the probe (another pool size, say) the misses batch otherwise there.

The spending cap: shards go to the executor in waves (one shard on an in-process executor, as many as the cluster
can run at once otherwise: ``executor.engine_slots``) and ``before_wave`` (the budget check) runs before each wave,
so a run passes the cap by at most one wave. Without a cap a cluster gets the whole stage in one call (one actor start per engine).
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.common.files import stable_hash
from harness.common.item_meta import StageCall
from harness.common.stages import Stage
from harness.common.types import SamplingParams
from harness.common.units import Outcome, Resources, StageSpend, StageSummary, Student, TeacherShardOutput, Unit
from harness.distill.items import TrainItem
from harness.distill.teachers import teacher_class
from harness.config import RunConfig
from harness.executors import Executor, Job, raise_failures
from harness.models import engine_group, engine_resources, make_teacher, serve_unit
from harness.common.progress import progress_bar
from harness.store import CallCache, WorkerCache

#: Items per probe shard on a cluster: CachedEngine's chunk (harness/store.py), the batches a cold probe sends.
PROBE_SHARD = 64


def probe_params(cfg: RunConfig) -> SamplingParams:
    return SamplingParams(max_new_tokens=cfg.probe.max_new_tokens, temperature=cfg.probe.temperature,
                          seed=cfg.seed)


def teacher_resources(cfg: RunConfig) -> Resources:
    if not teacher_class(cfg.teacher.kind).needs_engine:  # oracle, reference: plain Python on one CPU
        return Resources(gpus=0.0, cpus=1.0)
    return engine_resources(cfg.teacher.engine, cfg.executor.gpus)


def shard_unit(stage: Stage, k: int, stage_key: str, items: Sequence[TrainItem], resources: Resources) -> Unit:
    """Shard ``k`` of a stage; its fingerprint: the stage's key and the shard's item ids."""
    return Unit("teacher", f"teacher/{stage}/{k}", stable_hash({"stage": stage_key, "items": [it.id for it in items]}),
                resources)


def split(items: Sequence[TrainItem], size: int) -> list[list[TrainItem]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


# ---- the units (run where the executor places them) ------------------------------------------------------
def _cache_view(cache) -> tuple[Any, bool]:
    """The driver's CallCache (in-process), or a worker's read-only view of its file (a path)."""
    if isinstance(cache, CallCache):
        return cache, False
    return WorkerCache(cache), True


def probe_shard(cfg: RunConfig, student: Student, items: list[TrainItem], cache,
                progress: Callable[[int], None] | None = None) -> TeacherShardOutput:
    """The student answers one shard of pool questions with the run's evaluation engine."""
    t0 = time.perf_counter()
    view, own = _cache_view(cache)
    engine = serve_unit(cfg.eval.engine, student.path, None, view)
    if engine.identity != student.identity:  # a worker must serve the very student the probe's key names
        raise RuntimeError(f"engine identity {engine.identity} != the run's student {student.identity}")
    outs = engine.generate([cfg.prompts.messages_for("probe", question=it.question) for it in items],
                           probe_params(cfg), progress)
    out = TeacherShardOutput(Stage.probe, [c[0].text for c in outs], hits=engine.hits, misses=engine.misses,
                             seconds=time.perf_counter() - t0)
    if own:
        out.new_cache_rows = view.new_rows
        view.close()
    return out


def teacher_shard(cfg: RunConfig, stage: Stage, items: list[TrainItem], cache) -> TeacherShardOutput:
    """The teacher's call of ``stage`` (critique, refine or answer) on one shard of items."""
    t0 = time.perf_counter()
    view, own = _cache_view(cache)
    teacher = make_teacher(cfg, view)
    texts = getattr(teacher, stage.teacher_call)(items)
    # What the LLM teacher reports per item of its last call (other teachers report nothing).
    usage = getattr(teacher, "last_usage", None) or []
    out = TeacherShardOutput(stage, list(texts), usage=list(usage),
                             raw=list(getattr(teacher, "last_raw", None) or []),
                             thinking_missing=list(getattr(teacher, "last_thinking_missing", None) or []),
                             seconds=time.perf_counter() - t0)
    if own:
        out.new_cache_rows = view.new_rows
        view.close()
    return out


# ---- the driver: commit each finished shard ------------------------------------------------------------------
def write_shard(items: list[TrainItem], out: TeacherShardOutput, spend: StageSpend | None = None) -> None:
    """A shard's outputs into its items (the driver's), as the batch loop wrote them; its usage into ``spend``."""
    for j, (it, text) in enumerate(zip(items, out.texts)):
        setattr(it, out.stage.item_field, text)
        usage = out.usage[j] if j < len(out.usage) else None
        it.meta.set_call(out.stage, StageCall(
            usage=usage, raw=out.raw[j] if j < len(out.raw) else None,  # the output before its thinking was stripped
            thinking_missing=j < len(out.thinking_missing) and out.thinking_missing[j]))
        if usage is not None and spend is not None:
            spend.add(usage)


# ---- the stages' shards, with the state the driver fills as each one ends ---------------------------------------
@dataclass(frozen=True)
class ShardRun:
    """What every shard stage of one training-data build shares: the config, the driver's call cache, the
    executor and the folder its units log failed attempts to."""

    cfg: RunConfig
    cache: CallCache
    executor: Executor
    log_dir: Path

    @property
    def cache_arg(self) -> CallCache | str:
        """What a unit gets: the driver's cache in this process, else its path (a worker reads it and returns
        the calls it made)."""
        return self.cache if self.executor.in_process else str(self.cache.path)


class StageShards:
    """One stage's pending items as shard units: ``jobs`` (one per shard), ``commit(i, outcome)`` (shard i into
    its items at once: the worker's calls into the cache, then the texts, then ``save``: items.jsonl and its done
    record), ``finish()`` (the stage's time; failed shards are raised once every shard has ended). The
    subclasses make the jobs and run them: ``ProbeShards`` (the student), ``TeacherShards`` (in waves)."""

    label = ""  # this process's progress bar

    def __init__(self, run: ShardRun, stage: Stage, summary: StageSummary, parts: list[list[TrainItem]],
                 save: Callable[[], None]) -> None:
        self.run = run
        self.stage = stage
        self.summary = summary
        self.parts = parts
        self.save = save
        self.jobs: list[Job] = []
        self.spend = StageSpend()  # teacher stages: what this run paid
        self.failed: list[Outcome] = []
        self.advance: Callable[[int], None] | None = None  # this process's bar, while the stage runs
        self._t0 = time.perf_counter()

    def commit(self, i: int, o: Outcome) -> None:
        if o.error is not None:
            return
        out: TeacherShardOutput = o.value
        if out.new_cache_rows:  # the calls first: a kill after them makes the shard again from the cache
            self.run.cache.put_many(out.new_cache_rows)
        write_shard(self.parts[i], out, self.spend)
        self.summary.computed += len(self.parts[i])
        self.counted(out, len(self.parts[i]))
        self.save()

    def counted(self, out: TeacherShardOutput, n: int) -> None:
        """What else a committed shard of ``n`` items adds (cache counts, the progress bar)."""

    def execute(self, start: int, stop: int) -> None:
        """``jobs[start:stop]`` in one executor call, each committed as it ends."""
        outcomes = self.run.executor.run(self.jobs[start:stop], self.run.log_dir,
                                         on_done=lambda i, o: self.commit(start + i, o))
        self.failed += [o for o in outcomes if o.error is not None]

    def finish(self) -> StageSpend:
        self.summary.seconds = round(time.perf_counter() - self._t0, 2)
        raise_failures(self.failed)
        return self.spend

    def bar(self):
        """This process's bar over the stage's items; a cluster shows its units' bar instead."""
        if not self.run.executor.in_process:
            return nullcontext()
        return progress_bar(self.label, sum(map(len, self.parts)))


class ProbeShards(StageShards):
    """The student answers the pool questions still without a probe: one unit in this process (one engine call,
    its bar advanced by the engine), shards of ``PROBE_SHARD`` items on a cluster."""

    label = "probe (student answers)"

    def __init__(self, run: ShardRun, student: Student, todo: list[TrainItem], summary: StageSummary,
                 save: Callable[[], None]) -> None:
        in_process = run.executor.in_process
        super().__init__(run, Stage.probe, summary, split(todo, len(todo) if in_process else PROBE_SHARD), save)
        self.student = student
        resources = engine_resources(run.cfg.eval.engine, run.cfg.executor.gpus)
        group = engine_group(run.cfg.eval.engine, student.path)  # the student's engine actors (kept across shards)
        progress = self.progress if in_process else None
        self.jobs = [Job(shard_unit(Stage.probe, k, summary.fingerprint, part, resources), probe_shard,
                         (run.cfg, student, part, run.cache_arg, progress), group=group)
                     for k, part in enumerate(self.parts)]
        summary.cache_hits, summary.cache_misses = summary.cache_hits or 0, summary.cache_misses or 0

    def progress(self, n: int) -> None:
        if self.advance is not None:
            self.advance(n)

    def counted(self, out: TeacherShardOutput, n: int) -> None:
        self.summary.cache_hits += out.hits
        self.summary.cache_misses += out.misses

    def run_all(self) -> None:
        if self.run.executor.in_process:  # the engine loads before the bar starts, as before
            serve_unit(self.run.cfg.eval.engine, self.student.path, None, self.run.cache)
        with self.bar() as self.advance:
            self.execute(0, len(self.jobs))
        self.finish()


class TeacherShards(StageShards):
    """One teacher stage's pending items in shards of ``teacher.batch_size``, sent in waves; ``before_wave``
    runs before each (the spending cap: it may raise)."""

    def __init__(self, run: ShardRun, stage: Stage, todo: list[TrainItem], summary: StageSummary,
                 save: Callable[[], None], before_wave: Callable[[], None]) -> None:
        cfg = run.cfg
        super().__init__(run, stage, summary, split(todo, cfg.teacher.batch_size), save)
        self.label = f"{stage} (teacher)"
        self.before_wave = before_wave
        self.resources = teacher_resources(cfg)
        group = (engine_group(cfg.teacher.engine, cfg.teacher.model)
                 if teacher_class(cfg.teacher.kind).needs_engine else None)  # the teacher's engine actors
        self.jobs = [Job(shard_unit(stage, k, summary.fingerprint, part, self.resources), teacher_shard,
                         (cfg, stage, part, run.cache_arg), group=group) for k, part in enumerate(self.parts)]

    def counted(self, out: TeacherShardOutput, n: int) -> None:
        if self.advance is not None:
            self.advance(n)

    def wave_size(self) -> int:
        # Waves exist for the cap's checks; an uncapped stage on a cluster is one executor call, so an engine
        # teacher's actors load the teacher once for the stage, not once per wave (actors live for one call).
        t, executor = self.run.cfg.teacher, self.run.executor
        capped = t.max_tokens is not None or t.max_cost_usd is not None
        return executor.engine_slots(self.resources) if capped or executor.in_process else max(1, len(self.jobs))

    def run_all(self) -> StageSpend:
        """Every wave; what this run paid (unpriced)."""
        if self.run.executor.in_process:  # the teacher's engine loads before the bar starts (kept for every shard)
            make_teacher(self.run.cfg, self.run.cache)
        size = self.wave_size()
        with self.bar() as self.advance:
            for start in range(0, len(self.jobs), size):
                self.summary.seconds = round(time.perf_counter() - self._t0, 2)
                self.before_wave()
                self.execute(start, start + size)
        return self.finish()
