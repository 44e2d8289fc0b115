"""Experiments: a config's ``sweep:`` grid and ``seeds:`` as cells, each a full run folder, and one combined
results.json + report.html + manifest.json at the top.

    results/<run-id>/cells/<cell-id>/   one ordinary run (plan -> training data -> train -> evaluate -> aggregate)
    results/<run-id>/results.json       every cell's rows (stamped with the cell's params and seed), plus rows
                                        aggregated over seeds (seed None, params["aggregate"]="mean_over_seeds",
                                        value = mean of the per-seed values, sd, seeds) and comparisons that
                                        account for both seed and item variance (``hierarchical_bootstrap``)

Sharing: the first cell is every later cell's donor. Its training items, trained models and sample files are
linked into a later cell wherever their fingerprint equals what that cell would compute (the base model's
evaluation, the probe, a method the swept key does not touch, every model of a cell that differs only in evaluation
options); everything else goes through the call cache. Seeds change the training seed only (``train.seed``), so
the probe, the teacher's outputs and the base model's evaluation are the same for every seed.

The seed test (two-level bootstrap, paired on items): each resample draws the items once (with replacement,
shared by both models: the pairing) and, independently for each model, its seeds (with replacement); the statistic
is the difference of the means over the drawn seeds and items. Its percentile interval covers both the item
sampling and the training-seed variance, which a per-seed McNemar test ignores; the p-value is the share of
centred resamples at least as far from 0 as the observed difference (two-sided).
"""
from __future__ import annotations

import copy
import itertools
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from common.files import stable_hash
from common.labels import model_label, params_label, short_key, value_text  # noqa: F401  (params_label re-exported)
from common.units import CellLabel
from harness.config import RunConfig, deep_merge
from harness.progress import console
from harness.runlock import run_lock

AGGREGATE = "mean_over_seeds"
SEED_TEST = "hierarchical_bootstrap"
SEED_TEST_TEXT = ("two-level bootstrap over training seeds and items, paired on items: each resample draws the "
                  "items once for both models and each model's seeds independently; 95% percentile interval, "
                  "two-sided p from the centred resamples")


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
    from common.artifacts import save_artifact
    from harness import pipeline

    # One graph over every cell: the first cell is the donor of the others (its stored outputs are linked in
    # where fingerprints match), independent units of all cells run side by side on the executor.
    console.print(f"[bold]{len(planned)} cells[/]: " + ", ".join(c.id for c, _ in planned), highlight=False)
    folders = pipeline.run_many([pipeline.RunRequest(plan, CellLabel(cell.id, cell.params, cell.seed))
                                 for cell, plan in planned], command=command, share_first=True)
    # a cell's time is its manifest's per-phase timings (phases are shared by the cells run side by side)
    records = [{"cell": cell.id, "params": cell.params, "seed": cell.seed, "folder": str(rd.root)}
               for (cell, _), rd in zip(planned, folders)]
    results = combine(rid, [(c, p.run_dir) for c, p in planned], cfg)
    manifest = combined_manifest(rid, cfg, planned, records, command)
    save_artifact(top.manifest, manifest)
    from reports.stats import write_results

    write_results(top.results, results)
    from reports.html import render_report

    render_report(top.root)
    return top


def combined_manifest(rid: str, cfg: RunConfig, planned, records: list[dict], command: str):
    """The donor cell's manifest, re-labelled: run id, the experiment's own config and command, one model
    record per (model, cell), and ``experiment`` = the cells with what each shared or computed."""
    from common.artifacts import Manifest, load_artifact

    cells = []
    models = {}
    first = None
    for (cell, plan), rec in zip(planned, records):
        m = load_artifact(Manifest, plan.run_dir.manifest, "cell manifest")
        first = first or m
        shared = {name: [t for t, e in mr.eval.items() if isinstance(e, dict) and e.get("shared_from")]
                  for name, mr in m.models.items()}
        cells.append({**rec, "timings_seconds": m.timings_seconds,
                      "training_data": {s: {k: v for k, v in r.items() if k != "fingerprint"}
                                        for s, r in m.training_data.items()},
                      "trained": {name: {"reused": mr.train.get("reused"), "selection": mr.train.get("selection")}
                                  for name, mr in m.models.items() if mr.train},
                      "eval_cache": {name: {"hits": mr.eval.get("cache_hits"), "misses": mr.eval.get("cache_misses"),
                                            "shared_tasks": shared.get(name, [])} for name, mr in m.models.items()}})
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
    out.seeds = {**out.seeds, "train": seeds_of(cfg), **({"eval": cfg.eval_seeds} if cfg.eval_seeds else {})}
    out.experiment = {"cells": cells, "sweep": cfg.sweep, "seeds": seeds_of(cfg) or cfg.eval_seeds,
                      "seed_kind": seed_kind(cfg), "seed_test": SEED_TEST_TEXT,
                      "table": cfg.experiment.model_dump(mode="json") if cfg.experiment else None}
    return out


