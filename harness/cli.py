"""`harness`: compare distillation methods, evaluate, report, and gate CI on the results.

Options are declared once as typed Annotated aliases (lighteval style) and shared by the commands.
User errors print one line naming the problem and the fix, and exit with code 2.
"""
from __future__ import annotations

import functools
import shlex
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.markup import escape
from rich.table import Table

from harness.executors import UnitFailed
from harness.common.progress import console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Evaluation-first benchmarking harness for LLM distillation (SFT vs CFT vs CGD).")

# ---- shared options -----------------------------------------------------------------------------------
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config (default: configs/tiny.yaml).")]
PresetOpt = Annotated[Optional[str], typer.Option("--preset", help="Named preset in the config, e.g. smoke.")]
MethodsOpt = Annotated[Optional[str], typer.Option("--methods", "-m",
                       help="Comma-separated methods: sft, distilled_sft, cft, cgd, refine_only.")]
TasksOpt = Annotated[Optional[str], typer.Option("--tasks", "-t",
                     help="Comma-separated tasks or suites (tiny, paper-math, paper-ood, paper-general).")]
LimitOpt = Annotated[Optional[int], typer.Option("--limit", "-n", min=1, help="Evaluate at most N items per task.")]
StudentOpt = Annotated[Optional[str], typer.Option("--student", help="Student model: tiny, a local folder or hub id.")]
TeacherOpt = Annotated[Optional[str], typer.Option("--teacher",
                       help="Teacher: oracle, reference, or a model (folder/hub id) served by an LLM teacher.")]
RunIdOpt = Annotated[Optional[str], typer.Option("--run-id", help="Run folder name (default: <name>-<config hash>).")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output-dir", "-o", help="Where run folders go (default: results).")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override any config key: train.learning_rate=1e-4.")]
SeedsOpt = Annotated[Optional[str], typer.Option("--seeds", help="Train each method once per seed, e.g. 0,1,2 "
                     "(cells under results/<run-id>/cells/; the report gives mean ± sd and a seed-aware test).")]
EvalSeedsOpt = Annotated[Optional[str], typer.Option("--eval-seeds", help="Evaluate sampled tasks once per "
                         "sampling seed, e.g. 0,1,2 (no retraining, no new teacher call; mean ± sd rows).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the plan and a cost estimate, then stop.")]
ExecutorOpt = Annotated[Optional[str], typer.Option("--executor", help="Where units run: local (this process, "
                        "in order) or ray (a Ray cluster: executor.address or RAY_ADDRESS, else a local one).")]
RunArg = Annotated[Path, typer.Argument(help="A run folder (results/<run-id>).")]


