"""The training-data stages, declared once: what each fills in a TrainItem, what it reads, and which teacher call
makes it. Methods (distill), the pipeline and its cost estimate (harness) and the report (reports) all read this
table, so it lives below them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Stage:
    name: str
    item_field: str  # the TrainItem field it fills
    after: tuple[str, ...]  # the stages whose outputs it reads (none: the pool question alone)
    teacher_call: Optional[str]  # the Teacher method that makes it (distill/teachers/base.py); None: the student


#: In pipeline order.
STAGE_TABLE: tuple[Stage, ...] = (
    Stage("probe", "probe", (), None),  # y': the untrained student's own answer
    Stage("critique", "critique", ("probe",), "critique"),  # c: reviews the probe
    Stage("refine", "refined", ("critique",), "refine"),  # r: rewrites from (x, y', c)
    Stage("direct", "direct", (), "answer"),  # t: the teacher's own answer to x
)
STAGES: tuple[str, ...] = tuple(s.name for s in STAGE_TABLE)
TEACHER_STAGES: tuple[str, ...] = tuple(s.name for s in STAGE_TABLE if s.teacher_call)
#: stage -> the stages its inputs come from
STAGE_DEPENDS: dict[str, tuple[str, ...]] = {s.name: s.after for s in STAGE_TABLE}
#: stage -> (the TrainItem field it fills, the stage it reads, or "pool")
STAGE_FIELDS: dict[str, tuple[str, str]] = {s.name: (s.item_field, s.after[0] if s.after else "pool")
                                            for s in STAGE_TABLE}
