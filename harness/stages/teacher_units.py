"""Teacher-data stages as shard units: a stage's pending items (probe: the student's own answers; critique, refine,
direct: the teacher's) go out as shards an executor runs (harness/executors/). Each shard is a module-level
function over its items that returns a ``TeacherShardOutput``; the driver alone writes it into the items and saves
them at once (items.jsonl, then items.meta.json: the done record) and commits the worker's model calls to the call
cache. A killed or failed run keeps every finished shard, and a re-run schedules only the shards of the items
still missing (NeMo-Skills' lesson: each shard's output, then its done marker).

Shard sizes keep the model calls the stages made before units, so the local executor's items are byte-identical
(the hf engine seeds and pads per batch: other batches would give other samples): a teacher shard is one batch of
``teacher.batch_size`` items (one teacher call, as the batch loop made). The probe runs as one unit in this
process (one engine call whose cache misses go out 64 at a time, as before) and as shards of ``PROBE_SHARD`` items
(the call cache's chunk) on a cluster: the same batches on a cold cache, so Ray's items equal the local ones; where
the cache already holds part of the probe (another pool size, say) the misses batch otherwise there.

The spending cap: shards go to the executor in waves (one shard on an in-process executor, as many as the cluster
can run at once otherwise: ``executor.engine_slots``) and ``before_wave`` (the budget check) runs before each wave, so a run passes the cap
by at most one wave. Without a cap a cluster gets the whole stage in one call (one actor start per engine).
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from harness.common.files import stable_hash
from harness.common.item_meta import CallUsage, StageCall
from harness.common.stages import Stage
from harness.common.types import SamplingParams
from harness.common.units import Outcome, Resources, StageSummary, Student, TeacherShardOutput, Unit
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


def shard_unit(stage: str, k: int, stage_key: str, items: Sequence[TrainItem], resources: Resources) -> Unit:
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


# ---- the driver: commit each finished shard ----------------------------------------------------------------
@dataclass
class Paid:
    """What a teacher stage asked for in this run: requests, those the cache answered, and the tokens of the
    others (paid now)."""

    tokens_in: int = 0
    tokens_out: int = 0
    requests: int = 0
    cache_hits: int = 0

    def add(self, u: CallUsage) -> None:
        self.requests += u.requests
        self.cache_hits += u.cached
        if u.cached < u.requests:  # not (only) from the cache: paid in this run
            self.tokens_in += u.tokens_in
            self.tokens_out += u.tokens_out

    def record(self, prices: tuple[float, float]) -> dict[str, Any]:
        return {"tokens_in": self.tokens_in, "tokens_out": self.tokens_out, "requests": self.requests,
                "cache_hits": self.cache_hits,
                "cost_usd": round((self.tokens_in * prices[0] + self.tokens_out * prices[1]) / 1e6, 6)}


def write_shard(items: list[TrainItem], out: TeacherShardOutput, paid: Paid | None = None) -> None:
    """A shard's outputs into its items (the driver's), as the batch loop wrote them."""
    for j, (it, text) in enumerate(zip(items, out.texts)):
        setattr(it, out.stage.item_field, text)
        usage = out.usage[j] if j < len(out.usage) else None
        it.meta.set_call(out.stage, StageCall(
            usage=usage, raw=out.raw[j] if j < len(out.raw) else None,  # the output before its thinking was stripped
            thinking_missing=j < len(out.thinking_missing) and out.thinking_missing[j]))
        if usage is not None and paid is not None:
            paid.add(usage)


def run_probe(cfg: RunConfig, student: Student, todo: list[TrainItem], cache: CallCache, executor: Executor,
              log_dir, summary: StageSummary, save: Callable[[], None]) -> None:
    """The probe's shards, each committed (items, then the done record) as it finishes."""
    t0 = time.perf_counter()
    parts = split(todo, len(todo) if executor.in_process else PROBE_SHARD)
    resources = engine_resources(cfg.eval.engine, cfg.executor.gpus)
    summary.cache_hits, summary.cache_misses = summary.cache_hits or 0, summary.cache_misses or 0

    def commit(i: int, o: Outcome) -> None:
        if o.error is not None:
            return
        out: TeacherShardOutput = o.value
        if out.new_cache_rows:  # the calls first: a kill after them makes the shard again from the cache
            cache.put_many(out.new_cache_rows)
        write_shard(parts[i], out)
        summary.computed += len(parts[i])
        summary.cache_hits += out.hits
        summary.cache_misses += out.misses
        save()

    # In this process: one bar over the probe, advanced by the engine as before (the engine loaded before it, as
    # before); a cluster shows its units' bar.
    if executor.in_process:
        serve_unit(cfg.eval.engine, student.path, None, cache)
    with progress_bar("probe (student answers)", len(todo)) if executor.in_process else nullcontext() as advance:
        arg = cache if executor.in_process else str(cache.path)
        group = engine_group(cfg.eval.engine, student.path)  # the student's engine actors (kept across shards)
        jobs = [Job(shard_unit("probe", k, summary.fingerprint, part, resources), probe_shard,
                    (cfg, student, part, arg, advance), group=group) for k, part in enumerate(parts)]
        outcomes = executor.run(jobs, log_dir, on_done=commit)
    summary.seconds = round(time.perf_counter() - t0, 2)
    raise_failures(outcomes)


