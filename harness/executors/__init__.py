"""Where a run's units execute, behind one small interface; one module per executor, found by name.

An executor module decorates its class with ``@register_executor("name")`` and adds one line to
``EXECUTOR_MODULES`` (as engines do). ``run(jobs)`` executes independent jobs (a unit, a function and its
arguments) and returns one ``Outcome`` per job, in order: the value, or the error after ``max_retries`` more
attempts (each with a fresh name); a failed unit never stops the others. The driver alone writes the run folder
and the call cache, from the values jobs return: ``on_done(index, outcome)`` is called in the driver as each job
ends, so a finished unit is committed (with its done record) before the next one ends, and a run killed midway
keeps every finished unit.

A stage hands the pipeline a ``UnitBatch``: its jobs for one run folder, how the driver commits each, and how the
stage's typed output is made once all have ended; a stage object with explicit state (the evaluation's
``EvalBatch``) provides these itself, and ``Batch`` makes one out of two functions (the train stage's). ``run_batches`` runs several batches (the train units of
every cell of a sweep, say) in one executor call, so independent units run side by side, and runs a unit
that several batches hold (same kind and fingerprint: the base model's evaluation in every cell) once.
"""
from __future__ import annotations

import importlib
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Generic, Protocol, Sequence, TypeVar, runtime_checkable

from harness.common.files import write_text_atomic
from harness.common.registry import registrar
from harness.common.units import Outcome, Resources, Unit

#: executor name -> module that registers it
EXECUTOR_MODULES: dict[str, str] = {
    "local": "harness.executors.local",
    "ray": "harness.executors.ray_cluster",
}
EXECUTOR_REGISTRY: dict[str, type] = {}

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


@dataclass
class Job:
    unit: Unit
    fn: Callable[..., Any]  # module-level (picklable): runs where the executor places it
    args: tuple = ()
    log_dir: Path | None = None  # where its failed attempts are logged: its run folder's logs/units
    #: Jobs with the same group share a loaded engine (the base model + engine settings: a LoRA adapter's group
    #: is its base model's). The ray executor runs them on long-lived engine actors, one group per actor at a
    #: time; the local executor ignores groups (its one process already shares engines).
    group: str | None = None


@runtime_checkable
class UnitBatch(Protocol[T_co]):
    """One stage's units in one run folder. ``commit(i, outcome)`` stores the outcome of ``jobs[i]`` in the
    driver as soon as it ends; ``finish()`` (called once every job of every batch run together has ended and
    none failed) returns the stage's typed output. ``label`` names the batch's run folder in ``shared_from``."""

    jobs: list[Job]
    label: str

    def commit(self, i: int, outcome: Outcome) -> None: ...

    def finish(self) -> T_co: ...


@dataclass
class Batch(Generic[T]):
    """A ``UnitBatch`` made of its jobs and two functions: ``commit`` and ``finish``, as described there."""

    jobs: list[Job]
    commit: Callable[[int, Outcome], None]
    finish: Callable[[], T]
    label: str = ""


def run_batches(executor: "Executor", batches: Sequence[UnitBatch]) -> list[Any]:
    """Every batch's jobs in one executor call; each batch's ``finish()`` value, in order. A unit held by
    several batches (same kind and fingerprint: the same work) runs once and every holder commits its outcome,
    marked ``shared_from`` the batch that ran it. Failures are raised (``UnitFailed``) once all have ended."""
    jobs: list[Job] = []
    holders: list[list[tuple[int, int]]] = []  # per job run: (batch, index) of every batch job it stands for
    first: dict[tuple[str, str], int] = {}
    for b, batch in enumerate(batches):
        for j, job in enumerate(batch.jobs):
            key = (job.unit.kind, job.unit.fingerprint)
            if key not in first:
                first[key] = len(jobs)
                jobs.append(job)
                holders.append([])
            holders[first[key]].append((b, j))

    def on_done(k: int, outcome: Outcome) -> None:
        ran_by = holders[k][0][0]
        for b, j in holders[k]:
            batches[b].commit(j, outcome if b == ran_by else replace(
                outcome, unit=batches[b].jobs[j].unit, shared_from=batches[ran_by].label or None))

    outcomes = executor.run(jobs, None, on_done=on_done)
    raise_failures(outcomes)
    return [batch.finish() for batch in batches]


class Executor(Protocol):
    name: str
    #: True when jobs run in this process (so they may use the driver's cache and progress bars directly).
    in_process: bool

    def run(self, jobs: Sequence[Job], log_dir: Path | None = None,
            on_done: Callable[[int, Outcome], None] | None = None) -> list[Outcome]: ...

    def describe(self) -> dict[str, Any]: ...

    def engine_slots(self, r: Resources) -> int:
        """How many engines (grouped jobs with resources ``r``) run at once: 1 locally, engine actors on Ray."""
        ...

    def check_visible(self, paths: Sequence[Path]) -> None: ...


register_executor = registrar(EXECUTOR_REGISTRY, "name")


def build_executor(cfg) -> Executor:
    """cfg: harness.config.ExecutorConfig."""
    if cfg.kind not in EXECUTOR_REGISTRY:
        importlib.import_module(EXECUTOR_MODULES[cfg.kind])
    return EXECUTOR_REGISTRY[cfg.kind](cfg)


class UnitFailed(RuntimeError):
    """Units that failed after every attempt (the others finished and are stored)."""


def error_log(log_dir: Path | None, unit: Unit, attempt: int, exc: BaseException) -> str | None:
    """Write the attempt's traceback to <run>/logs/units/<unit>.attempt-N.log; the path, or None."""
    if log_dir is None:
        return None
    path = log_dir / f"{unit.name.replace('/', '__')}.attempt-{attempt}.log"
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    write_text_atomic(path, f"unit {unit.name} (fingerprint {unit.fingerprint}) attempt {attempt}\n{text}")
    return str(path)


def raise_failures(outcomes: Sequence[Outcome]) -> None:
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        raise UnitFailed(f"{len(failed)} unit(s) failed after every attempt, the rest are stored: " + "; ".join(
            f"{o.unit.name} ({o.error}; log {o.log})" for o in failed) + "; fix the cause and run again to resume")
