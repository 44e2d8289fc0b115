"""One training question and everything the pipeline learns about it (notation of the CGD paper)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

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
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainItem":
        return cls(**d)

    @property
    def conclusion(self) -> str | None:
        """'right' / 'wrong' from the critique's last Conclusion line, None if it has none."""
        return conclusion_of(self.critique)
