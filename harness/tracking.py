"""Experiment tracking: a finished run logged to MLflow, Weights & Biases and/or TensorBoard (``tracking:`` in
the config; off by default, never part of the run id).

One tracked run per harness run, named by the run id: the config as parameters, every results.json row as a
final metric (``<model>/<task>/<metric>`` with ``..._ci_low``/``..._ci_high``), the report and results.json as
artifacts; nested under it one run per trained method (per sweep cell and seed where the run has cells) with that
method's rows and its training loss curve (``train/loss`` by optimiser step, from the trainer's
``train_metrics.json``, so a model reused from an earlier run still shows its curve).

The trackers' packages are imported only when their section is present (``pip install -e '.[tracking]'``).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["TrackingConfig", "track_run", "TrackingError"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MlflowTracking(_Strict):
    #: e.g. "file:/path/mlruns", "http://mlflow:5000"; None = MLFLOW_TRACKING_URI, else MLflow's default.
    tracking_uri: str | None = None
    experiment: str = "harness"


class WandbTracking(_Strict):
    project: str = "harness"
    entity: str | None = None
    #: "offline" writes under `dir` without a network (sync later with `wandb sync`); None = WANDB_MODE/online.
    mode: Literal["online", "offline", "disabled"] | None = None
    dir: str | None = None


class TensorboardTracking(_Strict):
    #: Event files go to <log_dir>/<run-id>/; None = <run folder>/tensorboard.
    log_dir: str | None = None


class TrackingConfig(_Strict):
    """Where a run is logged besides its folder (any of the three, or none)."""

    mlflow: MlflowTracking | None = None
    wandb: WandbTracking | None = None
    tensorboard: TensorboardTracking | None = None

    @property
    def enabled(self) -> bool:
        return any(x is not None for x in (self.mlflow, self.wandb, self.tensorboard))


class TrackingError(RuntimeError):
    """A tracker that is not installed or refuses; one line with the fix."""


# ---- what is logged ------------------------------------------------------------------------------------------
_BAD = re.compile(r"[^0-9A-Za-z_\-./ ]")


def metric_key(*parts: str) -> str:
    """A key every tracker accepts (MLflow allows letters, digits, _ - . / and spaces)."""
    return "/".join(_BAD.sub("_", p) for p in parts)


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flat_params(v, key + "."))
        else:
            out[key] = json.dumps(v, default=str)[:500]  # MLflow's param value limit is 500 characters (v2 API)
    return out


def row_metrics(rows: list[dict[str, Any]], model: str | None = None) -> dict[str, float]:
    """results.json rows -> {key: value}, intervals as ``..._ci_low``/``..._ci_high``; with ``model``: its rows
    keyed without the model."""
    out: dict[str, float] = {}
    # A plain run's rows all carry the run seed: cell and seed join the key only where rows differ in them
    cells = {(json.dumps(r.get("params") or {}, sort_keys=True, default=str), r.get("seed")) for r in rows}
    for r in rows:
        if r.get("value") is None or (model is not None and r["model"] != model):
            continue
        cell = r.get("params") or {}
        seed = r.get("seed")
        prefix = [] if model is not None else [r["model"]]
        suffix = []
        if len(cells) > 1:
            suffix = ([metric_key(*(f"{k}={v}" for k, v in sorted(cell.items())))] if cell else []) + \
                ([f"seed={seed}"] if seed is not None and model is None else [])
        key = metric_key(*prefix, r["task"], r["metric"], *suffix)
        out[key] = float(r["value"])
        for side in ("ci_low", "ci_high"):
            if r.get(side) is not None:
                out[f"{key}_{side}"] = float(r[side])
    return out


def _children(root: Path, manifest: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per trained method (per cell and seed in a sweep): name, its rows' metrics, loss curve."""
    out = []
    cells = (manifest.get("experiment") or {}).get("cells")
    folders = [(root / "cells" / c, c) for c in (cells or [])] if cells else [(root, None)]
    for folder, cell in folders:
        mpath = folder / "manifest.json"
        m = json.loads(mpath.read_text(encoding="utf-8")) if mpath.is_file() else manifest
        res_path = folder / "results.json"
        cell_rows = json.loads(res_path.read_text(encoding="utf-8"))["rows"] if res_path.is_file() else rows
        seed = (m.get("experiment") or {}).get("seed")
        for method in m.get("methods", []):
            train = (m.get("models", {}).get(method) or {}).get("train") or {}
            metrics_file = folder / "models" / method / "final" / "train_metrics.json"
            curve = train.get("loss_curve")
            if curve is None and metrics_file.is_file():
                curve = json.loads(metrics_file.read_text(encoding="utf-8")).get("loss_curve")
            name = method if cell is None else f"{cell}/{method}"
            out.append({"name": name, "method": method, "cell": cell, "seed": seed,
                        "metrics": row_metrics(cell_rows, model=method), "curve": curve or []})
    return out


