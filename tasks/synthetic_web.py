"""Web-style reference answers for the synthetic pool (``pool.answer_style = web``): noisy or terse the way
web-mined answers are, where the default gold style is the full, correct solution."""
from __future__ import annotations

import random
from typing import Sequence

from harness.tasks.synthetic_problems import Problem, apply_op, format_solution

#: pool.answer_style: gold = every y* is the full, correct step-by-step solution (the default); web = y* is noisy
#: or terse the way web-mined answers are (WEB_SHARES), while gold_answer stays the true answer.
ANSWER_STYLES = ("gold", "web")
#: Target shares of the web style's answer kinds: a slip in one step carried to a wrong final answer; terse
#: (final answer only, or a one-line sketch with no worked steps); full correct working.
WEB_SHARES = {"wrong": 0.2, "terse": 0.5, "full": 0.3}
_SLIPS = (-10, -2, -1, 1, 2, 10)


def _slipped_steps(problem: Problem, rng: random.Random) -> list[tuple[int, str, int, int]] | None:
    """The problem's steps with an arithmetic slip in one step, carried through the rest; None if no slip
    changes the final answer."""
    true = problem.steps()
    order = list(range(len(true)))
    rng.shuffle(order)
    for j in order:
        for d in rng.sample(_SLIPS, len(_SLIPS)):
            out = list(true[:j])
            a, op, b, r = true[j]
            v = r + d
            if v < 0:
                continue
            out.append((a, op, b, v))
            for a2, op2, b2, _ in true[j + 1:]:
                out.append((v, op2, b2, apply_op(v, op2, b2)))
                v = out[-1][3]
            if v != problem.answer and v >= 0:
                return out
    return None


def _op_word(op: str, k: int) -> str:
    return f"{op} {k}"


def web_solution(problem: Problem, rng: random.Random) -> tuple[str, str]:
    """(kind, text) of one web-style reference answer: kind is wrong | terse | full (shares WEB_SHARES)."""
    u = rng.random()
    if u < WEB_SHARES["wrong"]:
        steps = _slipped_steps(problem, rng)
        if steps is not None:
            return "wrong", format_solution(steps, steps[-1][3])
        u = WEB_SHARES["wrong"]  # no slip reaches a different answer (never for our problems): terse instead
    if u < WEB_SHARES["wrong"] + WEB_SHARES["terse"]:
        if rng.random() < 0.5:
            return "terse", rng.choice(("\\boxed{{{a}}}", "The answer is \\boxed{{{a}}}.", "{a}. \\boxed{{{a}}}")
                                       ).format(a=problem.answer)
        chain = ", then ".join(_op_word(o.op, o.k) for o in problem.ops)
        return "terse", f"{problem.start}, then {chain}: \\boxed{{{problem.answer}}}."
    return "full", problem.gold_solution()


def web_solutions(problems: Sequence[Problem], seed: int) -> list[tuple[str, str]]:
    """Web-style answers for a pool, each seeded from the pool seed and the item's index alone."""
    return [web_solution(p, random.Random(f"synthetic-web:{seed}:{i}")) for i, p in enumerate(problems)]
