"""Math answer grading: math-verify (primary) and a Qwen2.5-Math-style equivalence (second grader).

Primary verdict (exactly this call, nothing more):

    math_verify.verify(math_verify.parse(wrap_gold(gold)), math_verify.parse(response))

with math-verify's default extraction configs, where ``wrap_gold(gold) = "\\boxed{" + gold + "}"``. Wrapping the
gold in ``\\boxed{}`` tells math-verify's extractor that the whole string is the answer (a bare gold such as
``x_0 \\cos(\\omega t) + $ $ \\dot{x}_0 ...`` or ``1,3,5`` would otherwise be cut at its ``$`` or parsed piecewise);
on all 500 MATH-500 golds "\\boxed{gold}" and "$gold$" agree. The response is parsed whole, with math-verify's own
extraction (last ``\\boxed{}`` first, then "final answer is", then the last LaTeX/plain expression): the verdict does
not depend on our extractor.

Second grader: ``qwen_math_equal(extracted, gold)`` in the style of the Qwen2.5-Math evaluation harness (the paper's
grader, tasks/scorers/qwen_math.py): the answer is first taken with ``harness.tasks.scorers.extract.extract_answer`` (last
``\\boxed{}``, else "the answer is", else the last number), then compared after normalisation, numerically, element
by element and symbolically.

Both graders run in worker processes (``MathGradingPool``, over tasks/scorers/worker_pool.py): math-verify's
timeouts are SIGALRM based and only work in a main thread, and sympy can spin in C code that no signal interrupts;
the parent kills a worker whose job exceeds the wall-clock limit. A primary job that is killed counts as incorrect
with ``timed_out=True``.
"""
from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from harness.tasks.scorers.extract import extract_answer
from harness.tasks.scorers.qwen_math import qwen_math_equal
from harness.tasks.scorers.worker_pool import JobResult, WorkerPool, default_workers

DEFAULT_TIMEOUT_S = 5.0


@dataclass
class MathGrade:
    """The grade of one (response, gold) pair."""

    correct: bool  # primary verdict: math-verify
    extracted: str | None  # our extraction (Qwen order), what the second grader compared
    extraction_failed: bool  # extract_answer found nothing
    timed_out: bool  # the primary (math-verify) job was killed at the wall-clock limit
    second_grader_correct: bool  # qwen_math_equal(extracted, gold)
    grader_disagreement: bool  # correct != second_grader_correct
    second_grader_timed_out: bool = False
    error: str | None = None  # a grader raised or its worker died (the verdict is then False)

    def to_dict(self) -> dict:
        return asdict(self)


def wrap_gold(gold: str) -> str:
    """How a gold answer is given to ``math_verify.parse`` (see the module docstring)."""
    return "\\boxed{" + str(gold).strip() + "}"


def math_verify_verdict(response: str, gold: str) -> bool:
    """The primary verdict, in-process. Call it only from a main thread (math-verify's timeouts use SIGALRM);
    ``grade_math_batch`` runs it in worker processes with a hard kill."""
    from math_verify import parse, verify

    return bool(verify(parse(wrap_gold(gold)), parse(response)))


def _warm_up() -> None:
    # Import and exercise both graders once so the first timed job does not pay for imports and antlr set-up.
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # timeouts are reported through MathGrade
    math_verify_verdict("\\boxed{\\frac{1}{2}}", "0.5")
    qwen_math_equal("\\frac{1}{2}", "x^2")


def _run_job(kind: str, a: str, b: str, skip_unit: bool) -> bool:
    """kind 'mv' = math_verify_verdict(a=response, b=gold), 'qwen' = qwen_math_equal(a=extracted, b=gold)."""
    if kind == "mv":
        return math_verify_verdict(a, b)
    return qwen_math_equal(a, b, skip_unit=skip_unit)


