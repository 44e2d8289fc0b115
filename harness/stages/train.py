"""Train: one student per method on its prompt-completion examples, with the same optimiser settings and the
same data exposure for every method (train.budget: num_epochs passes over each method's own examples, or the
same number of tokens), whatever packing, sequence length or number of processes; a method may have its own
recipe (train.recipes), marked as such. A trained model is reused only when its fingerprint (student
identity, examples digest, training config, seed) matches; a stale one is trained again and the run says so."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from pydantic import ValidationError

from harness.common.limits import TARGET_TOKENS_LOST_WARN
from harness.common.files import link_tree, read_json_or_none, stable_hash, write_json_atomic, write_jsonl_atomic
from harness.common.artifacts import CheckpointSelection, TrainRecord, TruncationCounts
from harness.common.units import Outcome, Resources, Student, TrainedModel, TrainOutput, Unit
from harness.distill.items import TrainItem
from harness.distill.methods import build_dataset, get_method
from harness.distill.mix import mix_by_conclusion
from harness.distill.exposure import TrainExposure
from harness.distill.train_config import TrainConfig
from harness.config import ConfigError, RunConfig
from harness.executors import Batch, Job
from harness.common.progress import console
from harness.stages.plan import Plan
from harness.stages.select_checkpoint import check_selection, select_checkpoint

#: Warn when methods' data passes differ by more than this share.
EXPOSURE_WARN = 0.01


def method_train_configs(cfg: RunConfig, student: Path | str,
                         datasets: dict[str, list[dict]]) -> dict[str, TrainConfig]:
    """Each method's TrainConfig: the shared one with the run seed and the method's own recipe. The step count
    follows from the budget once TRL has built the method's rows (harness.distill.train.plan_exposure); a tokens
    budget left open becomes the smallest method's tokens for its epochs, so no method repeats data."""
    base = cfg.train.model_copy(update={"seed": cfg.train.seed if cfg.train.seed is not None else cfg.seed})
    per_method = {m: base.for_method(m) for m in datasets}
    if base.budget == "tokens" and base.max_steps is None and base.budget_tokens is None:
        from harness.distill.exposure import count_rows

        tokens = {m: count_rows(student, rows, per_method[m])[1] * per_method[m].num_epochs
                  for m, rows in datasets.items()}
        target = min(tokens.values())
        console.print(f"[bold]train[/] budget: {target:,} tokens per method (the smallest method's, "
                      f"{min(tokens, key=tokens.get)})", highlight=False)
        per_method = {m: c.model_copy(update={"budget_tokens": target}) for m, c in per_method.items()}
    return per_method


def check_exposure(exposures: dict[str, TrainExposure], configs: dict[str, TrainConfig]) -> list[str]:
    """Warnings (also printed) when methods saw their data unequally often, or more often than their
    num_epochs asks (a fixed step count or a tokens budget past one pass): data is never repeated silently."""
    out = []
    passes = {m: e.data_passes for m, e in exposures.items()}
    if passes and max(passes.values()) > (1 + EXPOSURE_WARN) * min(passes.values()):
        out.append("methods saw their data unequally often (data_passes " +
                   ", ".join(f"{m} {v:.3f}" for m, v in passes.items()) + "); use train.budget=epochs and "
                   "leave train.max_steps unset for equal exposure")
    for m, e in exposures.items():
        if e.data_passes > configs[m].num_epochs + 1e-9:
            out.append(f"{m} repeats its data: {e.data_passes:.2f} passes over its {e.rows} rows with "
                       f"num_epochs={configs[m].num_epochs} (budget {e.budget})")
    for w in out:
        console.print(f"[yellow]warning[/] {w}", highlight=False)
    return out