# ---- the trackers ------------------------------------------------------------------------------------------
def _need(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise TrackingError(f"tracking: {module.split('.')[0]} is not installed; pip install -e '.[tracking]' "
                            f"or drop tracking.{module.split('.')[0]} from the config") from None


def _mlflow(cfg: MlflowTracking, run_id: str, params: dict[str, str], metrics: dict[str, float],
            children: list[dict[str, Any]], artifacts: list[Path]) -> str:
    import os

    uri = cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if uri.startswith("file:") or (uri and "://" not in uri and not uri.startswith(("sqlite:", "databricks"))):
        # MLflow 3 refuses its file store unless allowed; a file: URI in the config is that explicit choice
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow = _need("mlflow")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=cfg.tracking_uri)
    exp = client.get_experiment_by_name(cfg.experiment)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(cfg.experiment)
    parent = client.create_run(exp_id, run_name=run_id, tags={"harness.run_id": run_id})
    pid = parent.info.run_id
    entities = mlflow.entities
    items = list(params.items())
    for i in range(0, len(items), 100):  # log_batch takes at most 100 params
        client.log_batch(pid, params=[entities.Param(k, v) for k, v in items[i:i + 100]])
    _mlflow_metrics(client, pid, metrics)
    for path in artifacts:
        if path.is_file():
            client.log_artifact(pid, str(path))
    for ch in children:
        tags = {"mlflow.parentRunId": pid, "harness.run_id": run_id, "harness.method": ch["method"]}
        if ch["cell"]:
            tags["harness.cell"] = ch["cell"]
        if ch["seed"] is not None:
            tags["harness.seed"] = str(ch["seed"])
        child = client.create_run(exp_id, run_name=f"{run_id}/{ch['name']}", tags=tags)
        _mlflow_metrics(client, child.info.run_id, ch["metrics"])
        curve = [entities.Metric("train/loss", float(loss), 0, int(step)) for step, loss in ch["curve"]]
        for i in range(0, len(curve), 1000):
            client.log_batch(child.info.run_id, metrics=curve[i:i + 1000])
        client.set_terminated(child.info.run_id)
    client.set_terminated(pid)
    return pid


def _mlflow_metrics(client: Any, run: str, metrics: dict[str, float]) -> None:
    from mlflow.entities import Metric

    items = [Metric(k, v, 0, 0) for k, v in metrics.items()]
    for i in range(0, len(items), 1000):
        client.log_batch(run, metrics=items[i:i + 1000])


def _wandb(cfg: WandbTracking, run_id: str, config: dict[str, Any], metrics: dict[str, float],
           children: list[dict[str, Any]], artifacts: list[Path]) -> str:
    wandb = _need("wandb")
    settings = dict(project=cfg.project, entity=cfg.entity, dir=cfg.dir, group=run_id, reinit="create_new")
    if cfg.mode:
        settings["mode"] = cfg.mode
    run = wandb.init(name=run_id, job_type="harness-run", config=config, **settings)
    run.summary.update(metrics)
    art = wandb.Artifact(metric_key(run_id).replace("/", "-"), type="harness-run")
    for path in artifacts:
        if path.is_file():
            art.add_file(str(path))
    run.log_artifact(art)
    path = run.dir
    run.finish()
    for ch in children:  # W&B has no nesting: a run per method in the run's group
        child = wandb.init(name=f"{run_id}/{ch['name']}", job_type="method",
                           config={"method": ch["method"], "cell": ch["cell"], "seed": ch["seed"]}, **settings)
        for step, loss in ch["curve"]:
            child.log({"train/loss": float(loss)}, step=int(step))
        child.summary.update(ch["metrics"])
        child.finish()
    return path


def _tensorboard(cfg: TensorboardTracking, run_id: str, root: Path, params: dict[str, str],
                 metrics: dict[str, float], children: list[dict[str, Any]]) -> str:
    _need("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    base = Path(cfg.log_dir).expanduser() / run_id if cfg.log_dir else root / "tensorboard"
    with SummaryWriter(str(base)) as w:
        w.add_text("config", "\n".join(f"    {k}: {v}" for k, v in sorted(params.items())))
        for k, v in metrics.items():
            w.add_scalar(k, v, 0)
    for ch in children:
        with SummaryWriter(str(base / ch["name"])) as w:
            for step, loss in ch["curve"]:
                w.add_scalar("train/loss", float(loss), int(step))
            for k, v in ch["metrics"].items():
                w.add_scalar(k, v, 0)
    return str(base)


def check_available(cfg: TrackingConfig | None) -> None:
    """Before a run starts: every configured tracker's package is importable (else one line, exit 2)."""
    import importlib.util

    if cfg is None:
        return
    for name, module in (("mlflow", "mlflow"), ("wandb", "wandb"), ("tensorboard", "tensorboard")):
        if getattr(cfg, name) is not None and importlib.util.find_spec(module) is None:
            raise TrackingError(f"tracking.{name}: {module} is not installed; pip install -e '.[tracking]' or drop "
                                f"tracking.{name} from the config")


def track_run(cfg: TrackingConfig | None, run_root: Path, log: Any = None) -> dict[str, str]:
    """Log a finished run folder to every configured tracker; returns tracker -> where it went."""
    if cfg is None or not cfg.enabled:
        return {}
    root = Path(run_root)
    results = json.loads((root / "results.json").read_text(encoding="utf-8"))
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    run_id = results.get("run_id") or root.name
    config = manifest.get("config") or {}
    params = flat_params(config)
    metrics = row_metrics(results.get("rows", []))
    children = _children(root, manifest, results.get("rows", []))
    artifacts = [root / "report.html", root / "results.json", root / "manifest.json"]
    where: dict[str, str] = {}
    calls = {"mlflow": lambda: _mlflow(cfg.mlflow, run_id, params, metrics, children, artifacts),
             "wandb": lambda: _wandb(cfg.wandb, run_id, config, metrics, children, artifacts),
             "tensorboard": lambda: _tensorboard(cfg.tensorboard, run_id, root, params, metrics, children)}
    for name, call in calls.items():
        if getattr(cfg, name) is None:
            continue
        try:
            where[name] = call()
        except TrackingError:
            raise
        except Exception as e:  # a refusing server, a bad URI: the run itself is complete, say so in one line
            raise TrackingError(f"tracking.{name}: {type(e).__name__}: {' '.join(str(e).split())[:200]}; the run "
                                f"itself is complete in {root}; fix the tracking settings and run the same "
                                "command again (nothing is recomputed)") from None
    if log is not None:
        for k, v in where.items():
            log(f"tracking: {k} {v}")
    return where
