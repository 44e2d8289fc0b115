"""Format probe: synthetic problems (in-distribution difficulty) with one explicit output-format instruction.

Every instruction is checked programmatically. The probe exposes format drift: a student fine-tuned on one
answer style (or on critiques, as in CFT) may stop following instructions it followed before. The prompt is a
plain user turn (no math system prompt, whose \\boxed{} request would contradict some instructions).

Metrics: ``format_ok`` (primary), ``correct`` (the right number, wherever it is), ``format_and_correct``.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable, Sequence

from pydantic import Field

from harness.tasks.base import Doc, GenerationConfig, Scored, Task, TaskOptions
from harness.tasks.registry import register_task
from harness.tasks.scorers.extract import extract_answer, last_boxed
from harness.tasks.synthetic import as_int
from harness.tasks.synthetic_problems import ID_STEPS, Problem, generate_problems

_ANSWER_LINE = re.compile(r"Answer:\s*(-?\d[\d,]*)\.?")


def _nonempty_lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.strip().splitlines() if ln.strip()]


def only_number_ok(response: str) -> bool:
    """The whole reply (stripped) is one integer."""
    return re.fullmatch(r"-?\d+", response.strip()) is not None


def answer_line_ok(response: str) -> bool:
    """The last non-empty line reads 'Answer: N'."""
    lines = _nonempty_lines(response)
    return bool(lines) and _ANSWER_LINE.fullmatch(lines[-1]) is not None


def boxed_last_ok(response: str) -> bool:
    """The reply ends with a \\boxed{...} and nothing follows it."""
    text = response.strip()
    idx = text.rfind("\\boxed{")
    if idx < 0 or last_boxed(text) is None:
        return False
    depth = 0
    for j in range(idx + len("\\boxed"), len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return j == len(text) - 1
    return False


def starts_with_solution_ok(response: str) -> bool:
    """The reply begins with 'Solution:'."""
    return response.lstrip().startswith("Solution:")


@dataclass(frozen=True)
class FormatInstruction:
    kind: str
    wordings: tuple[str, ...]
    check: Callable[[str], bool]


INSTRUCTIONS: tuple[FormatInstruction, ...] = (
    FormatInstruction("only_number", (
        "Reply with only the final number.",
        "Give just the final number and nothing else.",
    ), only_number_ok),
    FormatInstruction("answer_line", (
        "Finish with a line of the form 'Answer: N'.",
        "End your reply with a last line that reads 'Answer: N', where N is the result.",
    ), answer_line_ok),
    FormatInstruction("boxed_last", (
        "Put the final answer in \\boxed{} and write nothing after it.",
        "End your reply with the answer inside \\boxed{}; nothing may follow the box.",
    ), boxed_last_ok),
    FormatInstruction("starts_with", (
        "Begin your reply with the word 'Solution:'.",
        "Your reply must start with 'Solution:'.",
    ), starts_with_solution_ok),
)
BY_KIND = {i.kind: i for i in INSTRUCTIONS}


def probe_user_message(question: str, instruction: str) -> str:
    return f"{question}\n\n{instruction}"


def probe_messages(question: str, instruction: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": probe_user_message(question, instruction)}]


def answer_of(response: str) -> str | None:
    """The reply's answer wherever it is: an 'Answer: N' line first, else the usual extraction order."""
    matches = _ANSWER_LINE.findall(response)
    if matches:
        return matches[-1].replace(",", "")
    return extract_answer(response)[0]


def probe_items(n: int, seed: int) -> list[tuple[Problem, FormatInstruction, int]]:
    """(problem, instruction, wording index): kinds cycle evenly, the wording is drawn with the seed."""
    rng = random.Random(f"format-probe-wording:{seed}")
    problems = generate_problems(n, f"format-probe:{seed}", ID_STEPS, "eval")
    out = []
    for i, p in enumerate(problems):
        instr = INSTRUCTIONS[i % len(INSTRUCTIONS)]
        out.append((p, instr, rng.randrange(len(instr.wordings))))
    return out


@register_task("format_probe")
class FormatProbe(Task):
    description = "Synthetic problems with one checkable format instruction each (exposes format drift)."
    primary_metric = "format_ok"
    generation = GenerationConfig(max_new_tokens=160, temperature=0.0)
    grader_version = "1"  # the four programmatic format checks of INSTRUCTIONS, plus answer_of for `correct`
    grader_packages = ()

    class Options(TaskOptions):
        n: int = Field(90, gt=0, description="number of probe items")
        seed: int = Field(0, description="seed stream of the problems and wordings")

    def docs(self) -> list[Doc]:
        n, seed = self.opts.n, self.opts.seed
        return [
            Doc(id=f"format_probe/{i}", prompt=probe_messages(p.question, instr.wordings[w]), gold=str(p.answer),
                meta={"kind": instr.kind, "wording": w, "problem": p.to_meta()})
            for i, (p, instr, w) in enumerate(probe_items(n, seed))
        ]

    def score(self, doc: Doc, responses: Sequence[str]) -> Scored:
        response = responses[0] if responses else ""
        response = response or ""
        fmt = BY_KIND[doc.meta["kind"]].check(response)
        extracted = answer_of(response)
        correct = extracted is not None and as_int(extracted) == int(doc.gold)
        return Scored(
            id=doc.id, score=float(fmt), extracted=extracted,
            metrics={"format_ok": float(fmt), "correct": float(correct),
                     "format_and_correct": float(fmt and correct)},
            details={"kind": doc.meta["kind"], "wording": doc.meta["wording"],
                     "extraction_failed": extracted is None},
        )
