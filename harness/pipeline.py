"""The flow of a run: plan -> training data -> train -> evaluate -> aggregate and report; several run folders
(a sweep's cells) go through it as one graph, each phase's units of every folder in one executor call.

Each stage lives in ``harness/stages/`` and reuses what a previous run stored only when the fingerprint of what
made it matches. The run id defaults to ``<name>-<config hash>``, so re-running a command reuses (and resumes)
its folder.
"""
from __future__ import annotations

import json
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from harness.common.artifacts import SCHEMA_VERSION, CacheRecord, save_artifact
from harness.common.files import link_file, stable_hash
from harness.common.units import CellLabel, ModelEval, Student, TrainedModel, TrainingData
from harness.executors import build_executor, run_batches
from harness.models import release_engines, student_of
from harness.common.progress import console
from harness.runlock import run_lock
from harness.stages.aggregate import aggregate, render
from harness.stages.evaluate import ModelToEvaluate, eval_batch, eval_resources
from harness.stages.plan import Plan
from harness.stages.training_data import build_items
from harness.stages.train import train_batch
from harness.store import CallCache, RunDir, default_cache_dir


@dataclass
class RunRequest:
    """One run folder's share of a driver's work: its plan, and what the run adds to or leaves out of the flow.
    ``cell``: the run is one cell of a sweep (harness/sweep.py); its rows carry the cell's params and seed."""

    plan: Plan
    cell: CellLabel | None = None
    extra_models: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    evaluate: bool = True


@dataclass
class RunState:
    """How far one run folder has come through the flow (the typed outputs of its stages so far)."""

    request: RunRequest
    student: Student
    timings: dict[str, float] = field(default_factory=dict)
    training_data: TrainingData | None = None
    trained: dict[str, TrainedModel] = field(default_factory=dict)
    eval_stats: dict[str, ModelEval] = field(default_factory=dict)

    @property
    def plan(self) -> Plan:
        return self.request.plan


def run(plan: Plan, *, command: str = "", extra_models: dict[str, tuple[str, str | None]] | None = None,
        evaluate: bool = True, cell: CellLabel | None = None, donor: RunDir | None = None) -> RunDir:
    """The whole flow of `harness compare` (and `train`, `eval` as subsets). ``donor``: a run folder whose
    stored training data, trained models and sample files are linked in wherever their fingerprints equal
    this run's."""
    return run_many([RunRequest(plan, cell, extra_models or {}, evaluate)], command=command, donor=donor)[0]


def run_many(requests: Sequence[RunRequest], *, command: str = "", donor: RunDir | None = None,
             share_first: bool = False) -> list[RunDir]:
    """Several run folders (a sweep's cells) as one graph: each folder's training data in the driver, in order;
    then every folder's train units in one executor call; then every folder's evaluation units in one; then
    each folder's results and report. Units that are the same work (same kind and fingerprint: the base model
    on a task in every cell, a method the swept key does not touch) run once. ``share_first``: the first folder
    is the donor of the others (its stored outputs are linked in where fingerprints match)."""
    cache = CallCache(default_cache_dir() / "calls.sqlite")  # first: a bad cache file must leave no run folder
    try:
        with ExitStack() as locks:
            for r in requests:
                locks.enter_context(run_lock(r.plan.run_dir.root))
            return _run_many(list(requests), cache, command=command, donor=donor, share_first=share_first)
    finally:
        cache.close()


def _run_many(requests: list[RunRequest], cache: CallCache, *, command: str, donor: RunDir | None,
              share_first: bool) -> list[RunDir]:
    executor = build_executor(requests[0].plan.config.executor)
    states: list[RunState] = []
    donors: list[RunDir | None] = []
    for r in requests:
        t0 = time.perf_counter()
        st = RunState(r, student_of(r.plan.config))  # its identity is computed here, once, for every stage
        st.timings["student"] = time.perf_counter() - t0
        states.append(st)
        donors.append(donor)
        if share_first and donor is None:
            donor = r.plan.run_dir
    paths = [p for st in states for p in (st.plan.run_dir.root, Path(st.student.path)) if p.exists()]
    executor.check_visible(list(dict.fromkeys(paths)))
    for st, own_donor in zip(states, donors):
        if st.plan.methods:  # the driver builds training data cell by cell: a cell reuses its donor's items
            t0 = time.perf_counter()
            if own_donor is not None:
                share_training_data(own_donor, st.plan.run_dir)
            st.training_data = build_items(st.plan, st.student, cache, executor)
            st.timings["training_data"] = time.perf_counter() - t0
    release_engines()  # the probe's engine gives its memory back before this process trains
    training = [(st, d) for st, d in zip(states, donors) if st.plan.methods]
    if training:
        t0 = time.perf_counter()
        batches = [train_batch(st.plan, st.student, st.training_data.items, cache, donor=d) for st, d in training]
        for (st, _), trained in zip(training, run_batches(executor, batches)):
            st.trained = trained
            st.timings["train"] = time.perf_counter() - t0  # the phase's wall time: cells train side by side
    evaluating = [(st, d) for st, d in zip(states, donors) if st.request.evaluate]
    if evaluating:
        t0 = time.perf_counter()
        batches, shared = [], []
        for st, d in evaluating:
            models = models_to_evaluate(st)
            shared.append(share_samples(st.plan, models, d) if d is not None else [])
            batches.append(eval_batch(st.plan, models, cache, executor.in_process,
                                      executor.engine_slots(eval_resources(st.plan.config))))
        try:
            results = run_batches(executor, batches)
        finally:
            release_engines()
        for (st, d), stats, linked in zip(evaluating, results, shared):
            for name, task in linked:
                stats[name].tasks[task].shared_from = str(d.root)
            st.eval_stats = stats
            st.timings["evaluate"] = time.perf_counter() - t0
    return [finish(st, cache, executor, command) for st in states]


def models_to_evaluate(st: RunState) -> list[ModelToEvaluate]:
    """The untrained student, each trained model (an adapter over the student, or a full checkpoint), and the
    models the command names."""
    student = st.student
    models = [ModelToEvaluate("base", student.path, identity=student.identity)]
    for m, tm in st.trained.items():
        models.append(ModelToEvaluate(m, student.path, Path(tm.model_dir)) if tm.adapter
                      else ModelToEvaluate(m, Path(tm.model_dir)))
    for name, (path, adapter) in st.request.extra_models.items():
        models.append(ModelToEvaluate(name, path, Path(adapter) if adapter else None))
    return models


def finish(st: RunState, cache: CallCache, executor, command: str) -> RunDir:
    """The run folder's manifest, results.json and report (unless nothing is new)."""
    plan, rd = st.plan, st.plan.run_dir
    inputs = results_inputs(plan, st.trained, st.eval_stats)
    if st.request.evaluate and nothing_new(rd, st.training_data, st.trained, st.eval_stats, inputs):
        console.print(f"up to date: every stored result's fingerprint matches; {rd.results}")
        return rd
    from harness.manifest import build_manifest

    manifest = build_manifest(plan, student=st.student.path, trained=st.trained, eval_stats=st.eval_stats,
                              training_data=st.training_data, timings=st.timings, command=command,
                              cache=CacheRecord(path=str(cache.path), corrupt_entries=cache.corrupt),
                              executor=executor.describe())
    if st.request.cell is not None:
        manifest.experiment = st.request.cell.record()
    save_artifact(rd.manifest, manifest)
    if st.request.evaluate:
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
        "schema": SCHEMA_VERSION,  # results.json of an older schema is rewritten, never kept as up to date
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
