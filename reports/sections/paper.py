"""Beside the paper: the paper's tables that overlap this run, with our numbers in their own column group,
and an experiment laid out as one of the paper's tables."""
from __future__ import annotations

from typing import Mapping, Optional

from harness.common.artifacts import Results
from harness.reports import paper
from harness.reports.fmt import pct
from harness.reports.rundata import task_label

def paper_number(v: float) -> str:
    """As printed: one decimal, except whole counts such as reasoning lengths in words."""
    if v != v:
        return "–"
    return f"{v:.0f}" if v >= 100 and v == int(v) else f"{v:.1f}"


def paper_section(results: Results, models: list[str],
                   partial: Mapping[str, tuple[int, Optional[int]]]) -> list[dict]:
    """The paper's tables with our numbers (same method and task) beside them, averages checked. A column whose
    task ran on part of its benchmark here is marked "not comparable: partial data" on the paper's cells too."""
    rows = {(r.model, r.task, r.metric): r for r in results.rows}
    primary = results.primary_metrics
    checks = paper.average_checks()
    check_by = {(c.table, c.method, c.teacher, c.average): c for c in checks.itertuples()}
    out = []
    for table_id, df in paper.paper_tables().items():
        columns = list(df.columns)
        coverage = paper.average_coverage(columns)

        def ours(method: str, benchmark: str) -> float | None:
            task, metric = paper.BENCHMARK_TO_TASK_METRIC.get(benchmark, (None, None))
            if task is None:
                return None
            r = rows.get((method, task, metric or primary.get(task, "")))
            return None if r is None else r.value

        def partial_tasks(benchmark: str) -> list[str]:
            covered = coverage.get(benchmark, [benchmark])
            tasks = [paper.BENCHMARK_TO_TASK_METRIC.get(b, (None, None))[0] for b in covered]
            return [task_label(t, partial) for t in tasks if t in partial]

        col_partial = {b: partial_tasks(b) for b in columns}
        has_ours = any(ours(m, b) is not None for m in models for b in columns)
        body = []
        first_row_of: dict[str, int] = {}  # our values stand beside the method's first paper row
        for i, (m, _) in enumerate(df.index):
            first_row_of.setdefault(m, i)
        for i, ((method, teacher), prow) in enumerate(df.iterrows()):
            cells = []
            for b in columns:
                v = prow[b]
                chk = check_by.get((table_id, method, teacher, b))
                cells.append({"value": paper_number(v),
                              "recomputed": None if chk is None else f"{chk.recomputed:.1f}",
                              "flag": bool(chk is not None and chk.differs),
                              "note": df.attrs["notes"].get((method, teacher, b), ""),
                              "partial": bool(col_partial[b] and has_ours)})
            row = {"kind": "paper", "method": method, "teacher": teacher, "cells": cells, "ours": None}
            body.append(row)
            if method in models and has_ours and first_row_of[method] == i:
                our_cells = []
                for b in columns:
                    if b in coverage:
                        vals = [ours(method, c) for c in coverage[b]]
                        v = sum(vals) / len(vals) if vals and None not in vals else None
                    else:
                        v = ours(method, b)
                    our_cells.append({"value": pct(v) if v is not None else "", "recomputed": None, "flag": False,
                                      "note": "", "partial": bool(col_partial[b]) and v is not None})
                row["ours"] = our_cells
        headers = [{"name": b, "partial": "; ".join(col_partial[b]) if has_ours else ""} for b in columns]
        out.append({"id": table_id, "caption": df.attrs["caption"], "student": df.attrs["student"],
                    "columns": columns, "headers": headers, "rows": body, "has_ours": has_ours})
    return out


def experiment_tables(results: Results) -> list[dict]:
    spec = results.stats.experiment.table if results.stats.experiment is not None else None
    if not spec:
        return []
    t = paper.experiment_table(results, spec)

    def fmt(v, unit):
        if v is None:
            return "–"
        return f"{v:.0f}" if unit == "words" else f"{v:.1f}"

    for row in t["rows"]:
        for c in row["cells"]:
            c["paper_text"] = "–" if c["paper"] is None else paper_number(c["paper"])
            c["ours_text"] = fmt(c["ours"], c["unit"]) + ("" if c["sd"] is None else f" ± {fmt(c['sd'], c['unit'])}")
            c["seeds_text"] = ", ".join(f"s{k}: {fmt(v, c['unit'])}" for k, v in c["per_seed"].items()
                                        if k not in ("None",))
    return [t]
