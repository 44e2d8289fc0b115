"""Generation backends behind one small protocol (see base.py). One module per engine."""
from __future__ import annotations

from pathlib import Path

from harness.engines.base import Completion, Engine, Prompt, SamplingParams

__all__ = ["Completion", "Engine", "Prompt", "SamplingParams", "build_engine"]


class EngineUnavailable(RuntimeError):
    """The requested backend cannot run here (not installed / not implemented); the message says what to do."""


def build_engine(backend: str, model: str | Path, adapter: str | Path | None = None, *, batch_size: int = 16,
                 dtype: str = "auto", device: str = "auto", options: dict | None = None) -> Engine:
    if backend == "hf":
        from harness.engines.hf import HFEngine

        return HFEngine(model, adapter, batch_size=batch_size, dtype=dtype, device=device)
    raise EngineUnavailable(
        f"engine backend {backend!r} is not available in this version; use backend: hf"
    )
