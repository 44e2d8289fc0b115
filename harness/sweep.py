"""Experiments: a config's ``sweep:`` grid and ``seeds:`` as cells, each a full run folder, and one combined
results.json + report.html + manifest.json at the top.

    results/<run-id>/cells/<cell-id>/   one ordinary run (plan -> training data -> train -> evaluate -> aggregate)
    results/<run-id>/results.json       every cell's rows and rows aggregated over seeds, with comparisons that
                                        account for both seed and item variance (harness/experiment_results.py)

Sharing: the first cell is every later cell's donor. Its training items, trained models and sample files are
linked into a later cell wherever their fingerprint equals what that cell would compute (the base model's
evaluation, the probe, a method the swept key does not touch, every model of a cell that differs only in evaluation
options); everything else goes through the call cache. Seeds change the training seed only (``train.seed``), so
the probe, the teacher's outputs and the base model's evaluation are the same for every seed.
"""
from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.common.files import stable_hash
from harness.common.labels import model_label, short_key, value_text
from harness.common.units import CellLabel
from harness.config import RunConfig, deep_merge
from harness.experiment_results import SEED_TEST_TEXT, combine
from harness.common.progress import console
from harness.runlock import run_lock


@dataclass
class Cell:
    id: str
    params: dict[str, Any]  # dotted sweep key -> value (the seed apart)
    seed: int | None  # the training seed; None when the experiment gives none
    config: RunConfig = field(repr=False)

    @property
    def group(self) -> str:
        """Cells that differ only in their seed share a group."""
        return stable_hash(self.params)[:12]


def cell_id(params: dict[str, Any], seed: int | None) -> str:
    parts = [f"{short_key(k)}={value_text(v)}" for k, v in params.items()]
    if seed is not None:
        parts.append(f"seed={seed}")
    text = re.sub(r"[^A-Za-z0-9=.+_-]", "", "_".join(parts)) or "cell"
    return text if len(text) <= 80 else f"{text[:60]}-{stable_hash([params, seed])[:8]}"


def seeds_of(cfg: RunConfig) -> list[int] | None:
    seeds = list(cfg.seeds) if cfg.seeds else None
    if "seed" in cfg.sweep:
        seeds = [int(s) for s in cfg.sweep["seed"]]
    return seeds


def is_experiment(cfg: RunConfig) -> bool:
    return bool(cfg.sweep) or cfg.seeds is not None or cfg.eval_seeds is not None


def seed_kind(cfg: RunConfig) -> str:
    """What a cell's seed sets: "train" (train.seed) or "eval" (eval.seed, sampled tasks only)."""
    return "eval" if cfg.eval_seeds else "train"


def experiment_about(cfg: RunConfig) -> dict[str, Any]:
    """What the experiment varies, as its results and manifest record it (beside its cells)."""
    return {"sweep": cfg.sweep, "seeds": seeds_of(cfg) or cfg.eval_seeds, "seed_kind": seed_kind(cfg),
            "table": cfg.experiment.model_dump(mode="json") if cfg.experiment else None}


def expand(cfg: RunConfig) -> list[Cell]:
    """Every cell of the grid (the product of the sweep's lists), times the seeds; the first is the donor."""
    grid = {k: v for k, v in cfg.sweep.items() if k != "seed"}
    if cfg.eval_seeds and seeds_of(cfg):
        from harness.config import ConfigError

        raise ConfigError("an experiment varies training seeds (--seeds) or evaluation seeds (--eval-seeds), not "
                          "both; drop one of them")
    seeds: list[int | None] = list(seeds_of(cfg) or cfg.eval_seeds or [None])
    seed_section = "eval" if cfg.eval_seeds else "train"
    base = cfg.model_dump(mode="json")
    for k in ("sweep", "seeds", "eval_seeds"):
        base.pop(k, None)
    cells = []
    for values in itertools.product(*grid.values()) if grid else [()]:
        params = dict(zip(grid, values))
        for seed in seeds:
            raw = copy.deepcopy(base)
            for key, value in params.items():
                node = raw
                parts = key.split(".")
                for p in parts[:-1]:
                    node = node.setdefault(p, {})
                    if not isinstance(node, dict):
                        from harness.config import ConfigError

                        raise ConfigError(f"sweep key {key!r}: {p} is not a section; name a config key")
                node[parts[-1]] = copy.deepcopy(value)
            if seed is not None:
                raw = deep_merge(raw, {seed_section: {"seed": int(seed)}})
            try:
                config = RunConfig.model_validate(raw)
            except Exception as e:
                from harness.config import ConfigError

                first = str(e).splitlines()
                raise ConfigError(f"sweep cell {cell_id(params, seed)}: {' '.join(first[:3])}") from None
            cells.append(Cell(cell_id(params, seed), params, seed, config))
    return cells


