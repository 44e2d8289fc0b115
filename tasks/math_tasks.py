"""The paper's math benchmarks: MATH-500, Minerva-Math, GSM8K, OlympiadBench, AMC23, AIME24, AIME25, TheoremQA.

Protocol (Qwen2.5-Math evaluation lineage, as in the paper): zero-shot, system prompt asking for step-by-step
reasoning and a final ``\\boxed{}`` answer (``harness.tasks.prompts.math_messages``), greedy decoding. The paper allows
8192 (LLaMA) or 16384 (Qwen) new tokens; our default is 4096 per task, changed with the ``max_new_tokens`` task
option (or the run config's ``eval.max_new_tokens``).

Scoring (``harness.tasks.scorers.math``): ``accuracy`` (primary) = math-verify's verdict on the whole response against the
gold; ``accuracy_qwen`` = the Qwen2.5-Math-style equivalence of our extracted answer (last ``\\boxed{}``, else
"the answer is", else the last number) with the gold. Both run in worker processes with a hard wall-clock limit
per item. Details per sample: extracted, extraction_failed, timed_out, grader_disagreement.

Gold answers, per benchmark (the Qwen harness's ``parse_ground_truth`` choices unless noted):
- math500: ``answer``; minerva_math: last ``\\boxed{}`` of ``solution`` (units kept for the second grader, as Qwen
  does); gsm8k: the text after ``####`` with thousands separators removed (``1,600`` -> ``1600``, so that
  math-verify does not read it as a set); olympiadbench: ``final_answer[0]`` with every ``$`` removed (multi-answer
  golds such as ``$69$,$84$`` become ``69,84``); amc23: the float ``answer`` written as an integer when integral;
  aime24/aime25: ``answer``.
- theoremqa: answers are strings of four kinds. Numbers (593) are graded like the other benchmarks; scientific
  notation (``4e-05``) is rewritten ``4\\times10^{-5}`` because math-verify would read ``e`` as Euler's number.
  Lists (73, e.g. ``[0, 5]``) go to both graders as written (math-verify reads a two-element bracket pair as a
  closed interval, the Qwen grader compares element-wise; disagreements are reported). Truth values (116) and
  option letters (18, ``(a)``..``(e)``) are not mathematical expressions, so neither grader can compare them; they
  are graded by one rule for both metrics: the extracted answer, with ``\\text{}`` and punctuation removed, must
  name the same truth value (true/yes/correct, false/no/incorrect) or the same option letter.

Ids: the dataset's own id where it has one (math500 ``unique_id``, minerva ``idx``, olympiadbench/amc23/aime24
``id``), else ``<task>/<0-based row index in file order>`` (gsm8k, aime25, theoremqa). Rows loaded from a hub
fallback may come in another order, so row-index ids are only stable for one source (recorded in ``meta``).
"""
from __future__ import annotations

import re
from typing import Any, ClassVar, Sequence

from pydantic import Field

from harness.tasks.base import Doc, GenerationConfig, GenerationOptions, Scored, Task
from harness.tasks.data import resolve_jsonl
from harness.tasks.prompts import math_messages
from harness.tasks.registry import register_task
from harness.tasks.scorers.extract import extract_answer, last_boxed
from harness.tasks.scorers.math import DEFAULT_TIMEOUT_S, MathGrade, grade_math_batch

DEFAULT_MAX_NEW_TOKENS = 4096


def _first(row: dict[str, Any], *keys: str) -> Any:
    """The first present key: hub copies of a benchmark name their fields differently from the local mirror."""
    for k in keys:
        if k in row and row[k] is not None:
            return row[k]
    raise KeyError(f"none of the fields {keys} in record with fields {sorted(row)}")


