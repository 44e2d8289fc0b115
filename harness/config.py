"""Run configuration: pydantic models loaded from YAML, with presets and dotted CLI overrides.

Resolution order: the YAML file (configs/tiny.yaml when none is given) -> the preset named by ``--preset``
(a ``presets:`` entry of the same file, merged over it) -> ``--set key.sub=value`` overrides -> typed CLI
options (--methods, --tasks, --limit, ...).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from distill.prompts import PromptTemplates
from distill.train import TrainConfig

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "tiny.yaml"


class ConfigError(ValueError):
    """A bad config: the message is one line naming the problem and the fix."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EngineConfig(Strict):
    #: A registered backend (harness.engines.ENGINE_MODULES): hf, vllm, openai, anthropic.
    backend: str = "hf"
    batch_size: int = Field(16, ge=1)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = "auto"
    #: Backend-specific options, validated by the backend's own Options model (base_url, api_key_env, ...).
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        from harness.engines import ENGINE_MODULES

        if v not in ENGINE_MODULES:
            raise ValueError(f"unknown engine backend {v!r}; use one of {', '.join(ENGINE_MODULES)}")
        return v

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        if v not in ("auto", "cpu", "cuda", "mps") and not v.startswith("cuda:"):
            raise ValueError(f"unknown device {v!r}; use auto, cpu, cuda or cuda:N")
        return v


class StudentConfig(Strict):
    #: "tiny" = the embedded default student, built on first use; else a local folder or a hub id.
    model: str = "tiny"
    #: Overrides of distill.tiny.TinySpec fields when model == "tiny" (e.g. {"preset": "smoke"}).
    tiny: dict[str, Any] = Field(default_factory=dict)


class TeacherConfig(Strict):
    #: oracle (synthetic task only), reference (critique from the gold answer; refined = gold solution),
    #: llm (a model over any engine, `model` names it)
    kind: Literal["oracle", "reference", "llm"] = "oracle"
    model: str | None = None
    engine: EngineConfig = Field(default_factory=EngineConfig)
    max_new_tokens: int = 1024
    temperature: float = 0.0


class PoolConfig(Strict):
    """The training questions."""

    source: Literal["synthetic", "math_train", "gsm8k_train"] = "synthetic"
    n: int = Field(400, ge=1)
    seed: int = 0
    #: Held out from training, evaluated as the task `pool_validation` (checkpoint selection never uses a test set).
    validation_n: int = Field(0, ge=0)


class ProbeConfig(Strict):
    max_new_tokens: int = 256
    temperature: float = 0.0  # greedy, as in the released code


class EvalConfig(Strict):
    tasks: list[str] = Field(default_factory=lambda: ["tiny"])
    limit: int | None = Field(None, ge=1)
    #: Per-task options passed to the task (e.g. {"gpqa_diamond": {"num_fewshot": 5}}).
    task_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: Per-task generation budget overrides: {"math500": 4096}; the key "*" applies to every other task.
    max_new_tokens: dict[str, int] = Field(default_factory=dict)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    score_workers: int | None = None

    @field_validator("tasks", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return [t.strip() for t in v.split(",") if t.strip()] if isinstance(v, str) else v


class RunConfig(Strict):
    name: str = "tiny"
    seed: int = 0
    output_dir: str = "results"
    methods: list[str] = Field(default_factory=lambda: ["sft", "cft", "cgd"])
    student: StudentConfig = Field(default_factory=StudentConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    pool: PoolConfig = Field(default_factory=PoolConfig)
    probe: ProbeConfig = Field(default_factory=ProbeConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    prompts: PromptTemplates = Field(default_factory=PromptTemplates)
    #: The paper's optional correctness filter: fraction of training examples whose critique concluded
    #: "right" (1.0, 0.75, 0.5, 0.25, 0.0); None = no filter (the released default).
    right_fraction: float | None = Field(None, ge=0.0, le=1.0)

    @field_validator("methods", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return [m.strip() for m in v.split(",") if m.strip()] if isinstance(v, str) else v


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_override(text: str) -> dict:
    """'train.learning_rate=1e-4' -> {"train": {"learning_rate": 1e-4}} (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not key=value; write e.g. --set train.learning_rate=1e-4")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw else None
    node: dict = {}
    cur = node
    parts = key.strip().split(".")
    for p in parts[:-1]:
        cur[p] = {}
        cur = cur[p]
    cur[parts[-1]] = value
    return node


def load_config(path: str | Path | None = None, preset: str | None = None, overrides: list[str] | None = None,
                extra: dict | None = None) -> RunConfig:
    """Load, merge and validate; every failure is a ConfigError with a one-line message."""
    p = Path(path) if path else DEFAULT_CONFIG
    if not p.exists():
        raise ConfigError(f"config file {p} not found; pass an existing YAML file to --config")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML ({str(e).splitlines()[0]}); fix the syntax") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {p} must hold a mapping at the top level")
    presets = raw.pop("presets", {}) or {}
    if preset:
        if preset not in presets:
            known = ", ".join(presets) or "none"
            raise ConfigError(f"unknown preset {preset!r} in {p.name}; known presets: {known}")
        raw = deep_merge(raw, presets[preset])
    for o in overrides or []:
        raw = deep_merge(raw, parse_override(o))
    raw = deep_merge(raw, extra or {})
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise ConfigError(f"config {p.name}: {loc}: {err['msg']} (see configs/tiny.yaml for the schema)") from e
