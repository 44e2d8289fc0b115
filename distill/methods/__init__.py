"""Registry of distillation methods: built-ins plus third-party ones from the ``harness.methods`` entry points.

A plugin package declares, in its pyproject.toml::

    [project.entry-points."harness.methods"]
    my_method = "my_pkg.my_module:MyMethod"    # a harness.distill.methods.base.Method subclass

and ``harness compare --methods sft,my_method`` then finds it.
"""
from __future__ import annotations

from importlib.metadata import entry_points
from typing import Iterable, Sequence

from harness.common.stages import STAGE_DEPENDS
from harness.distill.items import TrainItem
from harness.distill.methods.base import STAGES, Method
from harness.distill.methods.cft import CFT
from harness.distill.methods.cft_star import CFTStar
from harness.distill.methods.cgd import CGD
from harness.distill.methods.distilled_sft import DistilledSFT
from harness.distill.methods.refine_only import RefineOnly
from harness.distill.methods.sft import SFT

ENTRY_POINT_GROUP = "harness.methods"

METHODS: dict[str, type[Method]] = {}


_entry_points_loaded = False
_entry_point_errors: dict[str, str] = {}


class UnknownMethod(ValueError):
    """A method name that is neither built in nor provided by an installed plugin."""


def register_method(cls: type[Method]) -> type[Method]:
    """Add a Method subclass under its ``name`` (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"{cls!r} is not a harness.distill.methods.base.Method subclass; fix: subclass Method")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"method class {cls.__qualname__} has no `name`; fix: set a class attribute name = '...'")
    if bad := set(cls.needs) - set(STAGES):
        raise TypeError(f"method {name!r} needs unknown stage(s) {sorted(bad)}; known stages: {', '.join(STAGES)}")
    if name in METHODS and METHODS[name] is not cls:
        raise ValueError(
            f"method name {name!r} is already taken by {METHODS[name].__module__}.{METHODS[name].__qualname__}; "
            "fix: give the new method another name"
        )
    METHODS[name] = cls
    return cls


for _cls in (SFT, DistilledSFT, CFT, CGD, RefineOnly, CFTStar):
    register_method(_cls)


def load_entry_point_methods(force: bool = False) -> None:
    """Register third-party methods from the ``harness.methods`` entry-point group (once per process).

    A plugin that fails to load does not break the others; its error is reported when its name is asked for."""
    global _entry_points_loaded
    if _entry_points_loaded and not force:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
            if getattr(cls, "name", None) != ep.name:
                raise TypeError(f"entry point name {ep.name!r} differs from the class's name {cls.name!r}")
            register_method(cls)
        except Exception as e:  # a broken plugin must not take the built-ins down with it
            _entry_point_errors[ep.name] = f"{type(e).__name__}: {e}"


def method_names() -> list[str]:
    """Every known method: built-ins in the paper's table order, then plugins alphabetically."""
    load_entry_point_methods()
    builtin = ["sft", "distilled_sft", "cft", "cgd", "refine_only", "cft_star"]
    return [n for n in builtin if n in METHODS] + sorted(n for n in METHODS if n not in builtin)


def get_method(name: str, prompts=None) -> Method:
    """An instance of the named method using ``prompts`` (a PromptTemplates; default wording when None)."""
    load_entry_point_methods()
    if name not in METHODS:
        if name in _entry_point_errors:
            raise UnknownMethod(f"method {name!r} is installed as a plugin but failed to load "
                                f"({_entry_point_errors[name]}); fix the plugin package")
        raise UnknownMethod(f"unknown method {name!r}; known: {', '.join(method_names())} "
                            f"(or install a plugin exposing the {ENTRY_POINT_GROUP!r} entry point)")
    return METHODS[name](prompts)


def stages_needed(names: Iterable[str]) -> list[str]:
    """The pipeline stages the given methods need (dependencies included), in pipeline order."""
    load_entry_point_methods()
    wanted: set[str] = set()
    todo = []
    for n in names:
        if n not in METHODS:
            get_method(n)  # raises UnknownMethod with the list of known names
        todo.extend(METHODS[n].needs)
    while todo:
        stage = todo.pop()
        if stage not in wanted:
            wanted.add(stage)
            todo.extend(STAGE_DEPENDS.get(stage, ()))
    return [s for s in STAGES if s in wanted]


def build_dataset(method: Method | str, items: Sequence[TrainItem], prompts=None) -> list[dict]:
    """The method's prompt-completion examples for the items; items lacking what the method needs are skipped.

    Each example also carries the item's ``id`` (train_student uses only ``prompt`` and ``completion``)."""
    m = get_method(method, prompts) if isinstance(method, str) else method
    out = []
    for item in items:
        ex = m.build_example(item)
        if ex is not None:
            out.append({"id": item.id, **ex})
    return out


__all__ = [
    "CFT", "CFTStar", "CGD", "DistilledSFT", "ENTRY_POINT_GROUP", "METHODS", "Method", "RefineOnly", "SFT", "STAGES",
    "UnknownMethod", "build_dataset", "get_method", "load_entry_point_methods", "method_names",
    "register_method", "stages_needed",
]
