"""Teachers, one module each, found by kind (as engines are): a module decorates its class with
``@register_teacher("kind")`` and adds one line to ``TEACHER_MODULES``. Each class builds itself from the
``teacher:`` config section with ``from_config(section, prompts, engine, params, identity)``; a class with
``needs_engine = True`` gets the engine the harness serves for ``teacher.model`` (and its sampling and identity),
the others get None."""
from __future__ import annotations

import importlib

from harness.common.registry import registrar

#: teacher kind -> module that registers it
TEACHER_MODULES: dict[str, str] = {
    "oracle": "harness.distill.teachers.oracle",
    "reference": "harness.distill.teachers.reference",
    "llm": "harness.distill.teachers.llm",
}
TEACHER_REGISTRY: dict[str, type] = {}

register_teacher = registrar(TEACHER_REGISTRY, "kind")


def teacher_class(kind: str) -> type:
    if kind not in TEACHER_MODULES:
        raise ValueError(f"unknown teacher kind {kind!r}; use one of {', '.join(TEACHER_MODULES)}")
    if kind not in TEACHER_REGISTRY:
        importlib.import_module(TEACHER_MODULES[kind])
    return TEACHER_REGISTRY[kind]
