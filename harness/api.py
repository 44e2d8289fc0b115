"""The Python API: what `harness compare`, `harness train` and `harness eval` do, from a notebook or a script.
The CLI is a thin layer over this module: it parses options, calls the planning step and the run step below,
and prints; so every check runs for both, and a command and its API twin give the same run.

    import harness
    run = harness.compare("configs/tiny.yaml", preset="smoke", methods=["sft", "cgd"], limit=20)
    run.results.rows          # typed rows (model, task, metric, value, ci_low, ci_high, n, ...)
    run.table()               # {(model, task): primary value}
    run.report                # path of report.html
    again = harness.load_run(run.path)

Two steps under each call: ``plan_compare`` / ``plan_train`` / ``plan_evaluate`` check everything checkable
(config, names, paths, adapters, memory) and return a ``Planned`` (the plan, its warnings, its memory estimate),
writing nothing; ``execute(planned)`` runs it. A bad key, task, method or missing data raises the exceptions
whose one-line messages the CLI prints (``harness.config.ConfigError``, ``harness.tasks.registry.UnknownTask``,
``harness.tasks.data.DataMissing``, ...; all listed in ``user_error_types()``), before anything is written.
Keyword overrides are config keys (``train={"learning_rate": 1e-4}``) or dotted ``set=["train.learning_rate=1e-4"]``,
as ``--set`` takes them.
"""
from __future__ import annotations

import time
import warnings as _warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.checks import (UsageError, check_adapter, check_adapter_fits, check_output_dir, check_path,
                            check_run_id)

__all__ = ["MemoryEstimate", "Planned", "Run", "RunStatus", "Trained", "UsageError", "build_config", "compare",
           "evaluate", "execute", "list_runs", "load_run", "plan_compare", "plan_evaluate", "plan_train",
           "run_status", "train", "user_error_types"]

def user_error_types() -> tuple[type[BaseException], ...]:
    """Every exception class whose message is a one-line user error (the CLI prints it and exits 2)."""
    from harness.common.artifacts import SchemaMismatch
    from harness.common.files import CorruptFile
    from harness.distill.methods import UnknownMethod
    from harness.distill.prompts import PromptTemplateError
    from harness.distill.train_config import TrainError
    from harness.config import ConfigError
    from harness.engines import EngineUnavailable
    from harness.engines.http_limits import APIRequestError
    from harness.engines.identity import ModelNotFound
    from harness.runlock import RunFolderBusy
    from harness.scoring import ScoreInputError
    from harness.tracking import TrackingError
    from harness.tasks.data import DataMissing
    from harness.tasks.registry import TaskOptionError, UnknownTask

    return (ConfigError, UnknownTask, UnknownMethod, DataMissing, EngineUnavailable, UsageError, ScoreInputError,
            SchemaMismatch, CorruptFile, ModelNotFound, PromptTemplateError, TaskOptionError,
            APIRequestError,  # an API that refuses for good (bad key, unknown model): its one line, no key
            RunFolderBusy,  # another driver holds the run folder: who, and what to do
            TrainError,  # a training request that cannot go ahead as asked (zero3 without deepspeed, ...)
            TrackingError)


# ---- reading run folders ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """A finished run folder, read back as typed values."""

    path: Path
    results: Any  # harness.common.artifacts.Results
    manifest: Any  # harness.common.artifacts.Manifest | None

    @property
    def rows(self) -> list[Any]:
        return list(self.results.rows)

    @property
    def report(self) -> Path:
        return self.path / "report.html"

    @property
    def frames(self) -> Any:
        """The run as typed pandas DataFrames (``harness.reports.frames.RunFrames``): ``.results`` (one row per result
        row), ``.comparisons`` (paired tests with Holm-adjusted p) and ``.samples`` (one row per item per model and
        task), e.g. ``load_run(p).frames.samples.groupby(["model", "task"], observed=True)["score"].mean()``."""
        from harness.reports.frames import load_frames

        return load_frames(self.path)

    def table(self, metric: str | None = None) -> dict[tuple[str, str], float]:
        """(model, task) -> value of ``metric`` (default: each task's primary metric)."""
        prim = self.results.primary_metrics
        return {(r.model, r.task): r.value for r in self.results.rows
                if r.metric == (metric or prim.get(r.task)) and not getattr(r, "params", None)}


