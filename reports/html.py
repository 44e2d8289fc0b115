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
from pathlib import Path

import jinja2

from harness.common.artifacts import Results
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


def build_context(run_dir: Path, baseline_model: str = "base", results: Results | None = None) -> dict:
    """Everything the template shows, computed from a run folder (tolerates missing models, tasks and files)."""
    run_dir = Path(run_dir)
    results = results if results is not None else load_results(run_dir / "results.json")
    full_results = results
    results = display_results(results)
    manifest = load_manifest(run_dir)
    selection, selection_png = selection_section(manifest)
    models = [m for m in plots.model_order(results, baseline_model) if any(r.model == m for r in results.rows)]
    tasks = plots.ordered(list(results.primary_metrics) + [r.task for r in results.rows])
    tasks = [t for t in tasks if any(r.task == t for r in results.rows)]
    partial = partial_info(results, manifest)
    labels = {t: task_label(t, partial) for t in {*tasks, *(manifest.tasks if manifest else {})}}
    config = redact(manifest.config if manifest is not None else {})
    settings, warnings = settings_section(manifest, models, tasks, results, labels)
    truncation, truncation_warnings, truncation_tasks = truncation_section(results, manifest, models, tasks, labels)
    training, training_warnings = training_section(manifest, run_dir)
    samples = SampleSet.load(run_dir, manifest, models, tasks)
    verdict = verdict_section(results, models, tasks, baseline_model, labels)
    lengths_png = length_histogram(samples, tasks, labels, plots.colours(results, baseline_model))
    notes = [*truncation_warnings, *training_warnings]
    notes += [f"{labels[t]}: evaluated on part of the benchmark; its numbers are not comparable to full-benchmark "
              "results (the paper's included)" for t in tasks if t in partial]
    notes += [str(w) for w in (manifest.warnings if manifest is not None else [])] + samples.notes
    vs_base, pairs = comparison_tables(results, models, tasks, baseline_model)
    primary_png = plots.primary_metric_chart(results, baseline_model)
    deltas_png = plots.deltas_chart(results, baseline_model)
    base_rec = manifest.models.get(baseline_model) if manifest is not None else None
    student = describe_model(config.get("student") or (base_rec.identity if base_rec else None))
    base_identity = base_rec.identity if base_rec else None
    if base_identity and base_identity != student:
        student = f"{student} ({short(base_identity, 120)})"
    summary = config_summary(config)
    if manifest is not None and manifest.skipped_tasks:
        summary.insert(0, ("skipped tasks", short(manifest.skipped_tasks, 400)))
    loss_png = loss_chart(training["curves"], plots.colours(results, baseline_model))
    budget = [f"{k}={v}" for k, v in (("pool", (config.get("pool") or {}).get("n")),
                                      ("steps", (config.get("train") or {}).get("max_steps"))) if v is not None]
    differs = f"student {student}, teacher {teacher_text(config.get('teacher'))}" + (
        f", budget {', '.join(budget)}" if budget else "")
    plot_bytes = {"primary": primary_png, "deltas": deltas_png, "selection": selection_png, "lengths": lengths_png,
                  "loss": loss_png, "pass_at_k": pass_at_k_chart(results, labels, plots.colours(results, baseline_model))}
    m = manifest
    return {
        "run_id": results.run_id or (m.run_id if m else run_dir.name),
        "created": m.created if m else "–",
        "command": short(m.command if m and m.command else "–", 2000),
        "student": student,
        "teacher": teacher_text(config.get("teacher")),
        "config_summary": summary,
        "config_json": json.dumps(config, indent=2, sort_keys=True, default=str),
        "eval_settings": kv(redact(m.eval_settings)) if m else [],
        "settings": settings,
        "warnings": warnings,
        "notes": notes,
        "baseline": baseline_model,
        "models": models,
        "tasks": tasks,
        "task_labels": labels,
        "primary_metrics": results.primary_metrics,
        "verdict": verdict,
        "diagnostics": diagnostics_section(samples, results, tasks, labels, verdict.bounded),
        "secondary": secondary_tests(results, labels),
        "explorer": explorer_section(samples, models, tasks, labels, results.primary_metrics, baseline_model),
        "main_table": main_table(results, models, tasks),
        "truncation_table": truncation,
        "truncation_tasks": truncation_tasks,
        "truncation_warn": pct(TRUNCATION_WARN, 0),
        "vs_base": vs_base,
        "pairs": pairs,
        "metric_tables": metric_tables(results, models, tasks, labels),
        "paper_tables": paper_section(results, models, partial),
        "paper_differs": differs,
        "paper_differs_short": short(differs, 90),
        "training": training,
        "training_data": training_data_section(run_dir, m),
        "manifest_sections": [(name, kv(redact(getattr(m, name)))) if m else (name, [])
                              for name in ("versions", "git", "hardware", "seeds", "training_data", "cache",
                                           "timings_seconds")],
        "plots": {name: base64.b64encode(png).decode("ascii") for name, png in plot_bytes.items() if png is not None},
        "plot_bytes": plot_bytes,
        # drawn at 2x: shown at half their pixel width (the PNG header's), sharp on high-density screens
        "plot_widths": {name: int.from_bytes(png[16:20], "big") // 2 for name, png in plot_bytes.items() if png},
        "experiment_tables": experiment_tables(full_results),
        "seed_table": seed_table(full_results),
        "selection": selection,
        "experiment_cells": ((m.experiment or {}).get("cells") or []) if m else [],
        "stats": results.stats,
    }


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
