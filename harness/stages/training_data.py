"""Training data: the pool's questions, then the stages the chosen methods need, in order: probe (the student's
own answers), critique, refine and direct (the teacher). Each stage carries a fingerprint of what made it; a
stored stage is kept only when its fingerprint matches, otherwise it (and every stage built on it) is computed
again through the call cache, and the run says so. A stage runs as shard units on the run's executor
(harness/stages/teacher_units.py), each saved as it finishes; an unfinished stage's outputs are kept when the
fingerprint they were made with (``partial`` in items.meta.json) matches, so a re-run computes only the rest.

Costs: every teacher call's tokens (as the engine reports them; a call the cache answers counts at its original
size) are kept per item in ``meta.calls[stage].usage``, so the totals of the data survive resumes. The caps
``teacher.max_tokens`` / ``teacher.max_cost_usd`` are checked before each wave of shards (a shard: one batch of
``teacher.batch_size`` items; a wave: one shard in this process, as many as the cluster runs at once on Ray):
reaching one saves data/items.jsonl (the cache has every answer already) and raises BudgetExceeded (exit code 2)
with how to resume. The overshoot is at most one wave (one batch with the local executor).

The critique-content ablation (``teacher.critique_mode``) is applied once the critique stage is complete: the
teacher's own critique stays in ``meta.critique_swap`` (the refine stage always reads it) and ``critique`` holds
what the student trains on.
"""
from __future__ import annotations

import copy
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from harness.common.files import read_json_or_none, read_jsonl, stable_hash, write_json_atomic, write_jsonl_atomic
from harness.common.stages import TEACHER_STAGES, Stage
from harness.common.units import (FilterCount, GoldAgreement, RequestPrompt, StageStats, StageSummary, Student,
                                  TeacherRequests, TeacherTotal, ThinkingStats, TokenTotals, TrainingData,
                                  VerdictStats)
from harness.distill.items import CallUsage, CritiqueSwap, GoldCheck, GoldChecks, TrainItem
from harness.config import ConfigError, RunConfig
from harness.executors import Executor
from harness.models import teacher_fingerprint
from harness.common.progress import console
from harness.stages.plan import Plan
from harness.stages.teacher_units import ProbeShards, ShardRun, TeacherShards, probe_params
from harness.store import CallCache


class BudgetExceeded(ConfigError):
    """The teacher's spending cap was reached before a wave of shards; everything so far is stored (the run may
    have passed the cap by the wave before: one batch locally, one shard per free CPU or GPU on Ray). A
    ConfigError, so the CLI prints the one-line message and exits with code 2."""


def stage_fingerprints(cfg: RunConfig, student_id: str, pool: list[TrainItem],
                       stages: Sequence[Stage]) -> dict[str, str]:
    """"pool" and each stage -> fingerprint key, each built on the key of the stage it reads."""
    keys = {"pool": stable_hash({"source": cfg.pool.source, "n": cfg.pool.n, "seed": cfg.pool.seed,
                                 "validation_n": cfg.pool.validation_n,
                                 "items": [[it.id, it.question, it.gold_solution, it.gold_answer,
                                            *([asdict(it.meta.given)] if it.meta.given else [])]  # given y', c
                                           for it in pool]})}
    teacher = teacher_fingerprint(cfg) if any(s in stages for s in TEACHER_STAGES) else None
    for stage in Stage:
        parent = stage.parent or "pool"
        if parent not in keys:
            continue
        if stage == Stage.probe:
            parts: dict[str, Any] = {"student": student_id,
                                     "prompt": cfg.prompts.digest(), "params": probe_params(cfg).to_dict()}
        else:
            parts = {"teacher": teacher}
        if stage == Stage.critique:
            parts.update(mode=cfg.teacher.critique_mode, retries=cfg.teacher.conclusion_retries)
            if cfg.teacher.critique_mode == "irrelevant":
                parts["derangement_seed"] = cfg.seed
        keys[stage] = stable_hash({"stage": stage, "parent": keys[parent], **parts})
    return {s: keys[s] for s in ("pool", *stages) if s in keys}