class MathGradingPool(WorkerPool):
    """Worker processes that grade (response, gold) pairs with a hard wall-clock limit per grader call.

    Use as a context manager to grade several batches without restarting workers::

        with MathGradingPool(workers=2, timeout=5.0) as pool:
            grades = pool.grade(pairs)
    """

    def __init__(self, workers: int | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                 start_timeout: float = 120.0) -> None:
        # forkserver preloads the graders, so replacing a killed worker is cheap.
        super().__init__(_run_job, _warm_up, preload=["harness.tasks.scorers.math", "math_verify", "sympy",
                                                     "latex2sympy2_extended"],
                         what="math grading", start_hint="check that math-verify imports (python -c 'import "
                         "math_verify')", workers=workers, timeout=timeout, start_timeout=start_timeout)

    def grade(self, pairs: Sequence[tuple[str, str]], progress: bool = False,
              skip_unit: Sequence[bool] | bool = False) -> list[MathGrade]:
        """Grade (response_text, gold_answer) pairs with both graders."""
        skips = [skip_unit] * len(pairs) if isinstance(skip_unit, bool) else list(skip_unit)
        extracted = [extract_answer(resp or "")[0] for resp, _ in pairs]
        jobs: list[tuple[str, str, str, bool]] = []
        owner: list[int] = []
        for i, ((resp, gold), ext) in enumerate(zip(pairs, extracted)):
            jobs.append(("mv", resp or "", str(gold), skips[i]))
            owner.append(i)
            if ext is not None:
                jobs.append(("qwen", ext, str(gold), skips[i]))
                owner.append(i)
        left = [0] * len(pairs)
        for i in owner:
            left[i] += 1

        def run(advance: Any) -> list[JobResult]:
            def on_done(job_index: int) -> None:
                item = owner[job_index]
                left[item] -= 1
                if left[item] == 0 and advance is not None:
                    advance(1)

            return self.run_jobs(jobs, on_done)

        with ExitStack() as stack:
            advance = None
            if progress:
                from rich.errors import LiveError

                from harness.common.progress import progress_bar

                try:
                    advance = stack.enter_context(progress_bar("grading math", len(pairs)))
                except LiveError:  # a caller's progress display is already live: grade without a bar
                    advance = None
            job_results = run(advance)

        mv: list[JobResult | None] = [None] * len(pairs)
        qw: list[JobResult | None] = [None] * len(pairs)
        for (kind, *_), item, res in zip(jobs, owner, job_results):
            (mv if kind == "mv" else qw)[item] = res
        grades = []
        for i, ext in enumerate(extracted):
            primary = mv[i]
            second = qw[i] or JobResult(False)
            assert primary is not None
            errors = [e for e in (primary.error, second.error) if e]
            grades.append(MathGrade(
                correct=primary.ok, extracted=ext, extraction_failed=ext is None, timed_out=primary.timed_out,
                second_grader_correct=second.ok, grader_disagreement=primary.ok != second.ok,
                second_grader_timed_out=second.timed_out, error="; ".join(errors) or None,
            ))
        return grades


def grade_math_batch(pairs: Sequence[tuple[str, str]], timeout: float = DEFAULT_TIMEOUT_S,
                     workers: int | None = None, progress: bool = False,
                     skip_unit: Sequence[bool] | bool = False) -> list[MathGrade]:
    """Grade (response_text, gold_answer) pairs in worker processes, ``timeout`` seconds (wall clock) per grader
    call. ``skip_unit``: keep unit words when normalising for the second grader (Qwen does so for Minerva)."""
    if not pairs:
        return []
    n = min(workers or default_workers(), len(pairs))
    with MathGradingPool(workers=n, timeout=timeout) as pool:
        return pool.grade(pairs, progress=progress, skip_unit=skip_unit)


def grade_math_one(response: str, gold: str, timeout: float = DEFAULT_TIMEOUT_S) -> MathGrade:
    """Grade one pair (starts a one-worker pool: use ``grade_math_batch`` for many)."""
    return grade_math_batch([(response, gold)], timeout=timeout, workers=1)[0]
