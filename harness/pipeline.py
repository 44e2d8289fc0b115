"""The stages of a run: plan -> build training data -> train -> evaluate -> score -> aggregate and report.

Every stage is idempotent: model calls go through the SQLite cache, trained models are kept under the run
folder, per-sample records are written per (model, task) when that pair is done. The run id defaults to a
hash of the resolved config, so re-running the same command reuses (and resumes) the same folder.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from distill.items import TrainItem
from distill.methods import get_method, stages_needed
from distill.pools import load_pool, split_validation
from harness.config import ConfigError, RunConfig
from harness.engines import build_engine
from harness.engines.base import SamplingParams
from harness.manifest import build_manifest
from harness.progress import console, progress_bar, quiet_hf_progress
from harness.store import (CachedEngine, CallCache, RunDir, default_cache_dir, read_jsonl, stable_hash,
                           write_json_atomic, write_jsonl_atomic)
from tasks.base import Doc, Scored, Task
from tasks.data import DataMissing
from tasks.registry import SUITES, expand_tasks, get_task


# ---- plan ---------------------------------------------------------------------------------------------
@dataclass
class Plan:
    config: RunConfig
    run_id: str
    run_dir: RunDir
    methods: list[str]
    tasks: list[str]
    #: Each task's items after --limit, loaded once by the preflight and reused by evaluation and the manifest.
    docs: dict[str, list[Doc]] = field(default_factory=dict, repr=False)
    skipped: dict[str, str] = field(default_factory=dict)  # task -> why
    stages: list[str] = field(default_factory=list)

    @property
    def task_counts(self) -> dict[str, int]:
        return {name: len(self.docs[name]) for name in self.tasks}


def config_hash(cfg: RunConfig) -> str:
    # The output folder and run name are where the run goes, not what it computes.
    data = cfg.model_dump(mode="json", exclude={"output_dir"})
    return stable_hash(data)[:10]


def plan_run(cfg: RunConfig, run_id: str | None = None, *, train: bool = True) -> Plan:
    """Resolve methods and tasks, preflight every task's data, and fix the run folder."""
    methods = list(cfg.methods) if train else []
    for m in methods:
        get_method(m)  # raises UnknownMethod with the known names
    if "base" in methods:
        methods.remove("base")  # the untrained student is always evaluated
    explicit = {t for t in cfg.eval.tasks if t not in SUITES}
    tasks = expand_tasks(cfg.eval.tasks)
    docs, skipped, missing_explicit = {}, {}, []
    for name in tasks:
        try:
            ds = make_task(cfg, name).docs()
            docs[name] = ds[: cfg.eval.limit] if cfg.eval.limit else ds
        except DataMissing as e:
            if name in explicit:
                missing_explicit.append(str(e))
            else:  # part of a suite: skip with a note, say so in the report
                skipped[name] = str(e)
    if missing_explicit:
        raise ConfigError(missing_explicit[0] if len(missing_explicit) == 1 else
                          f"{len(missing_explicit)} tasks lack data; first: {missing_explicit[0]}")
    tasks = [t for t in tasks if t not in skipped]
    if not tasks:
        raise ConfigError("no task left to evaluate (all lack data); set HARNESS_DATA_DIR or choose other --tasks")
    rid = run_id or f"{cfg.name}-{config_hash(cfg)}"
    stages = stages_needed(methods) if methods else []
    return Plan(cfg, rid, RunDir(Path(cfg.output_dir) / rid), methods, tasks, docs, skipped, stages)


def make_task(cfg: RunConfig, name: str) -> Task:
    return get_task(name, **cfg.eval.task_options.get(name, {}))


def estimate_cost(plan: Plan) -> dict[str, int]:
    """Rough token counts for --dry-run: characters / 4 for prompts, budgets for completions."""
    cfg = plan.config
    n_pool = cfg.pool.n - cfg.pool.validation_n
    q_tokens = 120  # a typical math question and instruction
    teacher_calls = sum(n_pool for s in plan.stages if s in ("critique", "refine", "direct"))
    teacher_tokens = teacher_calls * (q_tokens + 2 * cfg.probe.max_new_tokens + cfg.teacher.max_new_tokens)
    probe_tokens = (n_pool * (q_tokens + cfg.probe.max_new_tokens)) if "probe" in plan.stages else 0
    steps = cfg.train.max_steps or 0
    train_tokens = len(plan.methods) * (
        steps * cfg.train.per_device_batch_size * cfg.train.gradient_accumulation_steps * cfg.train.max_length
        if steps else n_pool * cfg.train.num_epochs * (q_tokens + 2 * cfg.probe.max_new_tokens))
    n_models = 1 + len(plan.methods)
    eval_tokens = 0
    for t in plan.tasks:
        task = make_task(cfg, t)
        budget = generation_params(cfg, task).max_new_tokens if task.output_type == "generate" else 0
        eval_tokens += n_models * plan.task_counts[t] * (q_tokens + budget * task.generation.n)
    return {"probe_tokens": probe_tokens, "teacher_calls": teacher_calls, "teacher_tokens": teacher_tokens,
            "train_tokens_max": train_tokens, "eval_tokens_max": eval_tokens, "models_to_evaluate": n_models}


