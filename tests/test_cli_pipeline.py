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


def test_compare_writes_manifest_samples_and_report(compare_run):
    manifest = json.loads((compare_run / "manifest.json").read_text())
    for key in ("versions", "git", "hardware", "seeds", "config", "models", "tasks", "eval_settings",
                "training_data"):
        assert manifest[key], key
    models = manifest["models"]
    assert manifest["versions"]["trl"] and models["cgd"]["adapter"].endswith("models/cgd/final")
    assert models["cgd"]["train"]["steps"] == models["sft"]["train"]["steps"] > 0
    # Identity covers weights, adapter, tokenizer and chat template; adapters change it.
    assert models["base"]["engine"]["parts"]["chat_template"] and models["cgd"]["engine"]["parts"]["adapter"]
    assert len({models[m]["identity"] for m in ("base", "sft", "cft", "cgd")}) == 4
    trunc = models["cgd"]["train"]["truncation"]
    assert trunc["examples"] > 0 and 0 <= trunc["target_tokens_lost"] <= trunc["target_tokens"]
    assert set(manifest["training_data"]) >= {"probe", "critique", "refine"}
    assert manifest["tasks"]["synthetic_id"]["generation"]["max_new_tokens"] > 0
    recs = [json.loads(x) for x in (compare_run / "samples" / "cgd" / "synthetic_id.jsonl").read_text().splitlines()]
    assert len(recs) == 6 and {"response", "score", "extracted", "finish_reason", "truncated"} <= set(recs[0])
    meta = json.loads((compare_run / "samples" / "cgd" / "synthetic_id.meta.json").read_text())
    assert meta["generation"]["parts"]["engine"] == models["cgd"]["identity"]
    results = json.loads((compare_run / "results.json").read_text())
    trunc_rows = {(r["model"], r["task"]) for r in results["rows"] if r["metric"] == "truncation_rate"}
    assert trunc_rows == {(m, t) for m in ("base", "sft", "cft", "cgd") for t in ("synthetic_id", "format_probe",
                                                                                   "humaneval")}
    html = (compare_run / "report.html").read_text()
    assert "synthetic_id" in html and "cgd" in html


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
    assert sft_eval["format_probe"]["reused"] is None and sft_eval["synthetic_id"]["reused"] == "samples"
    sft = manifest["models"]["sft"]
    assert sft["cache_misses"] == 0 and sft["cache_hits"] == 6  # only the missing pair ran, from cache
    assert (compare_run / "samples" / "sft" / "format_probe.jsonl").exists()
    stages = manifest["training_data"]
    assert all(stages[s]["reused"] == 48 and not stages[s].get("computed") for s in ("probe", "critique", "refine"))


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
    for name, n in (("math500", 500), ("gsm8k", 1319), ("aime25", 30), ("synthetic_id", 200)):
        cells = next(l for l in out.splitlines() if f" {name} " in l).replace("│", "|").split("|")
        assert [c.strip() for c in cells if c.strip()][3] == str(n)  # the rows column, not a digit in the name


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


# ---- fingerprints decide reuse (issue 6) ---------------------------------------------------------------------
def _responses(run: Path, model: str, task: str = "synthetic_id") -> list[str]:
    return [json.loads(x)["response"] for x in (run / "samples" / model / f"{task}.jsonl").read_text().splitlines()]


def _eval(out: Path, *args: str) -> None:
    res = runner.invoke(app, ["eval", "--preset", "smoke", "--tasks", "synthetic_id", "--limit", "6",
                              "--output-dir", str(out), "--run-id", "ev", *args])
    assert res.exit_code == 0, res.output
    return res.output


def test_second_model_under_same_name_is_evaluated_not_reused(compare_run, tmp_path):
    adapter = str(compare_run / "models" / "sft" / "final")
    _eval(tmp_path)  # base only
    base = _responses(tmp_path / "ev", "base")
    student = json.loads((tmp_path / "ev" / "manifest.json").read_text())["models"]["base"]["path"]
    _eval(tmp_path, "--model", student, "--name", "m")  # the student again, under the name m
    assert _responses(tmp_path / "ev", "m") == base
    out = _eval(tmp_path, "--adapter", adapter, "--name", "m")  # now an adapter under the same name
    same_name = _responses(tmp_path / "ev", "m")
    assert "different model or engine" in out
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    row = lambda m: next(r["value"] for r in results["rows"] if r["model"] == m and r["metric"] == "accuracy")
    m_accuracy = row("m")
    _eval(tmp_path, "--adapter", adapter, "--name", "fresh")
    assert same_name == _responses(tmp_path / "ev", "fresh") != base
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert row("fresh") == m_accuracy and "m" not in {r["model"] for r in results["rows"]}  # this run's models only


