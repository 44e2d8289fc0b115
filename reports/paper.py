"""The CGD paper's published numbers (``paper_tables.csv``, one value a row) as tables, with their averages checked.

Values are in percent, as printed. Some printed averages are not the mean of their cells; ``average_checks``
recomputes every average from the cells it covers and flags those that cannot be a rounding of the mean.
Which cells an average covers follows the table layout: an ``Avg``/``Avg(Gk)`` column averages the benchmark
columns to its left back to the previous average column (T1/T2: Avg(G1) = MATH500..AMC23, Avg(G2) =
TheoremQA..MMLU-Pro; T3: Avg = MATH500..AIME24).
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import pandas as pd

from harness.common.resources import package_path

PAPER_CSV = package_path(__package__, "paper_tables.csv")
COLUMNS = ["table", "caption", "student", "method", "teacher", "benchmark", "value", "note"]

#: Paper benchmark name -> our task name.
BENCHMARK_TO_TASK: dict[str, str] = {
    "MATH500": "math500",
    "Minerva-Math": "minerva_math",
    "GSM8K": "gsm8k",
    "OlympiadBench": "olympiadbench",
    "AMC23": "amc23",
    "AIME24": "aime24",
    "TheoremQA": "theoremqa",
    "GPQA": "gpqa_diamond",
    "MMLU-Pro": "mmlu_pro",
    "IFEval": "ifeval",
    "BBH": "bbh",
    "MUSR": "musr",
    "TruthfulQA": "truthfulqa_mc2",
    "HumanEval": "humaneval",
}
#: Paper columns that are a specific metric of one of our tasks: benchmark -> (task, metric or None = primary).
BENCHMARK_TO_TASK_METRIC: dict[str, tuple[str, str | None]] = {
    **{b: (t, None) for b, t in BENCHMARK_TO_TASK.items()},
    "AIME24 pass@1 (greedy)": ("aime24", None),
    "AIME24 pass@8": ("aime24", "pass@8"),
    "AIME24 pass@16": ("aime24", "pass@16"),
}
# Columns that are the mean of the benchmark columns before them (not "Avg (LR=1e-6)" or "Avg reasoning ...",
# which summarise numbers the paper does not print).
_AVERAGE = re.compile(r"^Avg(\(G\d+\))?$")
# A printed average to one decimal place can differ from the exact mean by at most 0.05.
_ROUNDING = 0.05 + 1e-9


def is_average(benchmark: str) -> bool:
    """Whether a paper column is the mean of the cells to its left."""
    return bool(_AVERAGE.match(benchmark))


@lru_cache(maxsize=4)
def _load(path: str) -> pd.DataFrame:
    df = pd.read_csv(path, dtype={"teacher": str, "note": str}, keep_default_na=False)
    if list(df.columns) != COLUMNS:
        raise ValueError(f"{path} must have columns {','.join(COLUMNS)}; got {','.join(df.columns)}")
    df["value"] = df["value"].astype(float)
    df["teacher"] = df["teacher"].replace("", "-")
    df["task"] = df["benchmark"].map(lambda b: BENCHMARK_TO_TASK_METRIC.get(b, (None, None))[0])
    df["task_metric"] = df["benchmark"].map(lambda b: BENCHMARK_TO_TASK_METRIC.get(b, (None, None))[1])
    df["is_average"] = df["benchmark"].map(is_average)
    return df


def load_paper_rows(path: str | Path | None = None) -> pd.DataFrame:
    """Every published number, one per row: the csv columns plus ``task`` (our task name or None),
    ``task_metric`` (None = the task's primary metric) and ``is_average``."""
    return _load(str(path or PAPER_CSV)).copy()


def table_ids(path: str | Path | None = None) -> list[str]:
    """Table ids in the order of the csv (T1, T2, ...)."""
    return list(dict.fromkeys(load_paper_rows(path)["table"]))


def paper_table(table: str, path: str | Path | None = None) -> pd.DataFrame:
    """One paper table: rows indexed by (method, teacher), one column per benchmark in printed order.

    ``df.attrs`` carries ``caption``, ``student`` and ``notes`` ({(method, teacher, benchmark): note}).
    """
    rows = load_paper_rows(path)
    sub = rows[rows["table"] == table]
    if sub.empty:
        raise ValueError(f"no paper table {table!r}; choose one of {', '.join(table_ids(path))}")
    benchmarks = list(dict.fromkeys(sub["benchmark"]))
    row_keys = list(dict.fromkeys(zip(sub["method"], sub["teacher"])))
    df = sub.pivot(index=["method", "teacher"], columns="benchmark", values="value")
    df = df.reindex(index=pd.MultiIndex.from_tuples(row_keys, names=["method", "teacher"]), columns=benchmarks)
    df.columns.name = None
    df.attrs["caption"] = sub["caption"].iloc[0]
    df.attrs["student"] = sub["student"].iloc[0]
    df.attrs["notes"] = {(m, t, b): n for m, t, b, n in zip(sub["method"], sub["teacher"], sub["benchmark"],
                                                          sub["note"]) if n}
    return df


def paper_tables(path: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """Every paper table by id (see ``paper_table``)."""
    return {t: paper_table(t, path) for t in table_ids(path)}


def average_coverage(benchmarks: list[str]) -> dict[str, list[str]]:
    """For each average column, the benchmark columns it averages (those since the previous average column)."""
    cover: dict[str, list[str]] = {}
    pending: list[str] = []
    for b in benchmarks:
        if is_average(b):
            cover[b] = pending
            pending = []
        else:
            pending.append(b)
    return cover


def average_checks(path: str | Path | None = None) -> pd.DataFrame:
    """Every printed average beside the mean of the cells it covers.

    Columns: table, method, teacher, average, covers (list of benchmarks), printed, recomputed, difference
    (printed - recomputed), differs (True when the printed value cannot be a rounding of the mean), note (csv).
    """
    out = []
    for table, df in paper_tables(path).items():
        for average, covers in average_coverage(list(df.columns)).items():
            for (method, teacher), row in df.iterrows():
                printed = row[average]
                if pd.isna(printed):
                    continue
                cells = row[covers]
                recomputed = float(cells.mean()) if len(covers) and not cells.isna().any() else float("nan")
                out.append({
                    "table": table, "method": method, "teacher": teacher, "average": average, "covers": covers,
                    "printed": float(printed), "recomputed": recomputed,
                    "difference": float(printed) - recomputed,
                    "differs": bool(abs(float(printed) - recomputed) > _ROUNDING),
                    "note": df.attrs["notes"].get((method, teacher, average), ""),
                })
    return pd.DataFrame(out)


def flagged_averages(path: str | Path | None = None) -> pd.DataFrame:
    """Only the printed averages that differ from the mean of their cells."""
    checks = average_checks(path)
    return checks[checks["differs"]].reset_index(drop=True)


# ---- experiments (configs/experiments/*.yaml) laid out as the paper's tables --------------------------------
def _matches(params: dict, want: dict) -> bool:
    """Whether a row's cell params hold every wanted key with an equal value (numbers compared as floats)."""
    for k, v in want.items():
        if k not in params:
            return False
        got = params[k]
        if isinstance(v, (int, float)) and isinstance(got, (int, float)) and not isinstance(v, bool):
            if abs(float(v) - float(got)) > 1e-12 * max(1.0, abs(float(v))):
                return False
        elif got != v:
            return False
    return True


def _our_per_seed(results, model: str, column: dict, row_params: dict) -> dict:
    """{seed: value} of one experiment cell (percent for rates; words/steps as counts) from the per-cell rows."""
    want = {**row_params, **(column.get("params") or {})}
    metric = column.get("metric")
    tasks = column.get("tasks") or ([column["task"]] if column.get("task") else [])
    per_seed: dict = {}
    if metric in ("words", "steps"):
        for e in results.stats.reasoning_length:
            if e.model == model and e.task in tasks and "aggregate" not in e.params and _matches(e.params, want):
                per_seed.setdefault(e.seed, []).append(float(e.words if metric == "words" else e.steps))
        return {s: sum(v) / len(v) for s, v in per_seed.items() if len(v) == len(tasks)}
    for r in results.rows:
        if r.model != model or r.task not in tasks or "aggregate" in r.params or not _matches(r.params, want):
            continue
        if r.metric != (metric or results.primary_metrics.get(r.task)):
            continue
        per_seed.setdefault(r.seed, {})[r.task] = 100 * r.value
    return {s: sum(v.values()) / len(v) for s, v in per_seed.items() if len(v) == len(tasks)}


def experiment_table(results, spec: dict, path: str | Path | None = None) -> dict:
    """One experiment as its paper table: per row the paper's values (as printed, with their ± note) and ours
    (mean ± sd over seeds, the number of seeds), column by column. ``spec`` = RunConfig.experiment as a dict."""
    import statistics

    rows = load_paper_rows(path)
    sub = rows[rows["table"] == spec["table"]]
    caption = sub["caption"].iloc[0] if len(sub) else ""
    student = sub["student"].iloc[0] if len(sub) else ""
    body = []
    for row in spec.get("rows", []):
        cells = []
        for col in spec.get("columns", []):
            hit = sub[(sub["method"] == row["paper"]) & (sub["benchmark"] == col["paper"])]
            if row.get("teacher"):  # a table with rows per teacher (T3)
                hit = hit[hit["teacher"] == row["teacher"]]
            paper_v = float(hit["value"].iloc[0]) if len(hit) else None
            note = str(hit["note"].iloc[0]) if len(hit) else ""
            per_seed = _our_per_seed(results, row["model"], col, row.get("params") or {})
            vals = [per_seed[s] for s in sorted(per_seed, key=lambda x: (x is None, x))]
            mean = sum(vals) / len(vals) if vals else None
            sd = statistics.stdev(vals) if len(vals) > 1 else None
            cells.append({"paper": paper_v, "paper_note": note, "ours": mean, "sd": sd, "n_seeds": len(vals),
                          "per_seed": {str(k): v for k, v in per_seed.items()},
                          "unit": col.get("metric") if col.get("metric") in ("words", "steps") else "%"})
        body.append({"paper": row["paper"], "model": row["model"], "params": row.get("params") or {},
                     "cells": cells})
    return {"table": spec["table"], "title": spec.get("title") or caption, "caption": caption,
            "paper_student": student, "full_scale": spec.get("full_scale", ""),
            "differences": list(spec.get("differences") or []),
            "columns": [c["paper"] for c in spec.get("columns", [])], "rows": body}
