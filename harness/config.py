"""Run configuration: pydantic models loaded from YAML, with presets and dotted CLI overrides.

Resolution order: the YAML file (configs/tiny.yaml when none is given) -> the preset named by ``--preset``
(a ``presets:`` entry of the same file, merged over it) -> ``--set key.sub=value`` overrides -> typed CLI
options (--methods, --tasks, --limit, ...).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.common.resources import shipped
from harness.common.yamlfile import DuplicateKey, YAMLSyntaxError, load_yaml, loads_yaml
from harness.distill.pool_config import DecontaminationConfig, PoolConfig  # noqa: F401  (config section models)
from harness.distill.prompts import PromptTemplates
from harness.distill.train_config import TrainConfig
from harness.tracking import TrackingConfig

#: The shipped configs (package data; in a clone, harness/configs links to the editable configs/ folder).
CONFIG_DIR = shipped("configs")
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
    #: Overrides of harness.distill.tiny.TinySpec fields when model == "tiny" (e.g. {"preset": "smoke"}).
    tiny: dict[str, Any] = Field(default_factory=dict)


class TeacherConfig(Strict):
    #: oracle (synthetic task only), reference (critique from the gold answer; refined = gold solution),
    #: llm (a model over any engine, `model` names it)
    kind: Literal["oracle", "reference", "llm"] = "oracle"
    model: str | None = None
    engine: EngineConfig = Field(default_factory=EngineConfig)
    max_new_tokens: int = 1024
    temperature: float = 0.0
    #: The paper's critique-content ablation (its T7): specific = each item's own critique (default);
    #: irrelevant = the critique of ANOTHER pool question (a derangement fixed by the run seed);
    #: generic = one fixed critique for every item (prompts.generic_critique). Refinements are always written
    #: from the specific critique; only what the student trains on (cft's target, cgd's input) changes.
    critique_mode: Literal["specific", "irrelevant", "generic"] = "specific"
    #: Follow-up turns asking for the missing `Conclusion: right|wrong` line before a critique is kept flagged.
    conclusion_retries: int = Field(1, ge=0, le=5)
    #: oracle only (other teachers: always "student"). student: the direct answer t uses the student's own
    #: "Step k:" format.
    #: teacher: t is correct but written in the teacher's own style (prose sentences, another final phrasing,
    #: still ending in \boxed{}); refinements r always repair the student's draft with the fewest changes.
    style: Literal["student", "teacher"] = "student"
    #: Keep only items whose teacher targets (refined / direct answers) reach the gold answer (math-verify);
    #: items without a gold answer are kept. Off in the released pipeline.
    correctness_filter: bool = False
    #: Teacher requests between two budget checks and two saves of data/items.jsonl.
    batch_size: int = Field(32, ge=1)
    #: USD per million input / output tokens; None = the engine's own price options (engine.options), else 0.
    price_per_mtok_in: float | None = Field(None, ge=0)
    price_per_mtok_out: float | None = Field(None, ge=0)
    #: Spending caps over this run's training data (teacher input + output tokens, USD), counted across resumes
    #: (a call answered by the cache counts at its original size). Reaching one stops the run cleanly (exit code
    #: 2) with everything so far kept; raise it to resume. Not part of the run id: a raised cap resumes the run.
    max_tokens: int | None = Field(None, ge=1)
    max_cost_usd: float | None = Field(None, gt=0)
    #: Remove a reasoning model's thinking from its outputs before they become critiques and training targets:
    #: a ready choice (``s1``: S1.1's "think ... answer" marker, everything up to the answer line; ``think``:
    #: ``<think>...</think>`` blocks) or a regular expression whose matches are deleted. The raw output stays in
    #: data/items.jsonl (meta.raw). Part of the teacher fingerprint. None = outputs kept as they are.
    strip_thinking: str | None = None

    @field_validator("strip_thinking")
    @classmethod
    def _valid_pattern(cls, v: str | None) -> str | None:
        from harness.distill.teachers.thinking import thinking_pattern

        if v is not None:
            thinking_pattern(v)  # ThinkingPatternError (a one-line ValueError) for a bad regex
        return v

    @model_validator(mode="after")
    def _style_is_the_oracles(self) -> "TeacherConfig":
        # The style switch belongs to the oracle; any other teacher writes in its own (an LLM's is its prompts').
        # Normalised, not refused, so that --teacher MODEL works on the default config; the manifest records it.
        if self.kind != "oracle":
            self.style = "student"
        return self

    def prices(self) -> tuple[float, float]:
        """(USD per Mtok in, out) for cost accounting: known_prices(), else 0 (then the cost is unknown, and
        the dry run and the caps say so rather than reporting $0)."""
        return self.known_prices() or (0.0, 0.0)

    def known_prices(self) -> tuple[float, float] | None:
        """(USD per Mtok in, out): the teacher's own, else the engine's price options, else the shipped list
        price of a provider-hosted model (distill/teachers/api_models.py, dated), else None (unknown)."""
        opts = self.engine.options
        pin = self.price_per_mtok_in if self.price_per_mtok_in is not None else opts.get("price_per_mtok_in")
        pout = self.price_per_mtok_out if self.price_per_mtok_out is not None else opts.get("price_per_mtok_out")
        if pin is not None or pout is not None:
            return float(pin or 0.0), float(pout or 0.0)
        if self.kind != "llm" or not self.model:
            return None
        from harness.distill.teachers.api_models import list_price, on_provider

        if not on_provider(self.engine.backend, opts.get("base_url")):
            return None
        return list_price(str(opts.get("served_model") or self.model))


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
    #: Data-parallel shards of each (model, task) evaluation: an int, or "auto" = as many as the executor runs
    #: engines at once (its engine actors on Ray; 1 locally, so a local run is unsharded). vllm engine only;
    #: lm-eval tasks run whole. Rows do not depend on it (excluded from the run id).
    shards: int | Literal["auto"] = "auto"
    #: The sampling seed of sampled tasks (temperature > 0); None = the run seed. Greedy tasks, the probe, the
    #: teacher and training never read it (``eval_seeds`` varies it alone).
    seed: int | None = None

    @field_validator("tasks", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return [t.strip() for t in v.split(",") if t.strip()] if isinstance(v, str) else v

    @field_validator("shards")
    @classmethod
    def _positive_shards(cls, v: Any) -> Any:
        if isinstance(v, int) and v < 1:
            raise ValueError("eval.shards must be at least 1, or auto")
        return v


class ExperimentColumn(Strict):
    """One column of a paper table: the paper's benchmark name and where our number comes from."""

    paper: str
    #: Our task; ``tasks`` instead averages the primary metric over several (a paper "Avg" column).
    task: str | None = None
    tasks: list[str] = Field(default_factory=list)
    metric: str | None = None  # None = the task's primary metric; "words"/"steps" = reasoning length
    #: The sweep cell the number comes from (dotted sweep keys -> value), e.g. {train.learning_rate: 1e-6}.
    params: dict[str, Any] = Field(default_factory=dict)


