"""The run as a graph of units, sized for a cluster before it runs (``--dry-run`` with ``--executor ray`` or
``executor.gpus``): units per kind, their GPU-hours, and the expected wall time on that many GPUs.

Each unit's GPU-hours come from the dry run's cost estimate (harness/stages/costs.py: its throughput figures are
assumptions, stated there and printed with the estimate; no GPU measured them here). The graph:
- probe shards (the student answers the pool; 1 GPU each) -> teacher shards per stage (critique -> refine, shard
  by shard; tensor-parallel over as many GPUs as the teacher's weights need in 80 GB GPUs at 80% memory);
- train jobs (method x seed), each after every teacher shard, on ``sizing.job_gpus`` GPUs (a gang);
- evaluation units (model x task, on the eval engine's GPUs; cut into data-parallel shards as the run would cut
  them: ``eval.shards``, "auto" = one per engine actor the GPUs hold, vllm only): the base model's from the
  start, a method's after its train job;
- aggregate (CPU) after every evaluation.
The wall time is greedy list scheduling: units in graph order, each starting when its inputs are done and as many
GPUs as it needs are free. Real runs add model loading, stragglers and queueing; read it as a lower bound.
"""
from __future__ import annotations

import heapq
import math
from collections import defaultdict
from dataclasses import dataclass

from harness.common.output_type import OutputType
from harness.common.units import Resources, Unit

#: GPU memory a tensor-parallel teacher replica may fill with weights (the rest: KV cache, activations).
WEIGHT_SHARE = 0.5
GPU_MEMORY_GB = 80.0


@dataclass
class Schedule:
    gpus: int
    units: list[Unit]
    finish_h: dict[str, float]

    @property
    def wall_h(self) -> float:
        return max(self.finish_h.values(), default=0.0)

    def by_kind(self) -> dict[str, tuple[int, float, float]]:
        """kind (teacher units by stage) -> (units, GPUs each at most, GPU-hours)."""
        out: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
        for u in self.units:
            kind = u.name.split("/")[0] if u.kind != "teacher" else u.name.rsplit("/", 1)[0]
            row = out[kind]
            row[0] += 1
            row[1] = max(row[1], u.resources.gpus)
            row[2] += u.estimate_s / 3600 * u.resources.gpus
        return {k: (int(v[0]), v[1], v[2]) for k, v in out.items()}

    def lines(self) -> list[str]:
        total = sum(u.estimate_s / 3600 * u.resources.gpus for u in self.units)
        out = [f"schedule on {self.gpus} GPUs ({len(self.units)} units; list scheduling, dependencies and per-unit "
               "GPU needs respected; throughput from the assumptions above):"]
        for kind, (n, g, h) in self.by_kind().items():
            need = f"{g:g} GPU{'s' if g != 1 else ''} each" if g else "CPU"
            out.append(f"  {kind}: {n} unit{'s' if n != 1 else ''} x {need}, {h:,.2f} GPU-hours")
        util = total / (self.wall_h * self.gpus) if self.wall_h else 0.0
        out.append(f"  total {total:,.2f} GPU-hours; expected wall time {self.wall_h:,.2f} h on {self.gpus} GPUs "
                   f"(utilisation {util:.0%}; a lower bound: loading and queueing not counted)")
        return out


def teacher_tp(params_b: float | None) -> int:
    """GPUs one teacher replica needs: bf16 weights (2 bytes a parameter) within WEIGHT_SHARE of each GPU."""
    if not params_b:
        return 1
    need = params_b * 2 / (GPU_MEMORY_GB * WEIGHT_SHARE)
    return 2 ** max(0, math.ceil(math.log2(max(1.0, need))))


