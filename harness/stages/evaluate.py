"""Evaluate: every model x every task with one engine config, identical prompts and budgets; then score.

A stored samples/<model>/<task>.jsonl is reused only when its sidecar's fingerprints match:
- generation fingerprint = engine identity (backend, weights, adapter, tokenizer and chat-template digests, dtype,
  device) + task fingerprint (data digest incl. prompts and few-shot sets, options) + sampling parameters;
- scoring fingerprint = generation fingerprint + the task's grader version and grader package versions.
When only the scoring fingerprint differs, stored responses are re-scored without generating. When the
generation fingerprint differs (another model under the same name, a changed template, budget or data), the pair
is evaluated again (through the call cache) and the run says what differed, in one line.
"""
from __future__ import annotations

import importlib.metadata as md
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from harness.common.artifacts import (EngineDescription, Fingerprint, SampleFileMeta, SampleRecord, SchemaMismatch,
                                      ShardDone, load_artifact, read_samples, save_artifact, write_samples)
from harness.common.files import stable_hash
from harness.common.units import EvalOutput, ModelEval, Outcome, Resources, TaskEval, Unit
from harness.executors import Job
from harness.models import engine_group, engine_resources, identity_of, serve_unit
from harness.common.progress import console, progress_bar
from harness.stages.eval_shards import ShardedPair, shard_count, shard_ranges
from harness.stages.plan import Plan, generation_params
from harness.store import CachedEngine, CallCache, WorkerCache
from harness.tasks.base import Doc, Scored, Task


@dataclass
class ModelToEvaluate:
    name: str
    path: Path | str
    adapter: Path | None = None
    identity: str | None = None  # computed once by the caller where known (the run's student); else here


def identity_for(plan: Plan, m: ModelToEvaluate) -> str:
    """The model's identity, computed once: stored on ``m`` for every later use in this run."""
    if m.identity is None:
        m.identity = identity_of(plan.config.eval.engine, m.path, m.adapter)
    return m.identity


def package_version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def task_fingerprint(task: Task, docs: Sequence[Doc]) -> dict[str, Any]:
    """What the model is asked (data, prompts, few-shot set, options); the grader belongs to the scoring
    fingerprint, so a new grader re-scores stored responses instead of generating again."""
    return {k: v for k, v in task.fingerprint_parts(docs).items() if k != "grader_version"}


def fingerprints(plan: Plan, identity: str, task_name: str) -> tuple[Fingerprint, Fingerprint]:
    """(generation, scoring) fingerprints of one (model, task) pair."""
    task = plan.task(task_name)
    params = (generation_params(plan.config, task).to_dict() if task.output_type.generates
              else {"loglikelihood": True})
    gen_parts = {"engine": identity, "task": stable_hash(task_fingerprint(task, plan.task_docs(task_name))),
                 "params": params}
    gen = Fingerprint(key=stable_hash(gen_parts)[:24], parts=gen_parts)
    return gen, scoring_fingerprint(gen.key, task)


def scoring_fingerprint(generation_key: str, task: Task) -> Fingerprint:
    parts = {"generation": generation_key, "grader_version": task.grader_version,
             "packages": {p: package_version(p) for p in task.grader_packages}}
    return Fingerprint(key=stable_hash(parts)[:24], parts=parts)


def make_record(task: Task, doc: Doc, s: Scored, **extra: Any) -> SampleRecord:
    rec: dict[str, Any] = {"id": doc.id}
    if not task.sensitive:  # GPQA questions never leave memory in plain text
        rec["prompt"] = doc.prompt
        rec["gold"] = doc.gold
    rec.update(extra)
    rec.update(score=s.score, metrics=s.metrics, extracted=s.extracted, details=s.details)
    return SampleRecord.model_validate(rec)


def score_records(task: Task, docs: Sequence[Doc], records: Sequence[SampleRecord]) -> list[SampleRecord]:
    """Score again from stored responses or log-likelihoods (no model call); keeps every other field."""
    if task.output_type.runs_in_lm_eval:
        return list(records)  # scored by lm-eval's own process_results while evaluating; nothing to redo here
    if task.output_type.uses_loglikelihood:
        scored = [task.score_loglikelihoods(d, [tuple(x) for x in r.loglikelihoods or []])
                  for d, r in zip(docs, records)]
    else:
        scored = task.score_many(docs, [r.responses or [] for r in records])
    keep = {"prompt", "gold", "id", "score", "metrics", "extracted", "details"}
    return [make_record(task, d, s, **r.model_dump(exclude=keep)) for d, s, r in zip(docs, scored, records)]


