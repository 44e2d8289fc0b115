"""Plan: resolve the config into methods, tasks and a run folder; check everything that can be checked before
any model call (data present, options valid, models found, teacher/pool/prompt combinations); estimate cost."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from common.files import stable_hash
from common.types import SamplingParams
from distill.methods import get_method, stages_needed
from harness.config import ConfigError, RunConfig
from harness.store import RunDir
from tasks.base import Doc, Task
from tasks.data import DataMissing
from tasks.registry import SUITES, expand_tasks, get_task


@dataclass
class Plan:
    config: RunConfig
    run_id: str
    run_dir: RunDir
    methods: list[str]
    tasks: list[str]
    #: Each task's items after --limit, loaded once by the preflight and reused by evaluation and the manifest.
    docs: dict[str, list[Doc]] = field(default_factory=dict, repr=False)
    #: The task objects (options validated), one per task.
    task_objs: dict[str, Task] = field(default_factory=dict, repr=False)
    skipped: dict[str, str] = field(default_factory=dict)  # task -> why
    stages: list[str] = field(default_factory=list)
    #: Tasks evaluated on part of their benchmark: task -> the benchmark's full size.
    partial: dict[str, int] = field(default_factory=dict)

    @property
    def task_counts(self) -> dict[str, int]:
        return {name: len(self.docs[name]) for name in self.tasks}

    @property
    def model_order(self) -> list[str]:
        return ["base", *self.methods]


def config_hash(cfg: RunConfig) -> str:
    # The output folder is where the run goes, not what it computes.
    return stable_hash(cfg.model_dump(mode="json", exclude={"output_dir"}))[:10]


def make_task(cfg: RunConfig, name: str) -> Task:
    return get_task(name, **cfg.eval.task_options.get(name, {}))


def generation_params(cfg: RunConfig, task: Task) -> SamplingParams:
    g = task.generation
    budgets = cfg.eval.max_new_tokens
    return SamplingParams(max_new_tokens=budgets.get(task.name, budgets.get("*", g.max_new_tokens)),
                          temperature=g.temperature, n=g.n, seed=cfg.seed, stop=tuple(g.stop))


def plan_run(cfg: RunConfig, run_id: str | None = None, *, train: bool = True) -> Plan:
    """Resolve methods and tasks, preflight every task's data and the config's combinations, fix the run folder."""
    methods = list(cfg.methods) if train else []
    for m in methods:
        get_method(m)  # raises UnknownMethod with the known names
    if "base" in methods:
        methods.remove("base")  # the untrained student is always evaluated
    stages = stages_needed(methods) if methods else []
    check_combinations(cfg, stages)
    explicit = {t for t in cfg.eval.tasks if t not in SUITES}
    tasks = expand_tasks(cfg.eval.tasks)
    for name in cfg.eval.task_options:
        make_task(cfg, name)  # a misspelt option (or task name) is an error even for a task not in this run
    docs, objs, skipped, partial, missing_explicit = {}, {}, {}, {}, []
    for name in tasks:
        task = make_task(cfg, name)
        try:
            ds = task.docs()
        except DataMissing as e:
            if name in explicit:
                missing_explicit.append(str(e))
            else:  # part of a suite: skip with a note, say so in the report
                skipped[name] = str(e)
            continue
        objs[name] = task
        docs[name] = ds[: cfg.eval.limit] if cfg.eval.limit else ds
        full = task.full_size()
        if full is not None and full > len(ds):
            partial[name] = full
    if missing_explicit:
        raise ConfigError(missing_explicit[0] if len(missing_explicit) == 1 else
                          f"{len(missing_explicit)} tasks lack data; first: {missing_explicit[0]}")
    tasks = [t for t in tasks if t not in skipped]
    if not tasks:
        raise ConfigError("no task left to evaluate (all lack data); set HARNESS_DATA_DIR or choose other --tasks")
    rid = run_id or f"{cfg.name}-{config_hash(cfg)}"
    return Plan(cfg, rid, RunDir(Path(cfg.output_dir) / rid), methods, tasks, docs, objs, skipped, stages, partial)


def check_combinations(cfg: RunConfig, stages: list[str]) -> None:
    """Mismatches between config sections, reported before any model is loaded or called."""
    from harness.engines import parse_options
    from harness.engines.identity import ModelNotFound, local_identity

    for where, e in (("eval.engine", cfg.eval.engine), ("teacher.engine", cfg.teacher.engine)):
        try:
            parse_options(e.backend, e.options)
        except Exception as err:
            raise ConfigError(f"{where}: {err}") from None
    if cfg.student.model != "tiny":
        try:
            local_identity(cfg.student.model)
        except ModelNotFound as e:
            raise ConfigError(f"student: {e}") from None
    teacher_stages = [s for s in stages if s in ("critique", "refine", "direct")]
    if teacher_stages:
        kind = cfg.teacher.kind
        if kind == "oracle" and cfg.pool.source != "synthetic":
            raise ConfigError(f"teacher.kind=oracle only knows the synthetic task, but pool.source="
                              f"{cfg.pool.source}; use --teacher reference or an LLM teacher")
        if kind == "llm" and not cfg.teacher.model:
            raise ConfigError("teacher.kind=llm needs teacher.model (a local folder, hub id or API model name)")
        if kind != "llm" and cfg.teacher.model:
            raise ConfigError(f"teacher.model is set but teacher.kind={kind}; set teacher.kind=llm to use it")
    if cfg.pool.validation_n >= cfg.pool.n:
        raise ConfigError(f"pool.validation_n={cfg.pool.validation_n} leaves no training questions out of "
                          f"pool.n={cfg.pool.n}; lower validation_n or raise n")
    if cfg.right_fraction is not None and "critique" not in stages:
        raise ConfigError("right_fraction filters by the critique's conclusion, but no chosen method needs a "
                          "critique; add cft or cgd to --methods or unset right_fraction")
    if stages and cfg.train.max_length < cfg.probe.max_new_tokens:
        raise ConfigError(f"train.max_length={cfg.train.max_length} is shorter than probe.max_new_tokens="
                          f"{cfg.probe.max_new_tokens}: cft/cgd inputs hold the probe answer and would be cut; "
                          "raise train.max_length")


def estimate_cost(plan: Plan) -> dict[str, int]:
    """Rough token counts for --dry-run: characters / 4 for prompts, budgets for completions."""
    cfg = plan.config
    n_pool = cfg.pool.n - cfg.pool.validation_n
    q_tokens = 120  # a typical math question and instruction
    teacher_calls = sum(n_pool for s in plan.stages if s in ("critique", "refine", "direct"))
    teacher_tokens = teacher_calls * (q_tokens + 2 * cfg.probe.max_new_tokens + cfg.teacher.max_new_tokens)
    probe_tokens = (n_pool * (q_tokens + cfg.probe.max_new_tokens)) if "probe" in plan.stages else 0
    steps = cfg.train.max_steps or 0
    train_tokens = len(plan.methods) * (
        steps * cfg.train.per_device_batch_size * cfg.train.gradient_accumulation_steps * cfg.train.max_length
        if steps else n_pool * cfg.train.num_epochs * (q_tokens + 2 * cfg.probe.max_new_tokens))
    n_models = 1 + len(plan.methods)
    eval_tokens = 0
    for t in plan.tasks:
        task = plan.task_objs[t]
        budget = generation_params(cfg, task).max_new_tokens if task.output_type == "generate" else 0
        eval_tokens += n_models * plan.task_counts[t] * (q_tokens + budget * task.generation.n)
    return {"probe_tokens": probe_tokens, "teacher_calls": teacher_calls, "teacher_tokens": teacher_tokens,
            "train_tokens_max": train_tokens, "eval_tokens_max": eval_tokens, "models_to_evaluate": n_models}
