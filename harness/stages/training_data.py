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
from dataclasses import asdict
from typing import Any

from harness.common.files import read_json_or_none, read_jsonl, stable_hash, write_json_atomic, write_jsonl_atomic
from harness.common.stages import TEACHER_STAGES, Stage
from harness.common.units import StageSummary, Student, TrainingData
from harness.distill.items import CallUsage, CritiqueSwap, GoldCheck, GoldChecks, TrainItem
from harness.config import ConfigError, RunConfig
from harness.executors import Executor
from harness.models import teacher_fingerprint
from harness.common.progress import console
from harness.stages.plan import Plan
from harness.stages.teacher_units import probe_params, run_probe, run_teacher_stage
from harness.store import CallCache

class BudgetExceeded(ConfigError):
    """The teacher's spending cap was reached before a wave of shards; everything so far is stored (the run may
    have passed the cap by the wave before: one batch locally, one shard per free CPU or GPU on Ray). A
    ConfigError, so the CLI prints the one-line message and exits with code 2."""


def stage_fingerprints(cfg: RunConfig, student_id: str, pool: list[TrainItem],
                       stages: list[str]) -> dict[str, str]:
    """stage -> fingerprint key, each built on the key of the stage it reads."""
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
        if stage == "probe":
            parts: dict[str, Any] = {"student": student_id,
                                     "prompt": cfg.prompts.digest(), "params": probe_params(cfg).to_dict()}
        else:
            parts = {"teacher": teacher}
        if stage == "critique":
            parts.update(mode=cfg.teacher.critique_mode, retries=cfg.teacher.conclusion_retries)
            if cfg.teacher.critique_mode == "irrelevant":
                parts["derangement_seed"] = cfg.seed
        keys[stage] = stable_hash({"stage": stage, "parent": keys[parent], **parts})
    return {s: keys[s] for s in ("pool", *stages) if s in keys}


# ---- costs --------------------------------------------------------------------------------------------
def item_usage(it: TrainItem, stage: Stage) -> CallUsage:
    return it.meta.usage(stage)


def stage_totals(items: list[TrainItem], stage: Stage, prices: tuple[float, float]) -> dict[str, Any]:
    tin = sum(item_usage(it, stage).tokens_in for it in items)
    tout = sum(item_usage(it, stage).tokens_out for it in items)
    return {"tokens_in": tin, "tokens_out": tout, "cost_usd": round((tin * prices[0] + tout * prices[1]) / 1e6, 6)}


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
            tok += t["tokens_in"] + t["tokens_out"]
            cost += t["cost_usd"]
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
        for name in ("probe", "refined", "direct"):
            text, old = getattr(it, name), getattr(checks, name)
            key = stable_hash(text)[:12] if text is not None else None
            if key is None or old is None or old.text != key:
                setattr(checks, name, None if key is None else GoldCheck(key, _correct(text, it.gold_answer)))
        checks.verdict = verdict = conclusion_of(it.specific_critique or "")
        probe_ok = checks.correct(Stage.probe)
        checks.verdict_agrees = None if verdict is None or probe_ok is None else (verdict == "right") == probe_ok


def correctness_filter(items: list[TrainItem], stages: list[str]) -> list[TrainItem]:
    """Items whose teacher targets reach the gold answer (items without gold kept)."""
    keep = []
    for it in items:
        checks = it.meta.checks or GoldChecks()
        if not any(checks.correct(s) is False for s in (Stage.refine, Stage.direct) if s in stages):
            keep.append(it)
    return keep


