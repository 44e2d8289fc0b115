"""The training-data stages, declared once: a closed set of names (``Stage``), and what each fills in a TrainItem,
what it reads, and which teacher call makes it. Methods (distill), the pipeline and its cost estimate (harness)
and the report (reports) all read this table, so it lives below them.

A ``Stage`` is a ``str`` (its value is the name written in items.jsonl, the manifest, configs and method
declarations), so ``Stage.probe == "probe"`` and a dict keyed by stages answers plain names; ``Stage("probe")``
turns a name read from disk into the stage, and refuses an unknown one.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional


class Stage(str, Enum):
    """One training-data stage, in pipeline order."""

    probe = "probe"  # y': the untrained student's own answer
    critique = "critique"  # c: the teacher reviews the probe
    refine = "refine"  # r: the teacher rewrites from (x, y', c)
    direct = "direct"  # t: the teacher's own answer to x

    # Written as its name (as StrEnum does, on every Python this project supports): f-strings, paths, messages.
    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def item_field(self) -> str:
        """The TrainItem field it fills (also the name of its gold check)."""
        return _BEHAVIOUR[self].item_field

    @property
    def after(self) -> tuple["Stage", ...]:
        """The stages whose outputs it reads (none: the pool question alone)."""
        return _BEHAVIOUR[self].after

    @property
    def parent(self) -> Optional["Stage"]:
        """The stage its fingerprint builds on; None: the pool."""
        return self.after[0] if self.after else None

    @property
    def teacher_call(self) -> Optional[str]:
        """The Teacher method that makes it (distill/teachers/base.py); None: the student makes it."""
        return _BEHAVIOUR[self].teacher_call

    @property
    def by_teacher(self) -> bool:
        return self.teacher_call is not None


@dataclass(frozen=True)
class _Behaviour:
    item_field: str
    after: tuple[Stage, ...]
    teacher_call: Optional[str]


_BEHAVIOUR: dict[Stage, _Behaviour] = {
    Stage.probe: _Behaviour("probe", (), None),
    Stage.critique: _Behaviour("critique", (Stage.probe,), "critique"),
    Stage.refine: _Behaviour("refined", (Stage.critique,), "refine"),
    Stage.direct: _Behaviour("direct", (), "answer"),
}

#: In pipeline order.
STAGES: tuple[Stage, ...] = tuple(Stage)
TEACHER_STAGES: tuple[Stage, ...] = tuple(s for s in Stage if s.by_teacher)
#: stage -> the stages its inputs come from
STAGE_DEPENDS: dict[Stage, tuple[Stage, ...]] = {s: s.after for s in Stage}