def run_teacher_stage(cfg: RunConfig, stage: str, todo: list[TrainItem], cache: CallCache, executor: Executor,
                      log_dir, summary: StageSummary, save: Callable[[], None],
                      before_wave: Callable[[], None]) -> Paid:
    """One teacher stage's shards in waves; ``before_wave`` runs before each (the spending cap: it may raise).
    Every finished shard is committed at once; failed shards are reported once the stage's waves are done."""
    t0 = time.perf_counter()
    parts = split(todo, cfg.teacher.batch_size)
    resources = teacher_resources(cfg)
    arg = cache if executor.in_process else str(cache.path)
    group = (engine_group(cfg.teacher.engine, cfg.teacher.model)
             if teacher_class(cfg.teacher.kind).needs_engine else None)  # the teacher's engine actors
    jobs = [Job(shard_unit(stage, k, summary.fingerprint, part, resources), teacher_shard, (cfg, stage, part, arg),
                group=group) for k, part in enumerate(parts)]
    paid = Paid()
    failed: list[Outcome] = []
    capped = cfg.teacher.max_tokens is not None or cfg.teacher.max_cost_usd is not None
    # Waves exist for the cap's checks; an uncapped stage on a cluster is one executor call, so an engine
    # teacher's actors load the teacher once for the stage, not once per wave (actors live for one call).
    size = executor.engine_slots(resources) if capped or executor.in_process else max(1, len(jobs))
    if executor.in_process:  # the teacher's engine loads before the bar starts, as before (kept for every shard)
        make_teacher(cfg, cache)
    with progress_bar(f"{stage} (teacher)", len(todo)) if executor.in_process else nullcontext() as advance:
        for start in range(0, len(jobs), size):
            summary.seconds = round(time.perf_counter() - t0, 2)
            before_wave()

            def commit(i: int, o: Outcome, start: int = start) -> None:
                if o.error is not None:
                    return
                out: TeacherShardOutput = o.value
                if out.new_cache_rows:
                    cache.put_many(out.new_cache_rows)
                write_shard(parts[start + i], out, paid)
                summary.computed += len(parts[start + i])
                if advance is not None:
                    advance(len(parts[start + i]))
                save()

            outcomes = executor.run(jobs[start : start + size], log_dir, on_done=commit)
            failed += [o for o in outcomes if o.error is not None]
    summary.seconds = round(time.perf_counter() - t0, 2)
    raise_failures(failed)
    return paid