@dataclass(frozen=True)
class Trained:
    """What `harness train` leaves: the run folder and each method's trained model (adapter or checkpoint)."""

    path: Path
    models: dict[str, Path]


def load_run(path: str | Path) -> Run:
    """A run folder (or its results.json) as a ``Run``; a folder that is no run is one line (UsageError)."""
    from harness.common.artifacts import Manifest, Results, load_artifact

    p = Path(path).expanduser()
    root = p.parent if p.name == "results.json" else p
    if not (root / "results.json").is_file():
        raise UsageError(f"{root} holds no results.json; pass a run folder written by `harness compare`/`eval`")
    results = load_artifact(Results, root / "results.json", "results")
    manifest = load_artifact(Manifest, root / "manifest.json", "manifest") if (root / "manifest.json").is_file() \
        else None
    return Run(path=root, results=results, manifest=manifest)


@dataclass(frozen=True)
class RunStatus:
    """One line of `harness runs`: how far a run folder came, from its files and its typed manifest."""

    run: str
    status: str  # complete, partial (with the stage it stopped in), empty; a damaged manifest says so
    methods: list[str]
    tasks: list[str]
    age_s: float


RUN_FOLDER_MARKS = ("manifest.json", "results.json", "samples", "data", "models", "cells")


def _stage_reached(root: Path, samples: list[Path], models: list[str]) -> str:
    """The status a run folder's files give: complete, or the stage it stopped in."""
    if (root / "cells").is_dir() and not (root / "results.json").is_file():
        return "partial (sweep: cells under cells/)"
    if (root / "results.json").is_file():
        return "complete" if (root / "report.html").is_file() else "partial: stopped in report"
    if samples:
        return "partial: stopped in evaluate"
    if models:
        unfinished = [m for m in models if not (root / "models" / m / "final").exists()]
        return f"partial: stopped in train ({', '.join(unfinished)})" if unfinished else \
            "partial: stopped before evaluate"
    if (root / "data").is_dir():
        return "partial: stopped in training data"
    return "empty (stopped in plan)"


def run_status(root: Path) -> RunStatus:
    """What a run folder holds: status, methods, tasks (the manifest's, else what its files show), age. A
    manifest that does not read as this schema's (damaged, or an older release's) is named in the status."""
    from harness.common.artifacts import Manifest, SchemaMismatch, load_artifact

    root = Path(root)
    manifest, unreadable = None, None
    if (root / "manifest.json").is_file():
        try:
            manifest = load_artifact(Manifest, root / "manifest.json", "manifest")
        except (SchemaMismatch, OSError) as e:
            # "<path> is not valid JSON (...); <fix>" -> "manifest.json is not valid JSON (...)": the table names
            # the run, and `harness report RUN` prints the whole line with its fix
            unreadable = str(e).replace(str(root / "manifest.json"), "manifest.json").split("; ")[0].strip()
    samples = sorted((root / "samples").glob("*/*.jsonl")) if (root / "samples").is_dir() else []
    models = sorted(d.name for d in (root / "models").iterdir()) if (root / "models").is_dir() else []
    status = _stage_reached(root, samples, models)
    if unreadable:
        status = f"{status}; {unreadable}"
    newest = max((f.stat().st_mtime for f in [root, *root.iterdir()]), default=root.stat().st_mtime)
    return RunStatus(run=root.name, status=status, methods=(list(manifest.methods) if manifest else []) or models,
                     tasks=(list(manifest.tasks) if manifest else []) or sorted({f.stem for f in samples}),
                     age_s=max(0.0, time.time() - newest))


