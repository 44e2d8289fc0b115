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
grader): the answer is first taken with ``tasks.scorers.extract.extract_answer`` (last ``\\boxed{}``, else "the answer
is", else the last number), both sides are normalised (``strip_answer``), then compared as strings, as numbers
(relative tolerance 1e-4, with percentage variants x/100 and x*100 of the gold, as Qwen's grader does), as lists /
matrices element by element, as equations, and finally symbolically with sympy (``latex2sympy2_extended``), under
its own timeout (3 s, the paper's).

Both graders run in worker processes (``MathGradingPool``): math-verify's timeouts are SIGALRM based and only work
in a main thread, and some inputs (huge power towers, giant factorials) make sympy spin in C code that no signal
interrupts. Each worker handles one job at a time in its own main thread; the parent kills and replaces a worker
whose job exceeds the wall-clock limit. A primary job that is killed counts as incorrect with ``timed_out=True``.
"""
from __future__ import annotations

import atexit
import logging
import math
import multiprocessing as mp
import os
import re
import signal
import sys
import threading
import time
import weakref
from collections import deque
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Iterator, Sequence

from tasks.scorers.extract import extract_answer


DEFAULT_TIMEOUT_S = 5.0
SYMBOLIC_TIMEOUT_S = 3.0  # the paper's sympy timeout
_MAX_DEFAULT_WORKERS = 8


# ----------------------------------------------------------------------------------------------------------------
# Results


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


# ----------------------------------------------------------------------------------------------------------------
# Primary grader: math-verify


def wrap_gold(gold: str) -> str:
    """How a gold answer is given to ``math_verify.parse`` (see the module docstring)."""
    return "\\boxed{" + str(gold).strip() + "}"


def math_verify_verdict(response: str, gold: str) -> bool:
    """The primary verdict, in-process. Call it only from a main thread (math-verify's timeouts use SIGALRM);
    ``grade_math_batch`` runs it in worker processes with a hard kill."""
    from math_verify import parse, verify

    return bool(verify(parse(wrap_gold(gold)), parse(response)))


# ----------------------------------------------------------------------------------------------------------------
# Second grader: Qwen2.5-Math-style normalisation and equivalence (our code, same behaviour class)

# Unit words removed when they stand alone (Qwen's list also strips single letters such as "a", "m", "s"; we keep
# only multi-letter words, which cannot be variables or multiple-choice letters).
_UNIT_WORDS = [
    "degrees", "degree", "deg", "radians", "radian", "mph", "kmph", "kmh", "km/h", "m/s",
    "feet", "foot", "ft", "inches", "inch", "yards", "yard", "miles", "mile", "meters", "meter", "metres", "metre",
    "cm", "mm", "km", "sq", "square", "cubic", "units", "unit",
    "kg", "grams", "gram", "gm", "pounds", "pound", "lbs", "lb", "ounces", "ounce", "oz",
    "liters", "liter", "litres", "litre", "gallons", "gallon", "ml",
    "hours", "hour", "hrs", "hr", "minutes", "minute", "mins", "min", "seconds", "second", "sec",
    "days", "day", "weeks", "week", "months", "month", "years", "year",
    "dollars", "dollar", "cents", "cent", "rupees", "rupee", "rs", "percent",
    "people", "students", "points", "ways",
]
# A unit word stands alone; "\\sec", "\\min", "\\deg" are LaTeX commands, not units.
_UNIT_RE = re.compile(r"(^|[^\w\\])(?:" + "|".join(re.escape(u) for u in sorted(_UNIT_WORDS, key=len, reverse=True))
                      + r")($|\W)")
_VAR_PREFIXES = ["x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to"]


def _fix_fracs(s: str) -> str:
    """\\frac12 -> \\frac{1}{2}, \\frac1{72} -> \\frac{1}{72}."""
    parts = s.split("\\frac")
    out = parts[0]
    for sub in parts[1:]:
        out += "\\frac"
        if sub.startswith("{") or len(sub) < 2:
            out += sub
            continue
        a, b, rest = sub[0], sub[1], sub[2:]
        out += "{" + a + "}" + ("{" + b + "}" + rest if b != "{" else b + rest)
    return out


def _fix_a_slash_b(s: str) -> str:
    m = re.fullmatch(r"(-?\d+)/(\d+)", s)
    return f"\\frac{{{m.group(1)}}}{{{m.group(2)}}}" if m else s


def strip_answer(s: str, skip_unit: bool = False) -> str:
    """Normalise an answer string the way the Qwen2.5-Math harness does before comparing."""
    s = str(s).strip().replace("\n", "").rstrip(".")
    s = s.replace("\\!", "")
    s = re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", s)
    s = s.replace("\\end{array}", "\\end{pmatrix}").replace("bmatrix", "pmatrix")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("\\{", "{").replace("\\}", "}")
    # a trailing \text{...} is a unit ("5 \text{ cm}") unless it is the whole answer
    stripped = re.sub(r"\\text\{.*?\}$", "", s).strip()
    if stripped and stripped != s:
        s = stripped
    if not skip_unit:
        for _ in range(2):
            stripped = _UNIT_RE.sub(r"\1\2", s).strip()
            if stripped:
                s = stripped
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("°", "")
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    s = re.sub(r"\\(?:text|textbf|mathrm|mathbf|mbox|operatorname)\{(.*?)\}", r"\1", s)
    for key in _VAR_PREFIXES:
        s = s.replace(key, "")
    s = s.replace("\\emptyset", "{}").replace("(-\\infty,\\infty)", "\\mathbb{R}")
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if len(s) > 2 and s[0] + s[-1] in ("{}", "()", "[]") and s[1:-1].isalnum():
        s = s[1:-1]
    s = s.replace("infinity", "\\infty")
    if "\\infty" not in s:
        s = re.sub(r"\binf\b", "\\\\infty", s)
    s = re.sub(r"\s+and\s+", ",", s)  # "2 and 3" -> "2,3" (Qwen deletes "and", which glues the numbers)
    s = s.replace("\\mathbf", "")
    if "j" in s and "i" not in s:
        s = s.replace("j", "i")
    s = re.sub(r"(\d+)\.0*([^\d])", r"\1\2", s)  # 27.0 -> 27, 2.00x -> 2x
    s = re.sub(r"(\d+)\.0*$", r"\1", s)
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    parts = s.split("=")
    if len(parts) == 2 and len(parts[0].strip()) <= 2:  # "k = 5" -> "5"
        s = parts[1]
    s = re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", s)
    s = s.replace(" ", "")
    s = _fix_fracs(s)
    return _fix_a_slash_b(s)


def _parse_number(s: str) -> float | None:
    s = s.replace(",", "")
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?%?", s):
        return None
    pct = s.endswith("%")
    try:
        v = float(s.rstrip("%"))
    except ValueError:
        return None
    return v / 100 if pct else v


def _numeric_equal(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-4)


def _numbers_equal(pred: str, gold: str, include_percentage: bool) -> bool:
    p, g = _parse_number(pred), _parse_number(gold)
    if p is None or g is None:
        return False
    candidates = [g / 100, g, g * 100] if include_percentage else [g]
    return any(_numeric_equal(p, c) for c in candidates)


class _SymbolicTimeout(BaseException):
    # BaseException: sympy catches Exception in places, which would swallow the timeout.
    pass


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Interrupt pure-Python sympy work after ``seconds`` (main thread only; elsewhere no limit is applied)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise _SymbolicTimeout()

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# parse_expr evaluates Python: only plain arithmetic over single-letter symbols and a few known functions is allowed.
_SAFE_EXPR = re.compile(r"[0-9A-Za-z_.+\-*/^() ,]+")
_SAFE_NAMES = {"sqrt", "sin", "cos", "tan", "log", "ln", "exp", "pi", "oo", "abs", "E", "I"}


def _to_sympy(s: str) -> Any:
    from latex2sympy2_extended import latex2sympy

    if _parse_number(s) is not None:  # a plain number ("4e-05" is not 4*e - 5)
        import sympy

        return sympy.Float(s.replace(",", "")) if "%" not in s else sympy.Float(_parse_number(s))

    for candidate in (s.replace("\\\\", "\\"), s):
        try:
            return latex2sympy(candidate)
        except Exception:
            pass
    if _SAFE_EXPR.fullmatch(s) and "__" not in s and all(
        len(name) == 1 or name in _SAFE_NAMES for name in re.findall(r"[A-Za-z_]\w*", s)
    ):
        from sympy.parsing.sympy_parser import parse_expr

        try:
            return parse_expr(s.replace("^", "**"))
        except Exception:
            pass
    return None


def _symbolic_equal(a_str: str, b_str: str) -> bool:
    from sympy import N, simplify

    a, b = _to_sympy(a_str), _to_sympy(b_str)
    if a is None or b is None:
        return False
    checks = (
        lambda: str(a) == str(b) or a == b,
        lambda: a.equals(b) or simplify(a - b) == 0,
        lambda: (abs(a.lhs - a.rhs)).equals(abs(b.lhs - b.rhs)),  # equations, up to sides
        lambda: _numeric_equal(float(N(a)), float(N(b))),
        lambda: a.shape == b.shape and a.applyfunc(lambda x: round(x, 3)).equals(b.applyfunc(lambda x: round(x, 3))),
    )
    for check in checks:
        try:
            if check():
                return True
        except _SymbolicTimeout:
            raise
        except Exception:
            pass
    return False


def _is_list(s: str) -> bool:
    return re.match(r"(\(|\[).+(\)|\])", s) is not None


def _half_open(s: str) -> bool:
    return s[0] + s[-1] in ("[)", "(]")


def _is_matrix(s: str) -> bool:
    return s.startswith("\\begin{pmatrix}") and s.endswith("\\end{pmatrix}")


def _matrix_rows(s: str) -> list[list[str]]:
    body = s[len("\\begin{pmatrix}"): -len("\\end{pmatrix}")]
    return [row.strip().split("&") for row in body.split("\\\\") if row.strip()]


def _choice_letter(pred: str) -> str:
    found = re.findall(r"\b(A|B|C|D|E)\b", pred.strip().rstrip(".").upper())
    return found[-1] if found else pred.strip().rstrip(".")


def _math_equal(pred: str, gold: str, include_percentage: bool, deadline: float) -> bool:
    if pred.strip().lower() == gold.strip().lower():
        return True
    if gold in ("A", "B", "C", "D", "E") and _choice_letter(pred) == gold:
        return True
    if _numbers_equal(pred, gold, include_percentage):
        return True
    if not pred:
        return False
    # half-open intervals must match exactly: (1,2] is not [1,2] (Qwen's bracket rules below would ignore this)
    if _is_list(pred) and _is_list(gold) and (_half_open(pred) or _half_open(gold)) \
            and pred[0] + pred[-1] != gold[0] + gold[-1]:
        return False
    # brackets: [a,b] vs (a,b) compare equal once brackets are dropped (Qwen's rule)
    p, g = pred, gold
    if (p[:1] + p[-1:] == "[]" and g[:1] + g[-1:] != "()") or (p[:1] + p[-1:] == "()" and g[:1] + g[-1:] != "[]"):
        p, g = p.strip("[]()"), g.strip("[]()")
    p, g = re.sub(r"[{}()]", "", p), re.sub(r"[{}()]", "", g)
    if p.lower() == g.lower():
        return True
    if _is_list(pred) and _is_list(gold):
        ps, gs = pred[1:-1].split(","), gold[1:-1].split(",")
        return len(ps) == len(gs) and all(_math_equal(a, b, include_percentage, deadline) for a, b in zip(ps, gs))
    if _is_matrix(pred) and _is_matrix(gold):
        pr, gr = _matrix_rows(pred), _matrix_rows(gold)
        return len(pr) == len(gr) and all(
            len(a) == len(b) and all(_math_equal(x, y, include_percentage, deadline) for x, y in zip(a, b))
            for a, b in zip(pr, gr)
        )
    if pred.count("=") == 1 and gold.count("=") == 1:
        lp, rp = pred.split("=")
        lg, rg = gold.split("=")
        p_expr, g_expr = f"{lp.strip()}-({rp.strip()})", f"{lg.strip()}-({rg.strip()})"
        return _timed_symbolic(p_expr, g_expr, deadline) or _timed_symbolic(f"-({p_expr})", g_expr, deadline)
    if pred.count("=") == 1 and len(pred.split("=")[0].strip()) <= 2 and "=" not in gold:
        return _math_equal(pred.split("=")[1], gold, include_percentage, deadline)
    if gold.count("=") == 1 and len(gold.split("=")[0].strip()) <= 2 and "=" not in pred:
        return _math_equal(pred, gold.split("=")[1], include_percentage, deadline)
    return _timed_symbolic(pred, gold, deadline)


def _timed_symbolic(a: str, b: str, deadline: float) -> bool:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    try:
        with _alarm(remaining):
            return _symbolic_equal(a, b)
    except _SymbolicTimeout:
        return False


def qwen_math_equal(pred: str | None, gold: str, *, skip_unit: bool = False,
                    timeout: float = SYMBOLIC_TIMEOUT_S) -> bool:
    """Qwen2.5-Math-style equivalence of an extracted answer and a gold answer (both raw strings).

    The symbolic step stops after ``timeout`` seconds when called from a main thread; numbers so large that sympy
    spins in C cannot be interrupted in-process, so grade untrusted text with ``grade_math_batch``.
    Like Qwen's grader, a number also matches the gold times 100 or over 100 (percentages)."""
    if pred is None or gold is None:
        return False
    p, g = strip_answer(pred, skip_unit), strip_answer(str(gold), skip_unit)
    return _math_equal(p, g, include_percentage=True, deadline=time.monotonic() + timeout)


# ----------------------------------------------------------------------------------------------------------------
# Worker processes with a hard per-job wall-clock limit


def _warm_up() -> None:
    # Import and exercise both graders once so the first timed job does not pay for imports and antlr set-up.
    math_verify_verdict("\\boxed{\\frac{1}{2}}", "0.5")
    qwen_math_equal("\\frac{1}{2}", "x^2")


def _run_job(kind: str, a: str, b: str, skip_unit: bool) -> bool:
    if kind == "mv":
        return math_verify_verdict(a, b)
    return qwen_math_equal(a, b, skip_unit=skip_unit)


def _worker_main(conn: Connection) -> None:
    """Worker loop: one job at a time, in this process's main thread (so SIGALRM timeouts work)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # timeouts are reported through MathGrade
    try:
        _warm_up()
    except Exception:
        pass
    conn.send(("ready", None, None))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        job_id, kind, a, b, skip_unit = msg
        try:
            conn.send((job_id, bool(_run_job(kind, a, b, skip_unit)), None))
        except BaseException as e:  # noqa: BLE001 - any grader failure is a wrong answer, reported
            conn.send((job_id, False, f"{type(e).__name__}: {str(e)[:200]}"))


def _context() -> mp.context.BaseContext:
    # Never plain fork: the parent may hold torch/tokenizer threads. forkserver forks children from a clean,
    # single-threaded server that has math-verify and sympy imported already, so replacing a killed worker is cheap.
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["tasks.scorers.math", "math_verify", "sympy", "latex2sympy2_extended"])
        return ctx
    return mp.get_context("spawn")


def default_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, min(n, _MAX_DEFAULT_WORKERS))


_start_lock = threading.Lock()


@contextmanager
def _parent_main_hidden() -> Iterator[None]:
    """Workers need only this module. spawn/forkserver children otherwise re-run the parent's ``__main__``, which
    fails for ``python -`` and re-executes scripts without a ``__main__`` guard."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


class _Worker:
    def __init__(self, ctx: mp.context.BaseContext) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child,), daemon=True)
        with _start_lock, _parent_main_hidden():
            self.proc.start()
        child.close()
        self.ready = False
        self.job: tuple | None = None
        self.started = 0.0

    def send(self, job: tuple) -> None:
        self.job, self.started = job, time.monotonic()
        self.conn.send(job)

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.join(2)
        finally:
            self.conn.close()

    def ask_to_stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, BrokenPipeError):
            pass

    def stop(self, deadline: float | None = None) -> None:
        self.ask_to_stop()
        self.proc.join(max(0.0, (deadline or time.monotonic() + 1.0) - time.monotonic()))
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(1)
        self.conn.close()


@dataclass
class _JobResult:
    ok: bool
    timed_out: bool = False
    error: str | None = None


class MathGradingPool:
    """Worker processes that grade (response, gold) pairs with a hard wall-clock limit per grader call.

    Use as a context manager to grade several batches without restarting workers::

        with MathGradingPool(workers=2, timeout=5.0) as pool:
            grades = pool.grade(pairs)
    """

    def __init__(self, workers: int | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                 start_timeout: float = 120.0) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}; pass e.g. timeout=5.0")
        self.timeout = float(timeout)
        self.n_workers = workers or default_workers()
        self.start_timeout = start_timeout  # how long a new worker may take to import and warm up
        self._ctx = _context()
        self._workers: list[_Worker] = []
        _live_pools.add(self)

    def __enter__(self) -> "MathGradingPool":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        while len(self._workers) < self.n_workers:
            self._workers.append(_Worker(self._ctx))
        self._await_ready(self._workers)

    def close(self) -> None:
        """Stop the workers: ask all at once, give them 0.5 s together, then kill what is left."""
        workers, self._workers = self._workers, []
        for w in workers:
            w.ask_to_stop()
        deadline = time.monotonic() + 0.5
        for w in workers:
            w.stop(deadline)

    def _await_ready(self, workers: list[_Worker]) -> None:
        deadline = time.monotonic() + self.start_timeout
        pending = [w for w in workers if not w.ready]
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"math grading workers did not start within {self.start_timeout:.0f} s; "
                                   "check that math-verify imports (python -c 'import math_verify')")
            for conn in wait([w.conn for w in pending], timeout=left):
                w = next(w for w in pending if w.conn is conn)
                try:
                    conn.recv()
                except (EOFError, OSError):
                    raise RuntimeError("a math grading worker died while starting; "
                                       "check that math-verify imports (python -c 'import math_verify')") from None
                w.ready = True
            pending = [w for w in pending if not w.ready]

    def _replace(self, w: _Worker) -> _Worker:
        w.kill()
        new = _Worker(self._ctx)
        self._workers[self._workers.index(w)] = new
        return new

    def run_jobs(self, jobs: Sequence[tuple[str, str, str, bool]], on_done: Any = None) -> list[_JobResult]:
        """Run (kind, a, b, skip_unit) jobs; kind 'mv' = math_verify_verdict(a=response, b=gold),
        'qwen' = qwen_math_equal(a=extracted, b=gold). Returns one result per job, in order."""
        if not self._workers:
            self.start()
        results: list[_JobResult | None] = [None] * len(jobs)
        queue = deque(range(len(jobs)))

        def finish(i: int, res: _JobResult) -> None:
            results[i] = res
            if on_done is not None:
                on_done(i)

        while queue or any(w.job is not None for w in self._workers):
            for w in self._workers:
                if w.ready and w.job is None and queue:
                    i = queue.popleft()
                    w.send((i, *jobs[i]))
            busy = [w for w in self._workers if w.job is not None]
            starting = [w for w in self._workers if not w.ready]
            now = time.monotonic()
            next_deadline = min((w.started + self.timeout for w in busy), default=now + 1.0)
            ready_conns = wait([w.conn for w in busy + starting], timeout=max(0.0, next_deadline - now))
            for conn in ready_conns:
                w = next(w for w in self._workers if w.conn is conn)
                try:
                    job_id, ok, err = conn.recv()
                except (EOFError, OSError):  # the worker died (e.g. out of memory): that job failed
                    if not w.ready:
                        raise RuntimeError("a math grading worker died while starting; check that math-verify "
                                           "imports (python -c 'import math_verify')") from None
                    if w.job is not None:
                        finish(w.job[0], _JobResult(False, error="grading worker died"))
                    self._replace(w)
                    continue
                if job_id == "ready":
                    w.ready = True
                    continue
                w.job = None
                finish(job_id, _JobResult(ok, error=err))
            now = time.monotonic()
            for w in list(self._workers):
                if w.job is not None and now - w.started >= self.timeout:
                    job_id = w.job[0]
                    self._replace(w)  # hard kill: the only way to stop sympy spinning in C
                    finish(job_id, _JobResult(False, timed_out=True))
            if queue and not any(w.ready for w in self._workers):
                self._await_ready(self._workers)  # every worker is (re)starting: wait with the start-up limit
        return [r if r is not None else _JobResult(False, error="not graded") for r in results]

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

        def run(advance: Any) -> list[_JobResult]:
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

                from common.progress import progress_bar

                try:
                    advance = stack.enter_context(progress_bar("grading math", len(pairs)))
                except LiveError:  # a caller's progress display is already live: grade without a bar
                    advance = None
            job_results = run(advance)

        mv: list[_JobResult | None] = [None] * len(pairs)
        qw: list[_JobResult | None] = [None] * len(pairs)
        for (kind, *_), item, res in zip(jobs, owner, job_results):
            (mv if kind == "mv" else qw)[item] = res
        grades = []
        for i, ext in enumerate(extracted):
            primary = mv[i]
            second = qw[i] or _JobResult(False)
            assert primary is not None
            errors = [e for e in (primary.error, second.error) if e]
            grades.append(MathGrade(
                correct=primary.ok, extracted=ext, extraction_failed=ext is None, timed_out=primary.timed_out,
                second_grader_correct=second.ok, grader_disagreement=primary.ok != second.ok,
                second_grader_timed_out=second.timed_out, error="; ".join(errors) or None,
            ))
        return grades


_live_pools: "weakref.WeakSet[MathGradingPool]" = weakref.WeakSet()


def shutdown() -> None:
    """Stop every grading worker, multiprocessing's forkserver and its resource tracker, and wait for them, so that
    nothing outlives the process (they would otherwise linger for seconds, adopted by PID 1). Registered with
    ``atexit``; safe to call more than once (a later grading call starts them again)."""
    for pool in list(_live_pools):
        pool.close()
    try:
        from multiprocessing import forkserver

        fs = getattr(forkserver, "_forkserver", None)
        pid = getattr(fs, "_forkserver_pid", None)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)  # it holds only preloaded modules: a graceful exit takes seconds
            except ProcessLookupError:
                pass
            fs._stop()  # closes its pipe, reaps it, removes its socket file
    except Exception as e:  # noqa: BLE001 - private multiprocessing API: never fail an exit over it
        logging.getLogger(__name__).debug("forkserver shutdown: %s", e)
    try:
        from multiprocessing import resource_tracker

        resource_tracker._resource_tracker._stop()  # closes its pipe and reaps it
    except Exception as e:  # noqa: BLE001
        logging.getLogger(__name__).debug("resource tracker shutdown: %s", e)


atexit.register(shutdown)


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
