"""The HTML report (harness.reports.html) and plots, rendered from a synthetic but schema-valid run folder."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from harness.common.artifacts import (
    CheckpointSelection, GenerationSettings, Hardware, Manifest, ModelRecord, SchemaMismatch, Seeds, TaskRecord,
    TrainRecord, TruncationCounts,
)
from harness.reports import plots
from harness.reports.html import build_context, render_report
from harness.reports.stats import ModelOrder, Resampling, Stamp, TaskScores, build_results, load_results, write_results
from harness.tasks.base import Scored

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


def train_record(**fields) -> TrainRecord:
    """A trained model's record as the train stage writes it (a LoRA run of 10 steps), with ``fields`` over it."""
    base = dict(fingerprint="fp", reused=False, examples=200,
                truncation=TruncationCounts(examples=200, examples_truncated=0, examples_dropped=0,
                                            target_tokens=10_000, target_tokens_lost=0),
                selection=CheckpointSelection(selected="last checkpoint (as the paper)"), base_model="tiny-student",
                adapter=True, steps=10, max_steps=10, epochs=1.0, examples_trained=200, tokens_seen=20_000,
                tokens_per_epoch=20_000, completion_tokens_per_epoch=10_000, train_loss=1.0,
                seconds=3.0, trainable_params=100, total_params=1000,
                device="cpu", bf16=False, config={"learning_rate": 0.001}, versions={"torch": "2.13"})
    return TrainRecord(**{**base, **fields})


def make_manifest(*, gen: dict | None = None, engines: dict | None = None, train: dict | None = None,
                  partial: dict | None = None, config: dict | None = None) -> Manifest:
    """A small valid manifest of the test run (base, sft, cgd on the three tasks). ``train``: per model, the
    fields of its TrainRecord that differ from ``train_record``'s."""
    gen = gen or {"max_new_tokens": 1024, "temperature": 0.0, "top_p": 1.0, "n": 1, "seed": 0, "stop": []}
    engine = {"backend": "hf", "device": "cpu", "dtype": "float32", "batch_size": 8,
              "parts": {"weights": "w", "chat_template": "ct1"}}
    engines = engines or {}
    train = train or {}
    models = {}
    for m in ("base", "sft", "cgd"):
        models[m] = ModelRecord(
            path="/m", adapter=None if m == "base" else f"models/{m}/final",
            identity="tiny-student" if m == "base" else f"tiny-student+{m}", method=None if m == "base" else m,
            engine={**engine, "identity": f"id-{m}", "adapter": None if m == "base" else f"a-{m}",
                    **engines.get(m, {})},
            train=train_record(**train.get(m, {"train_loss": 1.2345 if m == "sft" else 0.9876, "steps": 10}))
            if m != "base" else None,
            eval={t: {"seconds": 0.5, "fingerprint": f"fp-{m}-{t}", "scoring": f"sc-{m}-{t}"} for t in N})
    tasks = {t: TaskRecord(n=N[t], output_type="generate", primary_metric="accuracy", fingerprint=f"tf-{t}",
                           generation=GenerationSettings(**gen), sensitive=t == "gpqa_diamond",
                           partial=t in (partial or {}), full_n=(partial or {}).get(t))
             for t in N}
    return Manifest(
        run_id="run-test", created="2026-01-01T00:00:00Z",
        command="harness compare --methods sft,cgd --config configs/tiny.yaml",
        config=config or {"student": {"model": "tiny-student"}, "teacher": "oracle", "seed": 0,
                          "api_key": "sk-SECRET123"},
        methods=["sft", "cgd"], model_order=["base", "sft", "cgd"], models=models, tasks=tasks,
        eval_settings={"backend": "hf", "device": "cpu", "dtype": "float32", "batch_size": 8},
        versions={"torch": "2.13", "transformers": "5.0"}, git={"commit": "abc123", "dirty": False},
        hardware=Hardware(platform="test", machine="x86_64"), seeds=Seeds(run=0, pool=0, train=0))