# ----------------------------------------------------------------------------------------------- running
def plan_cells(cfg: RunConfig, run_id: str | None):
    """(top run id, [(cell, plan)]): every cell planned (and preflighted) before any model call."""
    from harness.stages.plan import config_hash, plan_run

    rid = run_id or f"{cfg.name}-{config_hash(cfg)}"
    planned = [(c, plan_run(c.config, f"{rid}/cells/{c.id}")) for c in expand(cfg)]
    if cfg.eval_seeds and not any(t.generation.temperature > 0 for _, p in planned for t in p.task_objs.values()):
        from harness.config import ConfigError

        raise ConfigError("--eval-seeds varies the sampling of sampled tasks only, and no task of this run samples "
                          "(all greedy); give a task samples, e.g. --set 'eval.task_options.TASK={samples: 8, "
                          "temperature: 0.8}'")
    return rid, planned


def grid_cost(planned) -> list[dict[str, Any]]:
    from harness.stages.plan import estimate_cost

    return [{"cell": c.id, "params": c.params, "seed": c.seed, **estimate_cost(p)} for c, p in planned]


def run_experiment(cfg: RunConfig, run_id: str | None = None, *, command: str = ""):
    """Run every cell (the first is the donor of the others), then write the combined results and report."""
    from harness.store import RunDir

    rid, planned = plan_cells(cfg, run_id)
    top = RunDir(Path(cfg.output_dir) / rid)
    with run_lock(top.root):  # one driver per experiment folder (each cell's run locks its own folder too)
        return _run_cells(cfg, rid, planned, top, command)


def _run_cells(cfg: RunConfig, rid: str, planned, top, command: str):
    from harness.common.artifacts import save_artifact
    from harness import pipeline

    # One graph over every cell: the first cell is the donor of the others (its stored outputs are linked in
    # where fingerprints match), independent units of all cells run side by side on the executor.
    console.print(f"[bold]{len(planned)} cells[/]: " + ", ".join(c.id for c, _ in planned), highlight=False)
    folders = pipeline.run_many([pipeline.RunRequest(plan, CellLabel(cell.id, cell.params, cell.seed))
                                 for cell, plan in planned], command=command, share_first=True)
    # a cell's time is its manifest's per-phase timings (phases are shared by the cells run side by side)
    records = [{"cell": cell.id, "params": cell.params, "seed": cell.seed, "folder": str(rd.root)}
               for (cell, _), rd in zip(planned, folders)]
    results = combine(rid, [(c, p.run_dir) for c, p in planned], experiment_about(cfg))
    manifest = combined_manifest(rid, cfg, planned, records, command)
    save_artifact(top.manifest, manifest)
    from harness.reports.stats import write_results

    write_results(top.results, results)
    from harness.reports.html import render_report

    render_report(top.root)
    return top


def combined_manifest(rid: str, cfg: RunConfig, planned, records: list[dict], command: str):
    """The donor cell's manifest, re-labelled: run id, the experiment's own config and command, one model
    record per (model, cell), and ``experiment`` = the cells with what each shared or computed."""
    from harness.common.artifacts import (
        CellSummary, EvalCacheSummary, Experiment, Manifest, TrainedSummary, load_artifact,
    )

    cells = []
    models = {}
    first = None
    for (cell, plan), rec in zip(planned, records):
        m = load_artifact(Manifest, plan.run_dir.manifest, "cell manifest")
        first = first or m
        cells.append(CellSummary(
            **rec, timings_seconds=m.timings_seconds,
            training_data={s: {k: v for k, v in r.items() if k != "fingerprint"} for s, r in m.training_data.items()},
            trained={name: TrainedSummary(reused=mr.train.reused, selection=mr.train.selection)
                     for name, mr in m.models.items() if mr.train is not None},
            eval_cache={name: EvalCacheSummary(hits=mr.cache_hits, misses=mr.cache_misses,
                                               shared_tasks=[t for t, e in mr.eval.items() if e.shared_from])
                        for name, mr in m.models.items()}))
        for name, mr in m.models.items():
            if name == "base" and "base" in models:
                continue
            key = name if name == "base" else f"{model_label(name, cell.params)} seed={cell.seed}"
            models[key] = mr
    out = first.model_copy(deep=True)
    out.run_id = rid
    out.command = command
    out.config = cfg.model_dump(mode="json")
    out.models = models
    out.model_order = list(models)
    if out.seeds is not None:
        out.seeds = out.seeds.model_copy(update={"train": seeds_of(cfg),
                                                 **({"eval": cfg.eval_seeds} if cfg.eval_seeds else {})})
    out.experiment = Experiment(cells=cells, **experiment_about(cfg), seed_test=SEED_TEST_TEXT)
    return out


# ----------------------------------------------------------------------------------------------- combining