class MathTask(Task):
    """Shared loading, prompting and grading of every math benchmark; subclasses say where data and golds live."""

    local_file: ClassVar[str] = "test.jsonl"
    hub_config: ClassVar[str | None] = None
    hub_split: ClassVar[str] = "test"
    #: Keep unit words when normalising for the second grader (Qwen's STRIP_EXCEPTIONS: Minerva).
    skip_unit: ClassVar[bool] = False
    generation: ClassVar[GenerationConfig] = GenerationConfig(max_new_tokens=DEFAULT_MAX_NEW_TOKENS)
    # math-verify on the whole response + the Qwen-style second grader (harness.tasks.scorers.math), TheoremQA's rule
    grader_version = "1"
    grader_packages = ("math-verify", "latex2sympy2_extended", "sympy")

    class Options(GenerationOptions):
        grading_timeout: float = Field(DEFAULT_TIMEOUT_S, gt=0, description="wall-clock limit per graded item")
        grading_workers: int | None = Field(None, gt=0, description="grader processes",
                                            json_schema_extra={"fingerprint": False})
        progress: bool | None = Field(None, description="progress bar while grading (default: 200+ items)",
                                      json_schema_extra={"fingerprint": False})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.grading_timeout = self.opts.grading_timeout
        self.grading_workers = self.opts.grading_workers
        self.progress = self.opts.progress
        self._docs: list[Doc] | None = None

    # --- per-benchmark parts ------------------------------------------------------------------------------------
    def question(self, row: dict[str, Any]) -> str:
        return str(_first(row, "problem", "question", "Question"))

    def gold(self, row: dict[str, Any]) -> str:
        return str(_first(row, "answer", "Answer")).strip()

    def doc_id(self, index: int, row: dict[str, Any]) -> str:
        return f"{self.name}/{index}"

    def meta(self, row: dict[str, Any]) -> dict[str, Any]:
        return {}

    # --- loading ------------------------------------------------------------------------------------------------
    def docs(self) -> list[Doc]:
        if self._docs is None:
            rows, source = resolve_jsonl(self.name, f"{self.local_dir}/{self.local_file}", self.hf_dataset,
                                         hub_config=self.hub_config, hub_split=self.hub_split)
            docs = []
            for i, row in enumerate(rows):
                meta = {"source": source, "row": i, **self.meta(row)}
                docs.append(Doc(id=self.doc_id(i, row), prompt=math_messages(self.question(row)),
                                gold=self.gold(row), meta=meta))
            self._docs = docs
        return self._docs

    # --- scoring ------------------------------------------------------------------------------------------------
    def rule_graded(self, doc: Doc) -> bool:
        """Docs whose gold is no mathematical expression and is graded by ``rule_verdict`` instead (TheoremQA)."""
        return False

    def rule_verdict(self, doc: Doc, extracted: str | None) -> bool:
        raise NotImplementedError

    def score(self, doc: Doc, responses: Sequence[str]) -> Scored:
        return self.score_many([doc], [responses])[0]

    def score_many(self, docs: Sequence[Doc], responses: Sequence[Sequence[str]]) -> list[Scored]:
        pairs: list[tuple[str, str]] = []
        for doc, rs in zip(docs, responses):
            if not self.rule_graded(doc):
                pairs.extend((r or "", str(doc.gold)) for r in rs)
        progress = self.progress if self.progress is not None else len(pairs) >= 200
        graded = iter(grade_math_batch(pairs, timeout=self.grading_timeout, workers=self.grading_workers,
                                       progress=bool(progress), skip_unit=self.skip_unit))
        out = []
        for doc, rs in zip(docs, responses):
            if self.rule_graded(doc):
                grades = [self._rule_grade(doc, r or "") for r in rs]
            else:
                grades = [next(graded) for _ in rs]
            out.append(self._scored(doc, grades))
        return out

    def _rule_grade(self, doc: Doc, response: str) -> MathGrade:
        extracted = extract_answer(response)[0]
        ok = self.rule_verdict(doc, extracted)
        return MathGrade(correct=ok, extracted=extracted, extraction_failed=extracted is None, timed_out=False,
                         second_grader_correct=ok, grader_disagreement=False)

    def _scored(self, doc: Doc, grades: list[MathGrade]) -> Scored:
        if not grades:
            return Scored(id=doc.id, score=0.0, metrics={"accuracy": 0.0, "accuracy_qwen": 0.0},
                          details={"extraction_failed": True, "timed_out": False, "grader_disagreement": False,
                                   "status": "no_response"})
        n = len(grades)
        acc = sum(g.correct for g in grades) / n  # n = 1 (greedy) in the paper; mean over samples otherwise
        acc_qwen = sum(g.second_grader_correct for g in grades) / n
        first = grades[0]
        details: dict[str, Any] = {
            "extraction_failed": first.extraction_failed,
            "timed_out": first.timed_out,
            "grader_disagreement": first.grader_disagreement,
        }
        if self.rule_graded(doc):
            details["grader"] = "answer_rule"
        if first.second_grader_timed_out:
            details["second_grader_timed_out"] = True
        if first.error:
            details["error"] = first.error
        if n > 1:
            details["correct_per_response"] = [g.correct for g in grades]
            details["correct_qwen_per_response"] = [g.second_grader_correct for g in grades]
            details["extracted_per_response"] = [g.extracted for g in grades]
        return Scored(id=doc.id, score=acc, metrics={"accuracy": acc, "accuracy_qwen": acc_qwen},
                      extracted=first.extracted, details=details)

    def aggregate(self, scored: Sequence[Scored]) -> dict[str, float]:
        out = super().aggregate(scored)
        if scored:
            n = len(scored)
            out["grader_disagreement_rate"] = sum(bool(s.details.get("grader_disagreement")) for s in scored) / n
            out["timeout_rate"] = sum(bool(s.details.get("timed_out")) for s in scored) / n
            out["extraction_failure_rate"] = sum(bool(s.details.get("extraction_failed")) for s in scored) / n
        return out