def stage_stats(items: list[TrainItem], stage: Stage) -> dict[str, Any]:
    """Counts for the manifest and the report: lengths, flags, retries, verdicts, gold agreement."""
    texts = [getattr(it, stage.item_field) for it in items if getattr(it, stage.item_field) is not None]
    out: dict[str, Any] = {"items": len(texts),
                           "mean_chars": round(sum(map(len, texts)) / len(texts), 1) if texts else 0}
    calls = [it.meta.call(stage) for it in items]
    raw = [c.raw for c in calls if c.raw is not None]
    if raw or any(c.thinking_missing for c in calls):
        # teacher.strip_thinking: how many outputs lost a thinking section, and how long they were before
        out.update(thinking_stripped=len(raw), thinking_not_found=sum(c.thinking_missing for c in calls),
                   mean_raw_chars=round(sum(map(len, raw)) / len(raw), 1) if raw else 0)
    checks = [it.meta.checks or GoldChecks() for it in items]
    if stage == "critique":
        from harness.distill.teachers.llm import conclusion_of

        verdicts = [conclusion_of(it.specific_critique or "") for it in items]
        out.update(right=verdicts.count("right"), wrong=verdicts.count("wrong"), no_verdict=verdicts.count(None),
                   flagged=sum(item_usage(it, stage).flagged for it in items),
                   retries=sum(item_usage(it, stage).retries for it in items))
        agree = [c.verdict_agrees for c in checks]
        if any(a is not None for a in agree):
            out["verdict_agrees_with_gold"] = sum(a is True for a in agree)
            out["verdict_checked"] = sum(a is not None for a in agree)
    else:
        marks = [c.correct(stage) for c in checks]
        if any(m is not None for m in marks):
            out["correct_vs_gold"] = sum(m is True for m in marks)
            out["checked_vs_gold"] = sum(m is not None for m in marks)
    return out