def user_errors(fn: Callable) -> Callable:
    """Known user errors -> one line on stderr and exit code 2, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from harness.api import user_error_types

        known = (*user_error_types(), UserError)
        try:
            return fn(*args, **kwargs)
        except known as e:
            # escaped: a hint such as pip install -e '.[api]' must not lose its brackets to rich markup
            console.print(f"[red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2)
        except UnitFailed as e:
            # exit 1, not 2: the input was fine, the work failed (a crash, a full disk, a bug); the message names
            # each failed unit and its error log, every finished unit is stored, and the same command resumes
            console.print(f"[red]error:[/] {escape(' '.join(str(e).split()))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1)

    return wrapper


class UserError(Exception):
    pass


def _argv_command() -> str:
    """What the manifest records as the command: the command line as typed."""
    return " ".join(shlex.quote(a) for a in ["harness", *sys.argv[1:]])


def _log(line: str) -> None:
    console.print(line, highlight=False)


# ---- printing what the API planned ------------------------------------------------------------------------
def _print_planned(planned, dry_run: bool) -> None:
    """The plan the API made (harness.api.Planned), its warnings first; a dry run adds the cost and memory
    estimates and, on a cluster, the schedule. A dry run of a run that cannot fit ends in its one-line refusal."""
    for text in planned.warnings:
        console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False, soft_wrap=True)
    if planned.cells:
        _print_grid(planned)
        planned.memory.raise_if_unfit()
        _print_plan(planned.plan)
        console.print(f"run folder: {planned.plan.run_dir.root}")
        if dry_run:
            _print_schedule(planned.plans)
        return
    _print_plan(planned.plan)
    if dry_run:
        from harness.stages.plan import estimate_cost

        console.print("estimate: expected figures, with the cap (every output at its budget) where it differs",
                      highlight=False)
        for line in estimate_cost(planned.plan).lines():
            console.print(escape(line), highlight=False, soft_wrap=True)
        for line in planned.memory.lines():
            console.print(line, highlight=False, soft_wrap=True)
        planned.memory.raise_if_unfit()
        _print_schedule(planned.plans)
    console.print(f"run folder: {planned.plan.run_dir.root}")


def _print_plan(plan) -> None:
    """The tasks table and one line each for the models, the methods and any skipped task."""
    cfg = plan.config
    t = Table(title=f"plan: {plan.run_id}", show_header=True)
    t.add_column("task")
    t.add_column("items", justify="right")
    t.add_column("models", justify="right")
    for name, n in plan.eval_counts.items():
        held_out = plan.held_out is not None and name == plan.held_out.name
        t.add_row(f"{name} (held out)" if held_out else name, str(n), str(1 + len(plan.methods)))
    console.print(t)
    console.print(f"student: {cfg.student.model}   teacher: {cfg.teacher.kind}"
                  f"{' ' + cfg.teacher.model if cfg.teacher.model else ''}   pool: {cfg.pool.source} x{cfg.pool.n}")
    console.print(f"methods: base (always), {', '.join(plan.methods) or '-'}   stages: {', '.join(plan.stages) or '-'}")
    for name, why in plan.skipped.items():
        console.print(f"[yellow]skipped[/] {name}: {escape(why)}", highlight=False, soft_wrap=True)


def _print_grid(planned) -> None:
    """A sweep/seed experiment's grid with each cell's cost (sweep.grid_cost), and the totals."""
    from harness import sweep

    costs = sweep.grid_cost(list(planned.cells))
    t = Table(title=f"experiment: {planned.run_id} ({len(planned.cells)} cells)")
    for col in ("cell", "seed", "teacher_calls", "train_tokens_max", "eval_tokens_max", "models"):
        t.add_column(col, justify="left" if col == "cell" else "right")
    for c in costs:
        t.add_row(c["cell"], "-" if c["seed"] is None else str(c["seed"]), f"{c['teacher_calls']:,}",
                  f"{c['train_tokens_max']:,}", f"{c['eval_tokens_max']:,}", str(c["models_to_evaluate"]))
    console.print(t)
    total = {k: sum(c[k] for c in costs) for k in ("teacher_calls", "teacher_tokens", "probe_tokens",
                                                    "train_tokens_max", "eval_tokens_max")}
    console.print("total (before sharing: the first cell's items, models and samples are linked into later "
                  "cells where their fingerprints match): " + ", ".join(f"{k}={v:,}" for k, v in total.items()))


def _print_schedule(plans: list) -> None:
    """With --executor ray or executor.gpus: the unit graph's GPU-hours and wall time on that many GPUs."""
    cfg = plans[0].config
    if cfg.executor.kind != "ray" and not cfg.executor.gpus:
        return
    from harness.schedule import schedule
    from harness.stages.plan import estimate_cost

    plan_schedule = schedule(plans, [estimate_cost(p) for p in plans], cfg.executor.gpus or 1)
    for line in plan_schedule.lines():
        console.print(line, highlight=False)