def truncation_stats(student: Path | str, rows: list[dict], max_length: int) -> dict[str, int]:
    """How many examples exceed max_length, and how many target (completion) tokens the cut removes.

    Counted the way TRL builds conversational prompt-completion examples: the prompt rendered with the
    generation prompt, the completion as the rest of the full conversation; truncation keeps the start."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(student))

    def n_tokens(messages: list[dict], **kw) -> int:
        text = tok.apply_chat_template(messages, tokenize=False, **kw)
        return len(tok(text, add_special_tokens=False)["input_ids"])  # the template holds the special tokens

    out = {"examples": len(rows), "examples_truncated": 0, "examples_dropped": 0, "target_tokens": 0,
           "target_tokens_lost": 0}
    for r in rows:
        n_prompt = n_tokens(r["prompt"], add_generation_prompt=True)
        n_full = n_tokens(r["prompt"] + r["completion"])
        target = max(0, n_full - n_prompt)
        lost = min(target, max(0, n_full - max_length))
        out["target_tokens"] += target
        out["target_tokens_lost"] += lost
        out["examples_truncated"] += n_full > max_length
        out["examples_dropped"] += n_prompt >= max_length  # nothing of the target is left: TRL drops these
    return out


def sort_target_modules(model_dir: Path) -> None:
    """peft writes adapter_config.json's target_modules from a Python set, in an order that changes with each
    process's string-hash seed: the same training would get another adapter digest, hence another engine
    identity, cache keys and results inputs key. Sorted, equal training gives byte-equal adapter folders."""
    from harness.common.files import write_text_atomic

    for p in sorted(model_dir.rglob("adapter_config.json")):
        cfg = json.loads(p.read_text(encoding="utf-8"))
        if isinstance(cfg.get("target_modules"), list) and cfg["target_modules"] != sorted(cfg["target_modules"]):
            cfg["target_modules"] = sorted(cfg["target_modules"])
            write_text_atomic(p, json.dumps(cfg, indent=2, sort_keys=True))


def train_job(student: Path | str, examples: Path, model_dir: Path, tcfg: TrainConfig) -> TrainOutput:
    """One train unit (method x seed x cell): train the student into ``model_dir`` through harness.distill.train's entry
    point (one process, or train.distributed.nproc processes under torchrun), resuming from its last complete
    checkpoint. The driver writes the done record (fingerprint.json)."""
    from harness.distill.train import TrainJob, launch
    from harness.common.progress import quiet_hf_progress

    quiet_hf_progress()
    res = launch(TrainJob(base_model=str(student), examples=str(examples), out_dir=str(model_dir), config=tcfg),
                 progress=True)
    sort_target_modules(model_dir)
    return TrainOutput(str(model_dir), res.adapter)


def train_resources(cfg: RunConfig, tcfg: TrainConfig) -> Resources:
    """A train unit's needs: one GPU per training process when the run has GPUs, one CPU per process."""
    nproc = float(tcfg.distributed.nproc)  # a gang: all its processes on one node, or none
    return Resources(gpus=nproc if cfg.executor.gpus else 0.0, cpus=nproc)


def train_batch(plan: Plan, student: Student, items: list[TrainItem], cache=None,
                donor=None) -> Batch[dict[str, TrainedModel]]:
    """The train units of one run folder, their commit and the stage's output (``finish``). ``donor``: a sibling
    sweep cell's RunDir; a model it stored with this very fingerprint is linked in instead of a unit."""
    cfg = plan.config
    check_selection(plan)
    chosen = mix_by_conclusion(items, cfg.right_fraction, cfg.seed) if cfg.right_fraction is not None else items
    datasets = {m: build_dataset(get_method(m, cfg.prompts), chosen) for m in plan.methods}
    for m, rows in datasets.items():
        if not rows:
            raise ConfigError(f"method {m} has no training examples (its teacher stage produced nothing)")
    tcfgs = method_train_configs(cfg, student.path, datasets)
    rd = plan.run_dir
    fingerprints: dict[str, str] = {}
    stored: dict[str, dict] = {}
    jobs: list[Job] = []
    for m, rows in datasets.items():
        tcfg = tcfgs[m]
        # The number of processes is not part of what is trained (same global batch, same data order).
        fingerprint = fingerprints[m] = stable_hash({"student": student.identity, "examples": stable_hash(rows),
                                                     "train": tcfg.model_dump(mode="json", exclude={"distributed"})})
        fp_path = rd.model_dir(m) / "fingerprint.json"
        if donor is not None and not rd.model_dir(m).exists():
            donor_fp = donor.model_dir(m) / "fingerprint.json"
            if (donor_fp.exists() and (donor.model_dir(m) / "final").exists()
                    and json.loads(donor_fp.read_text()).get("fingerprint") == fingerprint):
                rd.model_dir(m).parent.mkdir(parents=True, exist_ok=True)
                link_tree(donor.model_dir(m), rd.model_dir(m))
                console.print(f"[dim]train {m}: same data, student and settings as {donor.root.name}; shared[/]")
        rec = read_json_or_none(fp_path)  # absent or damaged: train (or take final/ when its request matches)
        if rec is not None and rec.get("fingerprint") != fingerprint:
            console.print(f"[yellow]train[/] {m}: the stored model was trained from other data, student or "
                          "settings; training again")
            shutil.rmtree(rd.model_dir(m))
            rec = None
        if rec is not None and (rd.model_dir(m) / "final").exists():
            stored[m] = rec
            continue
        write_jsonl_atomic(rd.train_data(m), rows)
        truncation = truncation_stats(student.path, rows, tcfg.max_length)
        if truncation["examples_dropped"] == len(rows):
            raise ConfigError(f"method {m}: every training prompt is longer than train.max_length="
                              f"{tcfg.max_length} tokens, so nothing is left to learn; raise train.max_length")
        own = " (own recipe)" if m in cfg.train.recipes else ""
        console.print(f"[bold]train[/] {m}{own}: {len(rows)} examples, budget "
                      f"{'max_steps=' + str(tcfg.max_steps) if tcfg.max_steps else tcfg.budget}", highlight=False)
        unit = Unit("train", f"train/{m}", fingerprint, train_resources(cfg, tcfg))
        jobs.append(Job(unit, train_job, (student.path, rd.train_data(m), rd.model_dir(m), tcfg),
                        log_dir=rd.root / "logs" / "units"))
        stored[m] = {"fingerprint": fingerprint, "truncation": truncation}

    def commit(i: int, o: Outcome) -> None:
        """The done record of one trained model, written as soon as it finishes (a model trained by the same
        unit of another cell is linked in first)."""
        if o.error is not None:
            return
        m = jobs[i].unit.name.split("/", 1)[1]
        out: TrainOutput = o.value
        if Path(out.model_dir).resolve() != rd.model_dir(m).resolve():
            if rd.model_dir(m).exists():
                shutil.rmtree(rd.model_dir(m))  # partial checkpoints of an attempt this run did not need
            rd.model_dir(m).parent.mkdir(parents=True, exist_ok=True)
            link_tree(Path(out.model_dir), rd.model_dir(m))
            console.print(f"[dim]train {m}: same data, student and settings as {o.shared_from}; shared[/]")
            shared.add(m)
        stored[m]["adapter"] = out.adapter
        write_json_atomic(rd.model_dir(m) / "fingerprint.json", stored[m])

    shared: set[str] = set()  # trained by the same unit of another run folder: reused here, not trained
    return Batch(jobs, commit, lambda: _trained_models(
        plan, student, datasets, tcfgs, stored, fingerprints,
        {j.unit.name.split("/", 1)[1] for j in jobs} - shared, cache), label=str(rd.root))


