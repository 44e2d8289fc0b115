"""The regression gate: compare a run's results.json with a committed baseline (``harness.common.artifacts.Baseline``).

A row regresses when the run's value is below the baseline value by more than the tolerance (absolute, in [0, 1]
units); for ``truncation_rate`` rows (lower is better) when it is above by more than the tolerance. Tolerance,
most specific first: the baseline row's ``tolerance``, the ``tolerance`` argument, the baseline file's
``tolerance``. Baseline rows absent from the run are reported as missing and fail the check unless
``allow_missing``. Rows match on (model, task, metric, params).

Tolerances can also be set per task or per metric (``Baseline.tolerances`` / ``--tolerance-for``: "math500" or
"math500/accuracy"); the order is the row's own, then per metric, then per task, then the file-wide or given one.

With ``require_significance`` (an alpha), a drop beyond the tolerance fails only when it is significant: a paired
test (exact McNemar for 0/1 items, else a sign-flip permutation test; ``harness.reports.paired_tests.paired_difference``) on the
items both the baseline's run (``BaselineRow.items``, recorded by ``make_baseline`` from the run's sample files)
and the checked run have. A drop that cannot be tested (no item-level values on either side) still fails, and
says why.

``make_baseline`` records where the baseline came from (``BaselineSource``: model identities, sample and task
fingerprints, package versions, git commit, all from the run's manifest); ``check_run`` given the checked run's
manifest lists what differs, and ``harness.reports.check_formats`` prints it under the verdict (text, Markdown, JUnit),
so a failing gate says whether the model, the data or the code changed.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Optional

from harness.common.artifacts import (
    BASELINE_FIX, SCHEMA_VERSION, Baseline, BaselineRow, BaselineSource, Manifest, Results, SchemaMismatch,
    load_artifact, read_samples,
)
from harness.reports.paired_tests import paired_difference
from harness.reports.stats import NON_QUALITY_METRICS

#: (model, task, metric) -> {item id: value} of a run, None where it has no item-level values.
ItemValues = Callable[[str, str, str], Optional[dict[str, float]]]

DEFAULT_TOLERANCE = 0.02
_EPS = 1e-9  # a drop exactly equal to the tolerance passes, whatever the float rounding


@dataclass(frozen=True)
class Regression:
    """One compared row. ``status``: "ok", "regressed", or "not significant" (a drop beyond the tolerance that
    the paired test does not call significant); ``p_value``/``n_paired`` when a test ran, ``note`` why not."""

    model: str
    task: str
    metric: str
    baseline: float
    value: float
    tolerance: float
    status: str = "regressed"
    p_value: Optional[float] = None
    n_paired: Optional[int] = None
    note: str = ""

    @property
    def delta(self) -> float:
        return self.value - self.baseline


@dataclass
class CheckOutcome:
    regressions: list[Regression] = field(default_factory=list)
    missing: list[tuple[str, str, str]] = field(default_factory=list)  # (model, task, metric)
    #: every compared row, with its status (regressions included)
    rows: list[Regression] = field(default_factory=list)
    require_significance: Optional[float] = None
    compared: int = 0
    allow_missing: bool = False
    #: What differs between the baseline's run and this one ("model base identity X -> Y", ...).
    differences: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.regressions and (self.allow_missing or not self.missing)

    @property
    def failed(self) -> bool:
        return not self.passed


def _check_tolerance(value: float, where: str) -> float:
    if value is None or value != value or value < 0:
        raise ValueError(f"{where} tolerance must be a non-negative number, got {value!r}")
    return float(value)


def load_baseline(path: str | Path) -> Baseline:
    """Read a baseline file; a results.json is accepted as a baseline of all its rows. Anything else, or a file of
    a schema this harness does not read (a version 2 baseline is read as it is), is a one-line SchemaMismatch
    naming the fix."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no baseline file at {path}; {BASELINE_FIX} and commit it under results/baselines/")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SchemaMismatch(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); {BASELINE_FIX}") from None
    if not isinstance(data, dict):
        raise SchemaMismatch(f"{path} is not a baseline (a JSON object); {BASELINE_FIX}")
    if data.get("kind") != "baseline" and "model_order" in data:  # a results.json
        if data.get("schema_version") != SCHEMA_VERSION:
            raise SchemaMismatch(f"{path} is a results.json of schema version {data.get('schema_version')} (this "
                                 f"harness reads {SCHEMA_VERSION}); {BASELINE_FIX}")
        return make_baseline(load_artifact(Results, path, "results.json"), None)
    return load_artifact(Baseline, path, "baseline")


