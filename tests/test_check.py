"""The regression gate (harness.reports.check) and `harness check`."""
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.common.artifacts import (
    SCHEMA_VERSION, Baseline, Manifest, ModelRecord, ResultRow, Results, SchemaMismatch, TaskRecord,
)
from harness.reports.check import check_run, load_baseline, make_baseline
from harness.reports.check_formats import format_outcome
from harness.reports.stats import write_results


def _results() -> Results:
    rows = []
    for model, values in {"base": (0.30, 0.50), "cgd": (0.45, 0.55)}.items():
        for task, v in zip(("math500", "amc23"), values):
            rows.append(ResultRow(model=model, task=task, metric="accuracy", value=v, n=100, ci_low=v - 0.09,
                                  ci_high=v + 0.09, ci_method="bootstrap_mean"))
            rows.append(ResultRow(model=model, task=task, metric="extraction_rate", value=0.9, n=100))
            rows.append(ResultRow(model=model, task=task, metric="truncation_rate", value=0.04, n=100,
                                  ci_low=0.01, ci_high=0.08))
    return Results(run_id="r1", model_order=["base", "cgd"],
                   primary_metrics={"math500": "accuracy", "amc23": "accuracy"}, rows=rows)


def manifest(run_id: str = "r1", base_identity: str = "hf:tiny@w1", data: str = "d1",
             torch: str = "2.13.0", sample_fp: str = "g1") -> Manifest:
    """A small valid manifest of a run with base and one trained method."""
    tasks = {t: TaskRecord(n=100, output_type="generate", primary_metric="accuracy", fingerprint=f"{t}:{data}",
                           generation={"max_new_tokens": 512, "temperature": 0.0, "top_p": 1.0, "n": 1, "seed": 0,
                                       "stop": []})
             for t in ("math500", "amc23")}
    eval_ = {t: {"seconds": 1.0, "fingerprint": f"{sample_fp}-{t}", "scoring": f"s-{t}"} for t in tasks}
    return Manifest(
        run_id=run_id, created="2026-01-01T00:00:00Z", config={}, methods=["cgd"], model_order=["base", "cgd"],
        models={"base": ModelRecord(path="/m", identity=base_identity, eval=eval_),
                "cgd": ModelRecord(path="/m", adapter="models/cgd/final", identity="hf:tiny@w1+cgd", method="cgd",
                                   eval=eval_)},
        tasks=tasks, versions={"torch": torch, "transformers": "5.0.0"}, git={"commit": "abc123"})


def _set(baseline: Baseline, model: str, task: str, metric: str, value: float) -> Baseline:
    out = baseline.model_copy(deep=True)
    for r in out.rows:
        if (r.model, r.task, r.metric) == (model, task, metric):
            r.value = value
    return out


def test_same_results_pass():
    res = _results()
    outcome = check_run(res, make_baseline(res, manifest()), manifest=manifest())
    assert outcome.passed and not outcome.regressions and not outcome.missing and not outcome.differences
    assert outcome.compared == 4  # primary metric only: 2 models x 2 tasks
    assert check_run(res, make_baseline(res, None), metrics="all").compared == 12
    text = format_outcome(outcome)
    assert text.startswith("PASS: 4 rows compared") and "differs" not in text


def test_doctored_baseline_fails_and_names_rows():
    res = _results()
    baseline = _set(make_baseline(res, manifest()), "cgd", "math500", "accuracy", 0.60)  # now 0.45: drop 0.15
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


def test_gate_names_what_differs_from_the_baseline_run():
    res = _results()
    baseline = make_baseline(res, manifest())
    assert baseline.source.identities == {"base": "hf:tiny@w1", "cgd": "hf:tiny@w1+cgd"}
    assert baseline.source.fingerprints["base/math500"] == "g1-math500"
    assert baseline.source.task_fingerprints == {"math500": "math500:d1", "amc23": "amc23:d1"}
    assert baseline.source.versions["torch"] == "2.13.0" and baseline.source.git_commit == "abc123"
    now = manifest(base_identity="hf:tiny@w2", data="d2", torch="2.14.0", sample_fp="g2")
    doctored = _set(baseline, "base", "math500", "accuracy", 0.5)
    outcome = check_run(res, doctored, manifest=now)
    text = format_outcome(outcome)
    lines = text.splitlines()
    assert lines[0].startswith("FAIL") and lines[1] == "what differs from the baseline's run:"
    assert "  model base identity hf:tiny@w1 -> hf:tiny@w2" in lines
    assert "  task math500 data/prompts fingerprint math500:d1 -> math500:d2" in lines
    assert "  samples base/math500 generation fingerprint g1-math500 -> g2-math500" in lines
    assert "  package torch 2.13.0 -> 2.14.0" in lines
    assert not any("cgd identity" in ln or "transformers" in ln for ln in lines)  # unchanged: not listed
    # Differences are printed on a passing run too (the numbers held, but say what moved).
    assert "model base identity" in format_outcome(check_run(res, baseline, manifest=now))


