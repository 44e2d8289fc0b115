"""`harness report`'s other outputs: tables as Markdown/LaTeX/CSV, several runs in one report (refused when their
evaluation settings differ), and a run as pandas DataFrames (harness.reports.frames)."""
import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.reports.frames import load_frames
from harness.reports.stats import load_results
from test_report import make_run

ROOT = Path(__file__).resolve().parents[1]


def harness(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)


@pytest.fixture
def run(tmp_path):
    return make_run(tmp_path / "a")


def test_tables_as_markdown_latex_and_csv(run):
    results = load_results(run / "results.json")
    cgd = next(r for r in results.rows if (r.model, r.task, r.metric) == ("cgd", "math500", "accuracy"))
    md = harness("report", str(run), "--format", "md")
    assert md.returncode == 0, md.stderr
    assert "| model | math500 (accuracy) |" in md.stdout
    assert f"| cgd | {100 * cgd.value:.1f} [{100 * cgd.ci_low:.1f}, {100 * cgd.ci_high:.1f}] |" in md.stdout
    assert "| cgd − base |" in md.stdout and "Holm p" in md.stdout and "p=<" not in md.stdout
    tex = harness("report", str(run), "--format", "latex")
    assert tex.returncode == 0 and tex.stdout.count(r"\begin{tabular}") == 2 and r"\toprule" in tex.stdout
    got = harness("report", str(run), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(got.stdout)))
    assert len([r for r in rows if r["kind"] == "result"]) == len(results.rows)
    assert len([r for r in rows if r["kind"] == "change"]) == len(
        [c for c in results.comparisons if c.metric != "truncation_rate"])
    bad = harness("report", str(run), "--format", "xml")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def _second_run(run: Path, tmp_path: Path) -> Path:
    """A copy of the run in which cgd's math500 answers differ (another training of cgd, say)."""
    other = tmp_path / "b" / "run-b"
    shutil.copytree(run, other)
    path = other / "samples" / "cgd" / "math500.jsonl"
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    for r in recs[:10]:
        r["score"] = 1.0 - r["score"]
        r["metrics"]["accuracy"] = r["score"]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return other


def test_two_runs_in_one_report_and_different_budgets_refused(run, tmp_path):
    other = _second_run(run, tmp_path)
    out = tmp_path / "combined.html"
    got = harness("report", str(run), str(other), "--output", str(out))
    assert got.returncode == 0, got.stderr
    html = out.read_text()
    # The models both runs share (same samples) once; cgd of the second run under its own name, compared paired.
    data = json.loads(html.split('id="explorer-data">')[1].split("</script>")[0])
    assert data["models"] == ["base", "sft", "cgd", "cgd @ run-b"]
    assert "cgd @ run-b − cgd" in html or "cgd @ run-b − base" in html
    # A different token budget on one task: refused in one line, unless --force (and then the report says so).
    man = json.loads((other / "manifest.json").read_text())
    man["tasks"]["math500"]["generation"]["max_new_tokens"] = 4096
    (other / "manifest.json").write_text(json.dumps(man))
    got = harness("report", str(run), str(other), "--output", str(out))
    assert got.returncode == 2 and len(got.stderr.strip().splitlines()) == 1
    assert "math500 generation max_new_tokens: 1024 (run-test) vs 4096 (run-b)" in got.stderr
    assert "--force" in got.stderr
    got = harness("report", str(run), str(other), "--output", str(out), "--force")
    assert got.returncode == 0, got.stderr
    assert "evaluation settings differ (--force): task math500 generation max_new_tokens" in out.read_text()


def test_load_frames_aggregates_equal_results(run):
    f = load_frames(run)
    results = load_results(run / "results.json")
    assert str(f.samples["model"].dtype) == "category" and str(f.samples["score"].dtype) == "float64"
    assert str(f.results["n"].dtype) == "Int64" and str(f.comparisons["significant"].dtype) == "boolean"
    means = f.samples.groupby(["model", "task"], observed=True)["score"].mean()
    primary = [r for r in results.rows if results.primary_metrics[r.task] == r.metric]
    assert len(f.samples) == sum(r.n for r in primary)  # one row per item per model
    for r in primary:
        assert means[(r.model, r.task)] == pytest.approx(r.value, abs=1e-12)
    assert len(f.results) == len(results.rows)


def test_harness_load_run_gives_the_frames(run):
    from harness import load_run

    f = load_run(run).frames
    results = load_results(run / "results.json")
    prim = f.results[f.results["primary"]]
    means = f.samples.groupby(["model", "task"], observed=True)["score"].mean()
    assert len(prim) == len([r for r in results.rows if results.primary_metrics[r.task] == r.metric])
    assert all(means[(r.model, r.task)] == pytest.approx(r.value, abs=1e-12) for r in prim.itertuples())


@pytest.mark.parametrize("flipped, code", [(3, 0), (20, 1)])
def test_gate_require_significance_end_to_end(run, tmp_path, flipped, code):
    # A baseline written from the run records its item-level values; the run then loses `flipped` of cgd's right
    # math500 answers. Beyond a zero tolerance both drops fail the plain gate; with --require-significance 0.05
    # only the significant one does (3 discordant items: McNemar p = 0.25; 20 of them: p < 1e-5).
    base_file = tmp_path / "baseline.json"
    assert harness("check", str(run), "--write-baseline", str(base_file)).returncode == 0
    path = run / "samples" / "cgd" / "math500.jsonl"
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    right = [r for r in recs if r["score"] == 1.0]
    assert len(right) >= 20
    for r in right[:flipped]:
        r["score"], r["metrics"]["accuracy"] = 0.0, 0.0
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert harness("report", str(run)).returncode == 0  # re-aggregate the changed samples
    plain = harness("check", str(run), "--baseline", str(base_file), "--tolerance", "0")
    assert plain.returncode == 1
    gated = harness("check", str(run), "--baseline", str(base_file), "--tolerance", "0",
                    "--require-significance", "0.05", "--summary", "md")
    assert gated.returncode == code, gated.stdout + gated.stderr
    assert ("FAIL" if code else "pass (drop not significant)") in gated.stdout