def evaluate_task(engine: CachedEngine, task: Task, docs: Sequence[Doc], plan: Plan, label: str) -> list[SampleRecord]:
    """Generate (or score log-likelihoods) for every doc, score, and return per-sample records."""
    records: list[SampleRecord] = []
    if task.output_type.runs_in_lm_eval:  # lm-eval runs the task; the engine answers its requests (call cache too)
        from harness.lm_eval_bridge import evaluate_lm_eval

        return evaluate_lm_eval(engine, task, docs, plan.config.seed, label, make_record)
    if task.output_type.uses_loglikelihood:
        requests = [(d.prompt, c) for d in docs for c in (d.choices or [])]
        t0 = time.perf_counter()
        with progress_bar(f"{label} (loglik)", len(requests)) as advance:
            lls = engine.loglikelihood(requests, advance)
        per = (time.perf_counter() - t0) / max(1, len(docs))
        pos = 0
        for d in docs:
            mine = lls[pos : pos + len(d.choices or [])]
            pos += len(mine)
            records.append(make_record(task, d, task.score_loglikelihoods(d, mine),
                                       loglikelihoods=[list(x) for x in mine], seconds=per))
        return records
    params = generation_params(plan.config, task)
    with progress_bar(label, len(docs)) as advance:
        comps = engine.generate([d.prompt for d in docs], params, advance)
    scored = task.score_many(docs, [[c.text for c in cs] for cs in comps])
    for d, cs, s in zip(docs, comps, scored):
        records.append(make_record(
            task, d, s, responses=[c.text for c in cs], response=cs[0].text, finish_reason=cs[0].finish_reason,
            truncated=sum(c.finish_reason == "length" for c in cs), prompt_tokens=cs[0].prompt_tokens,
            completion_tokens=sum(c.completion_tokens for c in cs), seconds=sum(c.seconds for c in cs),
            cached=all(c.cached for c in cs)))
    return records


def _what_differs(old: Fingerprint, new: Fingerprint) -> str:
    names = {"engine": "model or engine (identity)", "task": "task data, prompts or options",
             "params": "generation settings"}
    diff = [names.get(k, k) for k in new.parts if old.parts.get(k) != new.parts.get(k)]
    return ", ".join(diff) or "fingerprint"


def intact_samples(path: Path, n: int) -> list[SampleRecord] | None:
    """The stored records when the file reads back whole (as many records as its sidecar says), else None."""
    if not path.exists():
        return None
    try:
        records = read_samples(path)
    except SchemaMismatch:
        return None
    return records if len(records) == n else None


def stored_meta(path: Path) -> SampleFileMeta | None:
    if not path.exists():
        return None
    try:
        return load_artifact(SampleFileMeta, path, "sample-file fingerprint")
    except SchemaMismatch:
        return None  # an older or damaged sidecar: evaluate again


def task_names(plan: Plan) -> list[str]:
    """The run's tasks, then the held-out task when the plan holds one (pool questions, never a test task)."""
    return list(plan.eval_tasks)


def eval_unit(plan: Plan, model: ModelToEvaluate, task_name: str, identity: str, cache,
              docs: tuple[int, int] | None = None) -> EvalOutput:
    """One (model, task) evaluation unit: generate (or score log-likelihoods) and score, for every doc or the
    shard ``docs`` = (start, stop). ``cache``: the driver's CallCache (in-process executor) or its path (a worker
    reads it and returns the calls it made)."""
    t0 = time.perf_counter()
    own = not isinstance(cache, CallCache)
    view = WorkerCache(cache) if own else cache
    engine = serve_unit(plan.config.eval.engine, model.path, model.adapter, view)
    if engine.identity != identity:  # the loaded engine must agree with the cheap identity
        raise RuntimeError(f"engine identity {engine.identity} != computed {identity}")
    todo = plan.task_docs(task_name)
    label = f"eval {model.name}/{task_name}"
    if docs is not None:
        todo = todo[docs[0]:docs[1]]
        label += f" [{docs[0]}:{docs[1]}]"
    records = evaluate_task(engine, plan.task(task_name), todo, plan, label)
    # served_by: which process served the unit (on Ray, the engine actor: base and adapters share one)
    desc = EngineDescription.model_validate({**engine.describe(),
                                             "served_by": {"host": socket.gethostname(), "pid": os.getpid()}})
    out = EvalOutput(records=records, engine=desc, hits=engine.hits, misses=engine.misses,
                     seconds=time.perf_counter() - t0)
    if own:
        out.new_cache_rows = view.new_rows
        view.close()
    return out


