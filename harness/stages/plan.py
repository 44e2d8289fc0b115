"""Plan: resolve the config into methods, tasks and a run folder; check everything that can be checked before
any model call (data present, options valid, models found, teacher/pool/prompt combinations); estimate cost."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from harness.common.files import stable_hash
from harness.common.frozen import FrozenMap
from harness.common.types import SamplingParams
from harness.distill.methods import get_method, stages_needed
from harness.config import ConfigError, RunConfig
from harness.stages.pool_split import HeldOut, PoolSource
from harness.store import RunDir
from harness.tasks.base import Doc, Task
from harness.tasks.data import DataMissing
from harness.tasks.registry import SUITES, expand_tasks, get_task


@dataclass(frozen=True)
class Plan:
    """What a run will do, fixed before any model call and never changed after ``plan_run`` returns (a variant is a
    new plan: ``dataclasses.replace``). Sequences are tuples and mappings ``FrozenMap``s, so it pickles (the ray
    executor ships it to workers)."""

    config: RunConfig
    run_id: str
    run_dir: RunDir
    methods: tuple[str, ...]
    #: The test benchmarks (the report, results.json rows and the paper comparison); the held-out task is not one.
    tasks: tuple[str, ...]
    #: Each task's items after --limit, loaded once by the preflight and reused by evaluation and the manifest.
    docs: Mapping[str, tuple[Doc, ...]] = field(default_factory=FrozenMap, repr=False)
    #: The task objects (options validated), one per task.
    task_objs: Mapping[str, Task] = field(default_factory=FrozenMap, repr=False)
    skipped: Mapping[str, str] = field(default_factory=FrozenMap)  # task -> why
    stages: tuple[str, ...] = ()
    #: Tasks evaluated on part of their benchmark: task -> the benchmark's full size.
    partial: Mapping[str, int] = field(default_factory=FrozenMap)
    #: The training pool and its validation split (runs that train), loaded on first use.
    pool: PoolSource | None = field(default=None, repr=False)
    #: The held-out task (pool_validation) when the run trains and pool.validation_n > 0.
    held_out: HeldOut | None = None

    def __post_init__(self) -> None:  # lists and dicts handed in (replace(), tests) are frozen too
        for name in ("methods", "tasks", "stages"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "docs", FrozenMap({k: tuple(v) for k, v in self.docs.items()}))
        for name in ("task_objs", "skipped", "partial"):
            object.__setattr__(self, name, FrozenMap(getattr(self, name)))

    @property
    def task_counts(self) -> dict[str, int]:
        return {name: len(self.docs[name]) for name in self.tasks}

    @property
    def eval_counts(self) -> dict[str, int]:
        """Items per evaluated task, the held-out one included (pool.validation_n: known without loading the pool)."""
        return {**self.task_counts, **({self.held_out.name: self.held_out.n} if self.held_out else {})}

    @property
    def model_order(self) -> list[str]:
        return ["base", *self.methods]

    @property
    def eval_tasks(self) -> tuple[str, ...]:
        """Every task evaluated: the test benchmarks, then the held-out task when the plan has one."""
        return (*self.tasks, *((self.held_out.name,) if self.held_out else ()))

    def task(self, name: str) -> Task:
        """The task object of any evaluated task, the held-out one included (its pool is loaded on first use)."""
        if self.held_out is not None and name == self.held_out.name:
            return self.held_out.task
        return self.task_objs[name]

    def task_spec(self, name: str) -> Task:
        """A task's settings (generation budget, metric, output type) for estimates: the held-out task's without
        loading its pool."""
        if self.held_out is not None and name == self.held_out.name:
            return self.held_out.spec
        return self.task_objs[name]

    def task_docs(self, name: str) -> tuple[Doc, ...]:
        """The items evaluated for any task of ``eval_tasks``."""
        if self.held_out is not None and name == self.held_out.name:
            return self.held_out.docs
        return self.docs[name]


def config_hash(cfg: RunConfig) -> str:
    return stable_hash(config_identity(cfg))[:10]


def config_identity(cfg: RunConfig) -> dict[str, Any]:
    """What the run id is a hash of: the config without where and how far the run goes."""
    # The output folder is where the run goes, not what it computes; the teacher's spending caps and request
    # batch decide how far a run gets, not what it computes (a raised cap resumes the same run folder).
    # The executor decides where units run, not what they compute.
    exclude: dict[str, Any] = {"output_dir": True, "executor": True, "tracking": True,
                               "teacher": {"max_tokens", "max_cost_usd", "batch_size"}}
    # opt-in switches at their defaults leave the run id of every config as it was before they existed
    if cfg.teacher.style == "student":
        exclude["teacher"].add("style")
    if cfg.teacher.strip_thinking is None:
        exclude["teacher"].add("strip_thinking")
    if cfg.pool.answer_style == "gold":
        exclude["pool"] = {"answer_style"}
    if cfg.eval.seed is None:
        exclude["eval"] = {"seed"}
    # Shards change where a task's docs are evaluated, not the rows (harness/stages/eval_shards.py).
    exclude["eval"] = {*exclude.get("eval", ()), "shards"}
    if cfg.eval_seeds is None:
        exclude["eval_seeds"] = True
    unset_pool = {f for f in ("student_answer_field", "critique_field") if getattr(cfg.pool, f) is None}
    if unset_pool:
        exclude["pool"] = {*exclude.get("pool", ()), *unset_pool}
    return cfg.model_dump(mode="json", exclude=exclude)


def make_task(cfg: RunConfig, name: str) -> Task:
    return get_task(name, **cfg.eval.task_options.get(name, {}))


def generation_params(cfg: RunConfig, task: Task) -> SamplingParams:
    g = task.generation
    budgets = cfg.eval.max_new_tokens
    # eval.seed reaches sampled tasks only: greedy outputs (and their stored samples) stay shared across eval seeds
    seed = cfg.eval.seed if cfg.eval.seed is not None and g.temperature > 0 else cfg.seed
    return SamplingParams(max_new_tokens=budgets.get(task.name, budgets.get("*", g.max_new_tokens)),
                          temperature=g.temperature, n=g.n, seed=seed, stop=tuple(g.stop))


def plan_run(cfg: RunConfig, run_id: str | None = None, *, train: bool = True) -> Plan:
    """Resolve methods and tasks, preflight every task's data and the config's combinations, fix the run folder."""
    methods = list(cfg.methods) if train else []
    for m in methods:
        for f in get_method(m).pool_fields:  # get_method raises UnknownMethod with the known names
            if getattr(cfg.pool, f) is None:
                raise ConfigError(f"method {m} trains on data given with the pool, but pool.{f} is not set; name "
                                  "the pool fields holding it (e.g. --set pool.student_answer_field=... "
                                  "--set pool.critique_field=...)")
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
            if not ds:  # an empty (or truncated to nothing) data file: no score can be computed from it
                where = f" under {task.local_dir}/ of HARNESS_DATA_DIR" if getattr(task, "local_dir", None) else ""
                raise DataMissing(f"data for task {name!r} is empty (0 items{where}); fix: restore the file "
                                  "or point HARNESS_DATA_DIR at a complete mirror")
        except DataMissing as e:
            if name in explicit:
                missing_explicit.append(str(e))
            else:  # part of a suite: skip with a note, say so in the report
                skipped[name] = str(e)
            continue
        objs[name] = task
        docs[name] = tuple(ds[: cfg.eval.limit] if cfg.eval.limit else ds)
        # Part of a benchmark, whether the data is a subset (MuSR's viewer files) or --limit cut it: its numbers
        # are not comparable with full-benchmark ones (the paper's), and results and report say so.
        full = task.full_size() or len(ds)
        if full > len(docs[name]):
            partial[name] = full
    if missing_explicit:
        raise ConfigError(missing_explicit[0] if len(missing_explicit) == 1 else
                          f"{len(missing_explicit)} tasks lack data; first: {missing_explicit[0]}")
    tasks = [t for t in tasks if t not in skipped]
    if not tasks:
        raise ConfigError("no task left to evaluate (all lack data); set HARNESS_DATA_DIR or choose other --tasks")
    rid = run_id or f"{cfg.name}-{config_hash(cfg)}"
    # The pool is decontaminated against the test tasks' prompts; it and its held-out split are fixed here and
    # loaded on first use (build_items, or evaluating pool_validation), once.
    pool = PoolSource(cfg, objs) if methods else None
    held_out = HeldOut(cfg.pool.validation_n, pool) if pool is not None and cfg.pool.validation_n > 0 else None
    return Plan(cfg, rid, RunDir(Path(cfg.output_dir) / rid), methods, tasks, docs, objs, skipped, stages, partial,
                pool=pool, held_out=held_out)


def check_combinations(cfg: RunConfig, stages: list[str]) -> None:
    """Mismatches between config sections, reported before any model is loaded or called."""
    from harness.engines import parse_options
    from harness.engines.identity import ModelNotFound, local_identity

    for where, e in (("eval.engine", cfg.eval.engine), ("teacher.engine", cfg.teacher.engine)):
        try:
            parse_options(e.backend, e.options)
        except Exception as err:
            raise ConfigError(f"{where}: {err}") from None
        name = e.options.get("api_key_env")
        if name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
            # never echo it: a value that is not a variable name is most likely the key itself
            raise ConfigError(f"{where}.options.api_key_env must name an environment variable (letters, digits, _), "
                              "not hold the key; export the key and set e.g. api_key_env: OPENAI_API_KEY")
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
        if kind == "llm" and cfg.teacher.engine.backend in ("hf", "vllm"):  # API names are not folders
            try:
                local_identity(cfg.teacher.model)
            except ModelNotFound as e:
                raise ConfigError(f"teacher: {e}") from None
        if kind != "llm" and cfg.teacher.model:
            raise ConfigError(f"teacher.model is set but teacher.kind={kind}; set teacher.kind=llm to use it")
    if cfg.pool.validation_n >= cfg.pool.n:
        raise ConfigError(f"pool.validation_n={cfg.pool.validation_n} leaves no training questions out of "
                          f"pool.n={cfg.pool.n}; lower validation_n or raise n")
    if cfg.right_fraction is not None and "critique" not in stages:
        raise ConfigError("right_fraction filters by the critique's conclusion, but no chosen method needs a "
                          "critique; add cft or cgd to --methods or unset right_fraction")
    t = cfg.teacher
    if t.critique_mode != "specific":
        if "critique" not in stages:
            raise ConfigError(f"teacher.critique_mode={t.critique_mode} changes the critiques, but no chosen method "
                              "uses one; add cft or cgd to --methods or unset it")
        if cfg.right_fraction is not None:
            raise ConfigError(f"right_fraction mixes by the critique's verdict, which teacher.critique_mode="
                              f"{t.critique_mode} replaces; use one of the two at a time")
    if t.correctness_filter and not any(s in stages for s in ("refine", "direct")):
        raise ConfigError("teacher.correctness_filter checks teacher answers (refine / direct), but no chosen "
                          "method needs one; add cgd, refine_only or distilled_sft, or unset it")
    if t.max_cost_usd is not None and t.known_prices() is None:
        raise ConfigError("teacher.max_cost_usd needs prices: set teacher.price_per_mtok_in and "
                          "teacher.price_per_mtok_out (USD per million tokens)")
    if teacher_stages and t.kind == "llm" and t.model:
        from harness.distill.teachers.api_models import sampling_refusal

        opts = t.engine.options
        why = sampling_refusal(t.engine.backend, str(opts.get("served_model") or t.model), opts.get("base_url"),
                               t.temperature, sent=opts.get("send_sampling_params", True))
        if why:
            raise ConfigError(why)
    if stages and cfg.train.max_length < cfg.probe.max_new_tokens:
        raise ConfigError(f"train.max_length={cfg.train.max_length} is shorter than probe.max_new_tokens="
                          f"{cfg.probe.max_new_tokens}: cft/cgd inputs hold the probe answer and would be cut; "
                          "raise train.max_length")


def student_params_b(name: str) -> float | None:
    """Billions of parameters read from a model name ('Llama-3.1-8B-Instruct' -> 8); None when it names none."""
    from harness.stages.costs import params_b_from_name

    return params_b_from_name(name)


def estimate_cost(plan: Plan):
    """The dry run's typed cost estimate (harness/stages/costs.py: expected and cap per figure, assumptions)."""
    from harness.stages.costs import estimate

    return estimate(plan, lambda task: generation_params(plan.config, task).max_new_tokens)