def test_tolerance():
    res = _results()
    baseline = _set(make_baseline(res, None), "base", "amc23", "accuracy", 0.53)  # now 0.50: drop 0.03
    assert not check_run(res, baseline).passed  # file tolerance 0.02
    assert check_run(res, baseline, tolerance=0.05).passed  # explicit argument overrides the file
    assert check_run(res, baseline.model_copy(update={"tolerance": 0.03})).passed  # equal to tolerance passes
    assert not check_run(res, baseline.model_copy(update={"tolerance": 0.01})).passed
    # A per-row tolerance wins over everything else.
    for r in baseline.rows:
        if (r.model, r.task) == ("base", "amc23"):
            r.tolerance = 0.1
    assert check_run(res, baseline, tolerance=0.0).passed
    # Improvements never fail.
    assert check_run(res, _set(make_baseline(res, None), "cgd", "amc23", "accuracy", 0.1), tolerance=0.0).passed


def test_truncation_rate_regresses_upwards():
    res = _results()
    lower = _set(make_baseline(res, None), "cgd", "amc23", "truncation_rate", 0.0)  # now 0.04: more cut off
    outcome = check_run(res, lower, metrics="all")
    assert [(r.task, r.metric) for r in outcome.regressions] == [("amc23", "truncation_rate")]
    assert check_run(res, _set(make_baseline(res, None), "cgd", "amc23", "truncation_rate", 0.3),
                     metrics="all", tolerance=0.0).passed  # fewer truncations: better


def test_use_ci_ignores_drops_within_noise():
    res = _results()
    baseline = _set(make_baseline(res, None), "cgd", "math500", "accuracy", 0.50)  # drop 0.05, CI high 0.54
    assert not check_run(res, baseline).passed
    assert check_run(res, baseline, use_ci=True).passed
    far = _set(make_baseline(res, None), "cgd", "math500", "accuracy", 0.70)  # above the CI: real
    assert not check_run(res, far, use_ci=True).passed


def test_metrics_all_checks_secondary_rows():
    res = _results()
    baseline = _set(make_baseline(res, None), "cgd", "amc23", "extraction_rate", 0.99)
    assert check_run(res, baseline).passed  # primary only
    outcome = check_run(res, baseline, metrics="all")
    assert [(r.task, r.metric) for r in outcome.regressions] == [("amc23", "extraction_rate")]
    with pytest.raises(ValueError, match="metrics must be"):
        check_run(res, baseline, metrics="some")


def test_missing_rows():
    res = _results()
    partial = res.model_copy(update={"rows": [r for r in res.rows if r.model != "cgd"]})
    outcome = check_run(partial, make_baseline(res, None))
    assert not outcome.passed and not outcome.regressions
    assert sorted(outcome.missing) == [("cgd", "amc23", "accuracy"), ("cgd", "math500", "accuracy")]
    assert "cgd / math500 / accuracy" in format_outcome(outcome)
    assert check_run(partial, make_baseline(res, None), allow_missing=True).passed
    # Rows of another sweep cell (other params) do not stand in for the baseline's.
    swept = res.model_copy(update={"rows": [r.model_copy(update={"params": {"lr": 1e-4}}) for r in res.rows]})
    assert len(check_run(swept, make_baseline(res, None)).missing) == 4


