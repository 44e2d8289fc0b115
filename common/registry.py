"""The one shape every by-name registry here shares (engines, executors, teachers): a decorator that files a
class under its name and stamps the name on it. Lookups stay with each registry: their errors differ."""
from __future__ import annotations

from typing import Callable, TypeVar

C = TypeVar("C", bound=type)


def registrar(registry: dict[str, type], attr: str) -> Callable[[str], Callable[[C], C]]:
    """``register = registrar(REGISTRY, "backend")``; then ``@register("hf")`` sets ``cls.backend = "hf"`` and
    ``REGISTRY["hf"] = cls``."""

    def register(name: str) -> Callable[[C], C]:
        def wrap(cls: C) -> C:
            setattr(cls, attr, name)
            registry[name] = cls
            return cls

        return wrap

    return register
