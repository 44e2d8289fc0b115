"""The second math grader: ``qwen_math_equal(extracted, gold)`` in the style of the Qwen2.5-Math evaluation harness
(the paper's grader). Both sides are normalised (``strip_answer``), then compared as strings, as numbers (relative
tolerance 1e-4, with percentage variants x/100 and x*100 of the gold, as Qwen's grader does), as lists / matrices
element by element, as equations, and finally symbolically with sympy (``latex2sympy2_extended``), under its own
timeout (3 s, the paper's). Our code, same behaviour class; tasks/scorers/math.py runs it in worker processes.
"""
from __future__ import annotations

import math
import re
import signal
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

SYMBOLIC_TIMEOUT_S = 3.0  # the paper's sympy timeout


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