# ---- student and teacher ------------------------------------------------------------------------------
def resolve_student(cfg: RunConfig) -> Path | str:
    """'tiny' -> the embedded student folder (built on first use); anything else as given."""
    if cfg.student.model != "tiny":
        return cfg.student.model
    from distill.tiny import TinySpec, ensure_tiny_student

    over = dict(cfg.student.tiny)
    preset = over.pop("preset", "default")
    spec = TinySpec.smoke() if preset == "smoke" else TinySpec.default()
    unknown = [k for k in over if not hasattr(spec, k)]
    if unknown:
        raise ConfigError(f"student.tiny has unknown field {unknown[0]!r}; see distill/tiny.py TinySpec")
    for k, v in over.items():
        setattr(spec, k, v)
    return ensure_tiny_student(spec)


def make_teacher(cfg: RunConfig, cache: CallCache):
    kind = cfg.teacher.kind
    if kind == "oracle":
        if cfg.pool.source != "synthetic":
            raise ConfigError("teacher.kind=oracle only knows the synthetic task; use reference or llm for "
                              f"pool.source={cfg.pool.source}")
        from distill.teachers.oracle import OracleTeacher

        return OracleTeacher()
    if kind == "reference":
        from distill.teachers.reference import ReferenceTeacher

        return ReferenceTeacher()
    if not cfg.teacher.model:
        raise ConfigError("teacher.kind=llm needs teacher.model (a local folder or hub id)")
    from distill.teachers.llm import LLMTeacher

    e = cfg.teacher.engine
    engine = CachedEngine(build_engine(e.backend, cfg.teacher.model, batch_size=e.batch_size, dtype=e.dtype,
                                       device=e.device, options=e.options), cache)
    params = SamplingParams(max_new_tokens=cfg.teacher.max_new_tokens, temperature=cfg.teacher.temperature,
                            seed=cfg.seed)
    return LLMTeacher(engine, cfg.prompts, params)


def student_engine(cfg: RunConfig, student: Path | str, adapter: Path | None, cache: CallCache) -> CachedEngine:
    e = cfg.eval.engine
    return CachedEngine(build_engine(e.backend, student, adapter, batch_size=e.batch_size, dtype=e.dtype,
                                     device=e.device, options=e.options), cache)


# ---- stage 2: training data ---------------------------------------------------------------------------
def build_items(plan: Plan, student: Path | str, cache: CallCache) -> tuple[list[TrainItem], list[TrainItem]]:
    """Probe, critique, refine and answer the pool (only the stages the chosen methods need)."""
    cfg = plan.config
    pool = load_pool(cfg.pool.source, cfg.pool.n, cfg.pool.seed)
    train_items, validation = split_validation(pool, cfg.pool.validation_n)
    path = plan.run_dir.items
    if path.exists():  # resume: keep what earlier runs stored (all of it is also in the cache)
        stored = {d["id"]: TrainItem.from_dict(d) for d in read_jsonl(path)}
        train_items = [stored.get(it.id, it) for it in train_items]
    stages = plan.stages
    if "probe" in stages and any(it.probe is None for it in train_items):
        engine = student_engine(cfg, student, None, cache)
        params = SamplingParams(max_new_tokens=cfg.probe.max_new_tokens, temperature=cfg.probe.temperature,
                                seed=cfg.seed)
        prompts = [cfg.prompts.messages_for("question", question=it.question) for it in train_items]
        with progress_bar("probe (student answers)", len(prompts)) as advance:
            outs = engine.generate(prompts, params, advance)
        for it, comps in zip(train_items, outs):
            it.probe = comps[0].text
        write_jsonl_atomic(path, (it.to_dict() for it in train_items))
    needs_teacher = [s for s in ("critique", "refine", "direct") if s in stages]
    if needs_teacher:
        teacher = make_teacher(cfg, cache)
        for stage, attr, fn in (("critique", "critique", teacher.critique), ("refine", "refined", teacher.refine),
                                ("direct", "direct", teacher.answer)):
            if stage not in stages:
                continue
            todo = [it for it in train_items if getattr(it, attr) is None]
            if not todo:
                continue
            bs = 32
            with progress_bar(f"{stage} (teacher)", len(todo)) as advance:
                for i in range(0, len(todo), bs):
                    chunk = todo[i : i + bs]
                    for it, text in zip(chunk, fn(chunk)):
                        setattr(it, attr, text)
                    advance(len(chunk))
            write_jsonl_atomic(path, (it.to_dict() for it in train_items))
    if not path.exists():
        write_jsonl_atomic(path, (it.to_dict() for it in train_items))
    return train_items, validation


