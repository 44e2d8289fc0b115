"""The run's training pool and its validation split: fixed at planning, loaded once, on first use.

What the pool is (the config's pool section and the evaluation prompts decontamination checks against) is known
when the plan is made, so the plan holds it from the start: a ``PoolSource`` (the training side, read by
build_items) and, when ``pool.validation_n > 0``, a ``HeldOut`` task (pool_validation: the validation side,
evaluated like a task for checkpoint selection, never a test benchmark). Both read the same ``PoolSplit``, computed
by one call of ``harness.distill.pools.split_validation``.

Loading is deferred to first use and kept on the plan value: a dry run never loads a pool (the paper's pool is a
WebInstruct download; MATH train is 7,500 problems to decontaminate), a run loads it once.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Mapping

from harness.common.frozen import FrozenMap
from harness.common.units import PoolReport
from harness.distill.items import TrainItem
from harness.distill.pools import Decontaminator, PoolError, load_pool_spec, prompt_text, split_validation
from harness.config import ConfigError, RunConfig
from harness.common.progress import console
from harness.tasks.base import Doc, Task
from harness.tasks.pool_validation import PoolValidation, QAItem

#: The held-out task's name (its sample files, results rows and the checkpoint-selection default use it).
HELD_OUT_TASK = PoolValidation.name


@dataclass(frozen=True)
class PoolSplit:
    """The pool as loaded, and its split into training and validation questions (the last validation_n)."""

    pool: tuple[TrainItem, ...]  # every question loaded, in pool order (the pool fingerprint covers all)
    train: tuple[TrainItem, ...]
    validation: tuple[TrainItem, ...]
    report: PoolReport  # the loader's report (decontamination counts) and the seconds loading took
    #: pool_validation over ``validation`` and its docs (empty when validation_n = 0)
    held_out_task: Task
    held_out_docs: tuple[Doc, ...]


def eval_texts(tasks: Mapping[str, Task]) -> dict[str, list[str]]:
    """Every evaluation prompt of the run's test tasks, in full (not cut by --limit), task -> texts."""
    return {name: [prompt_text(d.prompt) for d in task.docs()] for name, task in tasks.items()}


def load_split(cfg: RunConfig, tasks: Mapping[str, Task]) -> PoolSplit:
    """Load the pool (decontaminated against ``tasks``' prompts) and split off its validation questions."""
    clock = time.perf_counter()
    dec = None
    if cfg.pool.decontaminate.enabled and cfg.pool.source != "synthetic":
        dec = Decontaminator(eval_texts(tasks), cfg.pool.decontaminate.ngram)
    try:
        pool, report = load_pool_spec(cfg.pool, dec)
    except PoolError as e:
        raise ConfigError(str(e)) from None
    if len(pool) < cfg.pool.n:
        console.print(f"[yellow]pool[/] {cfg.pool.source}: {len(pool)} clean questions, fewer than pool.n="
                      f"{cfg.pool.n}")
    if report.removed:
        console.print(f"pool {cfg.pool.source}: decontamination removed {report.removed} of {report.examined} "
                      f"questions examined ({', '.join(f'{t}: {c}' for t, c in report.removed_by_task.items())})")
    try:
        train, validation = split_validation(pool, cfg.pool.validation_n)
    except ValueError as e:  # fewer clean questions than validation_n
        raise ConfigError(str(e)) from None
    task = PoolValidation(items=[QAItem(it.id, it.question, it.gold_answer) for it in validation])
    return PoolSplit(pool=tuple(pool), train=tuple(train), validation=tuple(validation),
                     report=replace(report, seconds=round(time.perf_counter() - clock, 2)),
                     held_out_task=task, held_out_docs=tuple(task.docs()))


class PoolSource:
    """The run's pool, loaded on the first ``split()`` and kept: what it loads is fixed at construction.

    Pickled (the ray executor ships the plan to every unit) it keeps the held-out task and its docs but not the
    training pool: workers evaluate pool_validation, they never build training items, and the paper's pool
    (100,000 WebInstruct questions) would otherwise be unpickled by every evaluation unit."""

    def __init__(self, cfg: RunConfig, tasks: Mapping[str, Task]) -> None:
        self._cfg = cfg
        self._tasks = FrozenMap(tasks)
        self._split: PoolSplit | None = None
        self._held_out: tuple[Task, tuple[Doc, ...]] | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._split is not None

    def split(self) -> PoolSplit:
        with self._lock:
            if self._split is None:
                self._split = load_split(self._cfg, self._tasks)
                self._held_out = (self._split.held_out_task, self._split.held_out_docs)
            return self._split

    def held_out(self) -> tuple[Task, tuple[Doc, ...]]:
        """pool_validation and its docs (loads the pool on first use)."""
        if self._held_out is None:
            self.split()
        return self._held_out

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_split")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock(), _split=None)

    def __repr__(self) -> str:
        return f"PoolSource({self._cfg.pool.source!r}, n={self._cfg.pool.n}, loaded={self.loaded})"


@dataclass(frozen=True)
class HeldOut:
    """The held-out task: validation questions of the pool no method trains on, evaluated like a task (for
    checkpoint selection). Not a test benchmark: not in ``plan.tasks``, nor in the paper comparison."""

    n: int
    source: PoolSource
    name: str = HELD_OUT_TASK

    @property
    def spec(self) -> Task:
        """The task without its items (name, generation budget, metric): for the dry run's estimate."""
        return PoolValidation()

    @property
    def task(self) -> Task:
        return self.source.held_out()[0]

    @property
    def docs(self) -> tuple[Doc, ...]:
        return self.source.held_out()[1]
