"""Letter extraction for multiple-choice answers written as free text ("... The answer is (C).").

Two levels, shared by every generate-style multiple-choice task:

- strict: only an explicit "answer is (X)" / "answer is X" statement counts;
- flexible: strict first, then the last parenthesised letter "(X)", then the last "Answer: X", then the last
  standalone capital letter among the valid options.

``extract_mmlu_pro`` reproduces the cascade of TIGER-Lab's MMLU-Pro evaluation script (first "answer is (X)",
then "Answer: X", then the last capital letter A-J anywhere in the text), for faithful MMLU-Pro numbers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from string import ascii_uppercase

STRICT = "answer_is"
HOWS = (STRICT, "parenthesized", "answer_colon", "last_letter", "none")


@dataclass(frozen=True)
class Extraction:
    letter: str | None
    how: str  # one of HOWS

    @property
    def strict(self) -> str | None:
        """The letter only when it came from an explicit "answer is" statement."""
        return self.letter if self.how == STRICT else None


def option_letters(n_options: int) -> str:
    if not 1 <= n_options <= 26:
        raise ValueError(f"number of options must be 1..26, got {n_options}")
    return ascii_uppercase[:n_options]


def _cls(letters: str) -> str:
    return "[" + re.escape(letters) + "]"


def answer_is(text: str, letters: str = "ABCD", which: str = "last") -> str | None:
    """Letter from "the answer is (X)" / "answer is X" (markdown emphasis and a colon allowed)."""
    c = _cls(letters)
    pat = re.compile(
        rf"answer\s+is\s*:?\s*[*_]*\s*(?:\(({c})\)|\[({c})\]|({c})(?![A-Za-z0-9]))", re.IGNORECASE
    )
    # The letter itself must be a capital: IGNORECASE only relaxes the words around it.
    hits = [m for m in pat.finditer(text) if (m.group(1) or m.group(2) or m.group(3)) in letters]
    if not hits:
        return None
    m = hits[-1] if which == "last" else hits[0]
    return m.group(1) or m.group(2) or m.group(3)


def last_parenthesized(text: str, letters: str = "ABCD") -> str | None:
    hits = re.findall(rf"\(({_cls(letters)})\)", text)
    return hits[-1] if hits else None


def answer_colon(text: str, letters: str = "ABCD") -> str | None:
    hits = re.findall(rf"[Aa]nswer\s*:\s*[*_]*\s*\(?({_cls(letters)})(?![A-Za-z0-9])", text)
    return hits[-1] if hits else None


def last_letter(text: str, letters: str = "ABCD") -> str | None:
    hits = re.findall(rf"(?<![A-Za-z0-9]){_cls(letters)}(?![A-Za-z0-9])", text)
    return hits[-1] if hits else None


def extract_strict(text: str, n_options: int = 4, which: str = "last") -> Extraction:
    letter = answer_is(text, option_letters(n_options), which)
    return Extraction(letter, STRICT if letter else "none")


def extract_flexible(text: str, n_options: int = 4, which: str = "last") -> Extraction:
    letters = option_letters(n_options)
    for how, fn in ((STRICT, lambda t: answer_is(t, letters, which)),
                    ("parenthesized", lambda t: last_parenthesized(t, letters)),
                    ("answer_colon", lambda t: answer_colon(t, letters)),
                    ("last_letter", lambda t: last_letter(t, letters))):
        letter = fn(text)
        if letter:
            return Extraction(letter, how)
    return Extraction(None, "none")


def extract_mmlu_pro(text: str) -> Extraction:
    """MMLU-Pro's official cascade (TIGER-Lab evaluate_from_local.py), letters A-J whatever the option count."""
    m = re.search(r"answer is \(?([A-J])\)?", text)
    if m:
        return Extraction(m.group(1), STRICT)
    # "." stops at newlines: the first line holding "Answer: X" wins, its last occurrence within that line.
    m = re.search(r".*[aA]nswer:\s*([A-J])", text)
    if m:
        return Extraction(m.group(1), "answer_colon")
    m = re.search(r"[A-J](?=[^A-J]*$)", text)  # the last capital A-J anywhere, even inside a word
    if m:
        return Extraction(m.group(0), "last_letter")
    return Extraction(None, "none")