def list_runs(output_dir: str | Path = "results") -> list[RunStatus]:
    """Every run folder under ``output_dir``, newest first."""
    out = Path(output_dir).expanduser()
    if not out.exists():
        raise UsageError(f"{output_dir} not found; pass the --output-dir your runs went to (default: results)")
    check_path("output folder", output_dir, want="dir")
    found = [run_status(d) for d in out.iterdir() if d.is_dir() and any((d / x).exists() for x in RUN_FOLDER_MARKS)]
    return sorted(found, key=lambda r: r.age_s)


# ---- the config -------------------------------------------------------------------------------------------
def _listish(name: str, value: str | Sequence[str] | None) -> list[str] | None:
    """'a,b' or ['a', 'b'] -> ['a', 'b']; a repeated entry is an error (it would be evaluated or trained once)."""
    if value is None:
        return None
    items = [x.strip() for x in value.split(",")] if isinstance(value, str) else [str(x).strip() for x in value]
    items = [x for x in items if x]
    if not items:
        raise UsageError(f"{name} is empty; name at least one")
    dup = sorted({x for x in items if items.count(x) > 1})
    if dup:
        raise UsageError(f"{name} lists {', '.join(dup)} more than once; name each once")
    return items


def _seed_list(option: str, value: str | Sequence[int]) -> list[int]:
    try:
        parsed = [int(x) for x in (value.split(",") if isinstance(value, str) else value) if str(x).strip()]
    except ValueError:
        raise UsageError(f"{option} {value!r} is not a comma-separated list of integers; write e.g. "
                         f"{option} 0,1,2") from None
    if len(set(parsed)) != len(parsed):
        raise UsageError(f"{option} {value!r} repeats a seed; name each once")
    return parsed


def build_config(config: str | Path | None = None, preset: str | None = None, overrides: Sequence[str] | None = None,
                 *, methods: str | Sequence[str] | None = None, tasks: str | Sequence[str] | None = None,
                 limit: int | None = None, student: str | None = None, teacher: str | None = None,
                 output_dir: str | Path | None = None, seeds: str | Sequence[int] | None = None,
                 eval_seeds: str | Sequence[int] | None = None, extra: dict | None = None) -> Any:
    """The validated RunConfig from a file, a preset, ``--set`` overrides and the command-line shortcuts."""
    from harness.config import deep_merge, load_config

    keys = [o.split("=", 1)[0].strip() for o in overrides or [] if "=" in o]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise UsageError(f"--set {', '.join(dup)} given more than once; set each key once")
    add: dict = {}
    m = _listish("--methods", methods)
    if m is not None:
        add["methods"] = m
    t = _listish("--tasks", tasks)
    if t is not None:
        add.setdefault("eval", {})["tasks"] = t
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise UsageError(f"limit {limit!r} must be a positive integer")
        add.setdefault("eval", {})["limit"] = limit
    if student is not None:
        add["student"] = {"model": str(student)}
    if teacher is not None:
        add["teacher"] = ({"kind": teacher} if teacher in ("oracle", "reference")
                          else {"kind": "llm", "model": str(teacher)})
    if output_dir is not None:
        add["output_dir"] = str(output_dir)
    cfg = load_config(config, preset, list(overrides or []), deep_merge(extra or {}, add))
    from harness.tracking import check_available

    check_available(cfg.tracking)
    for option, key, value in (("--seeds", "seeds", seeds), ("--eval-seeds", "eval_seeds", eval_seeds)):
        if value is not None:
            cfg = cfg.model_copy(update={key: _seed_list(option, value)})
    return cfg


# ---- planning: every check, nothing written ----------------------------------------------------------------
@dataclass(frozen=True)
class MemoryEstimate:
    """Per-GPU memory of the run's training and serving (harness.sizing; None where not estimated), and why the
    run cannot fit, if it cannot."""

    train: Any = None  # harness.sizing.TrainMemory | None
    serve: Any = None  # harness.sizing.ServeMemory | None
    problem: str | None = None

    def lines(self) -> list[str]:
        return [est.line() for est in (self.train, self.serve) if est is not None]

    def raise_if_unfit(self) -> None:
        if self.problem is not None:
            from harness.config import ConfigError

            raise ConfigError(self.problem)


