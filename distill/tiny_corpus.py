"""The tiny student's pretraining data: synthetic problems (harness.tasks.synthetic_problems) in chat form, with solutions
that carry SYSTEMATIC injected mistakes (MISTAKE_KINDS), and a share of format-probe prompts (harness.tasks.format_probe)
whose instructions the student follows for one wording and mostly ignores for the others."""
from __future__ import annotations

import random

from harness.distill.tiny_spec import MISTAKE_KINDS, TinySpec


def _triggered(kind: str, problem, i: int, a: int) -> bool:
    """Whether mistake ``kind`` applies to operation ``i`` when the running value is ``a``."""
    o = problem.ops[i]
    if kind == "sells_as_buys":  # "sells k" is read as gaining k
        return o.template == 5
    if kind == "dropped_carry":  # a units carry is dropped when the added number ends in 8 or 9
        return o.op == "+" and o.k % 10 >= 8 and a % 10 + o.k % 10 >= 10
    if kind == "triples_as_doubles":
        return o.template == 7
    if kind == "forgets_final_division":
        return o.op == "/" and i == len(problem.ops) - 1
    raise ValueError(f"unknown mistake kind {kind!r}; use one of {', '.join(MISTAKE_KINDS)}")


def student_steps(problem, rng: random.Random, spec: TinySpec) -> list[tuple[int, str, int, int]]:
    """The steps the pretraining data teaches for ``problem``: right, except where a mistake fires."""
    from harness.tasks.synthetic_problems import apply_op

    out: list[tuple[int, str, int, int]] = []
    a = problem.start
    for i, o in enumerate(problem.ops):
        fired = [k for k in spec.mistakes if _triggered(k, problem, i, a)]
        mistake = fired[0] if fired and rng.random() < spec.mistake_rate else None
        op, k = o.op, o.k
        if mistake == "forgets_final_division":
            break
        if mistake == "sells_as_buys":
            op = "+"
        if mistake == "triples_as_doubles":
            k = 2
        r = apply_op(a, op, k)
        if mistake == "dropped_carry":
            r -= 10
        out.append((a, op, k, r))
        a = r
    return out


def _solution_text(steps, answer: int, final: str = "boxed") -> str:
    from harness.tasks.synthetic_problems import format_step

    lines = [format_step(i + 1, *s) for i, s in enumerate(steps)]
    if final == "boxed":
        lines.append(f"The answer is \\boxed{{{answer}}}.")
    elif final == "answer_line":
        lines.append(f"Answer: {answer}")
    elif final == "boxed_last":
        lines.append(f"The answer is \\boxed{{{answer}}}")
    return "\n".join(lines)


def _random_train_problem(rng: random.Random, spec: TinySpec):
    from harness.tasks.synthetic_problems import random_problem, split_of

    weights = spec.step_weights
    while True:
        p = random_problem(rng, rng.choices(list(weights), weights=list(weights.values()))[0])
        if split_of(p.question) == "train":  # evaluation questions never enter pretraining
            return p


def pretraining_example(rng: random.Random, spec: TinySpec) -> tuple[list[dict[str, str]], str]:
    """(prompt messages, assistant reply) for one pretraining example."""
    from harness.tasks.format_probe import INSTRUCTIONS, probe_messages
    from harness.tasks.prompts import math_messages

    p = _random_train_problem(rng, spec)
    steps = student_steps(p, rng, spec)
    answer = steps[-1][3] if steps else p.start
    if rng.random() >= spec.format_share:
        return math_messages(p.question), _solution_text(steps, answer)
    instr = rng.choice(INSTRUCTIONS)
    w = rng.randrange(len(instr.wordings))
    follow = rng.random() < (spec.format_follow[0] if w == 0 else spec.format_follow[1])
    msgs = probe_messages(p.question, instr.wordings[w])
    if not follow:
        return msgs, _solution_text(steps, answer)
    if instr.kind == "only_number":
        return msgs, str(answer)
    if instr.kind == "answer_line":
        return msgs, _solution_text(steps, answer, "answer_line")
    if instr.kind == "boxed_last":
        return msgs, _solution_text(steps, answer, "boxed_last")
    return msgs, "Solution:\n" + _solution_text(steps, answer)