# ---- costs --------------------------------------------------------------------------------------------
def item_usage(it: TrainItem, stage: Stage) -> CallUsage:
    return it.meta.usage(stage)


def stage_totals(items: list[TrainItem], stage: Stage, prices: tuple[float, float]) -> TokenTotals:
    tin = sum(item_usage(it, stage).tokens_in for it in items)
    tout = sum(item_usage(it, stage).tokens_out for it in items)
    return TokenTotals(tin, tout, round((tin * prices[0] + tout * prices[1]) / 1e6, 6))


class Budget:
    """The caps of the teacher section against the data's running totals."""

    def __init__(self, cfg: RunConfig, items: list[TrainItem]) -> None:
        self.cfg = cfg
        self.items = items
        self.prices = cfg.teacher.prices()

    def totals(self) -> tuple[int, float]:
        tok, cost = 0, 0.0
        for s in TEACHER_STAGES:
            t = stage_totals(self.items, s, self.prices)
            tok += t.tokens_in + t.tokens_out
            cost += t.cost_usd
        return tok, cost

    def reached(self) -> str | None:
        t = self.cfg.teacher
        if t.max_tokens is None and t.max_cost_usd is None:
            return None
        tok, cost = self.totals()
        if t.max_tokens is not None and tok >= t.max_tokens:
            return f"teacher.max_tokens={t.max_tokens:,} reached ({tok:,} teacher tokens, ${cost:.4f})"
        if t.max_cost_usd is not None and cost >= t.max_cost_usd:
            return f"teacher.max_cost_usd={t.max_cost_usd} reached (${cost:.4f}, {tok:,} teacher tokens)"
        return None


# ---- critique modes -------------------------------------------------------------------------------------
def derangement(n: int, seed: int) -> list[int]:
    """A permutation with no fixed point (Sattolo's algorithm: a random n-cycle), fixed by the seed."""
    perm = list(range(n))
    rng = random.Random(f"critique-derangement/{seed}")
    for i in range(n - 1, 0, -1):
        j = rng.randrange(i)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def apply_critique_mode(cfg: RunConfig, items: list[TrainItem]) -> None:
    """Idempotent: the critique the student trains on, from each item's specific critique."""
    mode = cfg.teacher.critique_mode
    if mode == "specific":
        return
    own = [it.specific_critique for it in items]
    if mode == "irrelevant":
        if len(items) < 2:
            raise ConfigError("teacher.critique_mode=irrelevant needs at least 2 training questions")
        perm = derangement(len(items), cfg.seed)
        for it, c, j in zip(items, own, perm):
            it.critique = own[j]
            it.meta.critique_swap = CritiqueSwap(specific=c, came_from=items[j].id)
    else:
        for it, c in zip(items, own):
            it.critique = cfg.prompts.generic_critique
            it.meta.critique_swap = CritiqueSwap(specific=c, came_from="generic")


# ---- checks against gold answers ------------------------------------------------------------------------
def _correct(text: str | None, gold: str) -> bool | None:
    if text is None or not gold:
        return None
    from harness.distill.teachers.reference import answers_match
    from harness.tasks.scorers.extract import extract_answer

    pred, _ = extract_answer(text)
    return bool(pred is not None and answers_match(gold, pred))


