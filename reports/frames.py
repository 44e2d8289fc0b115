"""A run folder as pandas DataFrames, for notebooks (after Inspect AI's ``inspect_ai.analysis``).

    from harness.reports.frames import load_frames          # also: harness.load_run(path).frames
    f = load_frames("results/tiny-56b1ff359c")
    f.results      # one row per (model, task, metric[, params, seed]): value, ci_low, ci_high, n, primary, ...
    f.comparisons  # one row per paired comparison: model, baseline, task, metric, delta, CI, p, p_holm, significant
    f.samples      # one row per item per model and task: id, score, extracted, response, finish_reason,
                   # truncated, completion_tokens, and one ``metric:<name>`` column per per-sample metric
    f.samples.groupby(["model", "task"])["score"].mean()   # = the primary-metric values in results.json

Columns are typed: names as ``category``, counts as nullable ``Int64``, rates and scores as ``float64``, flags as
``boolean``, text as ``string``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.common.artifacts import Results, read_samples
from harness.reports.changes import tested_changes
from harness.reports.stats import load_results


@dataclass
class RunFrames:
    results: pd.DataFrame
    comparisons: pd.DataFrame
    samples: pd.DataFrame


_RESULT_TYPES = {"model": "category", "task": "category", "metric": "category", "value": "float64",
                 "ci_low": "float64", "ci_high": "float64", "n": "Int64", "primary": "boolean",
                 "seed": "Int64", "sd": "float64", "partial": "boolean", "full_n": "Int64", "params": "string"}
_COMPARISON_TYPES = {"model": "category", "baseline": "category", "task": "category", "metric": "category",
                     "primary": "boolean", "delta": "float64", "ci_low": "float64", "ci_high": "float64",
                     "p_value": "float64", "p_holm": "float64", "significant": "boolean", "n": "Int64",
                     "wins": "Int64", "losses": "Int64", "test": "string", "seed": "Int64", "params": "string"}
_SAMPLE_TYPES = {"model": "category", "task": "category", "id": "string", "score": "float64",
                 "extracted": "string", "gold": "string", "response": "string", "finish_reason": "category",
                 "truncated": "Int64", "completion_tokens": "Int64", "prompt_tokens": "Int64", "seconds": "float64",
                 "cached": "boolean", "status": "string"}


def _params(p: dict) -> str:
    return json.dumps(p, sort_keys=True, default=str) if p else ""


def _typed(rows: list[dict], types: dict[str, str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(dict.fromkeys([*types, *(k for r in rows for k in r)])))
    return df.astype({k: v for k, v in types.items() if k in df.columns})


def results_frame(results: Results) -> pd.DataFrame:
    prim = results.primary_metrics
    return _typed([{"model": r.model, "task": r.task, "metric": r.metric, "value": r.value, "ci_low": r.ci_low,
                    "ci_high": r.ci_high, "n": r.n, "primary": prim.get(r.task) == r.metric, "seed": r.seed,
                    "sd": r.sd, "partial": r.partial, "full_n": r.full_n, "params": _params(r.params)}
                   for r in results.rows], _RESULT_TYPES)


def comparisons_frame(results: Results) -> pd.DataFrame:
    rows = []
    for primary in (True, False):
        for ch in tested_changes(results, primary=primary):
            c = ch.comparison
            rows.append({"model": c.model, "baseline": c.baseline, "task": c.task, "metric": c.metric,
                         "primary": primary, "delta": c.delta, "ci_low": c.ci_low, "ci_high": c.ci_high,
                         "p_value": c.p_value, "p_holm": ch.p_holm, "significant": ch.significant, "n": c.n,
                         "wins": c.wins, "losses": c.losses, "test": c.test, "seed": c.seed,
                         "params": _params(c.params)})
    return _typed(rows, _COMPARISON_TYPES)


def samples_frame(run_dir: Path) -> pd.DataFrame:
    """Every stored sample record of the run folder (``samples/<model>/<task>.jsonl``)."""
    rows = []
    root = Path(run_dir) / "samples"
    for path in sorted(root.glob("*/*.jsonl")) if root.is_dir() else []:
        for r in read_samples(path):
            response = r.response if r.response is not None else (r.responses[0] if r.responses else None)
            row = {"model": path.parent.name, "task": path.stem, "id": r.id, "score": r.score,
                   "extracted": None if r.extracted is None else str(r.extracted),
                   "gold": None if r.gold is None else str(r.gold), "response": response,
                   "finish_reason": r.finish_reason, "truncated": r.truncated,
                   "completion_tokens": r.completion_tokens, "prompt_tokens": r.prompt_tokens,
                   "seconds": r.seconds, "cached": r.cached, "status": r.details.get("status")}
            row.update({f"metric:{k}": float(v) for k, v in r.metrics.items()})
            rows.append(row)
    df = _typed(rows, _SAMPLE_TYPES)
    metric_cols = [c for c in df.columns if str(c).startswith("metric:")]
    return df.astype({c: "float64" for c in metric_cols})


def load_frames(path: str | Path) -> RunFrames:
    """A run folder (or its results.json) as DataFrames; see the module docstring."""
    p = Path(path)
    root = p.parent if p.name == "results.json" else p
    results = load_results(root / "results.json")
    return RunFrames(results=results_frame(results), comparisons=comparisons_frame(results),
                     samples=samples_frame(root))