def make_run(root: Path, with_manifest: bool = True, manifest: Manifest | None = None,
             truncated: dict | None = None, partial: dict | None = None, extra_model: str | None = None) -> Path:
    """A run folder: samples, results.json (through build_results) and manifest.json (through the Manifest model).
    ``truncated`` = {(model, task): per-sample fractions}; ``partial`` = {task: full_n}; ``extra_model``: a model
    with results rows but no sample folder (its name need not be a valid folder name)."""
    run = root / "run-test"
    per = {}
    for seed, ((model, task), p) in enumerate(PLAN.items()):
        recs = _records(model, task, p, seed)
        path = run / "samples" / model / f"{task}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in recs))
        per[(model, task)] = _scores(recs, (truncated or {}).get((model, task)))
    if extra_model is not None:
        per[(extra_model, "math500")] = _scores(_records("cgd", "math500", 0.5, 99))
    write_results(run / "results.json", build_results("run-test", per, PRIMARY,
                                                      ModelOrder(configured=["base", "sft", "cgd"]),
                                                      Stamp(partial=partial or {}), Resampling(n_resamples=200)))
    if with_manifest:
        (run / "manifest.json").write_text((manifest or make_manifest(partial=partial)).model_dump_json())
    return run


def _scores(records: list[dict], truncated: list[float] | None = None) -> TaskScores:
    scored = [Scored(r["id"], r["score"], r["metrics"], r["extracted"], r["details"]) for r in records]
    return TaskScores(scored=scored, aggregate={"accuracy": float(np.mean([s.score for s in scored]))},
                      truncated=truncated)


@pytest.fixture
def run_dir(tmp_path):
    return make_run(tmp_path)


