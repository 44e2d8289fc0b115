"""Prompt wording shared by several tasks and by the distillation methods (our own wording)."""
from __future__ import annotations

#: Zero-shot math instruction in the style of the Qwen2.5-Math evaluation harness: reason, then \boxed{}.
MATH_SYSTEM = "You are a careful problem solver. Reason step by step and put your final answer in \\boxed{}."
MATH_USER = "{question}\n\nThink step by step, then write the final answer as \\boxed{{answer}}."


def math_messages(question: str, system: bool = True) -> list[dict[str, str]]:
    """The chat prompt every math task (and every method's plain question input) uses."""
    msgs = [{"role": "system", "content": MATH_SYSTEM}] if system else []
    msgs.append({"role": "user", "content": MATH_USER.format(question=question)})
    return msgs
