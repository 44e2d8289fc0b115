"""The regression gate (reports.check)."""
import copy
import json

import pytest

from reports.check import check_run, format_outcome, load_baseline, make_baseline


def _results() -> dict:
    rows = []
    for model, values in {"base": (0.30, 0.50), "cgd": (0.45, 0.55)}.items():
        for task, v in zip(("math500", "amc23"), values):
            rows.append({"model": model, "task": task, "metric": "accuracy", "value": v, "n": 100,
                         "ci_low": v - 0.09, "ci_high": v + 0.09})
            rows.append({"model": model, "task": task, "metric": "extraction_rate", "value": 0.9, "n": 100,
                         "ci_low": None, "ci_high": None})
    return {"schema_version": 1, "run_id": "r1", "primary_metrics": {"math500": "accuracy", "amc23": "accuracy"},
            "rows": rows, "comparisons": []}


def _set(results: dict, model: str, task: str, metric: str, value: float) -> dict:
    out = copy.deepcopy(results)
    for r in out["rows"]:
        if (r["model"], r["task"], r["metric"]) == (model, task, metric):
            r["value"] = value
    return out


def test_same_results_pass():
    res = _results()
    outcome = check_run(res, make_baseline(res))
    assert outcome.passed and not outcome.regressions and not outcome.missing
    assert outcome.compared == 4  # primary metric only: 2 models x 2 tasks
    assert check_run(res, res, metrics="all").compared == 8
    assert format_outcome(outcome).startswith("PASS: 4 rows compared")


def test_doctored_baseline_fails_and_names_rows():
    res = _results()
    baseline = _set(make_baseline(res), "cgd", "math500", "accuracy", 0.60)  # now 0.45: a drop of 0.15
    outcome = check_run(res, baseline)
    assert not outcome.passed and outcome.failed
    assert [(r.model, r.task, r.metric) for r in outcome.regressions] == [("cgd", "math500", "accuracy")]
    reg = outcome.regressions[0]
    assert reg.baseline == 0.60 and reg.value == 0.45 and reg.delta == pytest.approx(-0.15)
    text = format_outcome(outcome)
    assert text.startswith("FAIL")
    line = next(ln for ln in text.splitlines() if ln.startswith("cgd"))
    assert "math500" in line and "0.6000" in line and "0.4500" in line and "-0.1500" in line
    assert "amc23" not in text


def test_tolerance():
    res = _results()
    baseline = _set(make_baseline(res), "base", "amc23", "accuracy", 0.53)  # now 0.50: drop 0.03
    assert not check_run(res, baseline).passed  # file tolerance 0.02
    assert check_run(res, baseline, tolerance=0.05).passed  # explicit argument overrides the file
    assert check_run(res, {**baseline, "tolerance": 0.03}).passed  # a drop equal to the tolerance passes
    assert not check_run(res, {**baseline, "tolerance": 0.01}).passed
    # A per-row tolerance wins over everything else.
    for r in baseline["rows"]:
        if (r["model"], r["task"]) == ("base", "amc23"):
            r["tolerance"] = 0.1
    assert check_run(res, baseline, tolerance=0.0).passed
    # Improvements never fail.
    assert check_run(res, _set(make_baseline(res), "cgd", "amc23", "accuracy", 0.1), tolerance=0.0).passed


def test_use_ci_ignores_drops_within_noise():
    res = _results()
    baseline = _set(make_baseline(res), "cgd", "math500", "accuracy", 0.50)  # drop 0.05, CI high 0.54
    assert not check_run(res, baseline).passed
    assert check_run(res, baseline, use_ci=True).passed
    far = _set(make_baseline(res), "cgd", "math500", "accuracy", 0.70)  # above the CI: real
    assert not check_run(res, far, use_ci=True).passed


def test_metrics_all_checks_secondary_rows():
    res = _results()
    baseline = _set(make_baseline(res), "cgd", "amc23", "extraction_rate", 0.99)
    assert check_run(res, baseline).passed  # primary only
    outcome = check_run(res, baseline, metrics="all")
    assert [(r.task, r.metric) for r in outcome.regressions] == [("amc23", "extraction_rate")]
    with pytest.raises(ValueError, match="metrics must be"):
        check_run(res, baseline, metrics="some")


def test_missing_rows(tmp_path):
    res = _results()
    partial = {**res, "rows": [r for r in res["rows"] if r["model"] != "cgd"]}
    outcome = check_run(partial, make_baseline(res))
    assert not outcome.passed and not outcome.regressions
    assert sorted(outcome.missing) == [("cgd", "amc23", "accuracy"), ("cgd", "math500", "accuracy")]
    assert "cgd / math500 / accuracy" in format_outcome(outcome)
    assert check_run(partial, make_baseline(res), allow_missing=True).passed


def test_baseline_file_round_trip_and_errors(tmp_path):
    res = _results()
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(make_baseline(res, tolerance=0.03, metrics="primary")))
    baseline = load_baseline(path)
    assert baseline["tolerance"] == 0.03 and len(baseline["rows"]) == 4
    # A minimal baseline: rows only, no primary_metrics (the run's are used).
    small = {"rows": [{"model": "cgd", "task": "math500", "metric": "accuracy", "value": 0.9}]}
    assert len(check_run(res, small).regressions) == 1
    path.write_text(json.dumps({"rows": [{"model": "cgd", "task": "math500", "value": 0.9}]}))
    with pytest.raises(ValueError, match=r"rows\[0\] lacks metric"):
        load_baseline(path)
    path.write_text(json.dumps({"rows": [], "tolerance": -1}))
    with pytest.raises(ValueError, match="tolerance must be a non-negative number"):
        load_baseline(path)
    with pytest.raises(ValueError, match="no baseline file"):
        load_baseline(tmp_path / "absent.json")