def _trained_models(plan: Plan, student: Student, datasets: dict[str, list[dict]], tcfgs: dict[str, TrainConfig],
                    stored: dict[str, dict], fingerprints: dict[str, str], trained_now: set[str],
                    cache) -> dict[str, TrainedModel]:
    """Once every unit has ended: each method's TrainedModel, its TrainRecord read from train_metrics.json with
    the checkpoint selection, recipe and exposure warnings."""
    out: dict[str, TrainedModel] = {}
    for m, rows in datasets.items():
        tcfg, rec = tcfgs[m], stored[m]
        truncation = TruncationCounts.model_validate(rec["truncation"])
        if truncation.lost_share > TARGET_TOKENS_LOST_WARN:
            console.print(f"[yellow]warning[/] {m}: train.max_length={tcfg.max_length} cuts "
                          f"{100 * truncation.lost_share:.1f}% of its target tokens ({truncation.examples_truncated} "
                          "examples); raise max_length")
        final = plan.run_dir.model_dir(m) / "final"
        if tcfg.select_checkpoint is not None:
            chosen = select_checkpoint(plan, student.path, m, rec["adapter"], fingerprints[m], cache)
            selection = CheckpointSelection.model_validate({k: v for k, v in chosen.items() if k != "key"})
            model_dir = Path(chosen["selected_dir"])
        else:
            selection, model_dir = CheckpointSelection(selected="last checkpoint (as the paper)"), final
        recipe = plan.config.train.recipes.get(m)
        record = _train_record(final / "train_metrics.json", fingerprint=fingerprints[m], reused=m not in trained_now,
                               examples=len(rows), truncation=truncation, selection=selection,
                               recipe=recipe.model_dump(exclude_none=True) if recipe is not None else None)
        exposure = record.exposure
        if exposure is not None and m in trained_now:
            console.print(f"[bold]train[/] {m}: {exposure.steps} steps of {exposure.global_batch} rows, "
                          f"{exposure.rows} rows a pass, data_passes {exposure.data_passes:.3f}", highlight=False)
        out[m] = TrainedModel(method=m, model_dir=str(model_dir), adapter=rec["adapter"], train=record)
    warnings = check_exposure({m: tm.train.exposure for m, tm in out.items() if tm.train.exposure is not None}, tcfgs)
    for tm in out.values():
        tm.train.exposure_warnings = warnings
    return out


#: train_metrics.json's names (harness/distill/trainer.py) -> the TrainRecord's, where they differ: the trainer's
#: "target tokens" are the completion tokens the loss is on.
_TRAINER_NAMES = {"target_tokens_per_epoch": "completion_tokens_per_epoch"}


def _train_record(metrics_path: Path, **stage) -> TrainRecord:
    """The trainer's train_metrics.json as typed fields, with what the stage adds (``stage``: fingerprint, reuse,
    examples, truncation, selection, recipe). Its examples count is the stage's own (the same rows)."""
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    fields = {_TRAINER_NAMES.get(k, k): v for k, v in metrics.items() if k != "examples"}
    try:
        return TrainRecord.model_validate({**fields, **stage})
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"{metrics_path}: not a training record this harness reads "
                          f"({'.'.join(map(str, err['loc']))}: {err['msg']}); delete {metrics_path.parents[1]} to "
                          "train that model again") from None