@register_task("math500")
class Math500Task(MathTask):
    description = "MATH-500 (Lightman et al. 2023 subset of MATH), 500 problems, zero-shot, \\boxed{} answer"
    local_dir = "math500"
    hf_dataset = "HuggingFaceH4/MATH-500"

    def doc_id(self, index: int, row: dict[str, Any]) -> str:
        return str(row["unique_id"])

    def meta(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"subject": row.get("subject"), "level": row.get("level"), "solution": row.get("solution")}


@register_task("minerva_math")
class MinervaMathTask(MathTask):
    description = "Minerva-Math (OCWCourses), 272 STEM problems, zero-shot, \\boxed{} answer"
    local_dir = "minerva_math"
    hf_dataset = "math-ai/minervamath"
    skip_unit = True

    def gold(self, row: dict[str, Any]) -> str:
        if row.get("solution"):
            boxed = last_boxed(str(row["solution"]))
            if boxed is None:
                raise ValueError(f"minerva_math record {row.get('idx')} has no \\boxed{{}} answer in its solution")
            return boxed
        return str(_first(row, "answer")).strip()

    def doc_id(self, index: int, row: dict[str, Any]) -> str:
        return str(row["idx"]) if "idx" in row else f"{self.name}/{index}"

    def meta(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"type": row.get("type"), "solution": row.get("solution")}


@register_task("gsm8k")
class GSM8KTask(MathTask):
    description = "GSM8K test, 1319 grade-school word problems, zero-shot, \\boxed{} answer"
    local_dir = "gsm8k"
    hf_dataset = "openai/gsm8k"
    hub_config = "main"

    def gold(self, row: dict[str, Any]) -> str:
        return gsm8k_gold(str(row["answer"]))

    def meta(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"solution": row["answer"].split("####")[0].strip()}


def gsm8k_gold(answer_field: str) -> str:
    """The final answer of a GSM8K ``answer`` field: the text after ``####``, thousands separators removed."""
    if "####" not in answer_field:
        raise ValueError(f"GSM8K answer has no '####' final answer: {answer_field[-80:]!r}")
    return answer_field.rsplit("####", 1)[1].strip().replace(",", "")


@register_task("olympiadbench")
class OlympiadBenchTask(MathTask):
    description = "OlympiadBench (English, text-only, open-ended maths), 675 problems, zero-shot, \\boxed{} answer"
    local_dir = "olympiadbench"
    hf_dataset = "math-ai/olympiadbench"

    def question(self, row: dict[str, Any]) -> str:
        return str(_first(row, "question", "problem"))

    def gold(self, row: dict[str, Any]) -> str:
        ans = _first(row, "final_answer", "answer")
        ans = ans[0] if isinstance(ans, list) else ans
        return str(ans).replace("$", "").strip()

    def doc_id(self, index: int, row: dict[str, Any]) -> str:
        return str(row["id"]) if "id" in row else f"{self.name}/{index}"

    def meta(self, row: dict[str, Any]) -> dict[str, Any]:
        return {k: row.get(k) for k in ("subfield", "answer_type", "is_multiple_answer", "unit")}