def _store(rd, model: str, task: str, records: list[SampleRecord], gen_fp: Fingerprint, score_fp: Fingerprint) -> None:
    write_samples(rd.samples(model, task), records)
    save_artifact(rd.samples_meta(model, task), SampleFileMeta(
        model=model, task=task, n=len(records), generation=gen_fp, scoring=score_fp,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))


@dataclass(frozen=True)
class PairJob:
    """What one evaluation job computes: a (model, task) pair's fingerprints, and the shard of a sharded pair."""

    model: str
    task: str
    generation: Fingerprint
    scoring: Fingerprint
    pair: ShardedPair | None = None  # None: the pair is one unit
    shard: int = 0


class EvalBatch:
    """The evaluation units of one run folder, as an object the executors drive (harness.executors.run_batches):
    ``jobs``, ``commit(i, outcome)`` (stores a finished unit at once), ``finish()`` (every model's evaluation, in
    the run's task order); ``label`` names its run folder in ``shared_from``. Stored samples are reused or
    re-scored when it is made; every pair to generate becomes a unit, or one unit per shard of its docs
    (harness/stages/eval_shards.py; ``slots``: the engines the executor runs at once, for ``eval.shards: auto``).
    ``in_process``: the executor runs units in this process, so they use the driver's cache; else they get its
    path, read it and return the calls they made."""

    def __init__(self, plan: Plan, models: list[ModelToEvaluate], cache: CallCache, in_process: bool = True,
                 slots: int = 1) -> None:
        self.plan, self.cache, self.in_process, self.slots = plan, cache, in_process, slots
        self.rd = plan.run_dir
        self.label = str(self.rd.root)
        self.logs = self.rd.root / "logs" / "units"
        self.stats: dict[str, ModelEval] = {}
        self.jobs: list[Job] = []
        self.computes: list[PairJob] = []  # per job: what it computes
        cfg = plan.config
        if cfg.eval.shards != "auto" and cfg.eval.shards > 1 and cfg.eval.engine.backend != "vllm":
            console.print(f"[yellow]evaluate[/] eval.shards={cfg.eval.shards}: the {cfg.eval.engine.backend} "
                          "engine evaluates each task whole (only vllm's outputs are independent of the batch; see "
                          "harness/stages/eval_shards.py)", highlight=False)
        for m in models:
            self.add_model(m)

    def add_model(self, m: ModelToEvaluate) -> None:
        identity = identity_for(self.plan, m)
        self.stats[m.name] = ModelEval(m.name, str(m.path), str(m.adapter) if m.adapter else None, identity)
        for name in task_names(self.plan):
            gen_fp, score_fp = fingerprints(self.plan, identity, name)
            if not self.reuse(m.name, name, gen_fp, score_fp):
                self.add_pair(m, name, identity, gen_fp, score_fp)

    def reuse(self, model: str, name: str, gen_fp: Fingerprint, score_fp: Fingerprint) -> bool:
        """A stored samples file of the same generation is kept, or re-scored here when only the grader changed;
        otherwise the run says why it evaluates again."""
        old = stored_meta(self.rd.samples_meta(model, name))
        same = old is not None and old.generation.key == gen_fp.key
        stored = intact_samples(self.rd.samples(model, name), old.n) if same else None
        me = self.stats[model]
        if stored is not None and old.scoring.key == score_fp.key:
            me.tasks[name] = TaskEval(model, name, gen_fp.key, score_fp.key, reused="samples")
            return True
        if stored is not None:
            t0 = time.perf_counter()
            task, docs = self.plan.task(name), self.plan.task_docs(name)
            _store(self.rd, model, name, score_records(task, docs, stored), gen_fp, score_fp)
            me.tasks[name] = TaskEval(model, name, gen_fp.key, score_fp.key,
                                      reused="responses (re-scored: grader changed)",
                                      seconds=round(time.perf_counter() - t0, 2))
            return True
        if same:
            console.print(f"[yellow]evaluate[/] {model}/{name}: the stored samples file is missing or "
                          "damaged; evaluating again (through the call cache)", highlight=False)
        elif old is not None:
            console.print(f"[yellow]evaluate[/] {model}/{name}: stored samples were made with a different "
                          f"{_what_differs(old.generation, gen_fp)}; evaluating again", highlight=False)
        return False

    def add_pair(self, m: ModelToEvaluate, name: str, identity: str, gen_fp: Fingerprint,
                 score_fp: Fingerprint) -> None:
        """The pair's unit, or the units of its shards not finished by an earlier, interrupted run."""
        cfg = self.plan.config
        where = self.cache if self.in_process else str(self.cache.path)
        group = engine_group(cfg.eval.engine, m.path)
        args = (self.plan, m, name, identity, where)
        ranges = shard_ranges(len(self.plan.task_docs(name)), shard_count(cfg, self.plan.task(name).output_type,
                                                                          self.slots))
        if len(ranges) == 1:
            unit = Unit("eval", f"eval/{m.name}/{name}", gen_fp.key, eval_resources(cfg))
            self.jobs.append(Job(unit, eval_unit, args, log_dir=self.logs, group=group))
            self.computes.append(PairJob(m.name, name, gen_fp, score_fp))
            return
        pair = ShardedPair(m.name, name, gen_fp, score_fp, ranges,
                           self.rd.samples(m.name, name).with_suffix(".shards"))
        for k in range(len(ranges)):
            done = pair.stored(k)
            if done is not None:
                pair.done[pair.label(k)] = done
                continue
            unit = Unit("eval", f"eval/{m.name}/{name}/{pair.label(k)}", pair.fingerprint(k), eval_resources(cfg))
            self.jobs.append(Job(unit, eval_unit, (*args, ranges[k]), log_dir=self.logs, group=group))
            self.computes.append(PairJob(m.name, name, gen_fp, score_fp, pair, k))
        if pair.complete:
            self.merge(pair)

    def commit(self, i: int, o: Outcome) -> None:
        """Store one finished unit at once (samples, then their sidecar as the done record)."""
        if o.error is not None:
            return
        out: EvalOutput = o.value
        job = self.computes[i]
        if out.new_cache_rows and o.shared_from is None:  # the batch that ran it stored them
            self.cache.put_many(out.new_cache_rows)
        me = self.stats[job.model]
        if o.shared_from is None:
            me.engine, me.loaded = out.engine, True
            me.cache_hits += out.hits
            me.cache_misses += out.misses
        if job.pair is not None:
            self.commit_shard(job.pair, job.shard, out)
            return
        t0 = time.perf_counter()
        _store(self.rd, job.model, job.task, out.records, job.generation, job.scoring)
        me.tasks[job.task] = TaskEval(job.model, job.task, job.generation.key, job.scoring.key, reused=None,
                                      seconds=round(out.seconds + time.perf_counter() - t0, 2),
                                      shared_from=o.shared_from, served_by=[out.engine.served_by])

    def commit_shard(self, pair: ShardedPair, k: int, out: EvalOutput) -> None:
        """One shard: its records and done record now, the samples file once all are in."""
        start, stop = pair.ranges[k]
        pair.commit(k, out.records, ShardDone(fingerprint=pair.fingerprint(k), start=start, stop=stop,
                                              n=len(out.records), seconds=round(out.seconds, 2), hits=out.hits,
                                              misses=out.misses, engine=out.engine))
        if pair.complete:
            self.merge(pair)

    def merge(self, pair: ShardedPair) -> None:
        """Every shard is in: the samples file and its sidecar in doc order, then the shard files go."""
        t0 = time.perf_counter()
        _store(self.rd, pair.model, pair.task, pair.merged(), pair.generation, pair.scoring)
        pair.remove()
        seconds = sum(d.seconds for d in pair.done.values()) + time.perf_counter() - t0
        served = [pair.done[pair.label(k)].engine.served_by for k in range(len(pair.ranges))]
        self.stats[pair.model].tasks[pair.task] = TaskEval(pair.model, pair.task, pair.generation.key,
                                                           pair.scoring.key, reused=None, seconds=round(seconds, 2),
                                                           served_by=served)

    def finish(self) -> dict[str, ModelEval]:
        for me in self.stats.values():  # the run's task order, whichever unit finished first
            me.tasks = {t: me.tasks[t] for t in task_names(self.plan) if t in me.tasks}
        return self.stats


def eval_batch(plan: Plan, models: list[ModelToEvaluate], cache: CallCache,
               in_process: bool = True, slots: int = 1) -> EvalBatch:
    """The evaluation units of one run folder (``EvalBatch``), for ``harness.executors.run_batches``."""
    return EvalBatch(plan, models, cache, in_process, slots)


def eval_resources(cfg) -> Resources:
    """One evaluation unit's needs: the engine's GPUs (tensor parallel size on vLLM), one CPU."""
    return engine_resources(cfg.eval.engine, cfg.executor.gpus)