def _summary(run_dir: Path) -> None:
    # The typed model alone (no scipy/matplotlib import): a re-run that computed nothing stays fast.
    from harness.common.artifacts import Results, load_artifact

    res = load_artifact(Results, run_dir / "results.json", "results")
    prim = res.primary_metrics
    models = [m for m in dict.fromkeys([*res.model_order, *(r.model for r in res.rows)])]
    tasks = list(prim)
    t = Table(title="primary metric (95% CI)")
    t.add_column("model")
    for task in tasks:
        t.add_column(f"{task}\n{prim[task]}", justify="right")
    rows = {(r.model, r.task, r.metric): r for r in res.rows}
    for m in models:
        cells = []
        for task in tasks:
            r = rows.get((m, task, prim[task]))
            cells.append("-" if r is None else f"{100 * r.value:.1f} [{_pct(r.ci_low)}, {_pct(r.ci_high)}]")
        t.add_row(m, *cells)
    console.print(t)
    console.print(f"report: {run_dir / 'report.html'}")


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


# ---- commands -----------------------------------------------------------------------------------------
@app.command()
@user_errors
def compare(config: ConfigOpt = None, preset: PresetOpt = None, methods: MethodsOpt = None, tasks: TasksOpt = None,
            limit: LimitOpt = None, student: StudentOpt = None, teacher: TeacherOpt = None,
            run_id: RunIdOpt = None, output_dir: OutputOpt = None, set_: SetOpt = None,
            seeds: SeedsOpt = None, eval_seeds: EvalSeedsOpt = None, dry_run: DryRunOpt = False,
            executor: ExecutorOpt = None) -> None:
    """Build each method's data with the teacher, train one student per method, evaluate base + every
    method on the same tasks, and write results.json, report.html and manifest.json. A config with `sweep:`
    (or --seeds) runs every cell of the grid and writes one combined report."""
    from harness import api

    planned = api.plan_compare(config, preset=preset, methods=methods, tasks=tasks, limit=limit, student=student,
                               teacher=teacher, run_id=run_id, output_dir=output_dir, seeds=seeds,
                               eval_seeds=eval_seeds, set=set_, dry_run=dry_run,
                               **({"executor": {"kind": executor}} if executor else {}))
    _print_planned(planned, dry_run)
    if dry_run:
        return
    rd = api.execute(planned, command=_argv_command(), log=_log)
    if planned.cells:
        console.print(f"report: {rd.report}")
    else:
        _summary(rd.root)


@app.command()
@user_errors
def train(config: ConfigOpt = None, preset: PresetOpt = None, methods: MethodsOpt = None,
          student: StudentOpt = None, teacher: TeacherOpt = None, run_id: RunIdOpt = None,
          output_dir: OutputOpt = None, set_: SetOpt = None, dry_run: DryRunOpt = False) -> None:
    """Build training data and train one student per method (no evaluation)."""
    from harness import api

    planned = api.plan_train(config, preset=preset, methods=methods, student=student, teacher=teacher,
                             run_id=run_id, output_dir=output_dir, set=set_, dry_run=dry_run)
    _print_planned(planned, dry_run)
    if dry_run:
        return
    rd = api.execute(planned, command=_argv_command(), log=_log)
    for m in planned.plan.methods:
        console.print(f"{m}: {rd.model_dir(m) / 'final'}")


@app.command("eval")
@user_errors
def eval_(model: Annotated[Optional[str], typer.Option("--model", help="Model to evaluate (default: the config's student).")] = None,
          adapter: Annotated[Optional[Path], typer.Option("--adapter", help="A LoRA adapter folder for --model.")] = None,
          name: Annotated[Optional[str], typer.Option("--name", help="Row label for --model in results (default: model).")] = None,
          config: ConfigOpt = None, preset: PresetOpt = None, tasks: TasksOpt = None, limit: LimitOpt = None,
          run_id: RunIdOpt = None, output_dir: OutputOpt = None, set_: SetOpt = None,
          dry_run: DryRunOpt = False) -> None:
    """Evaluate one model (and the config's student as `base`) on tasks, without training."""
    from harness import api

    planned = api.plan_evaluate(model, name=name, adapter=adapter, config=config, preset=preset, tasks=tasks,
                                limit=limit, run_id=run_id, output_dir=output_dir, set=set_, dry_run=dry_run)
    _print_planned(planned, dry_run)
    if dry_run:
        return
    rd = api.execute(planned, command=_argv_command(), log=_log)
    _summary(rd.root)