def test_report_renders_values_escapes_and_hides_sensitive_text(tmp_path):
    # A real script in a model response and in a model name (a model with rows but no sample folder).
    run_dir = make_run(tmp_path, extra_model=XSS)
    out = render_report(run_dir)
    assert out == run_dir / "report.html"
    html = out.read_text()
    results = load_results(run_dir / "results.json")
    assert XSS in results.model_order  # the payload really is in the run
    assert XSS in (run_dir / "samples" / "cgd" / "math500.jsonl").read_text()
    # Main table values (percent, one decimal) for every (model, task) present.
    for r in results.rows:
        assert f"{100 * r.value:.1f}" in html
    cgd = next(r for r in results.rows if (r.model, r.task) == ("cgd", "math500"))
    assert f"[{100 * cgd.ci_low:.1f}, {100 * cgd.ci_high:.1f}]" in html
    # Untrusted text is escaped wherever it appears; the only script elements are the explorer's own two (its
    # JSON data and its code), and the payload appears in the data with <, > and & written as \u escapes.
    assert XSS not in html and "<script>alert" not in html
    assert re.findall(r"<script[^>]*>", html, flags=re.I) == ['<script type="application/json" id="explorer-data">',
                                                               "<script>"]
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert html.count(escaped) >= 3  # the model name in several tables
    assert f'<td class="l">{escaped}</td>' in html  # the model's row in the main table
    assert "Sure! \\u003cscript\\u003ealert(1)\\u003c/script\\u003e so" in html  # the response, in the explorer
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
    assert html.count("data:image/png;base64,") == 3  # primary, deltas, response lengths
    assert (run_dir / "plots" / "primary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run_dir / "plots" / "deltas.png").is_file()


def test_best_value_per_column_is_highlighted(run_dir):
    ctx = build_context(run_dir)
    tasks = ctx["tasks"]
    assert tasks == ["math500", "gpqa_diamond", "amc23"]
    assert ctx["models"] == ["base", "sft", "cgd"]  # run order, not alphabetical
    col = tasks.index("math500")
    best_models = [row["model"] for row in ctx["main_table"] if row["cells"][col] and row["cells"][col]["best"]]
    results = load_results(run_dir / "results.json")
    vals = {r.model: r.value for r in results.rows if r.task == "math500"}
    assert best_models == [m for m, v in vals.items() if v == max(vals.values())]
    # The pairwise table follows the run order: cgd - sft.
    assert [(p["model"], p["baseline"]) for p in ctx["pairs"]] == [("cgd", "sft")]


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
    assert "sft" not in ctx["explorer"]["models"]  # no samples, no column in the explorer


def test_settings_mismatch_warning_reads_the_engine(tmp_path):
    # Two models evaluated with different engine dtypes (manifest.models[m].engine): the report says so.
    man = make_manifest(engines={"cgd": {"dtype": "bfloat16"}})
    html = render_report(make_run(tmp_path, manifest=man)).read_text()
    assert "Settings differ between models" in html
    assert "models were evaluated with different engine dtype: base: float32; sft: float32; cgd: bfloat16" in html
    assert "cgd was evaluated with engine settings other than the run&#39;s: dtype=bfloat16" in html
    # Identity, adapter and weights differ between base and trained models by design: no warning.
    ok = render_report(make_run(tmp_path / "ok")).read_text()
    assert "Settings differ" not in ok
    # The run asked for dtype "auto" and the engine resolved it to the same dtype for every model: no warning.
    auto = make_manifest()
    auto.eval_settings.dtype = "auto"
    assert "Settings differ" not in render_report(make_run(tmp_path / "auto", manifest=auto)).read_text()
    # Per-model generation parameters recorded in models[m].eval[task]: a different budget is named.
    man = make_manifest()
    man.models["cgd"].eval["math500"].generation = GenerationSettings(max_new_tokens=256, temperature=0.0,
                                                                      top_p=1.0, n=1, seed=0, stop=[])
    html = render_report(make_run(tmp_path / "gen", manifest=man)).read_text()
    assert "math500: models were evaluated with different generation settings" in html


def test_truncation_column_and_warning(tmp_path):
    n = N["math500"]
    truncated = {("base", "math500"): [0.0] * n, ("sft", "math500"): [0.0] * (n - 1) + [1.0],
                 ("cgd", "math500"): [0.0] * (n - 4) + [1.0] * 4}  # 0%, 2.5%, 10%
    run = make_run(tmp_path, truncated=truncated)
    ctx = build_context(run)
    assert ctx["truncation_tasks"] == ["math500"]
    cells = {row["model"]: row["cells"][0] for row in ctx["truncation_table"]}
    assert cells["cgd"]["value"] == "10.0" and cells["cgd"]["high"] and not cells["sft"]["high"]
    html = render_report(run).read_text()
    assert "Truncation at the token budget" in html and "trunc 10.0%" in html
    warning = ("math500: cgd 10.0% of completions stopped at the token budget (max_new_tokens=1024), over 5%")
    assert warning in html
    assert "sft 2.5% of completions" not in html  # under the threshold
    # Not a quality metric: no comparison rows for it anywhere.
    assert not any(c.metric == "truncation_rate" for c in load_results(run / "results.json").comparisons)


def test_training_truncation_warning(tmp_path):
    train = {"sft": {"train_loss": 1.0, "truncation": {"examples": 200, "examples_truncated": 3, "examples_dropped": 0,
                                                        "target_tokens": 10_000, "target_tokens_lost": 50}},
             "cgd": {"train_loss": 0.9, "truncation": {"examples": 200, "examples_truncated": 40, "examples_dropped": 0,
                                                        "target_tokens": 10_000, "target_tokens_lost": 800}}}
    html = render_report(make_run(tmp_path, manifest=make_manifest(train=train))).read_text()
    assert "40 of 200 examples truncated; 800 of 10,000 target tokens lost (8.00%)" in html
    assert "3 of 200 examples truncated; 50 of 10,000 target tokens lost (0.50%)" in html
    assert "cgd lost 8.0% of its training target tokens to truncation" in html
    assert "sft lost" not in html  # 0.5%: under the 1% threshold


def test_partial_task_is_marked_and_not_set_unmarked_beside_the_paper(tmp_path):
    # amc23 ran on 20 of its 40 problems: marked wherever it is named; the paper's AMC23 column is flagged.
    run = make_run(tmp_path, partial={"amc23": 40})
    results = load_results(run / "results.json")
    assert all(r.partial and r.full_n == 40 for r in results.rows if r.task == "amc23")
    ctx = build_context(run)
    assert ctx["task_labels"]["amc23"] == "amc23 (partial: 20 of 40)"
    html = render_report(run).read_text()
    assert html.count("amc23 (partial: 20 of 40)") >= 5  # main, deltas, pairs, metrics, settings, notes
    assert "amc23" not in re.sub(r"amc23 \(partial: 20 of 40\)|amc23/\d+|tf-amc23", "", html.split('id="paper"')[0])
    t1 = next(t for t in ctx["paper_tables"] if t["id"] == "T1")
    col = t1["columns"].index("AMC23")
    assert t1["headers"][col]["partial"] == "amc23 (partial: 20 of 40)"
    paper_cells = [row["cells"][col] for row in t1["rows"] if row["kind"] == "paper"]
    assert paper_cells and all(c["partial"] for c in paper_cells)  # no paper AMC23 number stands unmarked
    ours = [row["ours"][col] for row in t1["rows"] if row["ours"]]
    assert ours and all(c["partial"] for c in ours if c["value"])
    section = html.split('id="paper"')[1].split('id="training"')[0]
    assert "37.5" in section  # cgd's AMC23 in T1, shown ...
    cell = re.search(r"<td[^>]*>37.5(.*?)</td>", section).group(0)  # in our column group
    assert re.match(r'<td class="[^"]*\bflag\b', cell) and "not comparable: partial data" in cell  # ... with the note
    # A column of a task that ran in full carries no such note.
    math_cells = [row["cells"][t1["columns"].index("MATH500")] for row in t1["rows"]]
    assert not any(c["partial"] for c in math_cells)
    # Without the partial stamp nothing is marked.
    assert "partial" not in build_context(make_run(tmp_path / "full"))["task_labels"]["amc23"]


def test_report_requires_results(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no results file"):
        render_report(tmp_path / "empty")
    # A results.json of the first schema: a one-line SchemaMismatch naming the fix.
    (tmp_path / "empty" / "results.json").write_text(json.dumps(
        {"schema_version": 1, "run_id": "r", "primary_metrics": {}, "rows": [], "comparisons": []}))
    with pytest.raises(SchemaMismatch, match="schema version 1.*re-run the command that made the run"):
        render_report(tmp_path / "empty")
    with pytest.raises(ValueError, match="no run folder"):
        render_report(tmp_path / "absent")


def test_plots_return_png_or_none(run_dir):
    results = load_results(run_dir / "results.json")
    assert plots.primary_metric_chart(results)[:4] == b"\x89PNG"
    assert plots.deltas_chart(results)[:4] == b"\x89PNG"
    only_base = results.model_copy(update={"rows": [r for r in results.rows if r.model == "base"],
                                           "comparisons": []})
    assert plots.deltas_chart(only_base) is None
    assert plots.primary_metric_chart(results.model_copy(update={"rows": []})) is None


def test_registered_sensitive_task_hides_a_stray_prompt(tmp_path):
    pytest.importorskip("harness.tasks.gpqa")
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
    from harness.reports.html import redact

    out = redact({"eval": {"max_new_tokens": {"*": 64}}, "teacher": {"options": {"api_key": "sk-123", "hf_token": "t"}}})
    assert out["eval"]["max_new_tokens"] == {"*": 64}
    assert out["teacher"]["options"] == {"api_key": "***", "hf_token": "***"}


def test_pass_at_k_chart_only_where_sampled():
    from harness.common.artifacts import ResultRow, Results
    from harness.reports.sections.diagnostics import pass_at_k_chart

    rows = [ResultRow(model=m, task="synthetic_ood", metric=f"pass@{k}", value=v, n=10)
            for m, vals in {"base": (0.1, 0.2, 0.3), "sft": (0.2, 0.3, 0.5)}.items() for k, v in zip((1, 2, 4), vals)]
    sampled = Results(run_id="x", primary_metrics={"synthetic_ood": "accuracy"}, rows=rows)
    assert pass_at_k_chart(sampled, {}, {})[:8] == b"\x89PNG\r\n\x1a\n"
    greedy = Results(run_id="x", primary_metrics={"synthetic_ood": "accuracy"},
                     rows=[r for r in rows if r.metric == "pass@1"])
    assert pass_at_k_chart(greedy, {}, {}) is None
