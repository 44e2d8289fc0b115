"""The LLM teacher: critiques, refinements and direct answers from any Engine (HF, vLLM, API), in batches.

Critiques must end with one line ``Conclusion: right`` or ``Conclusion: wrong``. When one does not (the model
forgot, or hit the token limit), the teacher asks in a follow-up turn for just that line
(``PromptTemplates.conclusion_reminder``, up to ``conclusion_retries`` turns) and appends the line it gets back. If
no follow-up has a valid line, the critique is kept as it is and stays flagged: ``TrainItem.conclusion`` returns None for it (the mix filter
drops such items; the unfiltered methods still train on them, as the released pipeline does).
"""
from __future__ import annotations

import hashlib
import json
from typing import Sequence

from harness.common.item_meta import CallUsage
from harness.distill.items import TrainItem
from harness.distill.prompts import PromptTemplates
from harness.common.labels import conclusion_of  # noqa: F401  (re-exported)
from harness.common.types import Prompt, ProgressFn, SamplingParams
from harness.distill.teachers import register_teacher
from harness.distill.teachers.base import TextModel
from harness.distill.teachers.thinking import strip_thinking, thinking_pattern


def conclusion_line(text: str) -> str | None:
    """A normalised 'Conclusion: right|wrong' line found anywhere in a short follow-up reply, else None."""
    for line in reversed(text.strip().splitlines()):
        v = conclusion_of(line)
        if v:
            return f"Conclusion: {v}"
    return None


