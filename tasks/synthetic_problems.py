"""Synthetic multi-step arithmetic word problems (the embedded default tasks, tasks/synthetic.py, evaluate them).

A problem is a start value and a list of operations (add, subtract, multiply, divide by small integers), written
as a short story from a few templates of our own. The structured form travels with every item (``meta``), so the
oracle teacher can check a student's steps one by one. Gold solutions use one fixed style::

    Step 1: 12 + 7 = 19.
    Step 2: 19 - 5 = 14.
    The answer is \\boxed{14}.

In-distribution problems have 2-3 steps, out-of-distribution ones 4-5. Training questions and evaluation
questions can never coincide: every question text is assigned to "train" or "eval" by a hash of the text, and
each generator only emits questions of its own side (on top of separate seed streams).
"""
from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from typing import Sequence

NAMES = ("Mia", "Omar", "Lena", "Ravi", "Sofia", "Ken", "Ada", "Tom", "Noor", "Eli", "Yuki", "Ben")
OBJECTS = ("apples", "marbles", "coins", "stickers", "books", "shells", "cards", "pencils")

OPENINGS = (
    "{name} has {n} {obj}.",
    "{name} starts the day with {n} {obj}.",
    "There are {n} {obj} in {name}'s box.",
)
# Operation templates: (op, template). The template id (index in this tuple) is part of the structured form,
# so systematic student mistakes can depend on the wording (see distill/tiny_corpus.py).
OP_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("+", "{name} buys {k} more {obj}."),
    ("+", "{name} finds {k} more."),
    ("+", "a friend gives {name} {k} more {obj}."),
    ("-", "{name} gives away {k} {obj}."),
    ("-", "{name} loses {k} of them."),
    ("-", "{name} sells {k} {obj}."),
    ("*", "the number of {obj} doubles."),  # k = 2
    ("*", "the number of {obj} triples."),  # k = 3
    ("*", "{name} ends up with {k} times as many {obj}."),
    ("/", "{name} splits the {obj} into {k} equal piles and keeps one pile."),
)
# The i-th operation sentence opens with the i-th word here ("First, ...", "Then, ..."), as people write
# multi-step stories; it also gives the tiny student an anchor for which sentence a step reads.
ORDINALS = ("First", "Then", "Next", "After that", "Later")
CLOSINGS = (
    "How many {obj} does {name} have now?",
    "How many {obj} are there at the end?",
    "What is the number of {obj} now?",
)
OP_NAMES = {"+": "addition", "-": "subtraction", "*": "multiplication", "/": "division"}
ID_STEPS = (2, 3)
OOD_STEPS = (4, 5)
# Small numbers keep the tiny student's arithmetic learnable in a CPU-minute of pretraining.
MAX_VALUE = 99  # every intermediate value and answer stays in [0, MAX_VALUE]
MAX_START, MAX_OPERAND, MAX_MULTIPLICAND = 30, 9, 49
EVAL_PERCENT = 20  # share of the question space (by hash) reserved for evaluation


@dataclass(frozen=True)
class Op:
    op: str  # "+", "-", "*", "/"
    k: int
    template: int  # index into OP_TEMPLATES


