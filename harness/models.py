"""The models of a run: the student (the embedded tiny one, a folder or a hub id), the engines that serve it and
its adapters for evaluation, and the teacher. Identities are computed without loading weights."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from common.files import stable_hash
from common.types import SamplingParams
from common.units import Student
from distill.teachers import teacher_class
from harness.config import ConfigError, EngineConfig, RunConfig
from harness.engines import build_engine, engine_identity
from harness.store import CachedEngine, CallCache


def resolve_student(cfg: RunConfig) -> Path | str:
    """'tiny' -> the embedded student folder (built on first use); anything else as given."""
    if cfg.student.model != "tiny":
        return cfg.student.model
    from distill.tiny import ensure_tiny_student
    from distill.tiny_spec import TinySpec

    over = dict(cfg.student.tiny)
    preset = over.pop("preset", "default")
    spec = TinySpec.smoke() if preset == "smoke" else TinySpec.default()
    unknown = [k for k in over if not hasattr(spec, k)]
    if unknown:
        raise ConfigError(f"student.tiny has unknown field {unknown[0]!r}; see distill/tiny_spec.py TinySpec")
    for k, v in over.items():
        setattr(spec, k, v)
    return ensure_tiny_student(spec)


def student_of(cfg: RunConfig) -> Student:
    """The resolved student with its identity: computed here once per run (the digests are cached beside the
    weights, but a read-only hub folder is hashed again on every call)."""
    path = resolve_student(cfg)
    return Student(path, identity_of(cfg.eval.engine, path))


def identity_of(e: EngineConfig, model: Path | str, adapter: Path | str | None = None) -> str:
    return engine_identity(e.backend, model, adapter, dtype=e.dtype, device=e.device, options=e.options)


def serve(e: EngineConfig, model: Path | str, adapter: Path | str | None, cache: CallCache) -> CachedEngine:
    from harness.progress import quiet_hf_progress

    quiet_hf_progress()
    return CachedEngine(build_engine(e.backend, model, adapter, batch_size=e.batch_size, dtype=e.dtype,
                                     device=e.device, options=e.options), cache)


#: The engine this process loaded last, kept for the next unit on the same model (a worker evaluating several
#: tasks of one model loads it once, as the pipeline did before units); replaced when another model comes.
_LOADED: dict[tuple, Any] = {}


def serve_unit(e: EngineConfig, model: Path | str, adapter: Path | str | None, cache) -> CachedEngine:
    """An engine for one unit, over the unit's cache (the driver's, or a worker's WorkerCache)."""
    key = (e.model_dump_json(), str(model), str(adapter) if adapter else None)
    if key not in _LOADED:
        release_engines()  # first: two models never sit in memory together
        from harness.progress import quiet_hf_progress

        quiet_hf_progress()
        _LOADED[key] = build_engine(e.backend, model, adapter, batch_size=e.batch_size, dtype=e.dtype,
                                    device=e.device, options=e.options)
    return CachedEngine(_LOADED[key], cache)


def release_engines() -> None:
    """Drop every engine this process holds and give their accelerator memory back (before training, and when a
    worker switches models): vLLM's shared LLM objects are cleared and its distributed state torn down."""
    import gc
    import sys

    for engine in _LOADED.values():
        close = getattr(engine, "close", None)
        if close is not None:
            close()
    _LOADED.clear()
    vllm_engine = sys.modules.get("harness.engines.vllm")
    if vllm_engine is not None:
        vllm_engine.release_memory()
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def teacher_params(cfg: RunConfig) -> SamplingParams:
    return SamplingParams(max_new_tokens=cfg.teacher.max_new_tokens, temperature=cfg.teacher.temperature,
                          seed=cfg.seed)


def teacher_fingerprint(cfg: RunConfig) -> dict[str, Any]:
    """What decides the teacher's outputs: its kind, model identity, prompt wording and sampling."""
    parts: dict[str, Any] = {"kind": cfg.teacher.kind, "prompts": cfg.prompts.digest()}
    if teacher_class(cfg.teacher.kind).needs_engine:
        parts["model"] = identity_of(cfg.teacher.engine, cfg.teacher.model)
        parts["params"] = teacher_params(cfg).to_dict()
        if cfg.teacher.strip_thinking:  # unset: the fingerprint every earlier run had
            parts["strip_thinking"] = cfg.teacher.strip_thinking
    else:
        parts["implementation"] = make_teacher(cfg, None).identity
    return parts


def make_teacher(cfg: RunConfig, cache):
    """The registered teacher of ``teacher.kind`` (distill/teachers/__init__.py); one that needs an engine gets
    ``teacher.model`` served through ``cache`` (the driver's CallCache, or a worker's WorkerCache), loaded once
    per process and kept for the next shard of teacher calls (``serve_unit``)."""
    cls = teacher_class(cfg.teacher.kind)
    if not cls.needs_engine:
        return cls.from_config(cfg.teacher, cfg.prompts)
    assert cache is not None
    engine = serve_unit(cfg.teacher.engine, cfg.teacher.model, None, cache)
    return cls.from_config(cfg.teacher, cfg.prompts, engine, teacher_params(cfg),
                           identity=f"llm:{stable_hash(teacher_fingerprint(cfg))[:16]}")
