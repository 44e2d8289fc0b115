"""The Python API: what `harness compare` and `harness eval` do, from a notebook or a script.

    import harness
    run = harness.compare("configs/tiny.yaml", preset="smoke", methods=["sft", "cgd"], limit=20)
    run.results.rows          # typed rows (model, task, metric, value, ci_low, ci_high, n, ...)
    run.table()               # {(model, task): primary value}
    run.report                # path of report.html
    again = harness.load_run(run.path)

Same validation as the CLI: a bad key, task, method or missing data raises the same exceptions whose one-line
messages the CLI prints (``harness.config.ConfigError``, ``harness.tasks.registry.UnknownTask``, ``harness.tasks.data.DataMissing``,
...; all listed in ``USER_ERRORS``), before anything is written. Keyword overrides are config keys
(``train={"learning_rate": 1e-4}``) or dotted ``set=["train.learning_rate=1e-4"]``, as ``--set`` takes them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

__all__ = ["Run", "UsageError", "build_config", "compare", "evaluate", "load_run", "user_error_types"]


class UsageError(ValueError):
    """A bad argument of the API (the CLI's `UserError`): one line naming it and the fix."""


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
        if value is None:
            continue
        try:
            parsed = [int(x) for x in (value.split(",") if isinstance(value, str) else value) if str(x).strip()]
        except ValueError:
            raise UsageError(f"{option} {value!r} is not a comma-separated list of integers; write e.g. "
                             f"{option} 0,1,2") from None
        if len(set(parsed)) != len(parsed):
            raise UsageError(f"{option} {value!r} repeats a seed; name each once")
        cfg = cfg.model_copy(update={key: parsed})
    return cfg


def check_run_id(run_id: str | None) -> None:
    """A run id is a folder name: no separators, no '..', nothing hidden."""
    if run_id is None:
        return
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.=+-]*", run_id) or ".." in run_id:
        raise UsageError(f"--run-id {run_id!r} is not a plain folder name; use letters, digits, '_', '-', '.' "
                         "(no '/' or '..': the run goes under --output-dir)")


def _track(cfg: Any, root: Path) -> None:
    if cfg.tracking.enabled:
        from harness.tracking import track_run

        track_run(cfg.tracking, root)


def _command(kind: str, kwargs: dict) -> str:
    """What the manifest records as the command: the API call, reproducible as text."""
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if v is not None)
    return f"harness.{kind}({args})" if args else f"harness.{kind}()"


def compare(config: str | Path | None = None, *, preset: str | None = None,
            methods: str | Sequence[str] | None = None, tasks: str | Sequence[str] | None = None,
            limit: int | None = None, student: str | None = None, teacher: str | None = None,
            run_id: str | None = None, output_dir: str | Path | None = None, seeds: str | Sequence[int] | None = None,
            eval_seeds: str | Sequence[int] | None = None, set: Sequence[str] | None = None, dry_run: bool = False,
            **overrides: Any) -> Run | Any:
    """`harness compare`: train one student per method and evaluate base + every method. Returns the ``Run``
    (with ``dry_run``: the plan, nothing written)."""
    from harness import pipeline
    from harness.stages.plan import plan_run
    from harness import sweep

    check_run_id(run_id)
    cfg = build_config(config, preset, set, methods=methods, tasks=tasks, limit=limit, student=student,
                       teacher=teacher, output_dir=output_dir, seeds=seeds, eval_seeds=eval_seeds, extra=overrides)
    command = _command("compare", {"config": str(config) if config else None, "preset": preset, "methods": methods,
                                    "tasks": tasks, "limit": limit, "student": student, "teacher": teacher,
                                    "run_id": run_id, "seeds": seeds, "eval_seeds": eval_seeds, "set": set,
                                    **overrides})
    if sweep.is_experiment(cfg):
        rid, planned = sweep.plan_cells(cfg, run_id)
        if dry_run:
            return planned
        top = sweep.run_experiment(cfg, rid, command=command)
        _track(cfg, top.root)
        return load_run(top.root)
    plan = plan_run(cfg, run_id)
    if dry_run:
        return plan
    rd = pipeline.run(plan, command=command)
    _track(cfg, rd.root)
    return load_run(rd.root)


def evaluate(model: str | Path | None = None, *, name: str | None = None, adapter: str | Path | None = None,
             config: str | Path | None = None, preset: str | None = None, tasks: str | Sequence[str] | None = None,
             limit: int | None = None, run_id: str | None = None, output_dir: str | Path | None = None,
             set: Sequence[str] | None = None, dry_run: bool = False, **overrides: Any) -> Run | Any:
    """`harness eval`: evaluate ``model`` (row ``name``, default "model") and the config's student (``base``) on
    tasks, no training. Without ``model`` only the student is evaluated (``name`` is then an error)."""
    from harness import pipeline
    from harness.stages.plan import plan_run

    check_run_id(run_id)
    if model is None and adapter is None and name is not None:
        raise UsageError(f"--name {name!r} labels --model, which is not given; pass --model (or drop --name: the "
                         "config's student is evaluated as base)")
    name = name or "model"
    if (model is not None or adapter is not None) and name == "base":
        raise UsageError("--name base is the config's student; pick another name for --model/--adapter")
    if adapter is not None and not Path(adapter).expanduser().is_dir():
        raise UsageError(f"adapter folder {adapter} {'is a file' if Path(adapter).exists() else 'not found'}; "
                         "pass a folder written by `harness train`")
    cfg = build_config(config, preset, set, tasks=tasks, limit=limit, output_dir=output_dir, extra=overrides)
    plan = plan_run(cfg, run_id, train=False)
    from harness.engines.identity import local_identity

    if model is not None:
        local_identity(str(model), adapter)  # a missing folder or adapter is one line, before any work
    if dry_run:
        return plan
    extra = {}
    if model is not None or adapter is not None:
        from harness.models import resolve_student

        student = str(model) if model is not None else str(resolve_student(cfg))
        extra[name] = (student, str(adapter) if adapter else None)
    command = _command("evaluate", {"model": str(model) if model else None, "name": name, "config":
                                    str(config) if config else None, "preset": preset, "tasks": tasks,
                                    "limit": limit, "run_id": run_id, "set": set, **overrides})
    rd = pipeline.run(plan, command=command, extra_models=extra)
    _track(cfg, rd.root)
    return load_run(rd.root)