@dataclass
class Problem:
    name: str
    obj: str
    start: int
    ops: list[Op]
    opening: int = 0
    closing: int = 0
    question: str = field(init=False)

    def __post_init__(self) -> None:
        self.question = self.render()

    def op_sentence(self, i: int) -> str:
        o = self.ops[i]
        return f"{ORDINALS[i]}, " + OP_TEMPLATES[o.template][1].format(name=self.name, obj=self.obj, k=o.k)

    def render(self) -> str:
        parts = [OPENINGS[self.opening].format(name=self.name, n=self.start, obj=self.obj)]
        parts += [self.op_sentence(i) for i in range(len(self.ops))]
        parts.append(CLOSINGS[self.closing].format(name=self.name, obj=self.obj))
        return " ".join(parts)

    def steps(self) -> list[tuple[int, str, int, int]]:
        """(a, op, b, result) for every operation, in order."""
        out, v = [], self.start
        for o in self.ops:
            r = apply_op(v, o.op, o.k)
            out.append((v, o.op, o.k, r))
            v = r
        return out

    @property
    def answer(self) -> int:
        return self.steps()[-1][3] if self.ops else self.start

    def gold_solution(self) -> str:
        return format_solution(self.steps(), self.answer)

    def to_meta(self) -> dict:
        """JSON-able structured form (round-trips through ``Problem.from_meta``)."""
        return {
            "name": self.name, "obj": self.obj, "start": self.start, "opening": self.opening,
            "closing": self.closing, "ops": [[o.op, o.k, o.template] for o in self.ops],
            "steps": [list(s) for s in self.steps()], "answer": self.answer,
        }

    @classmethod
    def from_meta(cls, meta: dict) -> "Problem":
        return cls(name=meta["name"], obj=meta["obj"], start=int(meta["start"]),
                   ops=[Op(str(o), int(k), int(t)) for o, k, t in meta["ops"]],
                   opening=int(meta.get("opening", 0)), closing=int(meta.get("closing", 0)))