@register_teacher("llm")
class LLMTeacher:
    """Teacher protocol over an Engine. ``batch_size`` prompts go to ``engine.generate`` per call, so a long
    stage shows steady progress and a crash loses at most one batch (the engine's cache keeps the rest).

    After each call ``last_usage`` holds one CallUsage per item (tokens, requests, retries, flag) and
    ``last_stats`` the critique stage's counts."""

    def __init__(
        self,
        engine: TextModel,
        prompts: PromptTemplates | None = None,
        params: SamplingParams | None = None,
        identity: str | None = None,
        *,
        batch_size: int = 256,
        retry_missing_conclusion: bool = True,
        conclusion_retries: int = 1,
        progress: ProgressFn | None = None,
        strip_thinking: str | None = None,
    ) -> None:
        self.engine = engine
        self.prompts = prompts or PromptTemplates()
        self.params = params or SamplingParams(max_new_tokens=2048)
        if self.params.n != 1:
            raise ValueError(f"LLMTeacher needs one completion per prompt (params.n={self.params.n}); set n=1")
        self.batch_size = batch_size
        self.conclusion_retries = conclusion_retries if retry_missing_conclusion else 0
        self.progress = progress
        self.strip_thinking = strip_thinking
        self._thinking = thinking_pattern(strip_thinking) if strip_thinking else None
        # Teacher outputs depend on the weights, the wording and the sampling: all three go into the identity
        # (and the thinking pattern when one is set: what the student trains on depends on it).
        parts: dict = {"prompts": self.prompts.model_dump(), "params": self.params.to_dict()}
        if strip_thinking:
            parts["strip_thinking"] = strip_thinking
        blob = json.dumps(parts, sort_keys=True)
        self.identity = identity or f"llm:{engine.identity}#{hashlib.sha256(blob.encode()).hexdigest()[:12]}"
        #: How many critiques needed the follow-up, and how many stayed without a valid conclusion (last call).
        self.last_stats: dict[str, int] = {}
        self.last_usage: list[CallUsage] = []
        #: Per item of the last call: the output before its thinking was stripped (None = nothing stripped, or
        #: no pattern set), and whether a set pattern found no thinking to strip.
        self.last_raw: list[str | None] = []
        self.last_thinking_missing: list[bool] = []

    needs_engine = True

    @classmethod
    def from_config(cls, section, prompts=None, engine=None, params=None, identity=None) -> "LLMTeacher":
        """``section``: the teacher config (batch_size, conclusion_retries, strip_thinking); ``engine``: the
        served teacher model."""
        return cls(engine, prompts, params, identity=identity, batch_size=section.batch_size,
                   conclusion_retries=section.conclusion_retries, strip_thinking=section.strip_thinking)

    # ---- Teacher protocol --------------------------------------------------------------------------------
    def critique(self, items: Sequence[TrainItem]) -> list[str]:
        """Each critique must end with ``Conclusion: right|wrong``; one without gets up to
        ``conclusion_retries`` follow-up turns (each continues the conversation, so a greedy model is not asked
        the same thing twice) and is kept flagged when none yields the line."""
        _require(items, "probe", "probe")
        prompts = [self._critique_prompt(it) for it in items]
        usage = [CallUsage() for _ in items]
        texts = self._generate(prompts, usage=usage)
        raw, missing_thinking = self.last_raw, self.last_thinking_missing
        bad = [i for i, t in enumerate(texts) if conclusion_of(t) is None]
        missing = len(bad)
        convo = {i: prompts[i] + [{"role": "assistant", "content": texts[i]}] for i in bad}
        for _ in range(self.conclusion_retries):
            if not bad:
                break
            follow_ups = [convo[i] + [{"role": "user", "content": self.prompts.conclusion_reminder}] for i in bad]
            sub = [CallUsage() for _ in bad]
            replies = self._generate(follow_ups, report_progress=False, usage=sub)
            still = []
            for i, reply, u in zip(bad, replies, sub):
                usage[i].tokens_in += u.tokens_in
                usage[i].tokens_out += u.tokens_out
                usage[i].requests += u.requests
                usage[i].cached += u.cached
                usage[i].retries += 1
                line = conclusion_line(reply)
                if line:
                    texts[i] = f"{texts[i].rstrip()}\n{line}"
                else:
                    convo[i] = follow_ups[bad.index(i)] + [{"role": "assistant", "content": reply}]
                    still.append(i)
            bad = still
        for i in bad:
            usage[i].flagged = True
        self.last_raw, self.last_thinking_missing = raw, missing_thinking
        self.last_usage = usage
        self.last_stats = {"critiques": len(texts), "missing_conclusion": missing,
                           "fixed_by_retry": missing - len(bad), "flagged": len(bad)}
        return texts

    def refine(self, items: Sequence[TrainItem]) -> list[str]:
        _require(items, "probe", "probe")
        _require(items, "critique", "critique")
        usage = [CallUsage() for _ in items]
        out = self._generate([
            self.prompts.messages_for("refine_request", question=it.question, answer=it.probe,
                                      critique=it.specific_critique, reference=it.gold_solution)
            for it in items
        ], usage=usage)
        self.last_usage = usage
        return out

    def answer(self, items: Sequence[TrainItem]) -> list[str]:
        usage = [CallUsage() for _ in items]
        out = self._generate([self.prompts.messages_for("direct_request", question=it.question) for it in items],
                             usage=usage)
        self.last_usage = usage
        return out

    # ---- helpers --------------------------------------------------------------------------------------
    def _critique_prompt(self, item: TrainItem) -> list[dict[str, str]]:
        # `reference` is offered to every template; only templates that contain {reference} use it.
        return self.prompts.messages_for("critique_request", question=item.question, answer=item.probe,
                                         reference=item.gold_solution)

    def _generate(self, prompts: Sequence[Prompt], report_progress: bool = True,
                  usage: list[CallUsage] | None = None) -> list[str]:
        # Follow-ups are not reported: the caller's progress total counts items, not requests.
        progress = self.progress if report_progress else None
        out: list[str] = []
        self.last_raw, self.last_thinking_missing = [], []
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start : start + self.batch_size]
            completions = self.engine.generate(batch, self.params, progress=progress)
            if len(completions) != len(batch):
                raise RuntimeError(f"engine {self.engine.identity} returned {len(completions)} results for "
                                   f"{len(batch)} prompts")
            for j, c in enumerate(completions):
                if usage is not None:
                    usage[start + j].add(c[0])
                text = c[0].text.strip()
                if self._thinking is None:
                    self.last_raw.append(None)
                    self.last_thinking_missing.append(False)
                else:
                    stripped, found = strip_thinking(text, self._thinking)
                    self.last_raw.append(text if found else None)
                    self.last_thinking_missing.append(not found)
                    text = stripped
                out.append(text)
        return out


def _require(items: Sequence[TrainItem], attr: str, stage: str) -> None:
    missing = [it.id for it in items if getattr(it, attr) is None]
    if missing:
        raise ValueError(f"{len(missing)} item(s) have no {attr} (e.g. {missing[0]!r}); "
                         f"fix: run the {stage} stage first")
