"""The oracle teacher of the synthetic task: exact critiques and corrections computed from the structured problem.

It reads the student's equations in order ("a op b = r", wherever they are on a line), compares them with the
problem's true steps, and reports the first wrong one: a wrong starting value, a wrong operation, a wrong
operand, an arithmetic slip, a missing step, an extra step, or a missing or mismatched final answer. Any text
is accepted as a student answer (garbage simply has no usable steps).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from harness.distill.items import TrainItem
from harness.distill.teachers import register_teacher
from harness.tasks.scorers.extract import after_answer_is, last_boxed
from harness.tasks.synthetic import as_int
from harness.tasks.synthetic_problems import OP_NAMES, Problem, format_step, problem_of

_MAX_CHARS = 20_000  # longer student answers are cut: nothing past this is a plausible solution
_OPS = {"+": "+", "-": "-", "*": "*", "x": "*", "×": "*", "/": "/", "÷": "/"}
_EQUATION = re.compile(r"(-?\d[\d,]*)\s*([+\-*/x×÷])\s*(-?\d[\d,]*)\s*=\s*(-?\d[\d,]*)")
_ANSWER_LINE = re.compile(r"^\s*Answer:\s*(-?\d[\d,]*)", re.MULTILINE)


@dataclass
class StudentStep:
    line: int  # index of the line it was found on
    a: int
    op: str
    b: int
    r: int


@dataclass
class Finding:
    """The first problem found in a student answer (kind None = the answer is right)."""

    kind: str | None  # start | operation | operand | arithmetic | missing | extra | no_answer | answer
    step: int  # 0-based index of the first wrong step (len(steps) when every step is right)
    message: str


def _int(text: str) -> int | None:
    return as_int(text.replace(",", ""))


def parse_steps(answer: str) -> tuple[list[str], list[StudentStep]]:
    """The answer's lines and the first equation found on each line, in order."""
    lines = answer[:_MAX_CHARS].splitlines()
    steps = []
    for i, line in enumerate(lines):
        m = _EQUATION.search(line)
        if not m:
            continue
        a, b, r = _int(m.group(1)), _int(m.group(3)), _int(m.group(4))
        if a is None or b is None or r is None:
            continue
        steps.append(StudentStep(i, a, _OPS[m.group(2)], b, r))
    return lines, steps


def stated_answer(answer: str) -> int | None:
    """The final answer the student states ('Answer: N', \\boxed{N} or 'the answer is N'); None if none."""
    text = answer[:_MAX_CHARS]
    lines = _ANSWER_LINE.findall(text)
    if lines:
        return _int(lines[-1])
    for found in (last_boxed(text), after_answer_is(text)):
        if found:
            return as_int(found)
    return None


def _eq(a: int, op: str, b: int, r: int) -> str:
    return f"{a} {op} {b} = {r}"


def check(problem: Problem, answer: str) -> Finding:
    """Compare a student answer with the problem's true steps; the first problem wins."""
    gold = problem.steps()
    _, steps = parse_steps(answer)
    for i, (a, op, b, r) in enumerate(gold):
        sentence = problem.op_sentence(i)
        right = _eq(a, op, b, r)
        if i >= len(steps):
            if not steps:
                msg = (f"The solution shows no calculation at all. The first step comes from \"{sentence}\": "
                       f"{right}.")
            else:
                msg = (f"The solution stops after step {i}, but the question has another step: \"{sentence}\" "
                       f"gives step {i + 1}: {right}.")
            return Finding("missing", i, msg)
        s = steps[i]
        if s.a != a:
            where = "the question starts with" if i == 0 else f"step {i} ended with"
            return Finding("start", i, f"Step {i + 1} starts from {s.a}, but {where} {a}. "
                                       f"It should be {right}.")
        if s.op != op:
            return Finding("operation", i, f"Step {i + 1} uses {OP_NAMES.get(s.op, s.op)} ({s.a} {s.op} {s.b}), "
                                           f"but \"{sentence}\" calls for {OP_NAMES[op]}. It should be {right}.")
        if s.b != b:
            return Finding("operand", i, f"Step {i + 1} uses {s.b}, but \"{sentence}\" gives {b}. "
                                         f"It should be {right}.")
        if s.r != r:
            return Finding("arithmetic", i, f"Step {i + 1} has an arithmetic error: {a} {op} {b} is {r}, "
                                            f"not {s.r}.")
    n = len(gold)
    if len(steps) > n:
        s = steps[n]
        return Finding("extra", n, f"Step {n + 1} ({_eq(s.a, s.op, s.b, s.r)}) applies an operation the question "
                                   f"does not contain; the question ends after step {n}, at {problem.answer}.")
    stated = stated_answer(answer)
    if stated is None:
        return Finding("no_answer", n, f"Every step is right, but the solution never states its final answer; "
                                       f"it should end with \\boxed{{{problem.answer}}}.")
    if stated != problem.answer:
        return Finding("answer", n, f"Every step is right, but the stated final answer {stated} does not match "
                                    f"the result of the last step, {problem.answer}.")
    return Finding(None, n, f"The final answer {problem.answer} is correct.")


