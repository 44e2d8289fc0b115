"""One training question and everything the pipeline learns about it (notation of the CGD paper)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from harness.common.item_meta import (CallUsage, CritiqueSwap, GivenCritique, GoldCheck, GoldChecks,  # noqa: F401
                                      ItemMeta, StageCall)
from harness.common.labels import conclusion_of


@dataclass
class TrainItem:
    id: str
    question: str  # x
    gold_solution: str  # y*: the dataset's reference solution
    gold_answer: str  # final answer alone (for graders and the reference teacher)
    probe: str | None = None  # y': the untrained student's own answer
    critique: str | None = None  # c: the teacher's critique of y', ending in "Conclusion: right|wrong"
    refined: str | None = None  # r: the teacher's improved answer written from (x, y', c)
    direct: str | None = None  # t: the teacher's direct answer to x
    #: Where the question came from and what the stages recorded beside the texts (harness/common/item_meta.py).
    meta: ItemMeta = field(default_factory=ItemMeta)

    def to_dict(self) -> dict[str, Any]:
        """The item as a line of data/items.jsonl."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "meta"}
        out["meta"] = self.meta.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainItem":
        return cls(**{**d, "meta": ItemMeta.from_dict(d.get("meta") or {})})

    @property
    def conclusion(self) -> str | None:
        """'right' / 'wrong' from the critique's last Conclusion line, None if it has none."""
        return conclusion_of(self.critique)

    @property
    def specific_critique(self) -> str | None:
        """The teacher's own critique of this item's answer (under the irrelevant / generic critique modes
        ``critique`` holds what the student trains on instead)."""
        return self.meta.teacher_critique(self.critique)