# ---- the stage ------------------------------------------------------------------------------------------
def build_items(plan: Plan, student: Student, cache: CallCache, executor: Executor | None = None) -> TrainingData:
    """The training items, the held-out validation items and the per-stage summaries for the manifest. Every
    stage's pending items run as shard units on ``executor`` (harness/stages/teacher_units.py; in order, in this
    process, by default)."""
    from harness.executors.local import LocalExecutor

    cfg = plan.config
    executor = executor or LocalExecutor(cfg.executor)
    if plan.pool is None:
        raise ValueError("build_items needs the plan of a run that trains (plan_run(cfg, train=True), methods set)")
    split = plan.pool.split()  # loaded once per plan; the held-out task pool_validation reads the same split
    pool = list(split.pool)
    train_items = copy.deepcopy(list(split.train))  # filled in below: the plan's own items stay as loaded
    validation = list(split.validation)
    stages = [Stage(s) for s in plan.stages]
    keys = stage_fingerprints(cfg, student.identity, pool, stages)
    path, meta_path = plan.run_dir.items, plan.run_dir.items_meta
    record = TrainingData(items=[], validation=validation,  # items: set once every stage is done
                          pool=dict(split.report))
    if any(s in stages for s in ("probe", *TEACHER_STAGES)) and cfg.teacher.kind == "llm":
        # what each request was sent with: its own system prompt (None = no system message) and user template
        summary = cfg.prompts.requests_summary()
        record.requests = {s: summary[s] for s in ("probe", *TEACHER_STAGES) if s in stages}
        if cfg.teacher.strip_thinking:
            record.requests["strip_thinking"] = cfg.teacher.strip_thinking
    stored_keys: dict[str, str] = {}
    partial: dict[str, str] = {}  # an unfinished stage -> the key its stored outputs were made with
    if path.exists() and meta_path.exists():
        stored_meta = read_json_or_none(meta_path) or {}  # damaged: every stage again
        stored_keys, partial = stored_meta.get("stages", {}), stored_meta.get("partial", {})
        stored = {d["id"]: TrainItem.from_dict(d) for d in read_jsonl(path)}
        if stored_keys.get("pool") == keys["pool"]:
            train_items = [stored.get(it.id, it) for it in train_items]
    cleared = False
    for stage in stages:
        attr = stage.item_field
        if keys[stage] not in (stored_keys.get(stage), partial.get(stage)):
            if stored_keys.get(stage) is not None or partial.get(stage) is not None:
                console.print(f"[yellow]training data[/] {stage}: stored outputs were made differently "
                              "(student, teacher, prompts, critique mode or sampling changed); computing again")
            for it in train_items:
                cleared = cleared or getattr(it, attr) is not None
                setattr(it, attr, None)
                it.meta.calls.pop(stage, None)
                if stage == Stage.critique:
                    it.meta.critique_swap = None
        record.stages[stage] = StageSummary(fingerprint=keys[stage],
                                            reused=sum(getattr(it, attr) is not None for it in train_items))

    def save() -> None:
        """Items first, then the done record: a kill between the two writes leaves the older record, which never
        claims the newer outputs (so they are made again, through the cache)."""
        write_jsonl_atomic(path, (it.to_dict() for it in train_items))
        present = {s: sum(getattr(it, s.item_field) is not None for it in train_items) for s in stages}
        made: dict[str, Any] = {"stages": {s: keys[s] for s in ("pool", *stages)
                                           if s == "pool" or present[s] == len(train_items)}}
        unfinished = {s: keys[s] for s in stages if 0 < present[s] < len(train_items)}
        if unfinished:
            made["partial"] = unfinished
        write_json_atomic(meta_path, made)

    if cleared:  # outputs made otherwise leave the store before any new one is saved beside them
        save()
    log_dir = plan.run_dir.root / "logs" / "units"
    if "probe" in stages and any(it.probe is None for it in train_items):
        run_probe(cfg, student, [it for it in train_items if it.probe is None], cache, executor, log_dir,
                  record.stages["probe"], save)
    budget = Budget(cfg, train_items)
    teacher_stages = [s for s in TEACHER_STAGES if s in stages]
    for stage in teacher_stages:
        attr = stage.item_field
        todo = [it for it in train_items if getattr(it, attr) is None]
        if not todo:
            continue
        summary = record.stages[stage]

        def save_shard(stage: str = stage) -> None:
            if stage == "critique" and all(it.critique is not None for it in train_items):
                apply_critique_mode(cfg, train_items)
            save()

        def check_budget(stage: str = stage, summary: StageSummary = summary) -> None:
            why = budget.reached()
            if why:
                save()
                raise BudgetExceeded(
                    f"stopped by the spending cap: {why}; {stage} {summary.computed + summary.reused}/"
                    f"{len(train_items)} done, everything kept in {path} and the call cache; to resume, run the "
                    "same command with a higher cap (e.g. --set teacher.max_tokens=N or teacher.max_cost_usd=X)")

        paid = run_teacher_stage(cfg, stage, todo, cache, executor, log_dir, summary, save_shard, check_budget)
        summary.this_run = paid.record(budget.prices)
    if "critique" in stages:
        apply_critique_mode(cfg, train_items)
    if any(s in stages for s in ("probe", *TEACHER_STAGES)):
        gold_checks(train_items)
    for stage in stages:
        record.stages[stage].stats.update(stage_stats(train_items, stage))
        if stage in TEACHER_STAGES:
            record.stages[stage].stats.update(stage_totals(train_items, stage, budget.prices))
    # an LLM teacher without a known price has an unknown cost (a self-hosted one costs GPU time), never $0
    unknown = cfg.teacher.kind == "llm" and cfg.teacher.known_prices() is None
    if unknown:
        for stage in teacher_stages:
            record.stages[stage].stats["cost_usd"] = None
            if record.stages[stage].this_run is not None:
                record.stages[stage].this_run["cost_usd"] = None
    if teacher_stages:
        tok, cost = budget.totals()
        record.teacher_total = {"tokens": tok, "cost_usd": None if unknown else round(cost, 6),
                                "price_per_mtok_in": None if unknown else budget.prices[0],
                                "price_per_mtok_out": None if unknown else budget.prices[1],
                                "critique_mode": cfg.teacher.critique_mode}
    save()
    record.items = train_items
    if cfg.teacher.correctness_filter and teacher_stages:
        kept = correctness_filter(train_items, stages)
        record.correctness_filter = {"kept": len(kept), "removed": len(train_items) - len(kept)}
        console.print(f"correctness filter: kept {len(kept)} of {len(train_items)} items whose teacher targets "
                      "reach the gold answer")
        record.items = kept
    return record
