"""Data resolution: local mirror (HARNESS_DATA_DIR) -> Hugging Face hub -> one clear error.

The local layout is the one of ``shared/data`` (one folder per benchmark, each with a SOURCE.md).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from common.files import read_jsonl  # the one JSONL reader; re-exported here for callers of tasks.data

__all__ = ["DataMissing", "data_dir", "local_path", "hub_allowed", "missing", "read_jsonl", "load_hub",
           "resolve_jsonl"]


class DataMissing(RuntimeError):
    """A task's data is neither in the local mirror nor reachable on the hub. The message says how to fix it."""


def data_dir() -> Path | None:
    d = os.environ.get("HARNESS_DATA_DIR")
    return Path(d).expanduser().resolve() if d else None


def local_path(*parts: str) -> Path | None:
    """The path under HARNESS_DATA_DIR, or None when the variable is unset or the path absent."""
    root = data_dir()
    if root is None:
        return None
    p = root.joinpath(*parts)
    return p if p.exists() else None


def hub_allowed() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True") and os.environ.get(
        "HARNESS_OFFLINE", "0"
    ) not in ("1", "true", "True")


def missing(task: str, local: str | None, hub: str | None, extra: str = "") -> DataMissing:
    where = []
    if local:
        root = data_dir()
        where.append(f"{root / local if root else '$HARNESS_DATA_DIR/' + local} (local mirror)")
    if hub:
        where.append(f"hub dataset {hub}" + ("" if hub_allowed() else " (offline)"))
    fix = "set HARNESS_DATA_DIR to a folder laid out like shared/data"
    if hub:
        fix += " or allow hub access (unset HF_HUB_OFFLINE/HARNESS_OFFLINE)"
    msg = f"data for task {task!r} not found; looked in: {'; '.join(where) or 'nowhere'}; fix: {fix}"
    return DataMissing(msg + (f" ({extra})" if extra else ""))


def load_hub(task: str, dataset: str, *, config: str | None = None, split: str = "test") -> list[dict[str, Any]]:
    """Load a hub dataset as a list of dicts, or raise DataMissing with the fix."""
    if not hub_allowed():
        raise missing(task, None, dataset)
    try:
        import datasets

        ds = datasets.load_dataset(dataset, config, split=split)
    except Exception as e:  # network down, dataset gated or renamed
        raise DataMissing(
            f"data for task {task!r}: could not load hub dataset {dataset} ({type(e).__name__}: {str(e)[:120]}); "
            "fix: set HARNESS_DATA_DIR to a local mirror or check network access"
        ) from e
    return [dict(r) for r in ds]


def resolve_jsonl(task: str, local_rel: str, hub: str | None = None, *, hub_config: str | None = None,
                  hub_split: str = "test") -> tuple[list[dict[str, Any]], str]:
    """Rows of a JSONL benchmark file from the local mirror, else from the hub. Returns (rows, source)."""
    p = local_path(local_rel)
    if p is not None:
        return read_jsonl(p), f"local:{p}"
    if hub and hub_allowed():
        return load_hub(task, hub, config=hub_config, split=hub_split), f"hub:{hub}"
    raise missing(task, local_rel, hub)
