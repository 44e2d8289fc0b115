"""Bring your own benchmark (issue 16, item 3): a task defined by a YAML file (data file, field mapping, prompt
template, few-shot examples, a built-in grader) runs through `harness eval` and `harness compare`, is graded by the
named grader, and a misspelt key is one line, exit 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TASK = ROOT / "tests" / "data" / "file_task" / "capitals.yaml"


def harness(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)


def one_line(res: subprocess.CompletedProcess, *needles: str) -> str:
    assert res.returncode == 2, (res.returncode, res.stderr[-3000:])
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def test_docs_prompt_gold_and_grader():
    from harness.tasks.registry import get_task, register_file_task

    name = register_file_task(TASK)
    task = get_task(name, path=str(TASK))
    docs = task.docs()
    assert [d.id for d in docs] == ["fr", "jp", "ca", "au", "eg", "br"]
    assert [d.gold for d in docs] == ["B", "A", "C", "D", "A", "C"]  # letter, index and option text all map
    text = docs[0].prompt[-1]["content"]
    assert text.startswith("What is the capital of Italy?\nA. Paris\nB. Rome") and "The answer is (B).\n\n" in text
    assert text.endswith("What is the capital of France?\nA. Berlin\nB. Paris\nC. Rome\nD. Madrid\n"
                         "End with: The answer is (X).")
    scored = task.score_many(docs[:3], [["The answer is (B)."], ["I think (C)"], ["no idea"]])
    assert [s.score for s in scored] == [1.0, 0.0, 0.0]
    assert scored[2].details["extraction_failed"]
    fp = task.fingerprint_parts(docs)
    assert fp["task"] == "capitals" and fp["task_file"] and fp["data_file"]


@pytest.mark.parametrize("kind, extra, gold, response, ok", [
    ("exact", {}, "Paris", " Paris\n", True),
    ("exact", {}, "Paris", "paris", False),
    ("normalized", {}, "The Eiffel Tower", "eiffel tower!", True),
    ("regex", {"pattern": r"ANSWER:\s*(\w+)"}, "paris", "hmm ANSWER: Rome ... ANSWER: Paris", True),
    ("math", {}, "\\frac{1}{2}", "so the result is \\boxed{0.5}", True),
    ("code", {"tests_field": "test"}, "-", "```python\ndef f(x):\n    return x + 1\n```", True),
    ("code", {"tests_field": "test"}, "-", "def f(x):\n    return x", False),
])
def test_each_grader(tmp_path, kind, extra, gold, response, ok):
    from harness.tasks.registry import get_task, register_file_task

    (tmp_path / "d.jsonl").write_text(json.dumps({"question": "q", "answer": gold, "test": "assert f(1) == 2"}) + "\n")
    (tmp_path / f"{kind}.yaml").write_text(json.dumps({
        "name": f"g_{kind}_{len(extra)}_{ok}", "data": "d.jsonl", "prompt": "{question}",
        "grader": {"kind": kind, **extra}}))
    name = register_file_task(tmp_path / f"{kind}.yaml")
    task = get_task(name, path=str(tmp_path / f"{kind}.yaml"))
    assert task.score_many(task.docs(), [[response]])[0].score == float(ok)


def test_eval_and_smoke_compare_run_the_file_task(tmp_path, tiny_cache):
    res = harness("eval", "--preset", "smoke", "--tasks", str(TASK.relative_to(ROOT)) + ",synthetic_id",
                  "--limit", "4", "--output-dir", str(tmp_path), "--run-id", "ev")
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    row = next(r for r in results["rows"] if r["task"] == "capitals" and r["metric"] == "accuracy")
    assert row["n"] == 4 and 0.0 <= row["value"] <= 1.0
    # the run folder is reusable by a later process: `harness report` finds the task again through its file
    res = harness("report", str(tmp_path / "ev"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    # a compare, with the task brought in by tasks_dir: in a config (relative to the config's folder)
    (tmp_path / "mytasks").mkdir()
    for f in TASK.parent.iterdir():
        (tmp_path / "mytasks" / f.name).write_bytes(f.read_bytes())
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text((ROOT / "configs" / "tiny.yaml").read_text() + "\ntasks_dir: mytasks\n")
    res = harness("compare", "--config", str(cfg), "--preset", "smoke", "--methods", "sft", "--tasks", "capitals",
                  "--set", "pool.n=16", "--set", "train.per_device_batch_size=8", "--limit", "3",
                  "--output-dir", str(tmp_path), "--run-id", "cmp")
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert {(r["model"], r["n"]) for r in results["rows"] if r["task"] == "capitals" and r["metric"] == "accuracy"} \
        == {("base", 3), ("sft", 3)}


def test_misspelt_key_is_one_line(tmp_path):
    bad = ROOT / "tests" / "data" / "file_task_bad" / "misspelt.yaml"
    one_line(harness("eval", "--tasks", str(bad), "--dry-run", "--output-dir", str(tmp_path)),
             "choices_feild", "valid keys", "choices_field")
    nowhere = tmp_path / "nope.yaml"
    one_line(harness("eval", "--tasks", str(nowhere), "--dry-run"), "not found")
    (tmp_path / "dir.yaml").mkdir()
    one_line(harness("eval", "--tasks", str(tmp_path / "dir.yaml"), "--dry-run"), "is a folder")
    (tmp_path / "badfield.yaml").write_text(TASK.read_text().replace("{question}", "{questoin}")
                                            .replace("capitals.jsonl", str(TASK.parent / "capitals.jsonl")))
    one_line(harness("eval", "--tasks", str(tmp_path / "badfield.yaml"), "--dry-run"), "{questoin}", "fields")