def test_baseline_file_round_trip_and_errors(tmp_path):
    res = _results()
    path = tmp_path / "baseline.json"
    path.write_text(make_baseline(res, manifest(), tolerance=0.03, metrics="primary").model_dump_json())
    baseline = load_baseline(path)
    assert baseline.tolerance == 0.03 and len(baseline.rows) == 4 and baseline.source.run_id == "r1"
    # A results.json works as a baseline of all its rows.
    write_results(tmp_path / "results.json", res)
    assert len(load_baseline(tmp_path / "results.json").rows) == 12
    # The model rejects bad rows and tolerances, in one line naming the fix.
    path.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "kind": "baseline",
                                "rows": [{"model": "cgd", "task": "math500", "value": 0.9}]}))
    with pytest.raises(SchemaMismatch, match=r"rows.0.metric.*--write-baseline FILE"):
        load_baseline(path)
    path.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "kind": "baseline", "rows": [], "tolerance": -1}))
    with pytest.raises(SchemaMismatch, match="tolerance"):
        load_baseline(path)
    with pytest.raises(ValueError, match="no baseline file"):
        load_baseline(tmp_path / "absent.json")


def test_version_2_baseline_is_read_as_it_is_and_the_committed_one_is_current(tmp_path):
    # Schema 3 left the baseline's shape as it was: a committed version 2 baseline keeps gating, row for row.
    current = make_baseline(_results(), manifest(), tolerance=0.03)
    old = current.model_dump(mode="json")
    old["schema_version"] = 2
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(old))
    assert load_baseline(path) == current
    assert check_run(_results(), load_baseline(path)).passed
    # A version 2 results.json is no baseline: its shape changed; one line naming the fix.
    res = json.loads(_results().model_dump_json())
    res["schema_version"] = 2
    (tmp_path / "results.json").write_text(json.dumps(res))
    with pytest.raises(SchemaMismatch, match=r"results.json of schema version 2 .*--write-baseline FILE") as e:
        load_baseline(tmp_path / "results.json")
    assert "\n" not in str(e.value)
    # The committed smoke baseline was converted to the current version (rows unchanged).
    committed = Path(__file__).resolve().parents[1] / "results" / "baselines" / "smoke.json"
    assert json.loads(committed.read_text())["schema_version"] == SCHEMA_VERSION
    assert len(load_baseline(committed).rows) == 40


def test_schema_1_baseline_is_a_one_line_error_naming_the_fix(tmp_path):
    old = {"schema_version": 1, "kind": "baseline", "source_run": "r0", "tolerance": 0.02,
           "rows": [{"model": "base", "task": "math500", "metric": "accuracy", "value": 0.3}]}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    with pytest.raises(SchemaMismatch) as e:
        load_baseline(path)
    msg = str(e.value)
    assert "\n" not in msg and "schema version 1" in msg
    assert "harness check RUN --write-baseline FILE" in msg


def _run_folder(tmp_path, man: Manifest):
    run = tmp_path / man.run_id
    run.mkdir()
    write_results(run / "results.json", _results())
    (run / "manifest.json").write_text(man.model_dump_json())
    return run


def test_cli_check_writes_and_gates_with_the_manifest(tmp_path):
    from harness.cli import app

    runner = CliRunner()
    good = _run_folder(tmp_path, manifest("good"))
    base_file = tmp_path / "baselines" / "b.json"
    got = runner.invoke(app, ["check", str(good), "--write-baseline", str(base_file)])
    assert got.exit_code == 0, got.output
    written = Baseline.model_validate_json(base_file.read_text())
    assert written.source.run_id == "good" and written.source.identities["base"] == "hf:tiny@w1"
    assert runner.invoke(app, ["check", str(good), "--baseline", str(base_file)]).exit_code == 0
    # A later run whose base model changed and whose score dropped: exit 1, and the identity change is named.
    data = json.loads(base_file.read_text())
    for r in data["rows"]:
        if (r["model"], r["task"], r["metric"]) == ("base", "math500", "accuracy"):
            r["value"] = 0.6
    base_file.write_text(json.dumps(data))
    later = _run_folder(tmp_path, manifest("later", base_identity="hf:tiny@w9"))
    got = runner.invoke(app, ["check", str(later), "--baseline", str(base_file)])
    assert got.exit_code == 1
    assert "model base identity hf:tiny@w1 -> hf:tiny@w9" in got.output
    assert any(ln.startswith("base") and "math500" in ln and "0.6000" in ln for ln in got.output.splitlines())
    # A schema-1 baseline: one line, exit 2, the fix named.
    base_file.write_text(json.dumps({"schema_version": 1, "rows": []}))
    got = runner.invoke(app, ["check", str(later), "--baseline", str(base_file)])
    assert got.exit_code == 2 and "--write-baseline FILE" in got.output


