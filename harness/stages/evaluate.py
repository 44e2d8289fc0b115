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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from common.artifacts import (Fingerprint, SampleFileMeta, SampleRecord, SchemaMismatch, load_artifact,
                              read_samples, save_artifact, write_samples)
from common.files import stable_hash
from harness.models import identity_of, serve
from harness.progress import console, progress_bar
from harness.stages.plan import Plan, generation_params
from harness.store import CachedEngine, CallCache
from tasks.base import Doc, Scored, Task


@dataclass
class ModelToEvaluate:
    name: str
    path: Path | str
    adapter: Path | None = None


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
    task = plan.task_objs[task_name]
    params = (generation_params(plan.config, task).to_dict() if task.output_type == "generate"
              else {"loglikelihood": True})
    gen_parts = {"engine": identity, "task": stable_hash(task_fingerprint(task, plan.docs[task_name])),
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
    if task.output_type == "lm_eval":
        return list(records)  # scored by lm-eval's own process_results while evaluating; nothing to redo here
    if task.output_type == "multiple_choice":
        scored = [task.score_loglikelihoods(d, [tuple(x) for x in r.loglikelihoods or []])
                  for d, r in zip(docs, records)]
    else:
        scored = task.score_many(docs, [r.responses or [] for r in records])
    keep = {"prompt", "gold", "id", "score", "metrics", "extracted", "details"}
    return [make_record(task, d, s, **r.model_dump(exclude=keep)) for d, s, r in zip(docs, scored, records)]


def evaluate_task(engine: CachedEngine, task: Task, docs: Sequence[Doc], plan: Plan, label: str) -> list[SampleRecord]:
    """Generate (or score log-likelihoods) for every doc, score, and return per-sample records."""
    records: list[SampleRecord] = []
    if task.output_type == "lm_eval":  # lm-eval runs the task; the engine answers its requests (call cache too)
        from harness.lm_eval_bridge import evaluate_lm_eval

        return evaluate_lm_eval(engine, task, docs, plan.config.seed, label, make_record)
    if task.output_type == "multiple_choice":
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


def evaluate_models(plan: Plan, models: list[ModelToEvaluate], cache: CallCache) -> dict[str, dict]:
    """(model x task) evaluation; returns per model its identity, engine description and per-task record."""
    cfg = plan.config
    rd = plan.run_dir
    stats: dict[str, dict] = {}
    for m in models:
        identity = identity_of(cfg.eval.engine, m.path, m.adapter)
        engine: CachedEngine | None = None
        info: dict[str, Any] = {"identity": identity, "tasks": {}}
        for name in [*plan.tasks, *(["pool_validation"] if "pool_validation" in plan.docs else [])]:
            task, docs = plan.task_objs[name], plan.docs[name]
            gen_fp, score_fp = fingerprints(plan, identity, name)
            out, meta_path = rd.samples(m.name, name), rd.samples_meta(m.name, name)
            old = stored_meta(meta_path)
            t0 = time.perf_counter()
            entry: dict[str, Any] = {"fingerprint": gen_fp.key, "scoring": score_fp.key}
            stored = intact_samples(out, old.n) if old is not None and old.generation.key == gen_fp.key else None
            if stored is not None:
                if old.scoring.key == score_fp.key:
                    entry["reused"] = "samples"
                    info["tasks"][name] = entry
                    continue
                records = score_records(task, docs, stored)
                entry["reused"] = "responses (re-scored: grader changed)"
            else:
                if old is not None and old.generation.key == gen_fp.key:
                    console.print(f"[yellow]evaluate[/] {m.name}/{name}: the stored samples file is missing or "
                                  "damaged; evaluating again (through the call cache)", highlight=False)
                elif old is not None:
                    console.print(f"[yellow]evaluate[/] {m.name}/{name}: stored samples were made with a different "
                                  f"{_what_differs(old.generation, gen_fp)}; evaluating again", highlight=False)
                if engine is None:
                    engine = serve(cfg.eval.engine, m.path, m.adapter, cache)
                    if engine.identity != identity:  # the loaded engine must agree with the cheap identity
                        raise RuntimeError(f"engine identity {engine.identity} != computed {identity}")
                    info["engine"] = engine.describe()
                records = evaluate_task(engine, task, docs, plan, f"eval {m.name}/{name}")
                entry["reused"] = None
            write_samples(out, records)
            save_artifact(meta_path, SampleFileMeta(
                model=m.name, task=name, n=len(records), generation=gen_fp, scoring=score_fp,
                created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
            entry["seconds"] = round(time.perf_counter() - t0, 2)
            info["tasks"][name] = entry
        if engine is not None:
            info.update(cache_hits=engine.hits, cache_misses=engine.misses)
            del engine
        stats[m.name] = info
    return stats
