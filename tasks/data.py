"""Data resolution: local mirror (HARNESS_DATA_DIR) -> Hugging Face hub -> one clear error.

The local layout is the one of ``shared/data`` (one folder per benchmark, each with a SOURCE.md).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.common.files import read_jsonl  # the one JSONL reader; re-exported here for callers of harness.tasks.data

__all__ = ["DataMissing", "data_dir", "local_path", "hub_allowed", "hub_cached", "hub_off_reason", "set_hub_access",
           "missing", "read_jsonl", "load_hub",
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


_OFF_VALUES = ("1", "true", "True", "yes", "on")
#: The hub's state for this process: None = not probed yet, else (reachable, why not).
_hub_state: tuple[bool, str] | None = None


def hub_offline_by_env() -> str | None:
    """The variable that switches the hub off, or None."""
    for var in ("HF_HUB_OFFLINE", "HARNESS_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "0") in _OFF_VALUES:
            return f"{var}={os.environ[var]}"
    return None


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def probe_timeout() -> float:
    """Seconds the one reachability probe may take (HARNESS_HUB_TIMEOUT, default 3)."""
    try:
        return max(0.1, float(os.environ.get("HARNESS_HUB_TIMEOUT", "3")))
    except ValueError:
        return 3.0


def _probe() -> tuple[bool, str]:
    """One HTTP request to the hub's API with a short timeout (proxy variables honoured, as ``datasets`` does).
    ``datasets`` itself retries five times with backoff (about 23 s a dataset, measured) before giving up, which
    on a node without internet is a hang. Only a 2xx/3xx answer counts: some networks answer every address."""
    import urllib.error
    import urllib.request

    url = f"{hub_endpoint()}/api/datasets?limit=1"
    timeout = probe_timeout()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as r:
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except (OSError, ValueError) as e:  # DNS, refused, timed out, malformed HF_ENDPOINT
        reason = getattr(e, "reason", e)
        why = "timed out" if isinstance(reason, TimeoutError) or "timed out" in str(reason) else \
            (getattr(reason, "strerror", None) or str(reason) or type(e).__name__)
        return False, f"{hub_endpoint()} unreachable ({why}; probe timeout {timeout:g}s, HARNESS_HUB_TIMEOUT)"
    if 200 <= status < 400:
        return True, ""
    return False, f"{hub_endpoint()} unreachable (HTTP {status} from {url})"


def set_hub_access(allowed: bool | None, why: str = "") -> None:
    """Force hub access on/off for this process (``harness tasks`` lists without the network), or None to let
    the next ``hub_allowed()`` probe again."""
    global _hub_state
    _hub_state = None if allowed is None else (allowed, why)


def hub_allowed(dataset: str | None = None) -> bool:
    """Whether data may come from the hub: not switched off by the environment and the hub answered the one probe
    of this process (made on first need). With ``dataset``, also True when that dataset is in the local cache
    (it then loads from the cache without the network)."""
    global _hub_state
    if dataset is not None and hub_cached(dataset):
        return True
    if hub_offline_by_env():
        return False
    if _hub_state is None:
        _hub_state = _probe()
    return _hub_state[0]


def hub_off_reason() -> str:
    """Why the hub is off ("" when it is not known to be off)."""
    env = hub_offline_by_env()
    if env:
        return f"offline: {env}"
    if _hub_state is not None and not _hub_state[0]:
        return f"hub access off for this run: {_hub_state[1]}" if _hub_state[1] else "hub access off"
    return ""


def _cache_dirs() -> list[Path]:
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")).expanduser()
    hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    ds = os.environ.get("HF_DATASETS_CACHE")
    return [Path(hub).expanduser() if hub else home / "hub", Path(ds).expanduser() if ds else home / "datasets"]


def hub_cached(dataset: str) -> bool:
    """Whether a hub dataset is in the local caches (the hub's file cache or the datasets cache); files only."""
    hub_dir, ds_dir = _cache_dirs()
    org_name = dataset.replace("/", "--")
    if (hub_dir / f"datasets--{org_name}" / "snapshots").is_dir() and any(
            (hub_dir / f"datasets--{org_name}" / "snapshots").iterdir()):
        return True
    return (ds_dir / dataset.replace("/", "___")).is_dir()


def missing(task: str, local: str | None, hub: str | None, extra: str = "") -> DataMissing:
    where = []
    if local:
        root = data_dir()
        where.append(f"{root / local if root else '$HARNESS_DATA_DIR/' + local} (local mirror)")
    if hub:
        off = hub_off_reason()
        where.append(f"hub dataset {hub}" + (f" ({off})" if off else ""))
    fix = "set HARNESS_DATA_DIR to a folder laid out like shared/data"
    if hub:
        fix += " or allow hub access (network, and HF_HUB_OFFLINE/HARNESS_OFFLINE unset)"
    msg = f"data for task {task!r} not found; looked in: {'; '.join(where) or 'nowhere'}; fix: {fix}"
    return DataMissing(msg + (f" ({extra})" if extra else ""))


def load_hub(task: str, dataset: str, *, config: str | None = None, split: str = "test") -> list[dict[str, Any]]:
    """Load a hub dataset as a list of dicts (from the local cache without the network when the hub is off),
    or raise DataMissing with the fix."""
    if not hub_allowed(dataset):
        raise missing(task, None, dataset)
    offline = hub_offline_by_env() is not None or not hub_allowed()
    try:
        import datasets
        import huggingface_hub.constants as hub_constants

        # Read at import by both libraries; set for this call so a cached dataset loads without a retry loop.
        saved = hub_constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE
        if offline:
            hub_constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
        try:
            ds = datasets.load_dataset(dataset, config, split=split)
        finally:
            hub_constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = saved
    except Exception as e:  # network down, dataset gated or renamed, cache incomplete
        raise DataMissing(
            f"data for task {task!r}: could not load hub dataset {dataset} ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:120]}); fix: set HARNESS_DATA_DIR to a local mirror or check network access"
        ) from e
    return [dict(r) for r in ds]


def resolve_jsonl(task: str, local_rel: str, hub: str | None = None, *, hub_config: str | None = None,
                  hub_split: str = "test") -> tuple[list[dict[str, Any]], str]:
    """Rows of a JSONL benchmark file from the local mirror, else from the hub. Returns (rows, source)."""
    p = local_path(local_rel)
    if p is not None:
        return read_jsonl(p), f"local:{p}"
    if hub and hub_allowed(hub):
        return load_hub(task, hub, config=hub_config, split=hub_split), f"hub:{hub}"
    raise missing(task, local_rel, hub)