def gold_checks(items: list[TrainItem]) -> None:
    """meta.checks: draft / refined / direct answer right by math-verify against the gold answer, and
    whether the critique's own verdict agrees; computed once per text (keyed by its hash)."""
    from harness.distill.teachers.llm import conclusion_of

    for it in items:
        if not it.gold_answer:
            continue
        checks = it.meta.checks = it.meta.checks or GoldChecks()
        for name in (s.item_field for s in Stage if s != Stage.critique):  # probe, refined, direct
            text, old = getattr(it, name), getattr(checks, name)
            key = stable_hash(text)[:12] if text is not None else None
            if key is None or old is None or old.text != key:
                setattr(checks, name, None if key is None else GoldCheck(key, _correct(text, it.gold_answer)))
        checks.verdict = verdict = conclusion_of(it.specific_critique or "")
        probe_ok = checks.correct(Stage.probe)
        checks.verdict_agrees = None if verdict is None or probe_ok is None else (verdict == "right") == probe_ok


def correctness_filter(items: list[TrainItem], stages: Sequence[Stage]) -> list[TrainItem]:
    """Items whose teacher targets reach the gold answer (items without gold kept)."""
    keep = []
    for it in items:
        checks = it.meta.checks or GoldChecks()
        if not any(checks.correct(s) is False for s in (Stage.refine, Stage.direct) if s in stages):
            keep.append(it)
    return keep


def _mean_chars(texts: Sequence[str]) -> float:
    return round(sum(map(len, texts)) / len(texts), 1) if texts else 0


def _agreement(marks: Sequence[bool | None]) -> GoldAgreement | None:
    """How many of the checked marks (not None) are True; None when nothing could be checked."""
    if all(m is None for m in marks):
        return None
    return GoldAgreement(agree=sum(m is True for m in marks), checked=sum(m is not None for m in marks))


def stage_stats(items: list[TrainItem], stage: Stage) -> StageStats:
    """Counts for the manifest and the report: lengths, flags, retries, verdicts, gold agreement."""
    texts = [getattr(it, stage.item_field) for it in items if getattr(it, stage.item_field) is not None]
    stats = StageStats(items=len(texts), mean_chars=_mean_chars(texts))
    calls = [it.meta.call(stage) for it in items]
    raw = [c.raw for c in calls if c.raw is not None]
    if raw or any(c.thinking_missing for c in calls):
        stats.thinking = ThinkingStats(stripped=len(raw), not_found=sum(c.thinking_missing for c in calls),
                                       mean_raw_chars=_mean_chars(raw))
    checks = [it.meta.checks or GoldChecks() for it in items]
    if stage != Stage.critique:
        stats.answers_vs_gold = _agreement([c.correct(stage) for c in checks])
        return stats
    from harness.distill.teachers.llm import conclusion_of

    verdicts = [conclusion_of(it.specific_critique or "") for it in items]
    stats.verdicts = VerdictStats(right=verdicts.count("right"), wrong=verdicts.count("wrong"),
                                  no_verdict=verdicts.count(None),
                                  flagged=sum(item_usage(it, stage).flagged for it in items),
                                  retries=sum(item_usage(it, stage).retries for it in items))
    stats.verdict_vs_gold = _agreement([c.verdict_agrees for c in checks])
    return stats


def teacher_requests(cfg: RunConfig, stages: Sequence[Stage]) -> TeacherRequests | None:
    """LLM teacher: what each request was sent with (its own system prompt, None = no system message, and its
    user template), for the manifest."""
    if not stages or cfg.teacher.kind != "llm":
        return None
    summary = cfg.prompts.requests_summary()
    return TeacherRequests({s: RequestPrompt(**summary[s]) for s in Stage if s in stages},
                           strip_thinking=cfg.teacher.strip_thinking)


