"""The whole `harness compare` flow on the tiny student, its idempotence and resume, the gate, and the CLI's
one-line user errors (exit code 2)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

# A small compare: smoke tiny student, a few dozen training questions, a few items per task.
SMALL = ["--preset", "smoke", "--set", "pool.n=48", "--set", "train.per_device_batch_size=8", "--limit", "6",
         "--tasks", "synthetic_id,format_probe,humaneval"]


def harness(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real console entry point in a subprocess: what a user sees, stderr included."""
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=600)


@pytest.fixture(scope="module")
def compare_run(tiny_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    res = runner.invoke(app, ["compare", "--methods", "sft,cft,cgd", *SMALL, "--output-dir", str(out),
                              "--run-id", "small"])
    assert res.exit_code == 0, res.output
    return out / "small"


def test_compare_writes_results_for_every_model_and_task(compare_run):
    results = json.loads((compare_run / "results.json").read_text())
    prim = results["primary_metrics"]
    assert set(prim) == {"synthetic_id", "format_probe", "humaneval"}
    rows = {(r["model"], r["task"], r["metric"]): r for r in results["rows"]}
    for model in ("base", "sft", "cft", "cgd"):
        for task, metric in prim.items():
            r = rows[(model, task, metric)]
            assert r["n"] == 6 and 0.0 <= r["value"] <= 1.0
            assert r["ci_low"] <= r["value"] <= r["ci_high"]
    # Paired comparisons against base exist for every trained model.
    assert {c["model"] for c in results["comparisons"] if c["baseline"] == "base"} == {"sft", "cft", "cgd"}


def test_compare_training_data_follows_the_methods_table(compare_run):
    items = [json.loads(x) for x in (compare_run / "data" / "items.jsonl").read_text().splitlines()]
    assert all(it["probe"] is not None and it["critique"] is not None and it["refined"] for it in items)
    assert all(it["critique"].strip().splitlines()[-1] in ("Conclusion: right", "Conclusion: wrong") for it in items)
    it = items[0]
    ex = {m: json.loads((compare_run / "data" / f"{m}.jsonl").read_text().splitlines()[0]) for m in ("sft", "cft", "cgd")}
    prompt_text = {m: " ".join(msg["content"] for msg in e["prompt"]) for m, e in ex.items()}
    target = {m: e["completion"][0]["content"] for m, e in ex.items()}
    assert target["sft"] == it["gold_solution"] and it["probe"] not in prompt_text["sft"]
    assert target["cft"] == it["critique"] and it["probe"] in prompt_text["cft"]
    assert target["cgd"] == it["refined"] and it["critique"] in prompt_text["cgd"] and it["probe"] in prompt_text["cgd"]


def test_compare_writes_manifest_samples_and_escaped_report(compare_run):
    manifest = json.loads((compare_run / "manifest.json").read_text())
    for key in ("versions", "git", "hardware", "seeds", "config", "data_hashes", "chat_template_sha256", "models"):
        assert manifest[key], key
    assert manifest["versions"]["trl"] and manifest["models"]["cgd"]["adapter"] is True
    assert manifest["models"]["cgd"]["train_metrics"]["steps"] == manifest["models"]["sft"]["train_metrics"]["steps"]
    recs = [json.loads(x) for x in (compare_run / "samples" / "cgd" / "synthetic_id.jsonl").read_text().splitlines()]
    assert len(recs) == 6 and {"response", "score", "extracted", "finish_reason", "completion_tokens"} <= set(recs[0])
    html = (compare_run / "report.html").read_text()
    assert "synthetic_id" in html and "cgd" in html and "<script>alert" not in html


def test_rerun_is_idempotent_and_resumes(compare_run):
    out = compare_run.parent
    final = compare_run / "models" / "cgd" / "final"
    mtime = final.stat().st_mtime
    # Remove one (model, task) as if the run had been killed before it: it comes back from the cache.
    (compare_run / "samples" / "sft" / "format_probe.jsonl").unlink()
    res = runner.invoke(app, ["compare", "--methods", "sft,cft,cgd", *SMALL, "--output-dir", str(out),
                              "--run-id", "small"])
    assert res.exit_code == 0, res.output
    assert final.stat().st_mtime == mtime  # not retrained
    manifest = json.loads((compare_run / "manifest.json").read_text())
    sft_eval = manifest["models"]["sft"]["eval"]
    assert set(sft_eval) >= {"format_probe"} and "synthetic_id" not in sft_eval  # only the missing pair ran
    assert sft_eval["cache_misses"] == 0 and sft_eval["cache_hits"] == 6
    assert (compare_run / "samples" / "sft" / "format_probe.jsonl").exists()


def test_check_passes_on_own_baseline_and_fails_on_doctored(compare_run, tmp_path):
    base = tmp_path / "baseline.json"
    assert runner.invoke(app, ["check", str(compare_run), "--write-baseline", str(base)]).exit_code == 0
    assert runner.invoke(app, ["check", str(compare_run), "--baseline", str(base)]).exit_code == 0
    doctored = json.loads(base.read_text())
    primary = json.loads((compare_run / "results.json").read_text())["primary_metrics"]
    # Raise a gated (primary-metric) row above what the run scored.
    row = next(r for r in doctored["rows"] if r["metric"] == primary[r["task"]] and r["value"] <= 0.9)
    row["value"] += 0.1
    (tmp_path / "doctored.json").write_text(json.dumps(doctored))
    res = runner.invoke(app, ["check", str(compare_run), "--baseline", str(tmp_path / "doctored.json")])
    assert res.exit_code == 1
    assert row["model"] in res.output and row["task"] in res.output


def test_rescore_reproduces_stored_scores(compare_run):
    before = (compare_run / "results.json").read_text()
    res = runner.invoke(app, ["rescore", str(compare_run)])
    assert res.exit_code == 0, res.output
    rows = lambda t: sorted((r["model"], r["task"], r["metric"], r["value"]) for r in json.loads(t)["rows"])
    assert rows((compare_run / "results.json").read_text()) == rows(before)
    assert "rescored" in json.loads((compare_run / "manifest.json").read_text())


def test_dry_run_prints_plan_and_estimate(tmp_path):
    res = harness("compare", "--dry-run", "--output-dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "estimate:" in res.stderr and "teacher_calls" in res.stderr and "synthetic_ood" in res.stderr
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("args, needle", [
    (["compare", "--methods", "sft,dpo"], "unknown method 'dpo'"),
    (["compare", "--tasks", "mmlu"], "unknown task 'mmlu'"),
    (["compare", "--preset", "huge"], "unknown preset 'huge'"),
    (["compare", "--set", "train.learning_rate"], "not key=value"),
    (["compare", "--set", "train.lr=1"], "train.lr"),
    (["check", "nowhere"], "not found"),
    (["rescore", "nowhere"], "not a run folder"),
])
def test_user_errors_are_one_line_exit_2(args, needle, tmp_path):
    res = harness(*args, *(["--dry-run"] if args[0] == "compare" else []))
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = [l for l in res.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in res.stderr


def test_bad_yaml_and_missing_data_are_user_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("methods: [sft\n")
    res = harness("compare", "--config", str(bad), "--dry-run")
    assert res.returncode == 2 and "not valid YAML" in res.stderr
    res = harness("compare", "--tasks", "math500", "--dry-run", env={"HARNESS_DATA_DIR": str(tmp_path / "none")})
    assert res.returncode == 2 and "math500" in res.stderr and "HARNESS_DATA_DIR" in res.stderr


def test_tasks_lists_counts():
    res = harness("tasks", "paper-math,synthetic_id")
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    for name, n in (("math500", "500"), ("gsm8k", "1319"), ("aime25", "30"), ("synthetic_id", "200")):
        line = next(l for l in out.splitlines() if f" {name} " in l)
        assert n in line


def test_score_external_responses(tmp_path):
    rows = [json.loads(x) for x in (Path(os.environ["HARNESS_DATA_DIR"]) / "math500" / "test.jsonl").read_text().splitlines()[:5]]
    inp = tmp_path / "responses.jsonl"
    inp.write_text("\n".join(json.dumps({"id": r["unique_id"], "response": f"So the result is \\boxed{{{r['answer']}}}."
                                         if i < 4 else "I do not know."}) for i, r in enumerate(rows)))
    res = harness("score", "--task", "math500", "--input", str(inp), "--output", str(tmp_path / "scored.jsonl"))
    assert res.returncode == 0, res.stderr
    assert "accuracy\t0.8000" in res.stdout
    scored = [json.loads(x) for x in (tmp_path / "scored.jsonl").read_text().splitlines()]
    assert [s["score"] for s in scored] == [1.0, 1.0, 1.0, 1.0, 0.0] and scored[0]["id"] == rows[0]["unique_id"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "nope", "response": "1"}))
    res = harness("score", "--task", "math500", "--input", str(bad))
    assert res.returncode == 2 and "not in task math500" in res.stderr


def test_tiny_student_runs_every_paper_suite(tiny_cache, tmp_path):
    """Each paper suite end to end on the tiny student (2 items per task, short budgets): generation,
    log-likelihood scoring, per-sample records and metrics; MMLU-Pro has no data here and is skipped."""
    res = runner.invoke(app, ["eval", "--preset", "smoke", "--tasks", "paper-math,paper-ood,paper-general",
                              "--limit", "2", "--set", 'eval.max_new_tokens={"*": 24}', "--output-dir", str(tmp_path),
                              "--run-id", "suites"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "suites"
    results = json.loads((run / "results.json").read_text())
    expected = {"math500", "minerva_math", "gsm8k", "olympiadbench", "amc23", "aime24", "aime25", "ifeval", "musr",
                "truthfulqa_mc2", "bbh", "humaneval", "theoremqa", "gpqa_diamond"}
    assert set(results["primary_metrics"]) == expected
    for task in expected:
        recs = [json.loads(x) for x in (run / "samples" / "base" / f"{task}.jsonl").read_text().splitlines()]
        assert len(recs) == 2 and all(0.0 <= r["score"] <= 1.0 for r in recs)
    for r in (json.loads(x) for x in (run / "samples" / "base" / "truthfulqa_mc2.jsonl").read_text().splitlines()):
        assert len(r["loglikelihoods"]) >= 2  # scored by log-likelihood, one per choice
    gpqa = (run / "samples" / "base" / "gpqa_diamond.jsonl").read_text()
    assert '"prompt"' not in gpqa and '"gold"' not in gpqa
    manifest = json.loads((run / "manifest.json").read_text())
    assert "mmlu_pro" in manifest["skipped_tasks"]