# ---- stage 3: training --------------------------------------------------------------------------------
def train_methods(plan: Plan, student: Path | str, items: list[TrainItem]) -> dict[str, dict]:
    from distill.methods import build_dataset
    from distill.mix import mix_by_conclusion
    from distill.train import train_student

    cfg = plan.config
    chosen = mix_by_conclusion(items, cfg.right_fraction, cfg.seed) if cfg.right_fraction is not None else items
    datasets = {m: build_dataset(get_method(m, cfg.prompts), chosen) for m in plan.methods}
    for m, rows in datasets.items():
        if not rows:
            raise ConfigError(f"method {m} has no training examples (its teacher stage produced nothing)")
        write_jsonl_atomic(plan.run_dir.train_data(m), rows)
    # Same optimiser settings and the same number of optimiser steps for every method: the smallest
    # dataset sets the budget when max_steps is not given, so no method sees more updates than another.
    tcfg = cfg.train.model_copy()
    if tcfg.max_steps is None:
        per_step = tcfg.per_device_batch_size * tcfg.gradient_accumulation_steps
        smallest = min(len(r) for r in datasets.values())
        tcfg.max_steps = max(1, (smallest * tcfg.num_epochs) // per_step)
    out = {}
    for m, rows in datasets.items():
        console.print(f"[bold]train[/] {m}: {len(rows)} examples, {tcfg.max_steps} steps")
        res = train_student(student, rows, plan.run_dir.model_dir(m), tcfg, progress=True)
        out[m] = {"model_dir": str(res.model_dir), "adapter": res.adapter, "metrics": res.metrics,
                  "examples": len(rows)}
    return out


# ---- stage 4-5: evaluation and scoring ----------------------------------------------------------------
def generation_params(cfg: RunConfig, task: Task) -> SamplingParams:
    g = task.generation
    budgets = cfg.eval.max_new_tokens
    return SamplingParams(max_new_tokens=budgets.get(task.name, budgets.get("*", g.max_new_tokens)),
                          temperature=g.temperature, n=g.n, seed=cfg.seed, stop=tuple(g.stop))


def evaluate_task(engine: CachedEngine, task: Task, docs: Sequence[Doc], params: SamplingParams,
                  label: str) -> list[dict]:
    """Generate (or score log-likelihoods) for every doc, score, and return per-sample records."""
    records: list[dict] = []
    if task.output_type == "multiple_choice":
        requests = [(d.prompt, c) for d in docs for c in (d.choices or [])]
        t0 = time.perf_counter()
        with progress_bar(f"{label} (loglik)", len(requests)) as advance:
            lls = engine.loglikelihood(requests, advance)
        per = (time.perf_counter() - t0) / max(1, len(docs))
        pos = 0
        for d in docs:
            k = len(d.choices or [])
            mine = lls[pos : pos + k]
            pos += k
            s = task.score_loglikelihoods(d, mine)
            records.append(_record(task, d, s, loglikelihoods=[list(x) for x in mine], seconds=per))
        return records
    with progress_bar(label, len(docs)) as advance:
        comps = engine.generate([d.prompt for d in docs], params, advance)
    scored = task.score_many(docs, [[c.text for c in cs] for cs in comps])
    for d, cs, s in zip(docs, comps, scored):
        records.append(_record(
            task, d, s, responses=[c.text for c in cs], response=cs[0].text, finish_reason=cs[0].finish_reason,
            prompt_tokens=cs[0].prompt_tokens, completion_tokens=sum(c.completion_tokens for c in cs),
            seconds=sum(c.seconds for c in cs), cached=all(c.cached for c in cs)))
    return records


def _record(task: Task, doc: Doc, s: Scored, **extra: Any) -> dict:
    rec: dict[str, Any] = {"id": doc.id}
    if not task.sensitive:  # GPQA questions never leave memory in plain text
        rec["prompt"] = doc.prompt
        rec["gold"] = doc.gold
    rec.update(extra)
    rec.update(score=s.score, metrics=s.metrics, extracted=s.extracted, details=s.details)
    return rec


def evaluate_models(plan: Plan, models: dict[str, tuple[Path | str, Path | None]], cache: CallCache,
                    validation: list[TrainItem] | None = None) -> dict[str, dict]:
    """(model x task) evaluation with one engine config and identical prompts/budgets for every model."""
    cfg = plan.config
    tasks = {name: make_task(cfg, name) for name in plan.tasks}
    docs = dict(plan.docs)
    if validation:
        from tasks.pool_validation import PoolValidation

        tasks["pool_validation"] = PoolValidation(items=validation)
        docs["pool_validation"] = tasks["pool_validation"].docs()
    stats: dict[str, dict] = {}
    for model, (path, adapter) in models.items():
        engine = None
        for name, task in tasks.items():
            out = plan.run_dir.samples(model, name)
            want = [d.id for d in docs[name]]
            if out.exists() and [r["id"] for r in read_jsonl(out)] == want:
                continue  # done in an earlier (or killed) run
            if engine is None:
                engine = student_engine(cfg, path, adapter, cache)
                stats[model] = {"identity": engine.identity}
            params = generation_params(cfg, task)
            t0 = time.perf_counter()
            records = evaluate_task(engine, task, docs[name], params, f"eval {model}/{name}")
            write_jsonl_atomic(out, records)
            stats[model][name] = {"seconds": round(time.perf_counter() - t0, 2)}
        if engine is not None:
            stats[model].update(cache_hits=engine.hits, cache_misses=engine.misses)
            del engine
    return stats


# ---- stage 6: aggregate and report --------------------------------------------------------------------
def aggregate(run_dir: RunDir, task_options: dict[str, dict] | None = None,
              model_order: Sequence[str] | None = None) -> dict:
    """results.json from the stored per-sample records (no model is loaded)."""
    from reports.stats import build_results, write_results

    per: dict[tuple[str, str], dict] = {}
    primary: dict[str, str] = {}
    for model, task_name, path in run_dir.sample_files():
        records = read_jsonl(path)
        task = _task_for_results(task_name, task_options or {})
        if task is None:
            continue
        primary[task_name] = task.primary_metric
        scored = [_scored(r) for r in records]
        per[(model, task_name)] = {
            "scored": [s.to_dict() for s in scored],
            "aggregate": task.aggregate(scored),
            "aggregate_fn": (lambda recs, t=task: t.aggregate([_scored(r) for r in recs])),
        }
    results = build_results(run_dir.root.name, per, primary, model_order=list(model_order) if model_order else None)
    write_results(run_dir.results, results)
    return results


def _scored(r: dict) -> Scored:
    return Scored(id=r["id"], score=r["score"], metrics=r.get("metrics") or {}, extracted=r.get("extracted"),
                  details=r.get("details") or {})


def _task_for_results(name: str, task_options: dict[str, dict]) -> Task | None:
    if name == "pool_validation":
        from tasks.pool_validation import PoolValidation

        return PoolValidation(items=[])
    try:
        return get_task(name, **task_options.get(name, {}))
    except Exception:
        return None


def run(plan: Plan, *, command: str = "", extra_models: dict[str, tuple[str, str | None]] | None = None,
        evaluate: bool = True) -> RunDir:
    """The whole flow of `harness compare` (and `train`, `eval` as subsets)."""
    cfg = plan.config
    rd = plan.run_dir
    rd.root.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    cache = CallCache(default_cache_dir() / "calls.sqlite")
    quiet_hf_progress()
    t0 = time.perf_counter()
    student = resolve_student(cfg)
    timings["student"] = time.perf_counter() - t0
    trained: dict[str, dict] = {}
    validation: list[TrainItem] = []
    if plan.methods:
        t0 = time.perf_counter()
        items, validation = build_items(plan, student, cache)
        timings["training_data"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        trained = train_methods(plan, student, items)
        timings["train"] = time.perf_counter() - t0
    eval_stats: dict = {}
    if evaluate:
        models: dict[str, tuple[Path | str, Path | None]] = {"base": (student, None)}
        for m, info in trained.items():
            if info["adapter"]:
                models[m] = (student, Path(info["model_dir"]))
            else:
                models[m] = (Path(info["model_dir"]), None)
        for name, (path, adapter) in (extra_models or {}).items():
            models[name] = (path, Path(adapter) if adapter else None)
        t0 = time.perf_counter()
        eval_stats = evaluate_models(plan, models, cache, validation)
        timings["evaluate"] = time.perf_counter() - t0
    manifest = build_manifest(plan, student=student, trained=trained, eval_stats=eval_stats, timings=timings,
                              command=command)
    write_json_atomic(rd.manifest, manifest)
    if evaluate:
        aggregate(rd, cfg.eval.task_options, ["base", *plan.methods])
        from reports.html import render_report

        render_report(rd.root)
    cache.close()
    return rd
