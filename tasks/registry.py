"""Registry of benchmark tasks and named suites.

A new benchmark is one module in ``tasks/`` that decorates its Task class with ``@register_task``, plus its
module name in ``TASK_MODULES`` below. Every module listed must import: a broken task module is an error, never
a silently missing task. ``get_task`` validates the task's options against its ``Options`` model and raises
``TaskOptionError`` (one line: task, option, valid options) for an unknown key or a wrong type or value.
"""
from __future__ import annotations

import importlib
from typing import Callable, TypeVar

from tasks.base import Task, TaskOptionError

__all__ = ["TASK_REGISTRY", "TASK_MODULES", "SUITES", "TaskOptionError", "UnknownTask", "register_task",
           "task_names", "get_task", "expand_tasks"]

TASK_REGISTRY: dict[str, type[Task]] = {}

# Modules imported (once) to fill the registry.
TASK_MODULES = [
    "synthetic",
    "format_probe",
    "humaneval",
    "math_tasks",
    "gpqa",
    "ifeval",
    "bbh",
    "truthfulqa",
    "musr",
    "mmlu_pro",
]

SUITES: dict[str, list[str]] = {
    "tiny": ["synthetic_id", "synthetic_ood", "format_probe", "humaneval"],
    "paper-math": ["math500", "minerva_math", "gsm8k", "olympiadbench", "amc23", "aime24", "aime25"],
    "paper-ood": ["ifeval", "musr", "truthfulqa_mc2", "bbh", "humaneval"],
    "paper-general": ["theoremqa", "gpqa_diamond", "mmlu_pro"],
}

T = TypeVar("T", bound=type[Task])
_loaded = False


def register_task(name: str) -> Callable[[T], T]:
    def wrap(cls: T) -> T:
        if name in TASK_REGISTRY and TASK_REGISTRY[name] is not cls:
            raise ValueError(f"task {name!r} registered twice")
        cls.name = name
        TASK_REGISTRY[name] = cls
        return cls

    return wrap


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    for mod in TASK_MODULES:
        try:
            importlib.import_module(f"tasks.{mod}")
        except ImportError as e:
            raise ImportError(f"task module tasks.{mod} (listed in tasks.registry.TASK_MODULES) failed to import: "
                              f"{type(e).__name__}: {e}") from e
    _loaded = True


class UnknownTask(ValueError):
    pass


def task_names() -> list[str]:
    _load_all()
    return sorted(TASK_REGISTRY)


def get_task(name: str, **options) -> Task:
    """An instance of the named task with its options validated (``TaskOptionError`` when one is wrong)."""
    _load_all()
    if name not in TASK_REGISTRY:
        raise UnknownTask(
            f"unknown task {name!r}; run `harness tasks` to list tasks, or use a suite: {', '.join(SUITES)}"
        )
    return TASK_REGISTRY[name](**options)


def expand_tasks(spec: str | list[str]) -> list[str]:
    """'paper-math,ifeval' -> the task names, suites expanded, order kept, duplicates dropped."""
    _load_all()
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        names = SUITES.get(item, [item])
        for n in names:
            if n not in TASK_REGISTRY:
                raise UnknownTask(
                    f"unknown task {n!r}; run `harness tasks` to list tasks, or use a suite: {', '.join(SUITES)}"
                )
            if n not in out:
                out.append(n)
    return out
