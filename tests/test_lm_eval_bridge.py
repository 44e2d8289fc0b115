"""Any lm-eval task (issue 16, item 2): `--tasks lm_eval:<task>` runs the task as lm-eval defines it with the
harness's hf engine answering its requests, and gives the same per-sample results and the same scores as
`lm_eval.simple_evaluate` with lm-eval's own hf backend on the same model: a log-likelihood multiple-choice task
(few-shot, acc and acc_norm) and a generate_until task (few-shot, stop strings, a regex filter, exact_match), both
lm-eval YAML over local files (tests/data/lm_eval)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "lm_eval"
TASKS = {"hx_capitals_mc": ["acc", "acc_norm"], "hx_arith_gen": ["exact_match,first-number"]}


@pytest.fixture(scope="module")
def include_dir(tmp_path_factory) -> Path:
    """The task YAMLs with their data paths filled in (lm-eval reads data_files relative to the working dir)."""
    out = tmp_path_factory.mktemp("lm_eval_tasks")
    for f in DATA.glob("*.yaml.in"):
        (out / f.name.removesuffix(".in")).write_text(f.read_text().replace("@DATA@", str(DATA)))
    return out


@pytest.fixture(scope="module")
def lm_eval_own(random_chat_model, include_dir) -> dict:
    """lm-eval's own run: its hf backend on the random model."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    return lm_eval.simple_evaluate(
        model="hf", model_args={"pretrained": str(random_chat_model), "dtype": "float32"}, device="cpu",
        batch_size=1, tasks=list(TASKS), task_manager=TaskManager(include_path=str(include_dir),
                                                                   include_defaults=False),
        log_samples=True, bootstrap_iters=0)


@pytest.fixture(scope="module")
def harness_run(random_chat_model, include_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    res = subprocess.run(
        [sys.executable, "-m", "harness.cli", "eval", "--tasks", ",".join(f"lm_eval:{t}" for t in TASKS),
         "--set", f"student.model={random_chat_model}", "--set", "eval.engine.dtype=float32",
         "--output-dir", str(out), "--run-id", "lme"],
        capture_output=True, text=True, cwd=ROOT, timeout=900,
        env={**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_LM_EVAL_INCLUDE": str(include_dir)})
    assert res.returncode == 0, res.stderr[-4000:]
    return out / "lme"


@pytest.mark.parametrize("task", list(TASKS))
def test_scores_equal_lm_evals_own(task, lm_eval_own, harness_run):
    ours = json.loads((harness_run / "results.json").read_text())
    rows = {(r["model"], r["task"], r["metric"]): r for r in ours["rows"]}
    theirs = lm_eval_own["results"][task]
    for metric in TASKS[task]:
        key = metric if "," in metric else f"{metric},none"
        row = rows[("base", f"lm_eval:{task}", metric)]
        assert row["n"] == len(lm_eval_own["samples"][task])
        assert row["value"] == pytest.approx(theirs[key], abs=1e-9), (metric, row["value"], theirs[key])
    assert ours["primary_metrics"][f"lm_eval:{task}"] == TASKS[task][0]
    if task == "hx_capitals_mc":  # a random model still gets some right and some wrong: the equality is not 0 == 0
        assert 0 < theirs["acc,none"] < 1 or 0 < theirs["acc_norm,none"] < 1, theirs
    # same items, same per-sample outcome (and, for generation, the same text after lm-eval's filter)
    records = [json.loads(l) for l in (harness_run / "samples" / "base" / f"lm_eval:{task}.jsonl").read_text()
               .splitlines()]
    mine = {r["id"]: r for r in records}
    for s in lm_eval_own["samples"][task]:
        r = mine[f"{task}/{s['doc_id']}"]
        for metric in TASKS[task]:
            assert r["metrics"][metric] == pytest.approx(float(s[metric.split(",")[0]]), abs=1e-9)
        if task == "hx_arith_gen":
            assert r["responses"] == [x[0] for x in s["resps"]]
        else:
            assert [x[0] for x in r["loglikelihoods"]] == pytest.approx([x[0][0] for x in s["resps"]], abs=1e-4)


def test_fingerprint_follows_the_tasks_config(include_dir, tmp_path):
    from harness.tasks.registry import get_task

    task = get_task("lm_eval:hx_capitals_mc", include_path=str(include_dir))
    fp = task.fingerprint_parts(task.docs())["lm_eval_config"]
    changed = tmp_path / "inc"
    changed.mkdir()
    (changed / "hx_capitals_mc.yaml").write_text((include_dir / "hx_capitals_mc.yaml").read_text()
                                                 .replace("num_fewshot: 1", "num_fewshot: 0"))
    other = get_task("lm_eval:hx_capitals_mc", include_path=str(changed))
    assert other.fingerprint_parts(other.docs())["lm_eval_config"] != fp

