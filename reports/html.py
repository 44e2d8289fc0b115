"""The self-contained HTML report of a run folder (inline CSS and JS, plots inline, no external resources).

Everything that came from a model or a dataset is rendered through Jinja2 with autoescaping on: model output is
untrusted text (the explorer's data travels as JSON in a ``<script type="application/json">`` block with ``<``,
``>`` and ``&`` escaped, and is put on the page with ``textContent``). Inputs are the typed artifacts:
``results.json`` (``Results``), ``manifest.json`` (``Manifest``) and the per-sample files (``SampleRecord``).
One module per section under ``reports/sections/``, each with its template beside it; this module assembles them.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import jinja2
from pydantic import BaseModel

from harness.common.artifacts import Experiment, Manifest, Results
from harness.common.resources import package_path
from harness.reports import plots
from harness.reports.fmt import describe_model, kv, pct, redact, short, teacher_text  # noqa: F401  (redact re-exported)
from harness.reports.rundata import display_results, load_manifest, partial_info, task_label
from harness.reports.sections.diagnostics import (
    diagnostics_section, length_histogram, pass_at_k_chart, secondary_tests,
)
from harness.reports.sections.experiment import seed_table
from harness.reports.sections.explorer import explorer_section
from harness.reports.sections.paper import experiment_tables, paper_section
from harness.reports.sections.results import (
    TRUNCATION_WARN, comparison_tables, main_table, metric_tables, truncation_section,
)
from harness.reports.sections.samples import SampleSet
from harness.reports.sections.setup import config_summary, settings_section
from harness.reports.sections.training import loss_chart, selection_section, training_data_section, training_section
from harness.reports.sections.verdict import verdict_section
from harness.reports.stats import load_results

TEMPLATES = package_path(__package__, "templates")
SECTIONS = package_path(__package__, "sections")


@dataclass(frozen=True)
class _Run:
    """What every part of the report is computed from."""

    folder: Path
    results: Results  # as the generic sections show it (an experiment: aggregated over seeds)
    full_results: Results  # as stored (an experiment: every cell's rows too)
    manifest: Optional[Manifest]
    models: list[str]
    tasks: list[str]
    baseline: str
    partial: dict
    labels: dict[str, str]
    config: dict  # redacted

    @property
    def colours(self) -> dict[str, str]:
        return plots.colours(self.results, self.baseline)


def _load(run_dir: Path, baseline_model: str, results: Results | None) -> _Run:
    full = results if results is not None else load_results(run_dir / "results.json")
    shown = display_results(full)
    manifest = load_manifest(run_dir)
    models = [m for m in plots.model_order(shown, baseline_model) if any(r.model == m for r in shown.rows)]
    tasks = plots.ordered(list(shown.primary_metrics) + [r.task for r in shown.rows])
    tasks = [t for t in tasks if any(r.task == t for r in shown.rows)]
    partial = partial_info(shown, manifest)
    labels = {t: task_label(t, partial) for t in {*tasks, *(manifest.tasks if manifest else {})}}
    return _Run(run_dir, shown, full, manifest, models, tasks, baseline_model, partial, labels,
                redact(manifest.config if manifest is not None else {}))


def _setup(run: _Run) -> dict:
    """Who and what the run was: command, student, teacher, configuration, engine settings, manifest sections."""
    m, config = run.manifest, run.config
    base_rec = m.models.get(run.baseline) if m is not None else None
    base_identity = base_rec.identity if base_rec else None
    student = describe_model(config.get("student") or base_identity)
    if base_identity and base_identity != student:
        student = f"{student} ({short(base_identity, 120)})"
    summary = config_summary(config)
    if m is not None and m.skipped_tasks:
        summary.insert(0, ("skipped tasks", short(m.skipped_tasks, 400)))
    budget = [f"{k}={v}" for k, v in (("pool", (config.get("pool") or {}).get("n")),
                                      ("steps", (config.get("train") or {}).get("max_steps"))) if v is not None]
    differs = f"student {student}, teacher {teacher_text(config.get('teacher'))}" + (
        f", budget {', '.join(budget)}" if budget else "")
    return {
        "run_id": run.results.run_id or (m.run_id if m else run.folder.name),
        "created": m.created if m else "–",
        "command": short(m.command if m and m.command else "–", 2000),
        "student": student, "teacher": teacher_text(config.get("teacher")), "config_summary": summary,
        "config_json": json.dumps(config, indent=2, sort_keys=True, default=str),
        "eval_settings": kv(redact(_section(m.eval_settings))) if m else [],
        "paper_differs": differs, "paper_differs_short": short(differs, 90),
        "manifest_sections": [(name, kv(redact(_section(getattr(m, name))))) if m else (name, [])
                              for name in ("versions", "git", "hardware", "seeds", "training_data", "cache",
                                           "timings_seconds")],
        "experiment_cells": m.experiment.cells if m is not None and isinstance(m.experiment, Experiment) else [],
    }


def _section(value: Any) -> Any:
    """A manifest section as the report lists it: a typed one as its recorded fields."""
    return value.model_dump(mode="json", exclude_none=True) if isinstance(value, BaseModel) else value


def _findings(run: _Run, samples: SampleSet) -> tuple[dict, list[str]]:
    """The verdict, tables, diagnostics and explorer; and the notes their sections raise."""
    results, models, tasks, labels = run.results, run.models, run.tasks, run.labels
    settings, warnings = settings_section(run.manifest, models, tasks, results, labels)
    truncation, truncation_warnings, truncation_tasks = truncation_section(results, run.manifest, models, tasks,
                                                                            labels)
    verdict = verdict_section(results, models, tasks, run.baseline, labels)
    vs_base, pairs = comparison_tables(results, models, tasks, run.baseline)
    return {
        "settings": settings, "warnings": warnings, "baseline": run.baseline, "models": models, "tasks": tasks,
        "task_labels": labels, "primary_metrics": results.primary_metrics, "verdict": verdict,
        "diagnostics": diagnostics_section(samples, results, tasks, labels, verdict.bounded),
        "secondary": secondary_tests(results, labels),
        "explorer": explorer_section(samples, models, tasks, labels, results.primary_metrics, run.baseline),
        "main_table": main_table(results, models, tasks), "truncation_table": truncation,
        "truncation_tasks": truncation_tasks, "truncation_warn": pct(TRUNCATION_WARN, 0), "vs_base": vs_base,
        "pairs": pairs, "metric_tables": metric_tables(results, models, tasks, labels),
        "paper_tables": paper_section(results, models, run.partial),
        "experiment_tables": experiment_tables(run.full_results), "seed_table": seed_table(run.full_results),
        "stats": results.stats,
    }, truncation_warnings


def _plots(run: _Run, samples: SampleSet, selection_png: bytes | None, loss_png: bytes | None) -> dict:
    """Every chart, inline (base64) and as bytes (written to plots/), with its display width."""
    plot_bytes = {"primary": plots.primary_metric_chart(run.results, run.baseline),
                  "deltas": plots.deltas_chart(run.results, run.baseline), "selection": selection_png,
                  "lengths": length_histogram(samples, run.tasks, run.labels, run.colours), "loss": loss_png,
                  "pass_at_k": pass_at_k_chart(run.results, run.labels, run.colours)}
    return {
        "plots": {name: base64.b64encode(png).decode("ascii") for name, png in plot_bytes.items() if png is not None},
        "plot_bytes": plot_bytes,
        # drawn at 2x: shown at half their pixel width (the PNG header's), sharp on high-density screens
        "plot_widths": {name: int.from_bytes(png[16:20], "big") // 2 for name, png in plot_bytes.items() if png},
    }


def build_context(run_dir: Path, baseline_model: str = "base", results: Results | None = None) -> dict:
    """Everything the template shows, computed from a run folder (tolerates missing models, tasks and files)."""
    run = _load(Path(run_dir), baseline_model, results)
    manifest = run.manifest
    selection, selection_png = selection_section(manifest)
    training, training_warnings = training_section(manifest, run.folder)
    samples = SampleSet.load(run.folder, manifest, run.models, run.tasks)
    findings, truncation_warnings = _findings(run, samples)
    notes = [*truncation_warnings, *training_warnings]
    notes += [f"{run.labels[t]}: evaluated on part of the benchmark; its numbers are not comparable to "
              "full-benchmark results (the paper's included)" for t in run.tasks if t in run.partial]
    notes += [str(w) for w in (manifest.warnings if manifest is not None else [])] + samples.notes
    loss_png = loss_chart(training["curves"], run.colours)
    return {**_setup(run), **findings, "notes": notes, "training": training, "selection": selection,
            "training_data": training_data_section(run.folder, manifest),
            **_plots(run, samples, selection_png, loss_png)}


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(TEMPLATES), str(SECTIONS)]),
        autoescape=True,  # every value is untrusted text unless marked otherwise (nothing is)
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_report(run_dir: Path, out_path: Path | None = None, baseline_model: str = "base") -> Path:
    """Write ``report.html`` (and ``plots/*.png``) into the run folder; return the report's path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"no run folder at {run_dir}; pass a folder under results/")
    ctx = build_context(run_dir, baseline_model=baseline_model)
    plot_dir = run_dir / "plots"
    for name, png in ctx.pop("plot_bytes").items():
        if png is not None:
            plot_dir.mkdir(exist_ok=True)
            (plot_dir / f"{name}.png").write_bytes(png)
    html = _environment().get_template("report.html").render(**ctx)
    out = Path(out_path) if out_path else run_dir / "report.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out
