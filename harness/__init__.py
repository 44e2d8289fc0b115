"""harness: an evaluation-first benchmarking harness for LLM distillation (SFT vs CFT vs CGD).

The Python API (``harness.api``) is imported on first use, so ``import harness`` (and the CLI's start) stays cheap:

    import harness
    run = harness.compare("configs/tiny.yaml", preset="smoke", methods=["sft"])
    run.results.rows, run.report
    harness.evaluate("path/or/hub-id", name="mine", tasks="math500", limit=50)
    harness.train("configs/tiny.yaml", methods=["cgd"]).models    # {"cgd": results/<run-id>/models/cgd/final}
    harness.load_run("results/smoke-abc123")
    harness.list_runs("results")                                  # what `harness runs` lists
"""
from __future__ import annotations

from typing import Any

_API_NAMES = ("compare", "evaluate", "train", "load_run", "list_runs", "Run", "Trained", "UsageError")
__all__ = [*_API_NAMES, "__version__"]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("harness")
    except Exception:  # run from a checkout that is not installed
        return "0+unknown"


__version__ = _version()


def __getattr__(name: str) -> Any:
    if name in (*_API_NAMES, "api"):
        import importlib

        api = importlib.import_module("harness.api")
        return api if name == "api" else getattr(api, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