def build_units(plans: list, estimates: list, gpus: int) -> list[Unit]:
    """The unit graph of one run or of an experiment's cells (teacher data and the base evaluation are shared
    by every cell: the first cell makes them)."""
    from harness.models import engine_resources
    from harness.sizing import job_gpus
    from harness.stages.costs import params_b_of
    from harness.stages.eval_shards import shard_count, shard_ranges

    units: list[Unit] = []
    first, est0 = plans[0], estimates[0]
    cfg = first.config

    def hours(est, key: str) -> float:
        v = est.flat().get(key)
        return float(v) if isinstance(v, (int, float)) else 0.0

    teacher_stages = [s for s in first.stages if s != "probe"]
    tp = teacher_tp(params_b_of(cfg.teacher.model) if cfg.teacher.kind == "llm" and cfg.teacher.model else None)
    shards = max(1, gpus // tp)
    probe_h = hours(est0, "probe_gpu_hours")
    teacher_h = hours(est0, "teacher_gpu_hours")
    data_done: list[str] = []
    for i in range(shards if first.methods else 0):
        prev = ()
        if "probe" in first.stages:
            u = Unit("teacher", f"teacher/probe/{i}", "", Resources(gpus=1), estimate_s=probe_h / shards * 3600)
            units.append(u)
            prev = (u.name,)
        for stage in teacher_stages:
            gpu_h = teacher_h / len(teacher_stages) / shards
            u = Unit("teacher", f"teacher/{stage}/{i}", "", Resources(gpus=tp), after=prev,
                     estimate_s=gpu_h / tp * 3600)
            units.append(u)
            prev = (u.name,)
        data_done += list(prev)
    tasks = {t: max(1, n) for t, n in first.eval_counts.items()}  # the held-out task included
    n_items = sum(tasks.values())
    n_models = max(1, 1 + len(first.methods))
    eval_h = hours(est0, "eval_gpu_hours") / n_models

    eval_gpus = max(1.0, engine_resources(cfg.eval.engine, gpus).gpus)
    slots = max(1, int(gpus // eval_gpus))

    def evals(model: str, after: tuple[str, ...]) -> None:
        for t, n in tasks.items():
            output_type = first.task_objs[t].output_type if t in first.task_objs else OutputType.GENERATE  # held out
            ranges = shard_ranges(n, shard_count(cfg, output_type, slots))
            for k, (start, stop) in enumerate(ranges):
                name = f"eval/{model}/{t}" + (f"/{k + 1}of{len(ranges)}" if len(ranges) > 1 else "")
                units.append(Unit("eval", name, "", Resources(gpus=eval_gpus), after=after,
                                  estimate_s=eval_h * (stop - start) / n_items * 3600 / eval_gpus))

    evals("base", ())
    trained: list[tuple[str, str]] = []
    for k, (plan, est) in enumerate(zip(plans, estimates)):
        g = max(1, job_gpus(plan.config))
        per_job_h = hours(est, "train_gpu_hours") / max(1, len(plan.methods))
        for m in plan.methods:
            label = m if len(plans) == 1 else f"{m}@cell{k}"
            u = Unit("train", f"train/{label}", "", Resources(gpus=g), after=tuple(data_done),
                     estimate_s=per_job_h / g * 3600)
            units.append(u)
            trained.append((label, u.name))
    # Every train job before the trained models' evaluations: list scheduling places units in this order, and
    # a method's many evaluation shards placed first would hold the GPUs the next (longer) train job needs.
    for label, after in trained:
        evals(label, (after,))
    units.append(Unit("aggregate", "aggregate", "", Resources(gpus=0), after=tuple(
        u.name for u in units if u.kind == "eval")))
    return units


def list_schedule(units: list[Unit], gpus: int) -> Schedule:
    """Greedy list scheduling in the given (topological) order on ``gpus`` identical GPUs."""
    free = [0.0] * max(1, gpus)  # when each GPU is next free (hours)
    finish: dict[str, float] = {}
    for u in units:
        ready = max((finish[d] for d in u.after), default=0.0)
        need = min(int(math.ceil(u.resources.gpus)), len(free))
        dur = u.estimate_s / 3600
        if need == 0:
            finish[u.name] = ready + dur
            continue
        chosen = heapq.nsmallest(need, range(len(free)), key=lambda i: max(free[i], ready))
        start = max(ready, *(free[i] for i in chosen))
        for i in chosen:
            free[i] = start + dur
        finish[u.name] = start + dur
    return Schedule(gpus=gpus, units=units, finish_h=finish)


def schedule(plans: list, estimates: list, gpus: int) -> Schedule:
    return list_schedule(build_units(plans, estimates, gpus), gpus)