@register_task("amc23")
class AMC23Task(MathTask):
    description = "AMC 2023 (AMC 12A/12B), 40 problems, zero-shot, \\boxed{} answer"
    local_dir = "amc23"
    hf_dataset = "math-ai/amc23"

    def gold(self, row: dict[str, Any]) -> str:
        ans = _first(row, "answer")
        if isinstance(ans, float) and ans.is_integer():
            return str(int(ans))
        return str(ans).strip()

    def doc_id(self, index: int, row: dict[str, Any]) -> str:
        return str(row["id"]) if "id" in row else f"{self.name}/{index}"

    def meta(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"url": row.get("url")}


@register_task("aime24")
class AIME24Task(MathTask):
    description = "AIME 2024 (I and II), 30 problems, zero-shot, \\boxed{} answer"
    local_dir = "aime24"
    hf_dataset = "HuggingFaceH4/aime_2024"
    hub_split = "train"  # the hub copy's only split

    def doc_id(self, index: int, row: dict[str, Any]) -> str:
        return str(row["id"]) if "id" in row else f"{self.name}/{index}"

    def meta(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"url": row.get("url")}


@register_task("aime25")
class AIME25Task(MathTask):
    description = "AIME 2025 (I and II), 30 problems, zero-shot, \\boxed{} answer"
    local_dir = "aime25"
    hf_dataset = "math-ai/aime25"


_TRUE = {"true", "yes", "correct", "t", "y"}
_FALSE = {"false", "no", "incorrect", "f", "n"}


def _plain_text(s: str) -> str:
    """'\\text{(C)}.' -> '(c)'; 'True' -> 'true': the words of an answer without LaTeX wrappers or end punctuation."""
    s = re.sub(r"\\(?:text|textbf|mathrm|mathbf|mbox|emph)\s*\{(.*?)\}", r"\1", s)
    s = s.replace("$", "").replace("\\", "").strip().rstrip(".!,;:").strip()
    return s.lower()


def theoremqa_kind(answer: str) -> str:
    """'bool' | 'option' | 'list' | 'number' (anything else is graded as a number/expression too)."""
    if answer in ("True", "False"):
        return "bool"
    if re.fullmatch(r"\([a-e]\)", answer):
        return "option"
    if answer.startswith("[") and answer.endswith("]"):
        return "list"
    return "number"


def theoremqa_gold(answer: str) -> str:
    """The gold as the graders see it: scientific notation in LaTeX (math-verify reads '4e-05' as 4*e - 5)."""
    m = re.fullmatch(r"(-?\d+(?:\.\d+)?)[eE]([-+]?\d+)", answer.strip())
    if m:
        return f"{m.group(1)}\\times10^{{{int(m.group(2))}}}"
    return answer.strip()


@register_task("theoremqa")
class TheoremQATask(MathTask):
    description = "TheoremQA (STEM theorems), 800 questions, zero-shot, \\boxed{} answer; truth values and options by rule"
    local_dir = "theoremqa"
    hf_dataset = "TIGER-Lab/TheoremQA"

    def gold(self, row: dict[str, Any]) -> str:
        return theoremqa_gold(str(_first(row, "answer", "Answer")))

    def meta(self, row: dict[str, Any]) -> dict[str, Any]:
        raw = str(_first(row, "answer", "Answer"))
        return {"answer_kind": theoremqa_kind(raw), "raw_answer": raw}

    def rule_graded(self, doc: Doc) -> bool:
        return doc.meta.get("answer_kind") in ("bool", "option")

    def rule_verdict(self, doc: Doc, extracted: str | None) -> bool:
        if extracted is None:
            return False
        said = _plain_text(extracted)
        if doc.meta["answer_kind"] == "bool":
            want = doc.gold == "True"
            return said in (_TRUE if want else _FALSE)
        m = re.fullmatch(r"\(?([a-e])\)?(?:[\s:.].*)?", said)
        return bool(m) and m.group(1) == doc.gold.strip("()")
