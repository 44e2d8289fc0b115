"""Small text rules that both the pipeline (harness, distill) and the reports apply, kept here so that neither
imports the other: how a swept model is labelled, and what a critique's Conclusion line says."""
from __future__ import annotations

from typing import Any


def short_key(key: str) -> str:
    return key.split(".")[-1]


def value_text(v: Any) -> str:
    if isinstance(v, dict):
        return "+".join(f"{k}{value_text(x)}" for k, x in sorted(v.items())) or "default"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def params_label(params: dict[str, Any]) -> str:
    """{"train.learning_rate": 0.0005} -> "learning_rate=0.0005" (the report's row label)."""
    return ", ".join(f"{short_key(k)}={value_text(v)}" for k, v in params.items() if k != "aggregate")


def model_label(model: str, params: dict[str, Any]) -> str:
    label = params_label(params)
    return f"{model} [{label}]" if label else model


def conclusion_of(text: str | None) -> str | None:
    """'right' / 'wrong' from the text's last 'Conclusion:' line, None if it has none (or another value)."""
    if not text:
        return None
    for line in reversed(text.strip().splitlines()):
        s = line.strip().lower().rstrip(".")
        if s.startswith("conclusion:"):
            v = s.split(":", 1)[1].strip()
            return v if v in ("right", "wrong") else None
    return None