def test_per_task_and_per_metric_tolerances():
    res = _results()
    baseline = _set(make_baseline(res, None), "cgd", "math500", "accuracy", 0.50)  # now 0.45: drop 0.05
    assert check_run(res, baseline).failed  # file-wide 0.02
    assert check_run(res, baseline, tolerances={"math500": 0.06}).passed
    assert check_run(res, baseline, tolerances={"math500/accuracy": 0.06, "math500": 0.01}).passed  # metric first
    assert check_run(res, baseline, tolerances={"amc23": 0.06}).failed  # another task's tolerance does not apply
    baseline.tolerances = {"math500": 0.06}  # carried by the baseline file
    assert check_run(res, baseline).passed


def _items(right: int, n: int = 100) -> dict[str, float]:
    return {f"math500/{i}": float(i < right) for i in range(n)}


@pytest.mark.parametrize("lost, fails", [(5, False), (20, True)])
def test_require_significance_fails_only_a_significant_drop(lost, fails):
    # The baseline's run had items 0..49 right; this run lost `lost` of them (all discordant pairs are losses):
    # McNemar p = 0.0625 for 5 losses (not significant at 0.05), < 1e-5 for 20.
    res = _results()
    baseline = make_baseline(res, None, items=lambda m, t, k: _items(50) if (m, t) == ("cgd", "math500") else None)
    baseline = _set(baseline, "cgd", "math500", "accuracy", 0.50)
    now = lambda m, t, k: _items(50 - lost) if (m, t) == ("cgd", "math500") else None  # noqa: E731
    res.rows = [r.model_copy(update={"value": (50 - lost) / 100}) if (r.model, r.task, r.metric) == (
        "cgd", "math500", "accuracy") else r for r in res.rows]
    plain = check_run(res, baseline)
    assert plain.failed  # without the option, any drop beyond the tolerance fails
    out = check_run(res, baseline, require_significance=0.05, items=now)
    assert out.failed is fails
    row = next(r for r in out.rows if (r.model, r.task) == ("cgd", "math500"))
    assert row.n_paired == 100 and (row.p_value < 0.001 if fails else abs(row.p_value - 0.0625) < 1e-9)
    assert row.status == ("regressed" if fails else "not significant")
    # A drop that cannot be tested (no item-level values in this run) still fails, and says why.
    untested = check_run(res, baseline, require_significance=0.05, items=lambda m, t, k: None)
    assert untested.failed and "no item-level values" in untested.regressions[0].note


def test_markdown_summary_and_junit(tmp_path):
    from xml.etree import ElementTree

    from harness.reports.check_formats import format_markdown, write_junit

    res = _results()
    baseline = _set(make_baseline(res, None), "cgd", "math500", "accuracy", 0.60)
    out = check_run(res, baseline, allow_missing=False)
    md = format_markdown(out)
    assert md.startswith("### ❌ harness check: FAIL")
    assert "| cgd | math500 | accuracy | 60.0 | 45.0 | -15.0 | 2.0 | FAIL |" in md
    assert md.count("\n| ") == 1 + 4  # header + 4 compared rows
    suite = ElementTree.parse(write_junit(out, tmp_path / "junit.xml")).getroot()
    assert suite.tag == "testsuite" and suite.get("tests") == "4" and suite.get("failures") == "1"
    failed = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert [(c.get("classname"), c.get("name")) for c in failed] == [("cgd.math500", "accuracy")]
    assert format_markdown(check_run(res, make_baseline(res, None))).startswith("### ✅ harness check: PASS")


def test_cli_check_summary_junit_and_usage_errors(tmp_path):
    from harness.cli import app

    runner = CliRunner()
    good = _run_folder(tmp_path, manifest("good"))
    base_file = tmp_path / "b.json"
    assert runner.invoke(app, ["check", str(good), "--write-baseline", str(base_file)]).exit_code == 0
    junit = tmp_path / "out" / "junit.xml"
    got = runner.invoke(app, ["check", str(good), "--baseline", str(base_file), "--summary", "md", "--junit",
                              str(junit), "--tolerance-for", "math500=0.05"])
    assert got.exit_code == 0 and got.output.startswith("### ✅ harness check: PASS") and junit.is_file()
    for bad in (["--summary", "html"], ["--tolerance-for", "math500"], ["--tolerance-for", "math500=-1"],
                ["--require-significance", "5"]):
        got = runner.invoke(app, ["check", str(good), "--baseline", str(base_file), *bad])
        assert got.exit_code == 2, (bad, got.output)
