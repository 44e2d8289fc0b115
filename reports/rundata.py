"""Reading a run folder for the report: its manifest, which tasks ran on part of their benchmark, and an
experiment's results as the generic sections show them (aggregated over seeds, one label per cell)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from harness.common.artifacts import Manifest, Results, load_artifact
from harness.common.labels import model_label

def load_manifest(run_dir: Path) -> Optional[Manifest]:
    """The run's manifest.json, None when the folder has none (a results.json copied on its own)."""
    path = Path(run_dir) / "manifest.json"
    return load_artifact(Manifest, path, "manifest.json") if path.is_file() else None


def partial_info(results: Results, manifest: Optional[Manifest]) -> dict[str, tuple[int, Optional[int]]]:
    """Tasks evaluated on part of their benchmark: task -> (items used, full size)."""
    out: dict[str, tuple[int, Optional[int]]] = {}
    if manifest is not None:
        for t, rec in manifest.tasks.items():
            if rec.partial:
                out[t] = (rec.n, rec.full_n)
    for r in results.rows:
        if r.partial and r.task not in out and results.primary_metrics.get(r.task) == r.metric:
            out[r.task] = (r.n, r.full_n)
    return out


def task_label(task: str, partial: Mapping[str, tuple[int, Optional[int]]]) -> str:
    """The task's name, marked when it ran on part of its benchmark: "musr (partial: 30 of 756)"."""
    if task not in partial:
        return task
    n, full = partial[task]
    return f"{task} (partial: {n} of {full if full is not None else '?'})"


_AGGREGATE = "mean_over_seeds"


def cell_label(model: str, params: Mapping[str, Any]) -> str:
    return model_label(model, {k: v for k, v in params.items() if k not in ("aggregate", "across")})


def display_results(results: Results) -> Results:
    """An experiment's results as the generic sections show them: only the rows aggregated over seeds, one model
    label per (model, cell params), and the seed-aware comparisons. A plain run is returned as it is."""
    if results.stats.experiment is None:
        return results
    rows = [r.model_copy(update={"model": cell_label(r.model, r.params)}) for r in results.rows
            if r.params.get("aggregate") == _AGGREGATE]
    comps = []
    for c in results.comparisons:
        if c.params.get("aggregate") != _AGGREGATE:
            continue
        if "across" in c.params:
            comps.append(c)
        else:
            comps.append(c.model_copy(update={"model": cell_label(c.model, c.params),
                                              "baseline": cell_label(c.baseline, c.params)}))
    order = []
    for m in results.model_order:
        order += [r.model for r in rows if r.model.split(" [")[0] == m and r.model not in order]
    return results.model_copy(update={"rows": rows, "comparisons": comps, "model_order": order})