def test_changed_chat_template_gives_fresh_model_calls(compare_run, tmp_path):
    import shutil
    import uuid

    line = f"Answer with care ({uuid.uuid4().hex[:8]})."  # unique: no earlier session's cache can hold these calls
    student = Path(json.loads((compare_run / "manifest.json").read_text())["models"]["base"]["path"])
    copy = tmp_path / "student-copy"
    shutil.copytree(student, copy)
    cfg = json.loads((copy / "tokenizer_config.json").read_text())
    tpl_file = copy / "chat_template.jinja"
    if tpl_file.exists():
        tpl_file.write_text("{{ '" + line + "\n' }}" + tpl_file.read_text())
    else:
        cfg["chat_template"] = "{{ '" + line + "\n' }}" + cfg["chat_template"]
        (copy / "tokenizer_config.json").write_text(json.dumps(cfg))
    _eval(tmp_path, "--model", str(student), "--name", "orig")
    _eval(tmp_path, "--model", str(copy), "--name", "edited")
    manifest = json.loads((tmp_path / "ev" / "manifest.json").read_text())
    assert manifest["models"]["edited"]["cache_hits"] == 0
    assert manifest["models"]["edited"]["cache_misses"] == 6
    assert _responses(tmp_path / "ev", "edited") != _responses(tmp_path / "ev", "orig")


def test_changed_budget_regenerates_and_changed_grader_only_rescores(compare_run, tmp_path, monkeypatch):
    _eval(tmp_path)
    out = _eval(tmp_path, "--set", 'eval.max_new_tokens={"synthetic_id": 40}')
    assert "generation settings" in out
    manifest = json.loads((tmp_path / "ev" / "manifest.json").read_text())
    assert manifest["models"]["base"]["eval"]["synthetic_id"]["reused"] is None
    from harness.tasks.registry import get_task

    monkeypatch.setattr(type(get_task("synthetic_id")), "grader_version", "test-bumped")
    _eval(tmp_path, "--set", 'eval.max_new_tokens={"synthetic_id": 40}')
    manifest = json.loads((tmp_path / "ev" / "manifest.json").read_text())
    assert manifest["models"]["base"]["eval"]["synthetic_id"]["reused"].startswith("responses")
    assert manifest["models"]["base"]["cache_misses"] is None  # no engine was even loaded


def test_report_and_rescore_keep_comparisons(compare_run):
    before = json.loads((compare_run / "results.json").read_text())["comparisons"]
    assert any(c["model"] == "cgd" and c["baseline"] == "sft" for c in before)
    assert runner.invoke(app, ["report", str(compare_run)]).exit_code == 0
    assert json.loads((compare_run / "results.json").read_text())["comparisons"] == before


def test_old_schema_run_folder_is_a_one_line_error(compare_run, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(compare_run, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["schema_version"] = 1
    (old / "manifest.json").write_text(json.dumps(manifest))
    res = harness("report", str(old))
    assert res.returncode == 2, res.stderr
    lines = [l for l in res.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and "schema version 1" in lines[0] and "re-run the command that made the run" in lines[0]
    assert manifest["command"] in lines[0]  # the command to re-run, named


@pytest.mark.parametrize("args, needle", [
    (["--tasks", "gpqa_diamond", "--set", "eval.task_options.gpqa_diamond.num_fewshots=5"], "num_fewshots"),
    (["--tasks", "bbh", "--set", "eval.task_options.bbh.shots=1"], "shots"),
    (["--set", "eval.engine.dtype=fp8"], "eval.engine.dtype"),
    (["--set", "eval.engine.backend=tgi"], "unknown engine backend 'tgi'"),
    (["--set", "eval.engine.options.merge_adaptr=false"], "merge_adaptr"),
    (["--set", "teacher.kind=oracle", "--set", "pool.source=math_train", "--set", "pool.answer_style=gold"],
     "teacher.kind=oracle"),
    (["--set", "pool.validation_n=500"], "pool.validation_n"),
    (["--student", "/nonexistent/model"], "not found"),
])
def test_config_errors_are_caught_before_any_model_call(args, needle, tmp_path):
    res = harness("compare", "--dry-run", "--output-dir", str(tmp_path), *args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = [l for l in res.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in res.stderr
    assert not any(tmp_path.iterdir())