def _key(model: str, task: str, metric: str, params: dict[str, Any]) -> tuple:
    return (model, task, metric, json.dumps(params, sort_keys=True, default=str))


def source_of(manifest: Manifest) -> BaselineSource:
    """Where a run's numbers came from: model identities, per-sample and task fingerprints, versions, commit."""
    return BaselineSource(
        run_id=manifest.run_id,
        identities={m: rec.identity for m, rec in manifest.models.items()},
        fingerprints={f"{model}/{task}": info.fingerprint for model, rec in manifest.models.items()
                      for task, info in rec.eval.items()},
        task_fingerprints={t: rec.fingerprint for t, rec in manifest.tasks.items()},
        versions=dict(manifest.versions),
        git_commit=manifest.git.commit,
    )


def _short(v: Any) -> str:
    s = "none" if v is None else str(v)
    return s if len(s) <= 20 else s[:16] + "…"


def source_differences(before: BaselineSource | None, now: Manifest | None) -> list[str]:
    """One line per thing that differs between the baseline's run and ``now`` (models, data, samples, code)."""
    if before is None or now is None:
        return []
    after = source_of(now)
    out = []
    for m in sorted(set(before.identities) & set(after.identities)):
        if before.identities[m] != after.identities[m]:
            # Identities read '<name>@<digest>:<backend>': the digest is what differs, so show it whole.
            out.append(f"model {m} identity {before.identities[m]} -> {after.identities[m]}")
    for m in sorted(set(before.identities) - set(after.identities)):
        out.append(f"model {m} is not in this run")
    for t in sorted(set(before.task_fingerprints) & set(after.task_fingerprints)):
        if before.task_fingerprints[t] != after.task_fingerprints[t]:
            out.append(f"task {t} data/prompts fingerprint {_short(before.task_fingerprints[t])} -> "
                       f"{_short(after.task_fingerprints[t])}")
    for k in sorted(set(before.fingerprints) & set(after.fingerprints)):
        if before.fingerprints[k] != after.fingerprints[k]:
            out.append(f"samples {k} generation fingerprint {_short(before.fingerprints[k])} -> "
                       f"{_short(after.fingerprints[k])}")
    for p in sorted(set(before.versions) | set(after.versions)):
        a, b = before.versions.get(p), after.versions.get(p)
        if a != b and p in before.versions and p in after.versions:
            out.append(f"package {p} {a} -> {b}")
    if before.git_commit and after.git_commit and before.git_commit != after.git_commit:
        out.append(f"code git commit {_short(before.git_commit)} -> {_short(after.git_commit)}")
    return out


def sample_item_values(run_dir: Path, primary_metrics: Mapping[str, str]) -> ItemValues:
    """Item-level values of a run folder, read from ``samples/<model>/<task>.jsonl`` when first asked for: the
    metric from each record's ``metrics``, the record's ``score`` for the task's primary metric."""
    cache: dict[tuple[str, str], list] = {}

    def values(model: str, task: str, metric: str) -> Optional[dict[str, float]]:
        path = Path(run_dir) / "samples" / model / f"{task}.jsonl"
        if (model, task) not in cache:
            cache[(model, task)] = read_samples(path) if path.is_file() else []
        out = {}
        for r in cache[(model, task)]:
            v = r.metrics.get(metric, r.score if primary_metrics.get(task) == metric else None)
            if v is None:
                return None
            out[r.id] = float(v)
        return out or None

    return values


def _tolerance_for(row: BaselineRow, tolerances: Mapping[str, float], default: float) -> float:
    if row.tolerance is not None:
        return float(row.tolerance)
    for key in (f"{row.task}/{row.metric}", row.task):
        if key in tolerances:
            return float(tolerances[key])
    return default


def _paired_drop(row: BaselineRow, now: Optional[dict[str, float]]) -> tuple[Optional[float], int, str]:
    """(p, items paired, note) of the change from the baseline run's items to this run's, on the shared ids."""
    if not row.items:
        return None, 0, "the baseline has no item-level values (re-write it with --write-baseline from a run folder)"
    if not now:
        return None, 0, "this run has no item-level values (pass the run folder, not results.json alone)"
    ids = [i for i in row.items if i in now]
    if not ids:
        return None, 0, "no item in common with the baseline's run"
    test = paired_difference([now[i] for i in ids], [row.items[i] for i in ids], n_resamples=200)
    return (None if math.isnan(test.p_value) else test.p_value), len(ids), ""