def estimate_memory(cfg: Any) -> MemoryEstimate:
    from harness import sizing

    train, serve = sizing.estimate(cfg)
    try:
        sizing.check_fits(cfg)
    except ValueError as e:
        return MemoryEstimate(train, serve, str(e))
    return MemoryEstimate(train, serve)


@dataclass(frozen=True)
class Planned:
    """A command's work, checked and fixed before any model call: what the CLI prints and ``execute`` runs.
    ``plan`` is the run's plan (an experiment's: its first cell's); ``cells`` an experiment's (cell, plan)
    pairs, empty for one run. Made with ``dry_run``, it is for showing only, and an unfit run's reason waits in
    ``memory.problem`` so that the estimate can be shown first; without, an unfit run is refused here."""

    config: Any  # harness.config.RunConfig
    plan: Any  # harness.stages.plan.Plan
    run_id: str  # the run folder's name under config.output_dir (an experiment's top folder)
    memory: MemoryEstimate
    warnings: tuple[str, ...] = ()
    cells: tuple[tuple[Any, Any], ...] = ()  # (harness.sweep.Cell, Plan)
    #: models the command adds (`harness eval --model`): row name -> (model path or hub id, adapter folder)
    extra_models: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    evaluate: bool = True  # False: `harness train` (training data and models, no evaluation)
    dry_run: bool = False

    @property
    def root(self) -> Path:
        return Path(self.config.output_dir) / self.run_id

    @property
    def plans(self) -> list[Any]:
        return [p for _, p in self.cells] if self.cells else [self.plan]


def _configure(config, preset, overrides, run_id, output_dir, extra: dict, **shortcuts) -> tuple[Any, list[str]]:
    """The checked config and the warnings it earns: run id, the --config and output paths, every key."""
    check_run_id(run_id)
    check_path("--config", config, want="file")
    check_output_dir("--output-dir", output_dir)
    cfg = build_config(config, preset, overrides, output_dir=output_dir, extra=extra, **shortcuts)
    if output_dir is None:  # the config's own output_dir (or the default) must be writable too
        check_output_dir("output_dir", cfg.output_dir)
    warnings = []
    student = shortcuts.get("student")
    if student is not None and student != "tiny" and (config is None or Path(config).name == "tiny.yaml"):
        warnings.append(f"--student {student} on configs/tiny.yaml keeps the tiny student's learning rate, "
                        "budgets and synthetic pool; for a real model start from --config configs/starter.yaml "
                        "(docs/your-own-models.md)")
    return cfg, warnings


def _planned(cfg, plan, run_id: str, warnings: list[str], dry_run: bool, **more: Any) -> Planned:
    """The last check of every plan: the memory estimate; an unfit run stops here unless this is a dry run."""
    memory = estimate_memory(plan.config)
    if not dry_run:
        memory.raise_if_unfit()
    return Planned(cfg, plan, run_id, memory, tuple(warnings), dry_run=dry_run, **more)


def plan_compare(config: str | Path | None = None, *, preset: str | None = None,
                 methods: str | Sequence[str] | None = None, tasks: str | Sequence[str] | None = None,
                 limit: int | None = None, student: str | None = None, teacher: str | None = None,
                 run_id: str | None = None, output_dir: str | Path | None = None,
                 seeds: str | Sequence[int] | None = None, eval_seeds: str | Sequence[int] | None = None,
                 set: Sequence[str] | None = None, dry_run: bool = False, **overrides: Any) -> Planned:
    """`harness compare` up to its first model call: a sweep or seed grid plans every cell."""
    from harness import sweep
    from harness.stages.plan import plan_run

    cfg, warnings = _configure(config, preset, set, run_id, output_dir, overrides, methods=methods, tasks=tasks,
                               limit=limit, student=student, teacher=teacher, seeds=seeds, eval_seeds=eval_seeds)
    if sweep.is_experiment(cfg):
        rid, cells = sweep.plan_cells(cfg, run_id)
        return _planned(cfg, cells[0][1], rid, warnings, dry_run, cells=tuple(cells))
    plan = plan_run(cfg, run_id)
    return _planned(cfg, plan, plan.run_id, warnings, dry_run)