class ExperimentRow(Strict):
    """One row of a paper table: the paper's method label and which of our models (and cell) fills it."""

    paper: str
    model: str
    params: dict[str, Any] = Field(default_factory=dict)
    #: The paper's teacher column where a table has rows per teacher (T3: S1.1-32B or Claude Sonnet 3.7).
    teacher: str | None = None


class ExperimentConfig(Strict):
    """How a sweep's results are laid out as one of the paper's tables (reports/paper.py reads the csv)."""

    table: str  # T1, T5, T7, T8 ...
    title: str = ""
    #: The config this experiment becomes at full scale (the paper's student, teacher and data).
    full_scale: str = ""
    #: What differs in kind from the paper (student, teacher, scale), shown beside the table.
    differences: list[str] = Field(default_factory=list)
    rows: list[ExperimentRow] = Field(default_factory=list)
    columns: list[ExperimentColumn] = Field(default_factory=list)


class ExecutorConfig(Strict):
    """Where the run's units execute. Never part of the run id: the executor changes where work runs, not what
    it computes (local and ray give equal results.json rows)."""

    kind: Literal["local", "ray"] = "local"
    #: Ray cluster address (e.g. "ray://head:10001" or "auto"); None = RAY_ADDRESS, else a local cluster.
    address: str | None = None
    #: GPUs the run may use (sizing, sharding and the dry run's schedule); None = what the machine/cluster has.
    gpus: int | None = Field(None, ge=0)
    #: Memory of each GPU, for the fit check before any model call (harness/sizing.py): a run whose per-GPU
    #: training estimate exceeds it is refused.
    gpu_memory_gb: float = Field(80.0, gt=0)
    #: CPUs the run may use; None = what the machine/cluster has.
    cpus: int | None = Field(None, ge=1)
    #: A failed unit is retried this many times (fresh names, partial outputs cleaned), then reported.
    max_retries: int = Field(2, ge=0)
    #: Most engine actors (long-lived Ray actors holding a loaded hf/vLLM engine) alive at once; None = as many
    #: as the cluster holds for one evaluation unit's resources (one per GPU; tensor_parallel_size GPUs each).
    engine_actors: int | None = Field(None, ge=1)
    #: Seconds an engine actor may take to be placed and start before its unit's attempt fails (a unit that
    #: cannot be placed would otherwise wait silently).
    actor_start_timeout_s: float = Field(300.0, gt=0)


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
    #: An experiment grid: dotted config keys -> the values to try (e.g. {"train.learning_rate": [1e-4, 5e-4]}).
    #: `harness compare` runs every cell (the product of the lists) under results/<run-id>/cells/<cell-id>/.
    sweep: dict[str, list[Any]] = Field(default_factory=dict)
    #: Training seeds: each method is trained once per seed (train.seed); the report gives mean ± sd over them.
    seeds: list[int] | None = None
    #: Evaluation sampling seeds (``--eval-seeds 0,1,2``): one cell per seed, differing only in ``eval.seed``, so
    #: sampled tasks are drawn again while training, the probe and every teacher call stay as they are; the report
    #: gives per-seed rows and mean ± sd rows as for training seeds (the paper's T5 "3 sampling runs").
    eval_seeds: list[int] | None = None
    #: The paper table this experiment reproduces (layout of the report's experiment table).
    experiment: ExperimentConfig | None = None
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    #: Where a finished run is also logged (MLflow, W&B, TensorBoard); off by default, never in the run id.
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @field_validator("methods", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return [m.strip() for m in v.split(",") if m.strip()] if isinstance(v, str) else v

    @field_validator("prompts", mode="before")
    @classmethod
    def _prompt_set(cls, v: Any) -> Any:
        """`prompts: path/to/set` (a folder of <field>.txt files) or `prompts: {set: path, <field>: ...}`."""
        from harness.distill.prompts import load_prompt_set

        if isinstance(v, (str, Path)):
            return load_prompt_set(v)
        if isinstance(v, dict) and "set" in v:
            rest = {k: x for k, x in v.items() if k != "set"}
            return {**load_prompt_set(v["set"]), **rest}
        return v

    @field_validator("seeds", "eval_seeds", mode="before")
    @classmethod
    def _split_seeds(cls, v: Any) -> Any:
        return [int(x) for x in str(v).split(",") if x.strip()] if isinstance(v, (str, int)) else v

    @field_validator("sweep")
    @classmethod
    def _sweep_lists(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            if not values:
                raise ValueError(f"sweep.{key} is an empty list; give at least one value")
            if key in ("sweep", "seeds", "experiment", "name", "output_dir"):
                raise ValueError(f"sweep.{key}: {key} cannot be swept")
        return v


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
    try:
        value = loads_yaml(raw, f"--set {key}") if raw else None
    except (DuplicateKey, YAMLSyntaxError) as e:
        raise ConfigError(f"override {text!r}: {e}") from None
    node: dict = {}
    cur = node
    parts = key.strip().split(".")
    for p in parts[:-1]:
        cur[p] = {}
        cur = cur[p]
    cur[parts[-1]] = value
    return node


def _with_task_files(raw: dict, config_path: Path) -> dict:
    """Tasks defined by YAML files (``--tasks my.yaml``, ``tasks_dir:``) -> their names, the file in the task's
    options (harness.tasks.registry.resolve_task_files); relative paths: the working directory, then the config's folder."""
    from harness.tasks.file_task import is_task_file
    from harness.tasks.registry import resolve_task_files

    tasks_dir = raw.pop("tasks_dir", None)
    ev = raw.get("eval")
    if ev is not None and not isinstance(ev, dict):
        return raw  # the schema says what is wrong
    tasks = (ev or {}).get("tasks", ["tiny"])
    items = tasks.split(",") if isinstance(tasks, str) else tasks if isinstance(tasks, list) else []
    if tasks_dir is None and not any(is_task_file(str(t).strip()) for t in items):
        return raw
    ev = dict(raw.get("eval") or {})
    opts = ev.get("task_options") or {}
    if not isinstance(opts, dict):
        return raw  # the schema says what is wrong
    tasks, opts = resolve_task_files(tasks, opts, [config_path.resolve().parent], tasks_dir)
    ev["tasks"], ev["task_options"] = tasks, opts
    return {**raw, "eval": ev}


def _extended(path: Path, raw: dict, seen: tuple[Path, ...] = ()) -> dict:
    """``extends: other.yaml`` (relative to this file): the other file's settings, this file's merged over them
    (presets included), so a full-scale experiment file names only what it adds to a paper config."""
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    base_path = (path.parent / str(parent)).resolve()
    if base_path in seen or base_path == path.resolve():
        raise ConfigError(f"config file {path}: extends {parent} makes a cycle; remove one of the extends keys")
    if not base_path.exists():
        raise ConfigError(f"config file {path}: extends {parent}, which is not found next to it; fix the path")
    try:
        base = load_yaml(base_path) or {}
    except (DuplicateKey, YAMLSyntaxError) as e:
        raise ConfigError(f"config file {e}") from None
    if not isinstance(base, dict):
        raise ConfigError(f"config file {base_path} must hold a mapping at the top level")
    return deep_merge(_extended(base_path, base, (*seen, path.resolve())), raw)


def config_file(path: str | Path | None) -> Path:
    """The config file a path names: as given (from the working directory), else a shipped one of that name
    (``configs/starter.yaml`` works from any folder once installed); None is the embedded default."""
    if path is None:
        return DEFAULT_CONFIG
    p = Path(path).expanduser()
    if not p.exists() and not p.is_absolute() and p.parts[:1] == ("configs",) and shipped(*p.parts).exists():
        return shipped(*p.parts)
    return p


def load_config(path: str | Path | None = None, preset: str | None = None, overrides: list[str] | None = None,
                extra: dict | None = None) -> RunConfig:
    """Load, merge and validate; every failure is a ConfigError with a one-line message."""
    p = config_file(path)
    if not p.exists():
        raise ConfigError(f"config file {p} not found; pass an existing YAML file to --config")
    try:
        raw = load_yaml(p) or {}
    except DuplicateKey as e:
        raise ConfigError(f"config file {e}") from None
    except YAMLSyntaxError as e:
        raise ConfigError(f"config file {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {p} must hold a mapping at the top level")
    raw = _extended(p, raw)
    presets = raw.pop("presets", {}) or {}
    if preset:
        if preset not in presets:
            known = ", ".join(presets) or "none"
            raise ConfigError(f"unknown preset {preset!r} in {p.name}; known presets: {known}")
        raw = deep_merge(raw, presets[preset])
    for o in overrides or []:
        raw = deep_merge(raw, parse_override(o))
    raw = deep_merge(raw, extra or {})
    raw = _with_task_files(raw, p)
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise ConfigError(f"config {p.name}: {loc}: {err['msg']} (see configs/tiny.yaml for the schema)") from e
