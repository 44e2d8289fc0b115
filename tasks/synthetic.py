"""The synthetic arithmetic tasks, ``synthetic_id`` (2-3 steps, the tiny student's training distribution) and
``synthetic_ood`` (4-5 steps): the embedded default tasks of the tiny setup. The problems themselves (templates,
generation, the train/eval split by question hash, parsing back) are in tasks/synthetic_problems.py.
"""
from __future__ import annotations

import re
from dataclasses import replace as dc_replace
from typing import Any, ClassVar, Optional, Sequence

from pydantic import Field

from harness.tasks.base import Doc, GenerationConfig, Scored, Task, TaskOptions
from harness.tasks.prompts import math_messages
from harness.tasks.registry import register_task
from harness.tasks.scorers.extract import extract_answer
from harness.tasks.synthetic_problems import eval_problems


# ---- scoring --------------------------------------------------------------------------------------------
def as_int(text: str | None) -> int | None:
    """'14', '14.0', '$14$', '1,014' -> int; anything else -> None."""
    if text is None:
        return None
    s = text.strip().strip("$").replace(",", "").strip()
    s = re.sub(r"^\\text\{(.*)\}$", r"\1", s).strip()
    try:
        f = float(s)
    except ValueError:
        return None
    return int(f) if f.is_integer() else None


class SyntheticOptions(TaskOptions):
    n: int = Field(200, gt=0, description="number of evaluation problems")
    seed: int = Field(0, description="seed stream of the evaluation problems")
    #: Completions per problem (``n`` is taken: it counts problems); > 1 adds pass@k metrics.
    samples: Optional[int] = Field(None, gt=0, description="sampled completions per problem (pass@k)")
    temperature: Optional[float] = Field(None, ge=0.0, description="sampling temperature (default greedy)")


class _SyntheticTask(Task):
    ood: ClassVar[bool] = False
    grader_version = "1"  # last \boxed{} (else fallbacks) read as an integer, compared with the gold
    grader_packages = ()
    Options = SyntheticOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        over: dict[str, Any] = {}
        if self.opts.samples is not None:
            over["n"] = self.opts.samples
        if self.opts.temperature is not None:
            over["temperature"] = self.opts.temperature
        if over:
            self.generation = dc_replace(type(self).generation, **over)  # type: ignore[misc]
            if self.generation.n > 1:
                self.score_many = self._score_many_pass_at_k  # type: ignore[method-assign]

    def fingerprint_parts(self, docs: Sequence[Doc]) -> dict[str, Any]:
        parts = super().fingerprint_parts(docs)
        # unset sampling options leave the fingerprint of greedy runs as it was before they existed
        parts["options"] = {k: v for k, v in parts["options"].items()
                            if not (k in ("samples", "temperature") and v is None)}
        return parts

    def docs(self) -> list[Doc]:
        n, seed = self.opts.n, self.opts.seed
        return [
            Doc(id=f"{self.name}/{i}", prompt=math_messages(p.question), gold=str(p.answer),
                meta={"problem": p.to_meta(), "steps": len(p.ops)})
            for i, p in enumerate(eval_problems(n, seed, self.ood))
        ]

    def score(self, doc: Doc, responses: Sequence[str]) -> Scored:
        response = responses[0] if responses else ""
        extracted, how = extract_answer(response or "")
        ok = as_int(extracted) == int(doc.gold) and extracted is not None
        return Scored(id=doc.id, score=float(ok), metrics={"accuracy": float(ok)}, extracted=extracted,
                      details={"extraction_failed": how == "none", "extraction": how})


@register_task("synthetic_id")
class SyntheticID(_SyntheticTask):
    description = "Synthetic arithmetic word problems, 2-3 steps (the tiny student's training distribution)."
    generation = GenerationConfig(max_new_tokens=160, temperature=0.0)
    ood = False


@register_task("synthetic_ood")
class SyntheticOOD(_SyntheticTask):
    description = "Synthetic arithmetic word problems, 4-5 steps (longer than anything in the training pool)."
    generation = GenerationConfig(max_new_tokens=256, temperature=0.0)
    ood = True