def plan_train(config: str | Path | None = None, *, preset: str | None = None,
               methods: str | Sequence[str] | None = None, student: str | None = None, teacher: str | None = None,
               run_id: str | None = None, output_dir: str | Path | None = None, set: Sequence[str] | None = None,
               dry_run: bool = False, **overrides: Any) -> Planned:
    """`harness train` up to its first model call: training data and one model per method, no evaluation."""
    from harness.stages.plan import plan_run

    cfg, warnings = _configure(config, preset, set, run_id, output_dir, overrides, methods=methods,
                               student=student, teacher=teacher)
    plan = plan_run(cfg, run_id)
    return _planned(cfg, plan, plan.run_id, warnings, dry_run, evaluate=False)


def _model_name(model, adapter, name: str | None) -> str:
    """The row label of ``--model``: only with a model, and never the config's student's."""
    if model is None and adapter is None and name is not None:
        raise UsageError(f"--name {name!r} labels --model, which is not given; pass --model (or drop --name: the "
                         "config's student is evaluated as base)")
    if (model is not None or adapter is not None) and name == "base":
        raise UsageError("--name base is the config's student; pick another name for --model/--adapter")
    return name or "model"


def _extra_model(cfg, model, adapter, dry_run: bool) -> tuple[str, str | None] | None:
    """(model, adapter) of `harness eval --model/--adapter`, each checked: the model is there, the adapter is
    a LoRA of it. The tiny student under an adapter is built for the run, not for a dry run (nor checked then)."""
    if model is None and adapter is None:
        return None
    from harness.engines.identity import local_identity

    if model is not None:
        local_identity(str(model), adapter)  # a missing folder or adapter is one line, before any work
    if adapter is None:
        return str(model), None
    student = str(model) if model is not None else cfg.student.model
    if model is None and student == "tiny" and not dry_run:
        from harness.models import resolve_student

        student = str(resolve_student(cfg))
    if student != "tiny":
        if model is None:
            local_identity(student, adapter)
        check_adapter_fits(student, adapter)
    return student, str(adapter)


def plan_evaluate(model: str | Path | None = None, *, name: str | None = None, adapter: str | Path | None = None,
                  config: str | Path | None = None, preset: str | None = None, tasks: str | Sequence[str] | None = None,
                  limit: int | None = None, run_id: str | None = None, output_dir: str | Path | None = None,
                  set: Sequence[str] | None = None, dry_run: bool = False, **overrides: Any) -> Planned:
    """`harness eval` up to its first model call: ``model`` (row ``name``) and the config's student (``base``)."""
    from harness.stages.plan import plan_run

    name = _model_name(model, adapter, name)
    check_adapter(adapter)
    cfg, warnings = _configure(config, preset, set, run_id, output_dir, overrides, tasks=tasks, limit=limit)
    plan = plan_run(cfg, run_id, train=False)
    extra = _extra_model(cfg, model, adapter, dry_run)
    return _planned(cfg, plan, plan.run_id, warnings, dry_run, extra_models={name: extra} if extra else {})


# ---- running ---------------------------------------------------------------------------------------------
def execute(planned: Planned, *, command: str = "", log: Callable[[str], None] | None = None) -> Any:
    """Run what ``plan_*`` planned (without ``dry_run``); returns the run folder (harness.store.RunDir), an
    experiment's top folder for a grid. A finished evaluation is logged to the config's trackers (``log``
    gets their one-line notes)."""
    if planned.dry_run:
        raise UsageError("a dry-run plan is for showing only; plan again without dry_run to run it")
    cfg = planned.config
    if planned.cells:
        from harness import sweep

        rd = sweep.run_experiment(cfg, planned.run_id, command=command)
    else:
        from harness import pipeline

        rd = pipeline.run(planned.plan, command=command, extra_models=dict(planned.extra_models),
                          evaluate=planned.evaluate)
    if planned.evaluate and cfg.tracking.enabled:
        from harness.tracking import track_run

        track_run(cfg.tracking, rd.root, log=log)
    return rd


