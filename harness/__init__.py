"""harness: an evaluation-first benchmarking harness for LLM distillation (SFT vs CFT vs CGD).

The Python API (``harness.api``) is imported on first use, so ``import harness`` (and the CLI's start) stays cheap:

    import harness
    run = harness.compare("configs/tiny.yaml", preset="smoke", methods=["sft"])
    run.results.rows, run.report
    harness.evaluate("path/or/hub-id", name="mine", tasks="math500", limit=50)
    harness.load_run("results/smoke-abc123")
"""
from __future__ import annotations

from typing import Any

__all__ = ["compare", "evaluate", "load_run", "Run", "UsageError", "__version__"]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("harness")
    except Exception:  # run from a checkout that is not installed
        return "0+unknown"


__version__ = _version()


def __getattr__(name: str) -> Any:
    if name in ("compare", "evaluate", "load_run", "Run", "UsageError", "api"):
        import importlib

        api = importlib.import_module("harness.api")
        return api if name == "api" else getattr(api, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
