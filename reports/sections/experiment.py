"""Across training seeds: mean ± sd per (model, cell) and task, beside each seed's value."""
from __future__ import annotations

from harness.common.artifacts import Results
from harness.reports.fmt import ci_text, pct
from harness.reports.rundata import cell_label, display_results

def seed_table(results: Results) -> dict | None:
    """Per (model, cell) and task: mean ± sd over seeds of the primary metric, beside each seed's value."""
    exp = results.stats.experiment
    if exp is None or not exp.seeds:
        return None
    tasks = list(results.primary_metrics)
    per_seed: dict[tuple[str, str], dict] = {}
    for r in results.rows:
        if r.metric == results.primary_metrics.get(r.task) and r.seed is not None and "aggregate" not in r.params:
            per_seed.setdefault((cell_label(r.model, r.params), r.task), {})[r.seed] = r.value
    table = []
    for r in display_results(results).rows:
        if r.metric != results.primary_metrics.get(r.task):
            continue
        row = next((x for x in table if x["model"] == r.model), None)
        if row is None:
            row = {"model": r.model, "cells": {}}
            table.append(row)
        seeds = per_seed.get((r.model, r.task), {})
        row["cells"][r.task] = {"mean": pct(r.value), "sd": pct(r.sd), "ci": ci_text(r.ci_low, r.ci_high),
                                "seeds": ", ".join(f"s{s}: {pct(v)}" for s, v in sorted(seeds.items()))}
    for row in table:
        row["cells"] = [row["cells"].get(t) for t in tasks]
    return {"tasks": tasks, "rows": table, "seeds": exp.seeds, "test": results.stats.seed_test or ""}
