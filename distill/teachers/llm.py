"""The LLM teacher: critiques, refinements and direct answers from any Engine (HF, vLLM, API), in batches.

Critiques must end with one line ``Conclusion: right`` or ``Conclusion: wrong``. When one does not (the model
forgot, or hit the token limit), the teacher asks once more in a follow-up turn for just that line
(``PromptTemplates.conclusion_reminder``) and appends the line it gets back. If the follow-up has no valid line
either, the critique is kept as it is and stays flagged: ``TrainItem.conclusion`` returns None for it (the mix filter
drops such items; the unfiltered methods still train on them, as the released pipeline does).
"""
from __future__ import annotations

import hashlib
import json
from typing import Sequence

from distill.items import TrainItem
from distill.prompts import PromptTemplates
from common.types import Prompt, ProgressFn, SamplingParams
from distill.teachers.base import TextModel


def conclusion_of(text: str) -> str | None:
    """'right' / 'wrong' by the same rule as TrainItem.conclusion (last 'Conclusion:' line), else None."""
    return TrainItem(id="", question="", gold_solution="", gold_answer="", critique=text).conclusion


def conclusion_line(text: str) -> str | None:
    """A normalised 'Conclusion: right|wrong' line found anywhere in a short follow-up reply, else None."""
    for line in reversed(text.strip().splitlines()):
        v = conclusion_of(line)
        if v:
            return f"Conclusion: {v}"
    return None


class LLMTeacher:
    """Teacher protocol over an Engine. ``batch_size`` prompts go to ``engine.generate`` per call, so a long
    stage shows steady progress and a crash loses at most one batch (the engine's cache keeps the rest)."""

    def __init__(
        self,
        engine: TextModel,
        prompts: PromptTemplates | None = None,
        params: SamplingParams | None = None,
        identity: str | None = None,
        *,
        batch_size: int = 256,
        retry_missing_conclusion: bool = True,
        progress: ProgressFn | None = None,
    ) -> None:
        self.engine = engine
        self.prompts = prompts or PromptTemplates()
        self.params = params or SamplingParams(max_new_tokens=2048)
        if self.params.n != 1:
            raise ValueError(f"LLMTeacher needs one completion per prompt (params.n={self.params.n}); set n=1")
        self.batch_size = batch_size
        self.retry_missing_conclusion = retry_missing_conclusion
        self.progress = progress
        # Teacher outputs depend on the weights, the wording and the sampling: all three go into the identity.
        blob = json.dumps({"prompts": self.prompts.model_dump(), "params": self.params.to_dict()}, sort_keys=True)
        self.identity = identity or f"llm:{engine.identity}#{hashlib.sha256(blob.encode()).hexdigest()[:12]}"
        #: How many critiques needed the follow-up, and how many stayed without a valid conclusion (last call).
        self.last_stats: dict[str, int] = {}

    # ---- Teacher protocol --------------------------------------------------------------------------------
    def critique(self, items: Sequence[TrainItem]) -> list[str]:
        _require(items, "probe", "probe")
        prompts = [self._critique_prompt(it) for it in items]
        texts = self._generate(prompts)
        bad = [i for i, t in enumerate(texts) if conclusion_of(t) is None]
        fixed = 0
        if bad and self.retry_missing_conclusion:
            follow_ups = [
                prompts[i] + [{"role": "assistant", "content": texts[i]},
                              {"role": "user", "content": self.prompts.conclusion_reminder}]
                for i in bad
            ]
            for i, reply in zip(bad, self._generate(follow_ups, report_progress=False)):
                line = conclusion_line(reply)
                if line:
                    texts[i] = f"{texts[i].rstrip()}\n{line}"
                    fixed += 1
        self.last_stats = {"critiques": len(texts), "missing_conclusion": len(bad),
                           "fixed_by_retry": fixed, "flagged": len(bad) - fixed}
        return texts

    def refine(self, items: Sequence[TrainItem]) -> list[str]:
        _require(items, "probe", "probe")
        _require(items, "critique", "critique")
        return self._generate([
            self.prompts.messages_for("refine_request", question=it.question, answer=it.probe,
                                      critique=it.critique, reference=it.gold_solution)
            for it in items
        ])

    def answer(self, items: Sequence[TrainItem]) -> list[str]:
        return self._generate([self.prompts.messages_for("direct_request", question=it.question) for it in items])

    # ---- helpers --------------------------------------------------------------------------------------
    def _critique_prompt(self, item: TrainItem) -> list[dict[str, str]]:
        # `reference` is offered to every template; only templates that contain {reference} use it.
        return self.prompts.messages_for("critique_request", question=item.question, answer=item.probe,
                                         reference=item.gold_solution)

    def _generate(self, prompts: Sequence[Prompt], report_progress: bool = True) -> list[str]:
        # Follow-ups are not reported: the caller's progress total counts items, not requests.
        progress = self.progress if report_progress else None
        out: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start : start + self.batch_size]
            completions = self.engine.generate(batch, self.params, progress=progress)
            if len(completions) != len(batch):
                raise RuntimeError(f"engine {self.engine.identity} returned {len(completions)} results for "
                                   f"{len(batch)} prompts")
            out.extend(c[0].text.strip() for c in completions)
        return out


def _require(items: Sequence[TrainItem], attr: str, stage: str) -> None:
    missing = [it.id for it in items if not getattr(it, attr)]
    if missing:
        raise ValueError(f"{len(missing)} item(s) have no {attr} (e.g. {missing[0]!r}); "
                         f"fix: run the {stage} stage first")
