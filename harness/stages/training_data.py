"""Training data: the pool's questions, then the stages the chosen methods need, in order: probe (the student's
own answers), critique, refine and direct (the teacher). Each stage carries a fingerprint of what made it; a
stored stage is kept only when its fingerprint matches, otherwise it (and every stage built on it) is computed
again through the call cache, and the run says so."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.files import read_jsonl, stable_hash, write_json_atomic, write_jsonl_atomic
from common.types import SamplingParams
from distill.items import TrainItem
from distill.pools import load_pool, split_validation
from harness.config import RunConfig
from harness.models import identity_of, make_teacher, serve, teacher_fingerprint
from harness.progress import console, progress_bar
from harness.stages.plan import Plan
from harness.store import CallCache

#: stage -> (TrainItem field it fills, the stage it builds on)
STAGE_FIELDS = {"probe": ("probe", "pool"), "critique": ("critique", "probe"), "refine": ("refined", "critique"),
                "direct": ("direct", "pool")}
TEACHER_BATCH = 32


def probe_params(cfg: RunConfig) -> SamplingParams:
    return SamplingParams(max_new_tokens=cfg.probe.max_new_tokens, temperature=cfg.probe.temperature,
                          seed=cfg.seed)


def stage_fingerprints(cfg: RunConfig, student: Path | str, pool: list[TrainItem],
                       stages: list[str]) -> dict[str, str]:
    """stage -> fingerprint key, each built on the key of the stage it reads."""
    keys = {"pool": stable_hash({"source": cfg.pool.source, "n": cfg.pool.n, "seed": cfg.pool.seed,
                                 "validation_n": cfg.pool.validation_n,
                                 "items": [[it.id, it.question, it.gold_solution, it.gold_answer] for it in pool]})}
    teacher = teacher_fingerprint(cfg) if any(s in stages for s in ("critique", "refine", "direct")) else None
    for stage in ("probe", "critique", "refine", "direct"):
        _, parent = STAGE_FIELDS[stage]
        if parent not in keys:
            continue
        if stage == "probe":
            parts: dict[str, Any] = {"student": identity_of(cfg.eval.engine, student),
                                     "prompt": cfg.prompts.digest(), "params": probe_params(cfg).to_dict()}
        else:
            parts = {"teacher": teacher}
        keys[stage] = stable_hash({"stage": stage, "parent": keys[parent], **parts})
    return {s: keys[s] for s in ("pool", *stages) if s in keys}


def build_items(plan: Plan, student: Path | str, cache: CallCache) -> tuple[list[TrainItem], list[TrainItem], dict]:
    """(training items, held-out validation items, per-stage record for the manifest)."""
    cfg = plan.config
    pool = load_pool(cfg.pool.source, cfg.pool.n, cfg.pool.seed)
    train_items, validation = split_validation(pool, cfg.pool.validation_n)
    stages = plan.stages
    keys = stage_fingerprints(cfg, student, pool, stages)
    path, meta_path = plan.run_dir.items, plan.run_dir.items_meta
    record: dict[str, Any] = {}
    stored_keys: dict[str, str] = {}
    if path.exists() and meta_path.exists():
        stored_keys = json.loads(meta_path.read_text(encoding="utf-8")).get("stages", {})
        stored = {d["id"]: TrainItem.from_dict(d) for d in read_jsonl(path)}
        if stored_keys.get("pool") == keys["pool"]:
            train_items = [stored.get(it.id, it) for it in train_items]
    for stage in stages:
        attr, _ = STAGE_FIELDS[stage]
        if stored_keys.get(stage) != keys[stage]:
            if stored_keys.get(stage) is not None:
                console.print(f"[yellow]training data[/] {stage}: stored outputs were made differently "
                              "(student, teacher, prompts or sampling changed); computing again")
            for it in train_items:
                setattr(it, attr, None)
        record[stage] = {"fingerprint": keys[stage],
                         "reused": sum(getattr(it, attr) is not None for it in train_items)}

    def done_keys() -> dict[str, str]:
        return {s: keys[s] for s in ("pool", *stages)
                if s == "pool" or all(getattr(it, STAGE_FIELDS[s][0]) is not None for it in train_items)}

    def save() -> None:  # items first: a kill between the two writes leaves stale keys, so work is redone
        write_jsonl_atomic(path, (it.to_dict() for it in train_items))
        write_json_atomic(meta_path, {"stages": done_keys()})

    if "probe" in stages and any(it.probe is None for it in train_items):
        engine = serve(cfg.eval.engine, student, None, cache)
        todo = [it for it in train_items if it.probe is None]
        prompts = [cfg.prompts.messages_for("question", question=it.question) for it in todo]
        with progress_bar("probe (student answers)", len(prompts)) as advance:
            outs = engine.generate(prompts, probe_params(cfg), advance)
        for it, comps in zip(todo, outs):
            it.probe = comps[0].text
        record["probe"].update(computed=len(todo), cache_hits=engine.hits, cache_misses=engine.misses)
        save()
    teacher_stages = [s for s in ("critique", "refine", "direct") if s in stages]
    if any(getattr(it, STAGE_FIELDS[s][0]) is None for s in teacher_stages for it in train_items):
        teacher = make_teacher(cfg, cache)
        for stage, fn in (("critique", teacher.critique), ("refine", teacher.refine), ("direct", teacher.answer)):
            attr = STAGE_FIELDS[stage][0]
            todo = [it for it in train_items if getattr(it, attr) is None] if stage in stages else []
            if not todo:
                continue
            with progress_bar(f"{stage} (teacher)", len(todo)) as advance:
                for i in range(0, len(todo), TEACHER_BATCH):
                    chunk = todo[i : i + TEACHER_BATCH]
                    for it, text in zip(chunk, fn(chunk)):
                        setattr(it, attr, text)
                    advance(len(chunk))
            record[stage]["computed"] = len(todo)
            save()
    if not path.exists() or stored_keys != done_keys():
        save()
    return train_items, validation, record