def write_critique(problem: Problem, answer: str) -> str:
    finding = check(problem, answer)
    _, steps = parse_steps(answer)
    lines = ["Checking each step against the question."]
    for i in range(min(finding.step, len(steps))):
        s = steps[i]
        lines.append(f"Step {i + 1} ({_eq(s.a, s.op, s.b, s.r)}) is correct.")
    lines.append(finding.message)
    if finding.kind is None:
        lines.append("Conclusion: right")
        return "\n".join(lines)
    if finding.kind not in ("no_answer", "answer"):
        stated = stated_answer(answer)
        tail = f", not {stated}" if stated is not None and stated != problem.answer else ""
        lines.append(f"The correct final answer is {problem.answer}{tail}.")
    lines.append("Conclusion: wrong")
    return "\n".join(lines)


def write_refinement(problem: Problem, answer: str) -> str:
    """The student's correct leading steps (their own lines), then the true steps in the gold style."""
    finding = check(problem, answer)
    lines, steps = parse_steps(answer)
    out = []
    for s in steps[: finding.step]:
        own = lines[s.line].strip()
        # keep the student's wording when the line holds just this one step and nothing odd
        if len(own) <= 120 and len(_EQUATION.findall(own)) == 1 and "\\boxed" not in own:
            out.append(own)
        else:
            out.append(format_step(len(out) + 1, s.a, s.op, s.b, s.r))
    gold = problem.steps()
    for i in range(finding.step, len(gold)):
        out.append(format_step(i + 1, *gold[i]))
    out.append(f"The answer is \\boxed{{{problem.answer}}}.")
    return "\n".join(out)


def write_direct(problem: Problem, style: str = "student") -> str:
    """The teacher's own solution. student style: the same facts as the gold, in slightly different words, one
    equation a line. teacher style: prose sentences (one a line) with the equations inline (x and / written as the symbols
    a textbook would use), no "Step k:" lines, its own closing phrase, still ending in the boxed answer."""
    if style == "teacher":
        return _teacher_prose(problem)
    lines = [f"Start with {problem.start} {problem.obj}."]
    lines += [f"{_eq(*s)} {problem.obj}." for s in problem.steps()]
    lines.append(f"So the answer is \\boxed{{{problem.answer}}}.")
    return "\n".join(lines)


_PROSE = {"+": "Adding {b} gives", "-": "Taking away {b} leaves", "*": "Multiplying by {b} gives",
          "/": "Dividing into {b} equal parts gives"}
_SYMBOL = {"+": "+", "-": "-", "*": "×", "/": "÷"}


def _teacher_prose(problem: Problem) -> str:
    sentences = [f"{problem.name} begins with {problem.start} {problem.obj}."]
    for i, (a, op, b, r) in enumerate(problem.steps()):
        lead = _PROSE[op].format(b=b)
        if i:
            lead = lead[0].lower() + lead[1:]
            lead = ("Next, " if i % 2 else "After that, ") + lead
        sentences.append(f"{lead} {a} {_SYMBOL[op]} {b} = {r}.")
    sentences.append(f"Therefore {problem.name} ends with {problem.answer} {problem.obj}, and the final answer "
                     f"is \\boxed{{{problem.answer}}}.")
    return "\n".join(sentences)  # a sentence a line: the oracle's own checker reads one equation a line


@register_teacher("oracle")
class OracleTeacher:
    """Teacher protocol (distill/teachers/base.py) for the synthetic task, computed exactly."""

    needs_engine = False

    @classmethod
    def from_config(cls, section, prompts=None, engine=None, params=None, identity=None) -> "OracleTeacher":
        return cls(style=section.style)

    #: teacher.style -> identity (part of the teacher fingerprint: each style's outputs are cached apart)
    IDENTITIES = {"student": "oracle-synthetic-v1", "teacher": "oracle-synthetic-teacher-style-v1"}

    def __init__(self, style: str = "student") -> None:
        if style not in self.IDENTITIES:
            raise ValueError(f"unknown oracle teacher style {style!r}; use one of {', '.join(self.IDENTITIES)}")
        self.style = style
        self.identity = self.IDENTITIES[style]

    @staticmethod
    def _problem(item: TrainItem) -> Problem:
        p = problem_of({"problem": item.meta.problem} if item.meta.problem else None, item.question)
        if p is None:
            raise ValueError(f"oracle teacher: item {item.id!r} is not a synthetic problem; use teacher.kind="
                             "reference or llm for other pools")
        return p

    def critique(self, items: Sequence[TrainItem]) -> list[str]:
        return [write_critique(self._problem(it), it.probe or "") for it in items]

    def refine(self, items: Sequence[TrainItem]) -> list[str]:
        return [write_refinement(self._problem(it), it.probe or "") for it in items]

    def answer(self, items: Sequence[TrainItem]) -> list[str]:
        return [write_direct(self._problem(it), self.style) for it in items]
