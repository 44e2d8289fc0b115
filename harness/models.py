"""The models of a run: the student (the embedded tiny one, a folder or a hub id), the engines that serve it and
its adapters for evaluation, and the teacher. Identities are computed without loading weights."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.common.files import stable_hash
from harness.common.types import SamplingParams
from harness.common.units import Resources, Student
from harness.distill.teachers import teacher_class
from harness.config import ConfigError, EngineConfig, RunConfig
from harness.engines import build_engine, engine_identity
from harness.store import CachedEngine, CallCache


def resolve_student(cfg: RunConfig) -> Path | str:
    """'tiny' -> the embedded student folder (built on first use); anything else as given."""
    if cfg.student.model != "tiny":
        return cfg.student.model
    from harness.distill.tiny import ensure_tiny_student
    from harness.distill.tiny_spec import TinySpec

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
    from harness.common.progress import quiet_hf_progress

    quiet_hf_progress()
    return CachedEngine(build_engine(e.backend, model, adapter, batch_size=e.batch_size, dtype=e.dtype,
                                     device=e.device, options=e.options), cache)


#: The engine this process loaded last, kept for the next unit of the same group (a worker or engine actor
#: evaluating several tasks of one model loads it once); replaced when another model comes.
_LOADED: dict[tuple, Any] = {}

#: Backends whose engine holds the model in this process (grouped on engine actors); API engines hold nothing.
LOCAL_BACKENDS = ("hf", "vllm")


def engine_group(e: EngineConfig, model: Path | str) -> str | None:
    """The key of the engine that serves ``model`` and its adapters: the base model + engine settings (a LoRA
    adapter's group is its base model's; a full checkpoint is its own base). None for API engines."""
    if e.backend not in LOCAL_BACKENDS:
        return None
    return stable_hash({"engine": e.model_dump(mode="json"), "model": str(model)})[:16]


def engine_resources(e: EngineConfig, run_gpus: int | None) -> Resources:
    """A model-serving unit's needs (evaluation, probe and teacher shards): the engine's GPUs when it runs on one
    (tensor parallel size on vLLM), one CPU; API engines and CPU runs need no GPU."""
    on_gpu = e.device.startswith("cuda") or (e.device == "auto" and bool(run_gpus))
    if e.backend not in LOCAL_BACKENDS or not on_gpu:
        return Resources(gpus=0.0, cpus=1.0)
    return Resources(gpus=float(e.options.get("tensor_parallel_size", 1)) if e.backend == "vllm" else 1.0, cpus=1.0)


def serve_unit(e: EngineConfig, model: Path | str, adapter: Path | str | None, cache) -> CachedEngine:
    """An engine for one unit, over the unit's cache (the driver's, or a worker's WorkerCache). A unit on the
    same base model as the engine held keeps the base loaded (vLLM: the shared ``LLM`` serves every adapter
    with LoRARequest); another base model first releases everything held (two models never sit in memory)."""
    key = (e.model_dump_json(), str(model), str(adapter) if adapter else None)
    if key not in _LOADED:
        if any(k[:2] != key[:2] for k in _LOADED):
            release_engines()
        else:
            _drop_engines()
        from harness.common.progress import quiet_hf_progress

        quiet_hf_progress()
        _LOADED[key] = build_engine(e.backend, model, adapter, batch_size=e.batch_size, dtype=e.dtype,
                                    device=e.device, options=e.options)
    return CachedEngine(_LOADED[key], cache)


def _drop_engines() -> None:
    """Close the engines held, keeping what they share (vLLM's LLM for the same base model)."""
    for engine in _LOADED.values():
        close = getattr(engine, "close", None)
        if close is not None:
            close()
    _LOADED.clear()


def release_engines() -> None:
    """Drop every engine this process holds and give their accelerator memory back (before training, and when a
    worker switches models): vLLM's shared LLM objects are cleared and its distributed state torn down."""
    import gc
    import sys

    _drop_engines()
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
