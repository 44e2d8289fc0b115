"""The HTML report (reports.html) and plots, rendered from a synthetic but schema-valid run folder."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from reports import plots
from reports.html import build_context, render_report
from reports.stats import build_results, load_results, write_results

XSS = "<script>alert(1)</script>"
SECRET_QUESTION = "Which noble gas forms the compound XeSECRETF4 under pressure?"
PRIMARY = {"math500": "accuracy", "gpqa_diamond": "accuracy", "amc23": "accuracy"}
# (model, task) -> probability of a right answer; amc23 has no sft results (a partial run).
PLAN = {("base", "math500"): 0.3, ("sft", "math500"): 0.35, ("cgd", "math500"): 0.6,
        ("base", "gpqa_diamond"): 0.3, ("sft", "gpqa_diamond"): 0.3, ("cgd", "gpqa_diamond"): 0.35,
        ("base", "amc23"): 0.2, ("cgd", "amc23"): 0.4}
N = {"math500": 40, "gpqa_diamond": 30, "amc23": 20}


def _records(model: str, task: str, p: float, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(N[task]):
        right = bool(rng.random() < p)
        response = f"Step 1 for item {i}. The answer is \\boxed{{{i if right else -1}}}."
        if task == "math500" and i == 0:
            response = f"Sure! {XSS} so \\boxed{{0}}"
        if task == "gpqa_diamond":
            response = f"The question asks: {SECRET_QUESTION} The answer is (B)"
        rec = {"id": f"{task}/{i}", "response": response, "responses": [response], "finish_reason": "stop",
               "prompt_tokens": 50, "completion_tokens": 20, "seconds": 0.1, "score": float(right),
               "metrics": {"accuracy": float(right)}, "extracted": str(i) if right else "-1",
               "details": {"grader": "math_verify"}}
        if task != "gpqa_diamond":  # sensitive tasks keep no prompt
            rec["prompt"] = [{"role": "user", "content": f"Problem {i}: compute the value of item {i}."}]
        else:
            rec["details"] = {"question_text_should_never_be_here": SECRET_QUESTION}
        out.append(rec)
    return out


def make_run(root: Path, with_manifest: bool = True, mismatched_settings: bool = False) -> Path:
    run = root / "run-test"
    per = {}
    for seed, ((model, task), p) in enumerate(PLAN.items()):
        recs = _records(model, task, p, seed)
        path = run / "samples" / model / f"{task}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in recs))
        per[(model, task)] = {"scored": recs, "aggregate": {"accuracy": float(np.mean([r["score"] for r in recs]))}}
    write_results(run / "results.json", build_results("run-test", per, PRIMARY, n_resamples=200))
    if with_manifest:
        gen = {"max_new_tokens": 1024, "temperature": 0.0}
        manifest = {
            "run_id": "run-test", "created": "2026-01-01T00:00:00Z",
            "command": "harness compare --methods sft,cgd --config configs/tiny.yaml",
            "config": {"student": {"model": "tiny-student"}, "teacher": "oracle", "seed": 0, "api_key": "sk-SECRET123"},
            "versions": {"torch": "2.13", "transformers": "5.0"}, "git": {"commit": "abc123", "dirty": False},
            "hardware": {"cpu": "test"}, "seeds": {"global": 0}, "data_hashes": {"math500": "sha256:deadbeef"},
            "models": {"base": {"identity": "tiny-student", "path": "/m"},
                       "sft": {"identity": "tiny-student+sft", "adapter": "adapters/sft",
                               "train_metrics": {"train_loss": 1.2345, "steps": 10}},
                       "cgd": {"identity": "tiny-student+cgd", "adapter": "adapters/cgd",
                               "train_metrics": {"train_loss": 0.9876, "steps": 10}}},
            "tasks": {t: {"n": N[t], "generation": dict(gen)} for t in N},
        }
        if mismatched_settings:
            manifest["tasks"]["math500"]["generation"] = {
                "base": gen, "sft": gen, "cgd": {**gen, "max_new_tokens": 256}}
        (run / "manifest.json").write_text(json.dumps(manifest))
    return run


@pytest.fixture
def run_dir(tmp_path):
    return make_run(tmp_path)


def test_report_renders_values_escapes_and_hides_sensitive_text(run_dir):
    out = render_report(run_dir)
    assert out == run_dir / "report.html"
    html = out.read_text()
    results = load_results(run_dir / "results.json")
    # Main table values (percent, one decimal) for every (model, task) present.
    for r in results["rows"]:
        assert f"{100 * r['value']:.1f}" in html
    cgd = next(r for r in results["rows"] if (r["model"], r["task"]) == ("cgd", "math500"))
    assert f"[{100 * cgd['ci_low']:.1f}, {100 * cgd['ci_high']:.1f}]" in html
    # Untrusted model output is escaped; no script element anywhere.
    assert XSS not in html and "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # Sensitive task: ids shown, never the question text (not even quoted in a response or in details).
    assert "gpqa_diamond/0" in html
    assert "XeSECRETF4" not in html
    # Secrets in the config are redacted.
    assert "sk-SECRET123" not in html
    # Holm correction is applied and said so; the paper section sits beside ours.
    assert "Holm" in html and "Beside the paper" in html
    assert "37.5" in html and "mean of cells 32.2" in html
    assert "different student" in html
    # Training summary and manifest.
    assert "train_loss" in html and "0.9876" in html and "abc123" in html


def test_report_is_self_contained(run_dir):
    html = render_report(run_dir).read_text()
    # No external resources: every src/href is a data: URI or an in-page anchor; no remote CSS or fonts.
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", html, flags=re.I)
    assert refs, "expected embedded plots and in-page links"
    assert all(r.startswith(("data:image/png;base64,", "#")) for r in refs), refs
    assert not re.search(r"url\(\s*['\"]?\s*(https?:)?//", html, flags=re.I)
    assert "@import" not in html and "<link" not in html.lower()
    assert html.count("data:image/png;base64,") == 2
    assert (run_dir / "plots" / "primary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run_dir / "plots" / "deltas.png").is_file()


def test_best_value_per_column_is_highlighted(run_dir):
    ctx = build_context(run_dir)
    tasks = ctx["tasks"]
    assert tasks == ["math500", "gpqa_diamond", "amc23"]
    col = tasks.index("math500")
    best_models = [row["model"] for row in ctx["main_table"] if row["cells"][col] and row["cells"][col]["best"]]
    results = load_results(run_dir / "results.json")
    vals = {r["model"]: r["value"] for r in results["rows"] if r["task"] == "math500"}
    assert best_models == [m for m, v in vals.items() if v == max(vals.values())]


def test_partial_run_and_missing_manifest(tmp_path):
    run = make_run(tmp_path, with_manifest=False)
    # A model's samples folder vanished: the report still renders from results.json.
    for f in (run / "samples" / "sft").iterdir():
        f.unlink()
    html = render_report(run).read_text()
    assert "run-test" in html
    ctx = build_context(run)
    amc = ctx["tasks"].index("amc23")
    sft_row = next(r for r in ctx["main_table"] if r["model"] == "sft")
    assert sft_row["cells"][amc] is None  # sft never ran amc23
    assert all(e["model"] != "sft" for s in ctx["samples"] for it in s["examples"] for e in it["models"])


def test_settings_mismatch_warning(tmp_path):
    run = make_run(tmp_path, mismatched_settings=True)
    html = render_report(run).read_text()
    assert "Settings differ between models" in html
    assert "math500: models were evaluated with different generation settings" in html
    assert "Settings differ" not in render_report(make_run(tmp_path / "ok")).read_text()


def test_report_requires_results(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no results file"):
        render_report(tmp_path / "empty")
    with pytest.raises(ValueError, match="no run folder"):
        render_report(tmp_path / "absent")


def test_plots_return_png_or_none(run_dir):
    results = load_results(run_dir / "results.json")
    assert plots.primary_metric_chart(results)[:4] == b"\x89PNG"
    assert plots.deltas_chart(results)[:4] == b"\x89PNG"
    only_base = {**results, "rows": [r for r in results["rows"] if r["model"] == "base"], "comparisons": []}
    assert plots.deltas_chart(only_base) is None
    assert plots.primary_metric_chart({**results, "rows": []}) is None


def test_registered_sensitive_task_hides_a_stray_prompt(tmp_path):
    pytest.importorskip("tasks.gpqa")
    run = make_run(tmp_path)
    path = run / "samples" / "base" / "gpqa_diamond.jsonl"
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    for r in recs:
        r["prompt"] = [{"role": "user", "content": SECRET_QUESTION}]  # kept by mistake
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    for model in ("sft", "cgd"):
        (run / "samples" / model / "gpqa_diamond.jsonl").write_text(path.read_text())
    html = render_report(run).read_text()
    assert "gpqa_diamond/0" in html and "XeSECRETF4" not in html


def test_config_redaction_hides_secrets_not_budgets():
    from reports.html import redact

    out = redact({"eval": {"max_new_tokens": {"*": 64}}, "teacher": {"options": {"api_key": "sk-123", "hf_token": "t"}}})
    assert out["eval"]["max_new_tokens"] == {"*": 64}
    assert out["teacher"]["options"] == {"api_key": "***", "hf_token": "***"}
