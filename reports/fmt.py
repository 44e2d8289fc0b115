"""Text forms shared by every report section and export: percents, intervals, p-values, short one-line
values, secret redaction, clipped model output."""
from __future__ import annotations

import json
import math
import re
from typing import Any, Mapping

_RESPONSE_HEAD = 2500  # characters kept from the start and from the end of a long response


_RESPONSE_TAIL = 1500


# Whole words of a key name (api_key, hf_token, password): "max_new_tokens" is a budget, not a secret.
_SECRET_WORDS = {"key", "apikey", "token", "secret", "password", "credential", "credentials"}


def pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}"


def signed_pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.{digits}f}"


def ci_text(lo: float | None, hi: float | None) -> str:
    return "" if lo is None or hi is None else f"[{pct(lo)}, {pct(hi)}]"


def p_text(p: float | None, name: str = "p") -> str:
    """'p=0.012', 'p<0.001' (never 'p=<0.001'), 'p –' when there is no test."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return f"{name} –"
    return f"{name}<0.001" if p < 0.001 else f"{name}={p:.3f}"


def short(value: Any, limit: int = 200) -> str:
    """A one-line text form of any JSON-like value."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return short(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def _is_secret_name(name) -> bool:
    return any(part in _SECRET_WORDS for part in re.split(r"[^a-z0-9]+", str(name).lower()))


def redact(value: Any) -> Any:
    """Copy of a config with values under secret-looking keys replaced (configs may carry API keys)."""
    if isinstance(value, Mapping):
        return {k: ("***" if _is_secret_name(k) and v not in (None, "") else redact(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def describe_model(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        for key in ("identity", "model", "name", "path", "id"):
            if isinstance(value.get(key), str):
                return value[key]
    return short(value)


def teacher_text(value: Any) -> str:
    if isinstance(value, Mapping) and value.get("kind"):
        return f"{value['kind']}" + (f": {value['model']}" if value.get("model") else "")
    return describe_model(value)


def prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        return "\n\n".join(f"[{m.get('role', '?')}]\n{m.get('content', '')}" if isinstance(m, Mapping) else str(m)
                           for m in prompt)
    return short(prompt, 10_000)


def clip(text: str, head: int = _RESPONSE_HEAD, tail: int = _RESPONSE_TAIL) -> str:
    """A long text's start and end with the number of characters left out between them."""
    if len(text) <= head + tail + 100:
        return text
    cut = len(text) - head - tail
    return f"{text[:head]}\n\n[… {cut:,} characters not shown …]\n\n{text[-tail:]}"


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def kv(section: Any) -> list[tuple[str, str]]:
    if not isinstance(section, Mapping):
        return [("value", short(section, 500))] if section else []
    return [(str(k), short(v, 500)) for k, v in section.items()]
