"""Results: the primary metric per task, truncation at the token budget, paired changes against the base
model and between methods (Holm-adjusted within each pair), and every metric per task."""
from __future__ import annotations

from typing import Mapping, Optional

from harness.common.artifacts import Manifest, Results
from harness.reports import plots
from harness.reports.fmt import ci_text, p_text, pct, signed_pct
from harness.reports.changes import Change, tested_changes
from harness.reports.stats import TRUNCATION_METRIC

#: Above this share of completions stopped at the token budget, a model's score on a task counts cut-off answers.
TRUNCATION_WARN = 0.05


def _budget(manifest: Optional[Manifest], task: str) -> str:
    info = manifest.tasks.get(task) if manifest is not None else None
    if info is None or info.generation is None:
        return "the token budget"
    return f"max_new_tokens={info.generation.max_new_tokens}"


def truncation_section(results: Results, manifest: Optional[Manifest], models: list[str], tasks: list[str],
                labels: Mapping[str, str]) -> tuple[list[dict], list[str], list[str]]:
    """Per (model, task) share of completions that stopped at the token budget (a table in the main table's
    layout), warnings above ``TRUNCATION_WARN``, and the tasks that have any truncation row."""
    by = {(r.model, r.task): r for r in results.rows if r.metric == TRUNCATION_METRIC}
    cols = [t for t in tasks if any((m, t) in by for m in models)]
    table, warnings = [], []
    for model in models:
        cells = []
        for task in cols:
            r = by.get((model, task))
            cells.append(None if r is None else {"value": pct(r.value), "ci": ci_text(r.ci_low, r.ci_high),
                                                 "n": r.n, "high": r.value > TRUNCATION_WARN})
        if any(c is not None for c in cells):
            table.append({"model": model, "cells": cells})
    for task in cols:
        high = [(m, by[(m, task)].value) for m in models if (m, task) in by and by[(m, task)].value > TRUNCATION_WARN]
        if high:
            warnings.append(f"{labels.get(task, task)}: " + ", ".join(f"{m} {pct(v)}%" for m, v in high)
                            + f" of completions stopped at the token budget ({_budget(manifest, task)}), over "
                              f"{pct(TRUNCATION_WARN, 0)}%: those scores count cut-off answers")
    return table, warnings, cols


def main_table(results: Results, models: list[str], tasks: list[str]) -> list[dict]:
    primary = plots.primary_rows(results)
    best = {}
    for task in tasks:
        values = [primary[(m, task)].value for m in models if (m, task) in primary]
        best[task] = max(values) if values else None
    trunc = {(r.model, r.task): r for r in results.rows if r.metric == TRUNCATION_METRIC}
    table = []
    for model in models:
        cells = []
        for task in tasks:
            r = primary.get((model, task))
            t = trunc.get((model, task))
            cells.append(None if r is None else {
                "value": pct(r.value), "ci": ci_text(r.ci_low, r.ci_high), "n": r.n,
                "best": best[task] is not None and abs(r.value - best[task]) < 1e-12 and len(
                    [m for m in models if (m, task) in primary]) > 1,
                "trunc": None if t is None else pct(t.value), "trunc_high": t is not None and t.value > TRUNCATION_WARN,
            })
        table.append({"model": model, "cells": cells})
    return table


def comparison_tables(results: Results, models: list[str], tasks: list[str], baseline: str) -> tuple[list, list]:
    """Primary-metric deltas vs the baseline model (one row per model) and the pairwise method comparisons,
    with Holm-adjusted p-values across tasks within each (model, baseline) pair."""
    changes = tested_changes(results)

    def cell(ch: Change | None) -> dict | None:
        if ch is None:
            return None
        c, adj = ch.comparison, ch.p_holm
        return {"delta": signed_pct(c.delta), "ci": ci_text(c.ci_low, c.ci_high),
                "p": p_text(c.p_value), "p_holm": p_text(adj, "Holm p"), "n": c.n, "wins": c.wins,
                "losses": c.losses, "test": c.test or "",
                "significant": ch.significant, "disagrees": ch.disagrees,
                "sign": "up" if (c.delta or 0) > 0 else "down" if (c.delta or 0) < 0 else ""}

    by_key = {(ch.comparison.model, ch.comparison.baseline, ch.comparison.task): ch for ch in changes}
    vs_base = [{"model": m, "cells": [cell(by_key.get((m, baseline, t))) for t in tasks]}
               for m in models if m != baseline and any((m, baseline, t) in by_key for t in tasks)]
    rank = {m: i for i, m in enumerate(models)}
    pair_keys = sorted({(a, b) for a, b, _ in by_key if b != baseline},
                       key=lambda k: (rank.get(k[0], len(rank)), rank.get(k[1], len(rank))))
    pairs = [{"model": a, "baseline": b, "cells": [cell(by_key.get((a, b, t))) for t in tasks]}
             for (a, b) in pair_keys]
    return vs_base, pairs


def metric_tables(results: Results, models: list[str], tasks: list[str], labels: Mapping[str, str]) -> list[dict]:
    out = []
    for task in tasks:
        rows = [r for r in results.rows if r.task == task]
        metrics = plots.ordered([r.metric for r in rows], results.primary_metrics.get(task))
        by = {(r.model, r.metric): r for r in rows}
        body = []
        for model in models:
            if not any((model, m) in by for m in metrics):
                continue
            body.append({"model": model, "cells": [
                None if (model, m) not in by else {"value": pct(by[model, m].value),
                                                   "ci": ci_text(by[model, m].ci_low, by[model, m].ci_high)}
                for m in metrics]})
        out.append({"task": labels.get(task, task), "primary": results.primary_metrics.get(task),
                    "metrics": metrics, "rows": body})
    return out