@app.command()
@user_errors
def report(runs: Annotated[list[Path], typer.Argument(help="One or more run folders (results/<run-id>).")],
           output: Annotated[Optional[Path], typer.Option("--output", help="Write the HTML report here (needed for several runs).")] = None,
           fmt: Annotated[str, typer.Option("--format", help="html (the report), or md, latex or csv tables with CIs on stdout.")] = "html",
           force: Annotated[bool, typer.Option("--force", help="Combine runs whose evaluation settings differ (the report says what differs).")] = False) -> None:
    """Re-aggregate a run's stored samples and re-render its report.html (same model order as the run); with
    several runs, one report of all their models, refused when their evaluation settings differ (prompts, budgets,
    grader versions, data fingerprints) unless --force."""
    from harness.common.artifacts import Manifest, load_artifact
    from harness.stages.aggregate import aggregate
    from harness.reports.export import FORMATS, export
    from harness.reports.html import render_report
    from harness.reports.stats import load_results, write_results

    if fmt not in ("html", *FORMATS):
        raise UserError(f"--format {fmt!r} is not a format; use html, md, latex or csv")
    dirs = [_run_dir(r) for r in runs]
    manifests = [load_artifact(Manifest, rd.manifest, "run manifest") for rd in dirs]
    if len(dirs) == 1:
        if fmt != "html":
            path = dirs[0].results
            if not path.is_file():
                aggregate(dirs[0], manifests[0])
            typer.echo(export(load_results(path), fmt), nl=False)
            return
        aggregate(dirs[0], manifests[0])
        console.print(f"report: {render_report(dirs[0].root, out_path=output)}")
        return
    from harness.stages.combine import combine_runs, evaluation_differences, remove

    if any(m.experiment for m in manifests):
        raise UserError("an experiment folder (sweep or seeds) cannot be combined with other runs; pass plain runs, "
                        "or report the experiment on its own")
    if fmt == "html" and output is None:
        raise UserError("several runs make one combined report: pass --output FILE (e.g. --output combined.html)")
    differences = evaluation_differences(dirs, manifests)
    if differences and not force:
        more = f" (and {len(differences) - 1} more)" if len(differences) > 1 else ""
        raise UserError(f"the runs were evaluated differently: {differences[0]}{more}; compare runs with the same "
                        "evaluation settings, or pass --force to combine them anyway")
    for d in differences:
        console.print(f"[yellow]differs:[/] {d}")
    combined = combine_runs(dirs, manifests, [f"evaluation settings differ (--force): {d}" for d in differences])
    try:
        results = load_results(combined.results)
        results = results.model_copy(update={"run_id": " + ".join(rd.root.name for rd in dirs)})
        write_results(combined.results, results)
        if fmt != "html":
            typer.echo(export(results, fmt), nl=False)
            return
        console.print(f"report: {render_report(combined.root, out_path=output.resolve())}")
    finally:
        remove(combined)


