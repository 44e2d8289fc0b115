"""Synthetic multi-step arithmetic word problems: the embedded default task of the tiny setup.

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
from dataclasses import replace as dc_replace
from typing import Any, ClassVar, Optional, Sequence

from pydantic import Field

from tasks.base import Doc, GenerationConfig, Scored, Task, TaskOptions
from tasks.prompts import math_messages
from tasks.registry import register_task
from tasks.scorers.extract import extract_answer

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


# ---- web-style reference answers (pool.answer_style = web) -------------------------------------------------
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
    """``n`` training-side problems (never an evaluation question); ``distill.pools.synthetic_pool`` turns them
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


# ---- scoring --------------------------------------------------------------------------------------------
def as_int(text: str | None) -> int | None:
    """'14', '14.0', '$14$', '1,014' -> int; anything else -> None."""
    if text is None:
        return None
    s = text.strip().strip("$").replace(",", "").strip()
    s = re.sub(r"^\\text\{(.*)\}$", r"\1", s).strip()
    try:
        f = float(s)
    except ValueError:
        return None
    return int(f) if f.is_integer() else None


class SyntheticOptions(TaskOptions):
    n: int = Field(200, gt=0, description="number of evaluation problems")
    seed: int = Field(0, description="seed stream of the evaluation problems")
    #: Completions per problem (``n`` is taken: it counts problems); > 1 adds pass@k metrics.
    samples: Optional[int] = Field(None, gt=0, description="sampled completions per problem (pass@k)")
    temperature: Optional[float] = Field(None, ge=0.0, description="sampling temperature (default greedy)")


class _SyntheticTask(Task):
    ood: ClassVar[bool] = False
    grader_version = "1"  # last \boxed{} (else fallbacks) read as an integer, compared with the gold
    grader_packages = ()
    Options = SyntheticOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        over: dict[str, Any] = {}
        if self.opts.samples is not None:
            over["n"] = self.opts.samples
        if self.opts.temperature is not None:
            over["temperature"] = self.opts.temperature
        if over:
            self.generation = dc_replace(type(self).generation, **over)  # type: ignore[misc]
            if self.generation.n > 1:
                self.score_many = self._score_many_pass_at_k  # type: ignore[method-assign]

    def fingerprint_parts(self, docs: Sequence[Doc]) -> dict[str, Any]:
        parts = super().fingerprint_parts(docs)
        # unset sampling options leave the fingerprint of greedy runs as it was before they existed
        parts["options"] = {k: v for k, v in parts["options"].items()
                            if not (k in ("samples", "temperature") and v is None)}
        return parts

    def docs(self) -> list[Doc]:
        n, seed = self.opts.n, self.opts.seed
        return [
            Doc(id=f"{self.name}/{i}", prompt=math_messages(p.question), gold=str(p.answer),
                meta={"problem": p.to_meta(), "steps": len(p.ops)})
            for i, p in enumerate(eval_problems(n, seed, self.ood))
        ]

    def score(self, doc: Doc, responses: Sequence[str]) -> Scored:
        response = responses[0] if responses else ""
        extracted, how = extract_answer(response or "")
        ok = as_int(extracted) == int(doc.gold) and extracted is not None
        return Scored(id=doc.id, score=float(ok), metrics={"accuracy": float(ok)}, extracted=extracted,
                      details={"extraction_failed": how == "none", "extraction": how})


@register_task("synthetic_id")
class SyntheticID(_SyntheticTask):
    description = "Synthetic arithmetic word problems, 2-3 steps (the tiny student's training distribution)."
    generation = GenerationConfig(max_new_tokens=160, temperature=0.0)
    ood = False


@register_task("synthetic_ood")
class SyntheticOOD(_SyntheticTask):
    description = "Synthetic arithmetic word problems, 4-5 steps (longer than anything in the training pool)."
    generation = GenerationConfig(max_new_tokens=256, temperature=0.0)
    ood = True
