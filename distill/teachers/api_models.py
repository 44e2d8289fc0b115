"""Facts about common API teacher models: list prices and the sampling settings they reject.

Prices are USD per million tokens (input, output), the providers' public list prices as of PRICES_AS_OF, without
batch or caching discounts. They are a default for estimates and spending caps only: ``teacher.price_per_mtok_in``
/ ``_out`` (or the engine's ``price_per_mtok_*`` options) override them, and a model not listed has an unknown
price ("unknown" in the dry run, never $0). A self-hosted server (any base_url other than the provider's) has no
list price: its cost is GPU time (the dry run's teacher_gpu_hours).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

PRICES_AS_OF = "2025-11-01"

#: model-name prefix -> (USD / Mtok in, USD / Mtok out); the longest matching prefix wins.
PRICES: dict[str, tuple[float, float]] = {
    # Anthropic
    "claude-3-7-sonnet": (3.0, 15.0),
    "claude-3-5-sonnet": (3.0, 15.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-3-5-haiku": (0.8, 4.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-opus-4": (15.0, 75.0),
    "claude-opus-4-5": (5.0, 25.0),
    # OpenAI
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-4.1-nano": (0.1, 0.4),
    "o3": (2.0, 8.0),
    "o3-mini": (1.1, 4.4),
    "o4-mini": (1.1, 4.4),
    "gpt-5": (1.25, 10.0),
    "gpt-5-mini": (0.25, 2.0),
    "gpt-5-nano": (0.05, 0.4),
}

#: Provider hosts: only a model served there has a list price and the provider's sampling rules.
PROVIDER_HOSTS = {"anthropic": "api.anthropic.com", "openai": "api.openai.com"}


def list_price(model: str) -> tuple[float, float] | None:
    """The list price of a provider model by name (longest listed prefix), else None."""
    name = model.rsplit("/", 1)[-1].lower()
    best = max((p for p in PRICES if name.startswith(p)), key=len, default=None)
    return PRICES[best] if best else None


def on_provider(backend: str, base_url: str | None) -> bool:
    """True when the engine talks to the provider's own API (not a self-hosted OpenAI-compatible server)."""
    host = PROVIDER_HOSTS.get(backend)
    return host is not None and (base_url is None or host in base_url)


@dataclass(frozen=True)
class SamplingRule:
    """A sampling setting a family of provider models rejects."""

    backend: str
    model: re.Pattern[str]
    ok: "object"  # (temperature, top_p) -> bool
    why: str
    fix: str


_RULES = (
    SamplingRule("anthropic", re.compile(r"claude"), lambda t, p: 0.0 <= t <= 1.0,
                 "Anthropic's Messages API accepts temperature 0-1", "set teacher.temperature between 0 and 1"),
    SamplingRule("openai", re.compile(r"^(o1|o3|o4|gpt-5)"), lambda t, p: t == 1.0 and p == 1.0,
                 "OpenAI's reasoning models accept only the default temperature 1 and top_p 1",
                 "set teacher.temperature=1.0 (their decoding cannot be greedy)"),
)


def sampling_refusal(backend: str, model: str, base_url: str | None, temperature: float,
                     top_p: float = 1.0, sent: bool = True) -> str | None:
    """One line saying why the provider would reject these sampling settings for this model, else None."""
    if not sent or not on_provider(backend, base_url):
        return None
    name = model.rsplit("/", 1)[-1].lower()
    for rule in _RULES:
        if rule.backend == backend and rule.model.search(name) and not rule.ok(temperature, top_p):
            return (f"teacher.temperature={temperature} is rejected by {model} ({rule.why}); {rule.fix}")
    return None