# ---- the stage ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ItemStore:
    """data/items.jsonl and its done record items.meta.json: the stages whose outputs the items hold whole
    (``stages``) and in part (``partial``), by the fingerprint they were made with."""

    path: Path
    meta_path: Path

    def load(self) -> tuple[dict[str, TrainItem], dict[str, str], dict[str, str]]:
        """(stored items by id, stage -> key of a whole stage, stage -> key of an unfinished one); nothing when
        either file is missing, no stage when the done record is damaged (every stage again)."""
        if not (self.path.exists() and self.meta_path.exists()):
            return {}, {}, {}
        made = read_json_or_none(self.meta_path) or {}
        items = {d["id"]: TrainItem.from_dict(d) for d in read_jsonl(self.path)}
        return items, made.get("stages", {}), made.get("partial", {})

    def save(self, items: list[TrainItem], keys: dict[str, str], stages: Sequence[Stage]) -> None:
        """Items first, then the done record: a kill between the two writes leaves the older record, which never
        claims the newer outputs (so they are made again, through the cache)."""
        write_jsonl_atomic(self.path, (it.to_dict() for it in items))
        present = {s: sum(getattr(it, s.item_field) is not None for it in items) for s in stages}
        made: dict[str, Any] = {"stages": {s: keys[s] for s in ("pool", *stages)
                                           if s == "pool" or present[s] == len(items)}}
        unfinished = {s: keys[s] for s in stages if 0 < present[s] < len(items)}
        if unfinished:
            made["partial"] = unfinished
        write_json_atomic(self.meta_path, made)


