"""Which device and dtype a local engine (hf, vllm) runs on, and torch imported on first use."""
from __future__ import annotations

import importlib
import importlib.metadata as md
import sys
from typing import Any


class LazyModule:
    """torch is imported on first use, not when the engine registers: checking stored results' identities (a
    re-run that computes nothing) must not pay torch's and transformers' seconds of import time."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


torch = LazyModule("torch")


def cuda_available() -> bool:
    """torch.cuda.is_available(), without importing torch where the installed build has no CUDA (a +cpu wheel)."""
    if "torch" in sys.modules:
        return sys.modules["torch"].cuda.is_available()
    try:
        if "+cpu" in md.version("torch"):
            return False
    except md.PackageNotFoundError:
        return False
    return torch.cuda.is_available()


def pick_device(device: str = "auto") -> str:
    if device != "auto":
        return device
    return "cuda" if cuda_available() else "cpu"


def pick_dtype_name(dtype: str, device: str) -> str:
    if dtype == "auto":
        return "bfloat16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "float32"
    return dtype
