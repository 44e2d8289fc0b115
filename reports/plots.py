"""Charts of a run's results.json: the primary metric per task by model, and each model's change against the base.

Figures are built on matplotlib's Agg canvas directly (no pyplot state), so plotting is safe in any process.
Values are drawn in percent; error bars are the 95% bootstrap intervals from results.json.
"""
from __future__ import annotations

import io
from typing import Iterable

from harness.common.artifacts import ResultRow, Results
from harness.reports.changes import tested_changes

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot: headless everywhere
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

_MAX_WIDTH_IN = 18.0
#: Okabe & Ito's colour-blind-safe palette (distinguishable with every common colour-vision deficiency).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
#: Drawn at twice the size they are shown at: sharp on high-density screens.
_DPI = 200


def ordered(items: Iterable[str], first: str | None = None) -> list[str]:
    """Unique items in first-seen order, with ``first`` (e.g. the base model) moved to the front."""
    out = list(dict.fromkeys(items))
    if first in out:
        out.remove(first)
        out.insert(0, first)
    return out


def primary_rows(results: Results) -> dict[tuple[str, str], ResultRow]:
    """The results rows of each task's primary metric, keyed by (model, task)."""
    primary = results.primary_metrics
    return {(r.model, r.task): r for r in results.rows if primary.get(r.task) == r.metric}


def model_order(results: Results, baseline_model: str = "base") -> list[str]:
    """The run's models in run order (``Results.model_order``, then any others), the baseline model first."""
    return ordered([*results.model_order, *(r.model for r in results.rows)], baseline_model)


def figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas (no pyplot state)."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def task_panels(panels: list, labels: dict, draw, xlabel: str, ylabel: str) -> bytes:
    """One small chart per task side by side: ``panels`` = [(task, data)], ``draw(ax, data)`` draws one; titles,
    axis labels and the legend (on the first panel) are set here."""
    fig = figure(min(12.0, 3.6 * len(panels)), 3.0)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (task, data) in zip(axes, panels):
        draw(ax, data)
        ax.set_title(labels.get(task, task), fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel(ylabel, fontsize=8)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return png(fig)


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    return buf.getvalue()


def _err(value: float, lo: float | None, hi: float | None) -> tuple[float, float]:
    if lo is None or hi is None:
        return (0.0, 0.0)
    return (max(0.0, value - lo), max(0.0, hi - value))


def colours(results: Results, baseline_model: str) -> dict[str, str]:
    """One colour per model, the same in every chart (the baseline model first)."""
    models = ordered(model_order(results, baseline_model) + [c.model for c in results.comparisons], baseline_model)
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}


def _grouped_bars(ax, tasks: list[str], models: list[str], cell, colours: dict[str, str], hatched=None) -> None:
    """Draw bars for every (model, task); ``cell(model, task)`` -> (value, err_low, err_high) or None;
    ``hatched(model, task)`` -> True draws that bar hatched and pale (a change that is not significant)."""
    width = 0.8 / max(1, len(models))
    for i, model in enumerate(models):
        xs, ys, lo, hi = [], [], [], []
        for j, task in enumerate(tasks):
            got = cell(model, task)
            if got is None:
                continue
            xs.append(j - 0.4 + width * (i + 0.5))
            ys.append(got[0])
            lo.append(got[1])
            hi.append(got[2])
        if xs:
            colour = colours.get(model, PALETTE[i % len(PALETTE)])
            bars = ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=model, color=colour,
                          edgecolor=colour, error_kw={"elinewidth": 0.8, "ecolor": "#333"})
            if hatched is not None:
                done = [t for t in tasks if cell(model, t) is not None]
                for bar, task in zip(bars, done):
                    if hatched(model, task):
                        bar.set_facecolor("white")
                        bar.set_hatch("///")
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(tasks, rotation=30 if len(tasks) > 4 else 0, ha="right" if len(tasks) > 4 else "center")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def primary_metric_chart(results: Results, baseline_model: str = "base") -> bytes | None:
    """Grouped bar chart (PNG bytes) of each task's primary metric by model, with 95% CI error bars;
    None when there is nothing to plot."""
    rows = primary_rows(results)
    if not rows:
        return None
    models = [m for m in model_order(results, baseline_model) if any(m == k[0] for k in rows)]
    tasks = ordered([t for _, t in rows])

    def cell(model: str, task: str):
        r = rows.get((model, task))
        if r is None:
            return None
        v = 100 * r.value
        lo, hi = _err(r.value, r.ci_low, r.ci_high)
        return (v, 100 * lo, 100 * hi)

    fig = figure(min(_MAX_WIDTH_IN, 2.0 + 1.1 * len(tasks) * max(1, len(models)) ** 0.5), 4.2)
    ax = fig.add_subplot()
    _grouped_bars(ax, tasks, models, cell, colours(results, baseline_model))
    ax.set_ylabel("primary metric (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Primary metric by task (95% bootstrap CI)")
    ax.legend(fontsize=8, ncols=min(len(models), 6), loc="upper right")
    return png(fig)


def deltas_chart(results: Results, baseline_model: str = "base") -> bytes | None:
    """Bar chart (PNG bytes) of each model's paired change in the primary metric against ``baseline_model``,
    in percentage points with 95% CI; None when there are no such comparisons."""
    primary = results.primary_metrics
    comps = {(c.model, c.task): c for c in results.comparisons
             if c.baseline == baseline_model and primary.get(c.task) == c.metric and c.delta is not None}
    if not comps:
        return None
    models = [m for m in model_order(results, baseline_model) if any(m == k[0] for k in comps)]
    models += [m for m in ordered([m for m, _ in comps]) if m not in models]
    tasks = ordered([t for _, t in comps])

    def cell(model: str, task: str):
        c = comps.get((model, task))
        if c is None:
            return None
        lo, hi = _err(c.delta, c.ci_low, c.ci_high)
        return (100 * c.delta, 100 * lo, 100 * hi)

    significant = {(ch.comparison.model, ch.comparison.task) for ch in tested_changes(results)
                   if ch.comparison.baseline == baseline_model and ch.significant}
    fig = figure(min(_MAX_WIDTH_IN, 2.0 + 1.1 * len(tasks) * max(1, len(models)) ** 0.5), 4.0)
    ax = fig.add_subplot()
    _grouped_bars(ax, tasks, models, cell, colours(results, baseline_model),
                  hatched=lambda m, t: (m, t) not in significant)
    ax.axhline(0, color="#333", linewidth=0.8)
    ax.set_ylabel(f"change vs {baseline_model} (points)")
    ax.set_title(f"Paired change against {baseline_model} (95% bootstrap CI; hatched: not significant, Holm)")
    ax.legend(fontsize=8, ncols=min(len(models), 6))
    return png(fig)