@app.command()
@user_errors
def check(run: Annotated[Path, typer.Argument(help="A run folder or its results.json.")],
          baseline: Annotated[Optional[Path], typer.Option("--baseline", "-b", help="Baseline results file.")] = None,
          tolerance: Annotated[Optional[float], typer.Option("--tolerance", min=0.0, help="Allowed drop (absolute, 0..1); default: the baseline file's, else 0.02.")] = None,
          tolerance_for: Annotated[Optional[list[str]], typer.Option("--tolerance-for", help="Per task or metric: TASK=0.05 or TASK/METRIC=0.05 (repeatable).")] = None,
          require_significance: Annotated[Optional[float], typer.Option("--require-significance", help="Fail a drop only when a paired test on the items of both runs gives p < ALPHA.")] = None,
          summary: Annotated[str, typer.Option("--summary", help="Output format on stdout: text, or md (Markdown for a CI job summary).")] = "text",
          junit: Annotated[Optional[Path], typer.Option("--junit", help="Also write JUnit XML (one test case per row) here.")] = None,
          all_metrics: Annotated[bool, typer.Option("--all-metrics", help="Gate every metric, not only primary ones.")] = False,
          allow_missing: Annotated[bool, typer.Option("--allow-missing", help="Rows absent from the run do not fail.")] = False,
          write_baseline: Annotated[Optional[Path], typer.Option("--write-baseline", help="Write this run as a baseline file (with its item-level values) and exit.")] = None) -> None:
    """Regression gate: exit 1 when a metric falls below the baseline by more than the tolerance (and, with
    --require-significance, the drop is significant), 0 when it passes, 2 on a usage error. Under the verdict:
    what differs from the baseline's run (models, data, code)."""
    from harness.common.artifacts import Manifest, load_artifact
    from harness.common.files import write_json_atomic
    from harness.reports.check import check_run, load_baseline, make_baseline, sample_item_values
    from harness.reports.check_formats import format_markdown, format_outcome, write_junit
    from harness.reports.stats import load_results

    if summary not in ("text", "md"):
        raise UserError(f"--summary {summary!r} is not a format; use --summary text or --summary md")
    tolerances = {}
    for spec in tolerance_for or []:
        key, sep, value = spec.partition("=")
        try:
            allowed = float(value)
        except ValueError:
            allowed = -1.0
        if not sep or not key.strip() or not allowed >= 0:
            raise UserError(f"--tolerance-for {spec!r} is not TASK=X or TASK/METRIC=X with X >= 0, e.g. "
                            "--tolerance-for humaneval=0.05")
        tolerances[key.strip()] = allowed
    if require_significance is not None and not 0 < require_significance < 1:
        raise UserError(f"--require-significance {require_significance} is not an alpha; pass a value between 0 "
                        "and 1, e.g. 0.05")
    path = run / "results.json" if run.is_dir() else run
    if not path.exists():
        raise UserError(f"{path} not found; pass a run folder that holds results.json (run `harness compare` first)")
    try:
        results = load_results(path)
    except ValueError as e:
        raise UserError(str(e))
    manifest_path = path.parent / "manifest.json"
    manifest = None
    if manifest_path.is_file():
        try:
            manifest = load_artifact(Manifest, manifest_path, "manifest.json")
        except ValueError as e:
            raise UserError(str(e))
    items = sample_item_values(path.parent, results.primary_metrics)
    if write_baseline is not None:
        if manifest is None:
            raise UserError(f"no manifest.json beside {path}; a baseline records the run's model identities and "
                            "fingerprints: pass a run folder written by `harness compare`")
        base = make_baseline(results, manifest, 0.02 if tolerance is None else tolerance, items=items)
        base.tolerances.update(tolerances)
        write_baseline.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(write_baseline, base.model_dump(mode="json", exclude_none=True))
        console.print(f"baseline written: {write_baseline}")
        return
    if baseline is None:
        raise UserError("no baseline given; pass --baseline FILE (write one with --write-baseline FILE)")
    try:
        base = load_baseline(baseline)
    except ValueError as e:
        raise UserError(str(e))
    outcome = check_run(results, base, tolerance=tolerance, metrics="all" if all_metrics else "primary",
                        allow_missing=allow_missing, manifest=manifest, tolerances=tolerances,
                        require_significance=require_significance, items=items)
    typer.echo(format_markdown(outcome) if summary == "md" else format_outcome(outcome), nl=summary != "md")
    if junit is not None:
        write_junit(outcome, junit)
    raise typer.Exit(1 if outcome.failed else 0)


