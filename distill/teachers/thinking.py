"""Teacher output post-processing: strip a reasoning model's thinking before the text becomes a critique or a
training target (the paper strips S1.1-32B's thinking section; without it S1.1's refinements are cut before their
answer at train.max_length 8192).

``teacher.strip_thinking`` is a ready choice or a regular expression; every match is deleted and the result
stripped of surrounding whitespace. An output the pattern does not match is kept as it is and counted
(``thinking_not_found``): a thinking section cut by the token budget has no end marker, and guessing would lose
the answer or keep the thinking silently.
"""
from __future__ import annotations

import re

#: Ready choices. s1: S1.1 writes "<|im_start|>think\n...<|im_start|>answer\n" (special tokens, so a server that
#: skips them returns "think\n...\nanswer\n"); everything up to and including the answer marker is thinking.
#: think: DeepSeek-R1 / Qwen3 style <think>...</think> blocks, also when the chat template opened the block so the
#: output starts inside it.
READY: dict[str, str] = {
    "s1": r"(?s)\A.*?(?:<\|im_start\|>answer[ \t]*\n?|(?m:^answer[ \t]*\n))",
    "think": r"(?s)<think>.*?</think>\s*|\A(?:(?!<think>).)*?</think>\s*",
}


class ThinkingPatternError(ValueError):
    """teacher.strip_thinking is neither a ready choice nor a valid regular expression (one line)."""


def thinking_pattern(spec: str) -> re.Pattern[str]:
    """The compiled pattern for a ready choice or a regular expression."""
    try:
        return re.compile(READY.get(spec, spec))
    except re.error as e:
        raise ThinkingPatternError(f"teacher.strip_thinking={spec!r} is not a valid regular expression ({e}); use "
                                   f"one of {', '.join(READY)} or a Python regex") from None


def strip_thinking(text: str, pattern: re.Pattern[str]) -> tuple[str, bool]:
    """(text without its thinking, whether the pattern matched)."""
    out, n = pattern.subn("", text)
    return (out.strip(), True) if n else (text, False)