# ----------------------------------------------------------------------------------------------- combining
def _per_sample(rd, model: str, task: str, metric: str, primary: str) -> dict[str, float] | None:
    from common.artifacts import read_samples

    path = rd.samples(model, task)
    if not path.exists():
        return None
    out = {}
    for r in read_samples(path):
        v = r.metrics.get(metric, r.score if metric == primary else None)
        if v is None:
            return None
        out[r.id] = float(v)
    return out


def hierarchical_ci(matrix: np.ndarray, n_resamples: int = 2000, seed: int = 0,
                    confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the grand mean of a (seeds x items) matrix, resampling seeds then items."""
    k, n = matrix.shape
    rng = np.random.default_rng(seed)
    stats = np.empty(n_resamples)
    for b in range(n_resamples):
        s = rng.integers(0, k, size=k)
        i = rng.integers(0, n, size=n)
        stats[b] = matrix[np.ix_(s, i)].mean()
    a = (1 - confidence) / 2
    lo, hi = np.quantile(stats, [a, 1 - a])
    return float(lo), float(hi)


def hierarchical_paired_test(a: np.ndarray, b: np.ndarray, n_resamples: int = 2000, seed: int = 0,
                             confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(delta, ci_low, ci_high, p) of mean(a) - mean(b) for (seeds x items) matrices on the same items: items
    resampled once for both (paired), seeds resampled independently per model."""
    ka, n = a.shape
    kb, nb = b.shape
    if n != nb:
        raise ValueError(f"paired test needs the same items: {n} != {nb}")
    delta = float(a.mean() - b.mean())
    rng = np.random.default_rng(seed)
    stats = np.empty(n_resamples)
    for r in range(n_resamples):
        i = rng.integers(0, n, size=n)
        sa = rng.integers(0, ka, size=ka)
        sb = rng.integers(0, kb, size=kb)
        stats[r] = a[np.ix_(sa, i)].mean() - b[np.ix_(sb, i)].mean()
    al = (1 - confidence) / 2
    lo, hi = np.quantile(stats, [al, 1 - al])
    centred = stats - stats.mean()
    p = float((np.sum(np.abs(centred) >= abs(delta) - 1e-12) + 1) / (n_resamples + 1)) if delta != 0 else 1.0
    return delta, float(lo), float(hi), min(1.0, p)


def combine(rid: str, cells: Sequence[tuple[Cell, Any]], cfg: RunConfig):
    """The top results.json: every cell's rows and comparisons, then per group of cells that differ only in
    their seed: rows aggregated over seeds and the hierarchical comparisons (vs base and between methods; and
    between groups for the same method, e.g. cgd at one learning rate vs another)."""
    from common.artifacts import ResultRow, Results
    from reports.stats import load_results

    rows, comps, primary, order, lengths = [], [], {}, [], []
    per_cell = []
    for cell, rd in cells:
        res = load_results(rd.results)
        per_cell.append((cell, rd, res))
        rows += res.rows
        comps += res.comparisons
        primary.update(res.primary_metrics)
        order += [m for m in res.model_order if m not in order]
        lengths += res.stats.get("reasoning_length", [])
    groups: dict[str, list] = {}
    for item in per_cell:
        groups.setdefault(item[0].group, []).append(item)
    agg_rows: list[ResultRow] = []
    matrices: dict[tuple[str, str, str], tuple[np.ndarray, list[str], dict]] = {}  # (group, model, task)
    for g, members in groups.items():
        params = {**members[0][0].params, "aggregate": AGGREGATE}
        seeds = [c.seed for c, _, _ in members if c.seed is not None]
        keys = list(dict.fromkeys((r.model, r.task, r.metric) for _, _, res in members for r in res.rows))
        for model, task, metric in keys:
            found = [(c, rd, next(r for r in res.rows if (r.model, r.task, r.metric) == (model, task, metric)))
                     for c, rd, res in members
                     if any((r.model, r.task, r.metric) == (model, task, metric) for r in res.rows)]
            if len(found) != len(members):
                continue
            vals = np.array([r.value for _, _, r in found])
            sd = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
            lo = hi = None
            per = [_per_sample(rd, model, task, metric, primary.get(task, "")) for _, rd, _ in found]
            if all(p is not None for p in per) and per and per[0]:
                ids = sorted(set.intersection(*(set(p) for p in per)))
                if ids:
                    mat = np.array([[p[i] for i in ids] for p in per])
                    lo, hi = hierarchical_ci(mat)
                    if metric == primary.get(task):
                        matrices[(g, model, task)] = (mat, ids, params)
            n = found[0][2].n
            agg_rows.append(ResultRow(
                model=model, task=task, metric=metric, value=float(np.clip(vals.mean(), 0, 1)), n=n,
                ci_low=lo, ci_high=hi, ci_method=f"{SEED_TEST}(seeds,items)" if lo is not None else None,
                params=params, seed=None, sd=sd, seeds=seeds or None,
                partial=found[0][2].partial, full_n=found[0][2].full_n))
        for task in {t for (_, t, _) in keys}:
            for model in {m for (m, t, _) in keys if t == task}:
                got = [x for x in lengths if x["model"] == model and x["task"] == task
                       and stable_hash(x.get("params") or {})[:12] == g]
                if got:
                    lengths.append({"model": model, "task": task, "params": params, "seed": None,
                                    "words": float(np.mean([x["words"] for x in got])),
                                    "steps": float(np.mean([x["steps"] for x in got])),
                                    "words_sd": float(np.std([x["words"] for x in got], ddof=1)) if len(got) > 1 else 0.0,
                                    "steps_sd": float(np.std([x["steps"] for x in got], ddof=1)) if len(got) > 1 else 0.0})
    seed_comps = _seed_comparisons(matrices, order, primary)
    return Results(run_id=rid, model_order=order, primary_metrics=primary, rows=rows + agg_rows,
                   comparisons=comps + seed_comps,
                   stats={"confidence": 0.95, "n_resamples": 2000,
                          "ci": "per cell: percentile bootstrap over items; over seeds: " + SEED_TEST_TEXT,
                          "p_value": "per cell: exact McNemar / sign-flip; over seeds: " + SEED_TEST_TEXT,
                          "seed_test": SEED_TEST_TEXT, "reasoning_length": lengths,
                          "experiment": {"cells": [{"cell": c.id, "params": c.params, "seed": c.seed}
                                                   for c, _ in cells],
                                         "sweep": cfg.sweep, "seeds": seeds_of(cfg) or cfg.eval_seeds,
                                         "seed_kind": seed_kind(cfg),
                                         "table": cfg.experiment.model_dump(mode="json") if cfg.experiment else None}})


def _seed_comparisons(matrices, order: list[str], primary: dict[str, str]):
    from common.artifacts import Comparison

    out = []

    def add(key_a, key_b, model: str, baseline: str, params: dict) -> None:
        (ma, ia, _), (mb, ib, _) = matrices[key_a], matrices[key_b]
        ids = sorted(set(ia) & set(ib))
        if not ids:
            return
        a = ma[:, [ia.index(i) for i in ids]]
        b = mb[:, [ib.index(i) for i in ids]]
        delta, lo, hi, p = hierarchical_paired_test(a, b)
        wins = int(np.sum(a.mean(0) > b.mean(0)))
        losses = int(np.sum(a.mean(0) < b.mean(0)))
        out.append(Comparison(model=model, baseline=baseline, task=key_a[2], metric=primary[key_a[2]],
                              delta=delta, ci_low=lo, ci_high=hi, p_value=p, n=len(ids), wins=wins, losses=losses,
                              test=SEED_TEST, params=params, seed=None))

    by_group: dict[str, dict[tuple[str, str], tuple]] = {}
    for (g, m, t) in matrices:
        by_group.setdefault(g, {})[(m, t)] = (g, m, t)
    for g, entries in by_group.items():
        params = matrices[next(iter(entries.values()))][2]
        tasks = list(dict.fromkeys(t for _, t in entries))
        models = [m for m in order if any((m, t) in entries for t in tasks)]
        for t in tasks:
            present = [m for m in models if (m, t) in entries]
            for j, m in enumerate(present):
                for other in present[:j]:
                    add(entries[(m, t)], entries[(other, t)], m, other, params)
    # the same method across groups (e.g. cgd at two learning rates): labelled models
    groups = list(by_group)
    for j, g in enumerate(groups):
        for h in groups[:j]:
            for (m, t), key in by_group[g].items():
                if m == "base" or (m, t) not in by_group[h]:
                    continue
                pa, pb = matrices[key][2], matrices[by_group[h][(m, t)]][2]
                add(key, by_group[h][(m, t)], model_label(m, pa), model_label(m, pb),
                    {"aggregate": AGGREGATE, "across": [pa, pb]})
    return out