def apply_op(a: int, op: str, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a // b if b else 0
    raise ValueError(f"unknown operation {op!r}")


def format_step(i: int, a: int, op: str, b: int, r: int) -> str:
    return f"Step {i}: {a} {op} {b} = {r}."


def format_solution(steps: Sequence[tuple[int, str, int, int]], answer: int) -> str:
    """The fixed gold style: one 'Step i: a op b = r.' line per operation, then the boxed answer."""
    lines = [format_step(i + 1, *s) for i, s in enumerate(steps)]
    lines.append(f"The answer is \\boxed{{{answer}}}.")
    return "\n".join(lines)



def split_of(question: str) -> str:
    """'train' or 'eval', fixed by the question text alone, so the two sides can never share a question."""
    h = int(hashlib.sha256(question.encode()).hexdigest()[:8], 16)
    return "eval" if h % 100 < EVAL_PERCENT else "train"


def _random_op(rng: random.Random, v: int) -> Op:
    """One feasible operation on the running value v (result stays in [0, MAX_VALUE], division exact)."""
    while True:
        t = rng.choices(range(len(OP_TEMPLATES)), weights=(4, 4, 4, 4, 4, 4, 2, 2, 2, 5))[0]
        op = OP_TEMPLATES[t][0]
        if op == "+":
            k = rng.randint(2, MAX_OPERAND)
        elif op == "-":
            if v < 3:
                continue
            k = rng.randint(1, min(MAX_OPERAND, v - 1))
        elif op == "*":
            k = 2 if t == 6 else 3 if t == 7 else rng.randint(2, 4)
            if v * k > MAX_VALUE or v > MAX_MULTIPLICAND:
                continue
        else:
            divisors = [d for d in (2, 3, 4, 5) if v % d == 0 and v >= 2 * d]
            if not divisors:
                continue
            k = rng.choice(divisors)
        if 0 <= apply_op(v, op, k) <= MAX_VALUE:
            return Op(op, k, t)


def random_problem(rng: random.Random, n_steps: int) -> Problem:
    if not 1 <= n_steps <= len(ORDINALS):
        raise ValueError(f"problems have 1 to {len(ORDINALS)} steps, not {n_steps}")
    v = start = rng.randint(4, MAX_START)
    ops = []
    for _ in range(n_steps):
        o = _random_op(rng, v)
        ops.append(o)
        v = apply_op(v, o.op, o.k)
    return Problem(name=rng.choice(NAMES), obj=rng.choice(OBJECTS), start=start, ops=ops,
                   opening=rng.randrange(len(OPENINGS)), closing=rng.randrange(len(CLOSINGS)))


def generate_problems(n: int, stream: str, steps: Sequence[int], split: str,
                      weights: Sequence[float] | None = None) -> list[Problem]:
    """``n`` distinct problems of the given split from the named seed stream (same arguments -> same list)."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', not {split!r}")
    rng = random.Random(stream)
    seen: set[str] = set()
    out: list[Problem] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise RuntimeError(f"could not draw {n} distinct {split} problems from stream {stream!r}")
        p = random_problem(rng, rng.choices(list(steps), weights=weights)[0])
        if p.question in seen or split_of(p.question) != split:
            continue
        seen.add(p.question)
        out.append(p)
    return out


def pool_problems(n: int, seed: int = 0, steps: Sequence[int] = ID_STEPS) -> list[Problem]:
    """``n`` training-side problems (never an evaluation question); ``harness.distill.pools.synthetic_pool`` turns them
    into training items."""
    return generate_problems(n, f"synthetic-pool:{seed}", steps, "train")


def eval_problems(n: int, seed: int, ood: bool) -> list[Problem]:
    kind = "ood" if ood else "id"
    return generate_problems(n, f"synthetic-eval-{kind}:{seed}", OOD_STEPS if ood else ID_STEPS, "eval")


# ---- parsing the question text back (for items whose structured form was lost) ---------------------------
def _template_regex(template: str) -> re.Pattern:
    pat = re.escape(template)
    for key, group in (("name", r"(?P<name>[A-Z][a-z]+)"), ("obj", r"(?P<obj>[a-z]+)"),
                       ("n", r"(?P<n>\d+)"), ("k", r"(?P<k>\d+)")):
        pat = pat.replace(re.escape("{" + key + "}"), group, 1).replace(re.escape("{" + key + "}"), f"(?P={key})")
    return re.compile(pat)


_OPENING_RE = [_template_regex(t) for t in OPENINGS]
_OP_RE = [_template_regex(t) for _, t in OP_TEMPLATES]
_CLOSING_RE = [_template_regex(t) for t in CLOSINGS]


def parse_question(question: str) -> Problem | None:
    """The structured problem behind a question written by this module; None if the text is not one of ours."""
    text = question.strip()
    pos, found = 0, None
    for i, r in enumerate(_OPENING_RE):
        m = r.match(text)
        if m:
            found = (i, m)
            break
    if not found:
        return None
    opening, m = found
    name, obj, start = m.group("name"), m.group("obj"), int(m.group("n"))
    pos = m.end()
    ops: list[Op] = []
    while True:
        rest = text[pos:].lstrip()
        offset = len(text) - pos - len(rest)
        for c, r in enumerate(_CLOSING_RE):
            mc = r.fullmatch(rest)
            if mc and mc.groupdict().get("obj", obj) == obj and mc.groupdict().get("name", name) == name:
                return Problem(name=name, obj=obj, start=start, ops=ops, opening=opening, closing=c)
        prefix = f"{ORDINALS[len(ops)]}, " if len(ops) < len(ORDINALS) else None
        if prefix is None or not rest.startswith(prefix):
            return None
        rest, offset = rest[len(prefix):], offset + len(prefix)
        for t, r in enumerate(_OP_RE):
            mo = r.match(rest)
            if mo and mo.groupdict().get("name", name) == name and mo.groupdict().get("obj", obj) == obj:
                k = int(mo.group("k")) if "k" in mo.groupdict() else (2 if t == 6 else 3)
                ops.append(Op(OP_TEMPLATES[t][0], k, t))
                pos += offset + mo.end()
                break
        else:
            return None


def problem_of(meta: dict | None, question: str) -> Problem | None:
    """The structured problem from an item's meta (``meta["problem"]``), else parsed from its question."""
    if meta and isinstance(meta.get("problem"), dict):
        try:
            return Problem.from_meta(meta["problem"])
        except (KeyError, TypeError, ValueError):
            pass
    return parse_question(question)
