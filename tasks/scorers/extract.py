"""Answer extraction in the order of the Qwen2.5-Math evaluation code: last \\boxed{}, else the text after
"the answer is", else the last number in the response."""
from __future__ import annotations

import re

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), braces balanced; None if there is none."""
    idx = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if idx < 0:
        return None
    start = idx + (len("\\boxed") if text.startswith("\\boxed", idx) else len("\\fbox"))
    rest = text[start:]
    if not rest.lstrip().startswith("{"):
        # "\boxed 5" form. (The brace must follow the command: a later "{" belongs to other text.)
        m = re.match(r"\s+([^\s$]+)", rest)
        return m.group(1) if m else None
    i = start + len(rest) - len(rest.lstrip())
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip()
    return None  # unbalanced: truncated response


def after_answer_is(text: str) -> str | None:
    m = list(re.finditer(r"the (?:final )?answer is[:\s]*", text, flags=re.IGNORECASE))
    if not m:
        return None
    rest = text[m[-1].end() :].strip()
    rest = rest.split("\n")[0].strip()
    return rest.rstrip(".").strip("$ ").strip() or None


def last_number(text: str) -> str | None:
    nums = _NUMBER.findall(text)
    return nums[-1].replace(",", "") if nums else None


def extract_answer(text: str) -> tuple[str | None, str]:
    """(answer, how) where how is 'boxed' | 'answer_is' | 'last_number' | 'none'."""
    for how, fn in (("boxed", last_boxed), ("answer_is", after_answer_is), ("last_number", last_number)):
        ans = fn(text)
        if ans:
            return ans, how
    return None, "none"
