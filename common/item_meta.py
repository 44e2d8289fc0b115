"""What the pipeline records beside one training item's texts (``TrainItem.meta``, harness/distill/items.py): where
the pool question came from, what each stage's call used and left, the checks against the gold answer, the
critique-mode swap and the critique data given with the pool.

Declared below distill and reports because both read it: the training-data stage writes it into
data/items.jsonl, the report reads that file back. On disk it is the JSON object items.jsonl has always held
(``to_dict`` writes the same keys; absent values are left out), so a file written before these types loads as it
is: every key is optional and a missing one takes its default; a key this version does not know is dropped.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Optional

from harness.common.stages import Stage
from harness.common.types import Completion


@dataclass
class CallUsage:
    """What one item's teacher call(s) of a stage used: tokens as the engine reported them (a cached answer
    counts at its original size and is marked cached), follow-up requests, and whether the verdict is missing."""

    tokens_in: int = 0
    tokens_out: int = 0
    requests: int = 0
    cached: int = 0  # requests answered by the call cache
    retries: int = 0  # follow-up turns asking for the Conclusion line
    flagged: bool = False  # a critique still without a valid Conclusion line after the retries

    def add(self, c: Completion) -> None:
        self.tokens_in += c.prompt_tokens
        self.tokens_out += c.completion_tokens
        self.requests += 1
        self.cached += bool(c.cached)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CallUsage":
        return cls(**_known(cls, d))


@dataclass
class StageCall:
    """What one stage's model call left beside the text it wrote into the item."""

    usage: Optional[CallUsage] = None  # a teacher that counts its calls (the LLM teacher)
    raw: Optional[str] = None  # the output before its thinking section was stripped (teacher.strip_thinking)
    thinking_missing: bool = False  # teacher.strip_thinking was set and found no thinking section

    @property
    def empty(self) -> bool:
        return self.usage is None and self.raw is None and not self.thinking_missing


@dataclass
class GoldCheck:
    """One text checked against the gold answer (math-verify)."""

    text: str  # a short hash of the text checked: it is checked again only once it changes
    correct: Optional[bool]  # None: no answer to check


@dataclass
class GoldChecks:
    """The item's texts against its gold answer: the draft, the refined and the direct answer (by the name of the
    item field), and whether the critique's own verdict agrees with the draft's check."""

    probe: Optional[GoldCheck] = None
    refined: Optional[GoldCheck] = None
    direct: Optional[GoldCheck] = None
    verdict: Optional[str] = None  # the critique's Conclusion: "right" | "wrong" | None
    verdict_agrees: Optional[bool] = None  # None: no verdict, or the draft could not be checked

    def of(self, stage: Stage) -> Optional[GoldCheck]:
        """The check of the text ``stage`` wrote (none for the critique: its verdict is ``verdict``)."""
        return getattr(self, stage.item_field) if stage is not Stage.critique else None

    def correct(self, stage: Stage) -> Optional[bool]:
        check = self.of(stage)
        return check.correct if check is not None else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: asdict(c) for name in ("probe", "refined", "direct")
                               if (c := getattr(self, name)) is not None}
        out.update(verdict=self.verdict, verdict_agrees=self.verdict_agrees)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GoldChecks":
        checks = {name: GoldCheck(**_known(GoldCheck, d[name])) for name in ("probe", "refined", "direct")
                  if isinstance(d.get(name), Mapping)}
        return cls(**checks, verdict=d.get("verdict"), verdict_agrees=d.get("verdict_agrees"))


@dataclass
class CritiqueSwap:
    """teacher.critique_mode irrelevant or generic: the item's ``critique`` is what the student trains on, not
    the teacher's critique of this item's answer, which is kept here (the refine stage always reads it)."""

    specific: str  # the teacher's own critique of this item's answer
    came_from: str  # where the trained critique came from: another item's id, or "generic"


@dataclass
class GivenCritique:
    """Critique data given with the pool (pool.student_answer_field / pool.critique_field): y' and c of a row."""

    answer: str
    critique: str


@dataclass
class ItemMeta:
    """Everything known about an item beside its texts. The first group comes with the pool question (which pool
    fields are set depends on the source), the rest is written by the training-data stages."""

    # ---- from the pool
    task: Optional[str] = None  # "synthetic": the embedded arithmetic problems
    problem: Optional[dict[str, Any]] = None  # synthetic: the structured problem (tasks' Problem.to_meta())
    answer_style: Optional[str] = None  # synthetic web-style y*: "web"
    web_kind: Optional[str] = None  # which web-style answer y* is (tasks/synthetic_web.py)
    level: Optional[str] = None  # math_train: the MATH level and subject
    type: Optional[str] = None
    row: Optional[int] = None  # hf: and JSONL pools: the row the question came from
    given: Optional[GivenCritique] = None
    # ---- from the stages
    calls: dict[Stage, StageCall] = field(default_factory=dict)  # per stage, in pipeline order on disk
    critique_swap: Optional[CritiqueSwap] = None
    checks: Optional[GoldChecks] = None  # items with a gold answer, once the stages have run

    def call(self, stage: Stage) -> StageCall:
        """What ``stage``'s call left (an empty record when nothing)."""
        return self.calls.get(stage) or StageCall()

    def usage(self, stage: Stage) -> CallUsage:
        return self.call(stage).usage or CallUsage()

    def set_call(self, stage: Stage, call: StageCall) -> None:
        if call.empty:
            self.calls.pop(stage, None)
        else:
            self.calls[stage] = call

    def teacher_critique(self, critique: Optional[str]) -> Optional[str]:
        """The teacher's own critique of the item's answer, given the item's ``critique`` field."""
        return self.critique_swap.specific if self.critique_swap is not None else critique

    # ---- on disk: the keys items.jsonl has always had
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: v for name in _POOL_KEYS if (v := getattr(self, name)) is not None}
        if self.given is not None:
            out["given"] = asdict(self.given)
        order = [s for s in Stage if s in self.calls]
        if raw := {s.value: c.raw for s in order if (c := self.calls[s]).raw is not None}:
            out["raw"] = raw
        if missing := {s.value: True for s in order if self.calls[s].thinking_missing}:
            out["thinking_missing"] = missing
        if usage := {s.value: u.to_dict() for s in order if (u := self.calls[s].usage) is not None}:
            out["usage"] = usage
        if self.critique_swap is not None:
            out.update(specific_critique=self.critique_swap.specific, critique_from=self.critique_swap.came_from)
        if self.checks is not None:
            out["checks"] = self.checks.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ItemMeta":
        meta = cls(**{k: d[k] for k in _POOL_KEYS if k in d})
        if isinstance(d.get("given"), Mapping):
            meta.given = GivenCritique(**_known(GivenCritique, d["given"]))
        raw, missing, usage = (d.get(k) or {} for k in ("raw", "thinking_missing", "usage"))
        for stage in Stage:
            meta.set_call(stage, StageCall(
                usage=CallUsage.from_dict(usage[stage.value]) if usage.get(stage.value) else None,
                raw=raw.get(stage.value), thinking_missing=bool(missing.get(stage.value))))
        if d.get("specific_critique") is not None and d.get("critique_from") is not None:
            meta.critique_swap = CritiqueSwap(d["specific_critique"], d["critique_from"])
        if isinstance(d.get("checks"), Mapping):
            meta.checks = GoldChecks.from_dict(d["checks"])
        return meta


_POOL_KEYS = ("task", "problem", "answer_style", "web_kind", "level", "type", "row")


def _known(cls: type, d: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``d`` that are fields of the dataclass ``cls`` (a key written by a later version is dropped)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}