def check_run(
    results: Results,
    baseline: Baseline,
    tolerance: float | None = None,
    metrics: Literal["primary", "all"] = "primary",
    use_ci: bool = False,
    allow_missing: bool = False,
    manifest: Manifest | None = None,
    tolerances: Mapping[str, float] | None = None,
    require_significance: float | None = None,
    items: ItemValues | None = None,
) -> CheckOutcome:
    """Compare ``results`` with ``baseline`` row by row.

    metrics="primary" checks each task's primary metric only (from the baseline's ``primary_metrics``, else the
    run's); "all" checks every baseline row (truncation rates included: a rise is a regression). With ``use_ci``
    a drop beyond the tolerance counts only when the baseline value also lies outside the run's CI (a change that
    sampling noise cannot explain); rows without a CI fall back to the plain rule. Given the run's ``manifest``,
    the outcome also lists what differs from the baseline's source run. ``tolerances`` (per task or
    "task/metric") override the baseline file's; ``require_significance`` = alpha makes a drop fail only when the
    paired test on items (``items``: this run's item-level values) gives p < alpha.
    """
    if metrics not in ("primary", "all"):
        raise ValueError(f"metrics must be 'primary' or 'all', got {metrics!r}")
    default = baseline.tolerance
    if tolerance is not None:
        default = _check_tolerance(tolerance, "the")
    primary = {**results.primary_metrics, **baseline.primary_metrics}
    now = {_key(r.model, r.task, r.metric, r.params): r for r in results.rows}

    if require_significance is not None and not 0 < require_significance < 1:
        raise ValueError(f"--require-significance must be an alpha between 0 and 1, got {require_significance}")
    per_key = {**baseline.tolerances, **(tolerances or {})}
    for key, value in per_key.items():
        _check_tolerance(value, f"the {key}")
    outcome = CheckOutcome(allow_missing=allow_missing, require_significance=require_significance,
                           differences=source_differences(baseline.source, manifest))
    for row in baseline.rows:
        key = (row.model, row.task, row.metric)
        if metrics == "primary" and primary.get(row.task) != row.metric:
            continue
        got = now.get(_key(*key, row.params))
        if got is None:
            outcome.missing.append(key)
            continue
        outcome.compared += 1
        tol = _tolerance_for(row, per_key, default)
        base_value, value = float(row.value), float(got.value)
        if row.metric in NON_QUALITY_METRICS:  # lower is better
            worse = value - base_value > tol + _EPS
            if worse and use_ci and got.ci_low is not None:
                worse = base_value < float(got.ci_low)
        else:
            worse = base_value - value > tol + _EPS
            if worse and use_ci and got.ci_high is not None:
                worse = base_value > float(got.ci_high)
        checked = Regression(*key, baseline=base_value, value=value, tolerance=tol, status="ok")
        if worse and require_significance is not None:
            p, n, note = _paired_drop(row, items(*key) if items is not None else None)
            significant = p is None or p < require_significance  # an untestable drop still fails
            checked = Regression(*key, baseline=base_value, value=value, tolerance=tol, p_value=p, n_paired=n,
                                 note=note, status="regressed" if significant else "not significant")
        elif worse:
            checked = Regression(*key, baseline=base_value, value=value, tolerance=tol)
        outcome.rows.append(checked)
        if checked.status == "regressed":
            outcome.regressions.append(checked)
    return outcome


def make_baseline(results: Results, manifest: Manifest | None, tolerance: float = DEFAULT_TOLERANCE,
                  metrics: Literal["primary", "all"] = "all", items: ItemValues | None = None) -> Baseline:
    """A baseline from a run's results (rows with value, n, CI, params, seed; one file-wide tolerance), with
    each row's item-level values when ``items`` gives them (for ``--require-significance``), and, from its
    manifest, where it came from (``source``)."""
    _check_tolerance(tolerance, "the")
    primary = results.primary_metrics
    rows = [
        BaselineRow(model=r.model, task=r.task, metric=r.metric, value=r.value, n=r.n, ci_low=r.ci_low,
                    ci_high=r.ci_high, params=r.params, seed=r.seed,
                    items=items(r.model, r.task, r.metric) if items is not None and not r.params else None)
        for r in results.rows
        if metrics == "all" or primary.get(r.task) == r.metric
    ]
    source = source_of(manifest) if manifest is not None else BaselineSource(run_id=results.run_id)
    return Baseline(tolerance=float(tolerance), primary_metrics=dict(primary), source=source, rows=rows)