class TrainingDataBuild:
    """The training-data stage of one run, its state explicit: the items it fills (a copy of the plan's training
    split), each stage's fingerprint and summary, the items file, the spending cap. ``run()`` keeps what is
    stored and current, computes the rest stage by stage, and returns the TrainingData."""

    def __init__(self, plan: Plan, student: Student, cache: CallCache, executor: Executor) -> None:
        if plan.pool is None:
            raise ValueError("build_items needs the plan of a run that trains (plan_run(cfg, train=True), "
                             "methods set)")
        cfg = self.cfg = plan.config
        split = plan.pool.split()  # loaded once per plan; the held-out task pool_validation reads the same split
        self.items = copy.deepcopy(list(split.train))  # filled in below: the plan's own items stay as loaded
        self.stages = [s for s in Stage if s in plan.stages]
        self.keys = stage_fingerprints(cfg, student.identity, list(split.pool), self.stages)
        self.student = student
        self.store = ItemStore(plan.run_dir.items, plan.run_dir.items_meta)
        self.shards = ShardRun(cfg, cache, executor, plan.run_dir.root / "logs" / "units")
        self.budget = Budget(cfg, self.items)
        self.record = TrainingData(items=[], validation=list(split.validation),  # items: set once all are done
                                   pool=copy.deepcopy(split.report), requests=teacher_requests(cfg, self.stages))

    @property
    def teacher_stages(self) -> list[Stage]:
        return [s for s in self.stages if s.by_teacher]

    def run(self) -> TrainingData:
        self.reuse_stored()
        todo = [it for it in self.items if it.probe is None]
        if Stage.probe in self.stages and todo:
            ProbeShards(self.shards, self.student, todo, self.record.stages[Stage.probe], self.save).run_all()
        for stage in self.teacher_stages:
            self.make_teacher_stage(stage)
        return self.finish()

    def save(self) -> None:
        self.store.save(self.items, self.keys, self.stages)

    def reuse_stored(self) -> None:
        """Keep each stored stage whose fingerprint matches (whole or in part); clear the others' outputs (the
        stages built on a changed one changed too: their keys include its key)."""
        stored, whole, partial = self.store.load()
        if whole.get("pool") == self.keys["pool"]:
            self.items[:] = [stored.get(it.id, it) for it in self.items]
        cleared = False
        for stage in self.stages:
            key = self.keys[stage]
            if key not in (whole.get(stage), partial.get(stage)):
                if whole.get(stage) is not None or partial.get(stage) is not None:
                    console.print(f"[yellow]training data[/] {stage}: stored outputs were made differently "
                                  "(student, teacher, prompts, critique mode or sampling changed); computing again")
                cleared = self.clear(stage) or cleared
            reused = sum(getattr(it, stage.item_field) is not None for it in self.items)
            self.record.stages[stage] = StageSummary(fingerprint=key, reused=reused)
        if cleared:  # outputs made otherwise leave the store before any new one is saved beside them
            self.save()

    def clear(self, stage: Stage) -> bool:
        """Remove ``stage``'s outputs and what its calls left from every item; whether there were any."""
        had = any(getattr(it, stage.item_field) is not None for it in self.items)
        for it in self.items:
            setattr(it, stage.item_field, None)
            it.meta.calls.pop(stage, None)
            if stage == Stage.critique:
                it.meta.critique_swap = None
        return had

    def make_teacher_stage(self, stage: Stage) -> None:
        todo = [it for it in self.items if getattr(it, stage.item_field) is None]
        if not todo:
            return
        summary = self.record.stages[stage]
        save = self.save_critique_shard if stage == Stage.critique else self.save
        shards = TeacherShards(self.shards, stage, todo, summary, save, lambda: self.check_budget(stage))
        summary.this_run = shards.run_all()
        summary.this_run.price(self.budget.prices)

    def save_critique_shard(self) -> None:
        if all(it.critique is not None for it in self.items):  # the critique mode reads every critique
            apply_critique_mode(self.cfg, self.items)
        self.save()

    def check_budget(self, stage: Stage) -> None:
        """Before each wave of a teacher stage: stop (everything saved) once a cap is reached."""
        why = self.budget.reached()
        if why:
            self.save()
            summary = self.record.stages[stage]
            raise BudgetExceeded(
                f"stopped by the spending cap: {why}; {stage} {summary.computed + summary.reused}/"
                f"{len(self.items)} done, everything kept in {self.store.path} and the call cache; to resume, run "
                "the same command with a higher cap (e.g. --set teacher.max_tokens=N or teacher.max_cost_usd=X)")

    def finish(self) -> TrainingData:
        """Every stage done: the critique mode, the gold checks, the counts and totals; saved, then filtered."""
        cfg, items, record = self.cfg, self.items, self.record
        if Stage.critique in self.stages:
            apply_critique_mode(cfg, items)
        if self.stages:
            gold_checks(items)
        # an LLM teacher without a known price has an unknown cost (a self-hosted one costs GPU time), never $0
        unknown = cfg.teacher.kind == "llm" and cfg.teacher.known_prices() is None
        for stage in self.stages:
            summary = record.stages[stage]
            summary.stats = stage_stats(items, stage)
            if stage.by_teacher:
                summary.stats.totals = stage_totals(items, stage, self.budget.prices)
            if unknown and stage.by_teacher:
                summary.stats.totals.cost_usd = None
                if summary.this_run is not None:
                    summary.this_run.cost_usd = None
        if self.teacher_stages:
            tok, cost = self.budget.totals()
            prices = (None, None) if unknown else self.budget.prices
            record.teacher_total = TeacherTotal(tokens=tok, cost_usd=None if unknown else round(cost, 6),
                                                price_per_mtok_in=prices[0], price_per_mtok_out=prices[1],
                                                critique_mode=cfg.teacher.critique_mode)
        self.save()
        record.items = items
        if cfg.teacher.correctness_filter and self.teacher_stages:
            kept = correctness_filter(items, self.stages)
            record.correctness_filter = FilterCount(kept=len(kept), removed=len(items) - len(kept))
            console.print(f"correctness filter: kept {len(kept)} of {len(items)} items whose teacher targets "
                          "reach the gold answer")
            record.items = kept
        return record


def build_items(plan: Plan, student: Student, cache: CallCache, executor: Executor | None = None) -> TrainingData:
    """The training items, the held-out validation items and the per-stage summaries for the manifest. Every
    stage's pending items run as shard units on ``executor`` (harness/stages/teacher_units.py; in order, in this
    process, by default)."""
    from harness.executors.local import LocalExecutor

    return TrainingDataBuild(plan, student, cache, executor or LocalExecutor(plan.config.executor)).run()