@app.command()
@user_errors
def tasks(names: Annotated[Optional[str], typer.Argument(help="Tasks or suites to show (default: all).")] = None,
          online: Annotated[bool, typer.Option("--online", help="Also check the dataset hub (network) for tasks "
                                               "whose data is not local.")] = False) -> None:
    """List tasks with their data source, row count and whether the data is available here: from the local mirror
    (HARNESS_DATA_DIR) and the local dataset cache, without the network unless --online."""
    from harness.tasks import data
    from harness.tasks.registry import SUITES, expand_tasks, get_task, task_names

    if not online:
        data.set_hub_access(False, "not checked; `harness tasks --online` checks the hub")
    chosen = expand_tasks(names) if names else task_names()
    t = Table(title="tasks")
    for col in ("task", "type", "metric", "rows", "available", "source"):
        t.add_column(col, justify="right" if col == "rows" else "left")
    unavailable = []
    for name in chosen:
        task = get_task(name)
        src = ", ".join(x for x in (f"local:{task.local_dir}" if task.local_dir else "",
                                    f"hub:{task.hf_dataset}" if task.hf_dataset else "") if x) or "embedded"
        if getattr(task, "spec_path", None) is not None:
            src = f"file:{task.spec_path}"
        try:
            n, ok = str(len(task.docs())), "[green]yes[/]"
        except data.DataMissing:
            n, ok = "-", "[red]no[/]"
            unavailable.append(name)
        t.add_row(name, task.output_type.value, task.primary_metric, n, ok, src)
    console.print(t)
    console.print("suites: " + "; ".join(f"{k} = {','.join(v)}" for k, v in SUITES.items()))
    if unavailable:
        hub = (f" ({data.hub_off_reason()})" if data.hub_off_reason() else "") if online else \
            " or run `harness tasks --online` to check the hub (needs network)"
        console.print(f"[yellow]unavailable here:[/] {', '.join(unavailable)}; fix: set HARNESS_DATA_DIR to a folder "
                      f"laid out like shared/data (one folder per benchmark){hub}", highlight=False, soft_wrap=True)


@app.command()
@user_errors
def score(task: Annotated[str, typer.Option("--task", "-t", help="The task whose scorer to use.")],
          input: Annotated[Path, typer.Option("--input", "-i", help='JSONL of {"id": ..., "response": "..."}.')],
          output: Annotated[Optional[Path], typer.Option("--output", help="Where to write per-sample scores (JSONL).")] = None) -> None:
    """Score externally produced responses with a task's scorer; print the task's metrics."""
    from harness.checks import check_path
    from harness.scoring import score_file

    check_path("--input", input, want="file")
    check_path("--output", output, want="file")
    metrics = score_file(task, input, output)
    for k, v in metrics.items():
        typer.echo(f"{k}\t{v:.4f}" if isinstance(v, float) else f"{k}\t{v}")


@app.command()
@user_errors
def rescore(run: RunArg) -> None:
    """Re-score a stored run from its stored responses (no generation), then re-aggregate and re-render."""
    from harness.scoring import rescore_run

    path = rescore_run(_run_dir(run))
    console.print(f"rescored; report: {path}")


def _run_dir(run: Path):
    from harness.store import RunDir

    rd = RunDir(run)
    if not rd.manifest.exists():
        raise UserError(f"{run} is not a run folder (no manifest.json); pass results/<run-id>")
    return rd


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


@app.command()
@user_errors
def runs(output_dir: Annotated[Path, typer.Argument(help="The folder holding run folders.")] = Path("results")) -> None:
    """List the run folders under an output folder: status (complete, partial with the stage it stopped in),
    methods, tasks and age, newest first."""
    from harness.api import list_runs

    found = list_runs(output_dir)
    if not found:
        console.print(f"no run folders under {output_dir}")
        return
    t = Table(title=f"runs in {output_dir}")
    for col in ("run", "status", "methods", "tasks", "age"):
        t.add_column(col)
    for r in found:
        t.add_row(r.run, escape(r.status), ",".join(r.methods) or "-", ",".join(r.tasks) or "-", _age(r.age_s))
    console.print(t)


def _version_callback(value: bool) -> None:
    if value:
        from harness import __version__

        typer.echo(f"harness {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True,
                                                 help="Print the version and exit.")] = False) -> None:
    """Evaluation-first benchmarking harness for LLM distillation (SFT vs CFT vs CGD)."""


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
