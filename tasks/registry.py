"""Registry of benchmark tasks and named suites.

A benchmark without Python is a YAML file (``harness.tasks.file_task``, ``register_file_task``). A new built-in one is one module in ``tasks/`` that decorates its Task class with ``@register_task``, plus its
module name in ``TASK_MODULES`` below. Every module listed must import: a broken task module is an error, never
a silently missing task. ``get_task`` validates the task's options against its ``Options`` model and raises
``TaskOptionError`` (one line: task, option, valid options) for an unknown key or a wrong type or value.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from harness.tasks.base import Task, TaskOptionError

__all__ = ["TASK_REGISTRY", "TASK_MODULES", "SUITES", "TaskOptionError", "UnknownTask", "register_task",
           "task_names", "get_task", "expand_tasks", "register_file_task", "resolve_task_files"]

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
            importlib.import_module(f"harness.tasks.{mod}")
        except ImportError as e:
            raise ImportError(f"task module harness.tasks.{mod} (listed in harness.tasks.registry.TASK_MODULES) failed to import: "
                              f"{type(e).__name__}: {e}") from e
    _loaded = True


class UnknownTask(ValueError):
    pass


def task_names() -> list[str]:
    _load_all()
    return sorted(TASK_REGISTRY)


def register_file_task(path: str | Path) -> str:
    """Register the task a YAML file defines (``harness.tasks.file_task``); returns its name. A second file claiming a
    name already taken is one line."""
    from harness.tasks.file_task import TaskFileError, task_class

    cls = task_class(path)
    other = TASK_REGISTRY.get(cls.name)
    if other is not None and other is not cls:
        where = getattr(other, "spec_path", f"built-in task {other.__module__}")
        raise TaskFileError(f"task file {cls.spec_path} names its task {cls.name!r}, already defined by {where}; "
                            "rename one of them (name:)")
    TASK_REGISTRY[cls.name] = cls
    return cls.name


def register_lm_eval_task(name: str) -> str:
    """Register ``lm_eval:<task or group>`` (``harness.tasks.lm_eval_task``); lm-eval itself is imported only when the
    task is used."""
    from harness.tasks.lm_eval_task import is_lm_eval, task_class

    if not is_lm_eval(name):
        raise UnknownTask(f"task {name!r}: name the lm-eval task or group after the prefix, e.g. lm_eval:arc_easy")
    TASK_REGISTRY.setdefault(name, task_class(name))
    return name


def resolve_task_files(tasks: str | list[str], task_options: dict[str, dict[str, Any]],
                       search_dirs: Sequence[Path] = (), tasks_dir: str | Path | None = None
                       ) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Task entries that are YAML files (and every file of ``tasks_dir``) -> their task names, each file's absolute
    path in that task's options (so ``harness report`` finds it again in a later process). Relative paths are
    looked up in the working directory, then in ``search_dirs`` (the config file's folder)."""
    from harness.tasks.file_task import TaskFileError, dir_task_files, is_task_file

    _load_all()
    items = [t.strip() for t in tasks.split(",")] if isinstance(tasks, str) else [str(t) for t in tasks]
    options = {k: dict(v) for k, v in task_options.items()}
    files: dict[str, Path] = {}
    if tasks_dir is not None:
        d = Path(tasks_dir).expanduser()
        if not d.is_absolute():
            d = next((b / d for b in [Path.cwd(), *search_dirs] if (b / d).is_dir()), d)
        for f in dir_task_files(d):
            files[register_file_task(f)] = f.resolve()
    out = []
    for item in items:
        if item and is_task_file(item):
            p = Path(item).expanduser()
            if not p.is_absolute():
                p = next((b / p for b in [Path.cwd(), *search_dirs] if (b / p).exists()), p)
            name = register_file_task(p)
            files[name] = p.resolve()
            item = name
        out.append(item)
    for name, path in files.items():
        if name in out:
            opts = options.setdefault(name, {})
            if opts.get("path") not in (None, str(path)):
                raise TaskFileError(f"task {name!r}: task_options path {opts['path']} differs from {path}")
            opts["path"] = str(path)
    return out, options


def get_task(name: str, **options) -> Task:
    """An instance of the named task with its options validated (``TaskOptionError`` when one is wrong). A task
    from a file is found again through its ``path`` option."""
    _load_all()
    if name not in TASK_REGISTRY and name.startswith("lm_eval:"):
        register_lm_eval_task(name)
    if name not in TASK_REGISTRY and name.lower().endswith((".yaml", ".yml")):  # `harness score --task my.yaml`
        options.setdefault("path", str(Path(name).expanduser().resolve()))
        name = register_file_task(name)
    if name not in TASK_REGISTRY and options.get("path"):
        register_file_task(options["path"])
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
        if item.lower().endswith((".yaml", ".yml")):
            item = register_file_task(item)
        if item.startswith("lm_eval:"):
            register_lm_eval_task(item)
        names = SUITES.get(item, [item])
        for n in names:
            if n not in TASK_REGISTRY:
                raise UnknownTask(
                    f"unknown task {n!r}; run `harness tasks` to list tasks, or use a suite: {', '.join(SUITES)}"
                )
            if n not in out:
                out.append(n)
    return out