def _command(kind: str, kwargs: dict) -> str:
    """What the manifest records as the command: the API call, reproducible as text."""
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if v is not None)
    return f"harness.{kind}({args})" if args else f"harness.{kind}()"


def _shown(planned: Planned) -> Planned:
    """A planned run's warnings as Python warnings (the CLI prints them itself)."""
    for text in planned.warnings:
        _warnings.warn(text, UserWarning, stacklevel=3)
    if planned.dry_run:
        planned.memory.raise_if_unfit()  # the CLI's dry run shows the estimate, then refuses the same way
    return planned


def compare(config: str | Path | None = None, *, preset: str | None = None,
            methods: str | Sequence[str] | None = None, tasks: str | Sequence[str] | None = None,
            limit: int | None = None, student: str | None = None, teacher: str | None = None,
            run_id: str | None = None, output_dir: str | Path | None = None, seeds: str | Sequence[int] | None = None,
            eval_seeds: str | Sequence[int] | None = None, set: Sequence[str] | None = None, dry_run: bool = False,
            **overrides: Any) -> Run | Planned:
    """`harness compare`: train one student per method and evaluate base + every method. Returns the ``Run``
    (with ``dry_run``: the ``Planned`` run, nothing written)."""
    kwargs = dict(preset=preset, methods=methods, tasks=tasks, limit=limit, student=student, teacher=teacher,
                  run_id=run_id, seeds=seeds, eval_seeds=eval_seeds, set=set)
    planned = _shown(plan_compare(config, output_dir=output_dir, dry_run=dry_run, **kwargs, **overrides))
    if dry_run:
        return planned
    command = _command("compare", {"config": str(config) if config else None, **kwargs, **overrides})
    return load_run(execute(planned, command=command).root)


def train(config: str | Path | None = None, *, preset: str | None = None, methods: str | Sequence[str] | None = None,
          student: str | None = None, teacher: str | None = None, run_id: str | None = None,
          output_dir: str | Path | None = None, set: Sequence[str] | None = None, dry_run: bool = False,
          **overrides: Any) -> Trained | Planned:
    """`harness train`: training data and one trained student per method, no evaluation. Returns ``Trained``
    (the run folder, method -> model folder; with ``dry_run``: the ``Planned`` run, nothing written)."""
    kwargs = dict(preset=preset, methods=methods, student=student, teacher=teacher, run_id=run_id, set=set)
    planned = _shown(plan_train(config, output_dir=output_dir, dry_run=dry_run, **kwargs, **overrides))
    if dry_run:
        return planned
    rd = execute(planned, command=_command("train", {"config": str(config) if config else None, **kwargs,
                                                     **overrides}))
    return Trained(path=rd.root, models={m: rd.model_dir(m) / "final" for m in planned.plan.methods})


def evaluate(model: str | Path | None = None, *, name: str | None = None, adapter: str | Path | None = None,
             config: str | Path | None = None, preset: str | None = None, tasks: str | Sequence[str] | None = None,
             limit: int | None = None, run_id: str | None = None, output_dir: str | Path | None = None,
             set: Sequence[str] | None = None, dry_run: bool = False, **overrides: Any) -> Run | Planned:
    """`harness eval`: evaluate ``model`` (row ``name``, default "model") and the config's student (``base``) on
    tasks, no training. Without ``model`` only the student is evaluated (``name`` is then an error)."""
    kwargs = dict(name=name, adapter=str(adapter) if adapter else None, preset=preset, tasks=tasks, limit=limit,
                  run_id=run_id, set=set)
    planned = _shown(plan_evaluate(model, config=config, output_dir=output_dir, dry_run=dry_run,
                                   **kwargs, **overrides))
    if dry_run:
        return planned
    command = _command("evaluate", {"model": str(model) if model else None, "config": str(config) if config else None,
                                    **kwargs, **overrides})
    return load_run(execute(planned, command=command).root)
