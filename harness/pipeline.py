"""The flow of one run: plan -> training data -> train -> evaluate -> aggregate and report.

Each stage lives in ``harness/stages/`` and reuses what a previous run stored only when the fingerprint of what
made it matches. The run id defaults to ``<name>-<config hash>``, so re-running a command reuses (and resumes)
its folder.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from common.artifacts import save_artifact
from common.files import link_file, stable_hash
from common.units import CellLabel, ModelEval, TrainedModel, TrainingData
from harness.executors import build_executor
from harness.models import release_engines, resolve_student, student_of  # noqa: F401  (resolve_student: CLI, API)
from harness.progress import console
from harness.runlock import run_lock
from harness.stages.aggregate import aggregate, render
from harness.stages.evaluate import ModelToEvaluate, evaluate_models
from harness.stages.plan import Plan, estimate_cost, plan_run  # noqa: F401  (the CLI's entry points)
from harness.stages.training_data import build_items
from harness.stages.train import train_methods
from harness.store import CallCache, RunDir, default_cache_dir


def run(plan: Plan, *, command: str = "", extra_models: dict[str, tuple[str, str | None]] | None = None,
        evaluate: bool = True, cell: CellLabel | None = None, donor: RunDir | None = None) -> RunDir:
    """The whole flow of `harness compare` (and `train`, `eval` as subsets).

    ``cell``: this run is one cell of a sweep (harness/sweep.py); its rows
    carry the cell's params and seed. ``donor``: a sibling cell whose stored training data, trained models and
    sample files are linked in wherever their fingerprints equal this cell's (the base model's evaluation, a
    method the swept key does not touch), so shared work is done once."""
    cache = CallCache(default_cache_dir() / "calls.sqlite")  # first: a bad cache file must leave no run folder
    try:
        with run_lock(plan.run_dir.root):
            return _run(plan, cache, command=command, extra_models=extra_models, evaluate=evaluate, cell=cell,
                        donor=donor)
    finally:
        cache.close()


def _run(plan: Plan, cache: CallCache, *, command: str, extra_models: dict[str, tuple[str, str | None]] | None,
         evaluate: bool, cell: CellLabel | None, donor: RunDir | None) -> RunDir:
    rd = plan.run_dir
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = now - clock
        clock = now

    student = student_of(plan.config)  # its identity is computed here, once, and handed to every stage
    lap("student")
    executor = build_executor(plan.config.executor)
    executor.check_visible([rd.root, *([Path(student.path)] if Path(student.path).exists() else [])])
    trained: dict[str, TrainedModel] = {}
    training_data: TrainingData | None = None
    if plan.methods:
        if donor is not None:
            share_training_data(donor, rd)
        training_data = build_items(plan, student, cache, executor)
        lap("training_data")
        release_engines()  # the probe's engine gives its memory back before this process trains
        trained = train_methods(plan, student, training_data.items, cache, donor=donor, executor=executor)
        lap("train")
    eval_stats: dict[str, ModelEval] = {}
    if evaluate:
        models = [ModelToEvaluate("base", student.path, identity=student.identity)]
        for m, tm in trained.items():
            models.append(ModelToEvaluate(m, student.path, Path(tm.model_dir)) if tm.adapter
                          else ModelToEvaluate(m, Path(tm.model_dir)))
        for name, (path, adapter) in (extra_models or {}).items():
            models.append(ModelToEvaluate(name, path, Path(adapter) if adapter else None))
        shared = share_samples(plan, models, donor) if donor is not None else []
        eval_stats = evaluate_models(plan, models, cache, executor)
        for name, task in shared:
            eval_stats[name].tasks[task].shared_from = str(donor.root)
        lap("evaluate")
    inputs = results_inputs(plan, trained, eval_stats)
    if evaluate and nothing_new(rd, training_data, trained, eval_stats, inputs):
        console.print(f"up to date: every stored result's fingerprint matches; {rd.results}")
        return rd
    from harness.manifest import build_manifest

    manifest = build_manifest(plan, student=student.path, trained=trained, eval_stats=eval_stats,
                              training_data=training_data, timings=timings, command=command,
                              cache={"path": str(cache.path), "corrupt_entries": cache.corrupt},
                              executor=executor.describe())
    if cell is not None:
        manifest.experiment = cell.record()
    save_artifact(rd.manifest, manifest)
    if evaluate:
        aggregate(rd, manifest, inputs=inputs)
        render(rd)
    return rd


def share_training_data(donor: RunDir, rd: RunDir) -> None:
    """The donor's training items: build_items keeps each stage only where its fingerprint matches."""
    if not rd.items.exists() and donor.items.exists() and donor.items_meta.exists():
        link_file(donor.items, rd.items)
        link_file(donor.items_meta, rd.items_meta)


def share_samples(plan: Plan, models: list[ModelToEvaluate], donor: RunDir) -> list[tuple[str, str]]:
    """Link the donor's sample files of every (model, task) whose generation fingerprint equals this cell's."""
    from harness.stages.evaluate import fingerprints, identity_for, stored_meta, task_names

    rd = plan.run_dir
    shared = []
    tasks = task_names(plan)
    for m in models:
        identity = identity_for(plan, m)
        for task in tasks:
            if rd.samples(m.name, task).exists():
                continue
            gen, _ = fingerprints(plan, identity, task)
            meta = stored_meta(donor.samples_meta(m.name, task))
            if meta is not None and meta.generation.key == gen.key and donor.samples(m.name, task).exists():
                link_file(donor.samples(m.name, task), rd.samples(m.name, task))
                link_file(donor.samples_meta(m.name, task), rd.samples_meta(m.name, task))
                shared.append((m.name, task))
    return shared


def results_inputs(plan: Plan, trained: dict[str, TrainedModel], eval_stats: dict[str, ModelEval]) -> str:
    """A key over everything results.json and the report are computed from."""
    return stable_hash({
        "config": plan.config.model_dump(mode="json", exclude={"output_dir", "executor", "tracking"}),
        "model_order": plan.model_order,
        "scores": {m: {t: e.scoring for t, e in me.tasks.items()} for m, me in eval_stats.items()},
        "models": {m: tm.fingerprint for m, tm in trained.items()}})[:24]


def nothing_new(rd: RunDir, training_data: TrainingData | None, trained: dict[str, TrainedModel],
                eval_stats: dict[str, ModelEval], inputs: str) -> bool:
    """True when this run computed nothing and the stored results were made from exactly these inputs."""
    if training_data is not None and training_data.computed:
        return False
    if any(not tm.reused for tm in trained.values()):
        return False
    if any(e.reused != "samples" for me in eval_stats.values() for e in me.tasks.values()):
        return False
    if not (rd.results.exists() and rd.report.exists() and rd.manifest.exists()):
        return False
    try:
        return json.loads(rd.results.read_text(encoding="utf-8")).get("stats", {}).get("inputs") == inputs
    except ValueError:
        return False
