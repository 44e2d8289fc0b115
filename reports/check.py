"""The regression gate: compare a run's results.json with a committed baseline.

A baseline is a results.json, or a smaller file ``{"rows": [{"model", "task", "metric", "value",
"tolerance"?}], "tolerance"?: float, "primary_metrics"?: {...}}`` (``make_baseline`` writes one). A row regresses
when the run's value is below the baseline value by more than the tolerance (absolute, in [0, 1] units).
Tolerance, most specific first: the baseline row's ``tolerance``, the ``tolerance`` argument, the baseline file's
``tolerance``, then 0.02. Baseline rows absent from the run are reported as missing and fail the check unless
``allow_missing``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from reports.stats import SCHEMA_VERSION

DEFAULT_TOLERANCE = 0.02
_EPS = 1e-9  # a drop exactly equal to the tolerance passes, whatever the float rounding


@dataclass(frozen=True)
class Regression:
    model: str
    task: str
    metric: str
    baseline: float
    value: float
    tolerance: float

    @property
    def delta(self) -> float:
        return self.value - self.baseline


@dataclass
class CheckOutcome:
    regressions: list[Regression] = field(default_factory=list)
    missing: list[tuple[str, str, str]] = field(default_factory=list)  # (model, task, metric)
    compared: int = 0
    allow_missing: bool = False

    @property
    def passed(self) -> bool:
        return not self.regressions and (self.allow_missing or not self.missing)

    @property
    def failed(self) -> bool:
        return not self.passed


def _tolerance(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{where} tolerance must be a non-negative number, got {value!r}")
    return float(value)


def validate_baseline(baseline: Any) -> None:
    """Raise a one-line ValueError naming the first problem in a baseline dict."""
    if not isinstance(baseline, Mapping) or not isinstance(baseline.get("rows"), list):
        raise ValueError("invalid baseline: it must be an object with a 'rows' list (a results.json works)")
    if "tolerance" in baseline:
        _tolerance(baseline["tolerance"], "baseline")
    for i, row in enumerate(baseline["rows"]):
        if not isinstance(row, Mapping):
            raise ValueError(f"invalid baseline: rows[{i}] must be an object")
        missing = [k for k in ("model", "task", "metric", "value") if k not in row]
        if missing:
            raise ValueError(f"invalid baseline: rows[{i}] lacks {', '.join(missing)}")
        v = row["value"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"invalid baseline: rows[{i}] value must be a number, got {v!r}")
        if "tolerance" in row and row["tolerance"] is not None:
            _tolerance(row["tolerance"], f"baseline rows[{i}]")


def load_baseline(path: str | Path) -> dict:
    """Read and validate a baseline file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no baseline file at {path}; make one from a good run (reports.check.make_baseline) "
                         "and commit it under results/baselines/")
    try:
        baseline = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); fix or regenerate it") from None
    try:
        validate_baseline(baseline)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return baseline


def check_run(
    results: Mapping[str, Any],
    baseline: Mapping[str, Any],
    tolerance: float | None = None,
    metrics: Literal["primary", "all"] = "primary",
    use_ci: bool = False,
    allow_missing: bool = False,
) -> CheckOutcome:
    """Compare ``results`` with ``baseline`` row by row.

    metrics="primary" checks each task's primary metric only (from the baseline's ``primary_metrics``, else the
    run's); "all" checks every baseline row. With ``use_ci`` a drop beyond the tolerance counts only when the
    baseline value also lies above the run's CI upper bound (a drop that sampling noise cannot explain); rows
    without a CI fall back to the plain rule.
    """
    if metrics not in ("primary", "all"):
        raise ValueError(f"metrics must be 'primary' or 'all', got {metrics!r}")
    validate_baseline(baseline)
    default = DEFAULT_TOLERANCE
    if "tolerance" in baseline:
        default = _tolerance(baseline["tolerance"], "baseline")
    if tolerance is not None:
        default = _tolerance(tolerance, "the")
    primary = {**(results.get("primary_metrics") or {}), **(baseline.get("primary_metrics") or {})}
    now = {(r["model"], r["task"], r["metric"]): r for r in results.get("rows", [])}

    outcome = CheckOutcome(allow_missing=allow_missing)
    for row in baseline["rows"]:
        key = (row["model"], row["task"], row["metric"])
        if metrics == "primary" and primary.get(row["task"]) != row["metric"]:
            continue
        got = now.get(key)
        if got is None:
            outcome.missing.append(key)
            continue
        outcome.compared += 1
        tol = default if row.get("tolerance") is None else float(row["tolerance"])
        base_value, value = float(row["value"]), float(got["value"])
        dropped = base_value - value > tol + _EPS
        if dropped and use_ci and got.get("ci_high") is not None:
            dropped = base_value > float(got["ci_high"])
        if dropped:
            outcome.regressions.append(Regression(*key, baseline=base_value, value=value, tolerance=tol))
    return outcome


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

    def fmt(cells: list[str]) -> str:  # names left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return [fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def format_outcome(outcome: CheckOutcome) -> str:
    """Plain-text summary: verdict line, then a table of regressed rows and the list of missing rows."""
    lines = []
    verdict = "PASS" if outcome.passed else "FAIL"
    lines.append(f"{verdict}: {outcome.compared} rows compared, {len(outcome.regressions)} regressed, "
                 f"{len(outcome.missing)} missing{' (allowed)' if outcome.missing and outcome.allow_missing else ''}")
    if outcome.regressions:
        lines.append("")
        lines.extend(_table(
            ["model", "task", "metric", "baseline", "now", "delta", "tolerance"],
            [[r.model, r.task, r.metric, f"{r.baseline:.4f}", f"{r.value:.4f}", f"{r.delta:+.4f}",
              f"{r.tolerance:.4f}"] for r in outcome.regressions],
        ))
    if outcome.missing:
        lines.append("")
        lines.append("missing from the run (model / task / metric):")
        lines.extend(f"  {m} / {t} / {k}" for m, t, k in outcome.missing)
    return "\n".join(lines)


def make_baseline(results: Mapping[str, Any], tolerance: float = DEFAULT_TOLERANCE,
                  metrics: Literal["primary", "all"] = "all") -> dict:
    """A baseline file's content from a run's results (rows with value, n and CI; one file-wide tolerance)."""
    _tolerance(tolerance, "the")
    primary = results.get("primary_metrics") or {}
    rows = [
        {k: r.get(k) for k in ("model", "task", "metric", "value", "n", "ci_low", "ci_high")}
        for r in results["rows"]
        if metrics == "all" or primary.get(r["task"]) == r["metric"]
    ]
    return {"schema_version": SCHEMA_VERSION, "kind": "baseline", "source_run": results.get("run_id"),
            "tolerance": float(tolerance), "primary_metrics": dict(primary), "rows": rows}
