"""One training job as a value an executor can ship (TrainJob), and its launch on one or more processes: in this
process, or ``torchrun`` over this module's entry point (``python -m harness.distill.train JOB.json``). The training
itself is distill/trainer.py; its settings distill/train_config.py.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from harness.common.files import write_json_atomic
from harness.distill.train_config import TrainConfig, TrainError
from harness.distill.train_outputs import TrainResult, result_from
from harness.distill.trainer import is_main_process, train_student


class TrainJob(BaseModel):
    """One training job as a value an executor can ship: the base model, the examples file (JSONL of
    {"prompt", "completion"}), the output folder and the settings (train.distributed says how many processes)."""

    model_config = ConfigDict(extra="forbid")

    base_model: str
    examples: str  # path of a JSONL file
    out_dir: str
    config: TrainConfig

    def read_examples(self) -> list[dict]:
        with open(self.examples, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


def launch(job: TrainJob, nproc: int | None = None, progress: bool = True, timeout: float | None = None
           ) -> TrainResult:
    """Run ``job`` on ``nproc`` processes (default: job.config.distributed.nproc). One process trains here, in
    this process (the embedded default pays no start-up); more run ``torchrun --standalone`` over this module's
    entry point (``python -m harness.distill.train JOB.json``), NCCL on GPUs and gloo on CPU. A gang: all ranks or
    none; a failed job leaves its last complete checkpoint, which the next launch resumes at any world size."""
    import subprocess
    import sys

    n = nproc or job.config.distributed.nproc
    final = Path(job.out_dir) / "final"
    if n != job.config.distributed.nproc:
        job = job.model_copy(update={"config": job.config.model_copy(
            update={"distributed": job.config.distributed.model_copy(update={"nproc": n})})})
    if final.exists():  # reused: train_student checks the request without starting processes
        return train_student(job.base_model, job.read_examples(), Path(job.out_dir), job.config, progress=False)
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = out / "job.json"  # also for a rerun by hand: accelerate launch ... -m harness.distill.train job.json
    write_json_atomic(spec, job.model_dump(mode="json"))
    if n == 1:
        return train_student(job.base_model, job.read_examples(), Path(job.out_dir), job.config, progress=progress)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))  # no oversubscribed CPU
    if not progress:
        env["HARNESS_TRAIN_PROGRESS"] = "0"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           "-m", "harness.distill.train", str(spec)]
    log = out / "launch.log"
    with open(log, "ab") as fh:
        rc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT if not progress else None,
                            timeout=timeout).returncode
    if rc != 0 or not final.exists():
        lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
        errors = [ln.strip() for ln in lines if "Error" in ln and not ln.startswith(" ")] or lines[-1:]
        raise TrainError(f"training on {n} processes failed (exit {rc}; {errors[-1] if errors else 'no output'}); "
                         f"full log: {log}; the next run resumes from the last complete checkpoint")
    return result_from(final)


def main(argv: list[str] | None = None) -> int:
    """Entry point of one training process: ``torchrun --nproc_per_node N -m harness.distill.train JOB.json`` (or
    ``accelerate launch --config_file configs/accelerate/<strategy>.yaml -m harness.distill.train JOB.json``)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_file():
        print("usage: python -m harness.distill.train JOB.json (a TrainJob written by harness.distill.train.launch)",
              file=sys.stderr)
        return 2
    job = TrainJob.model_validate_json(Path(args[0]).read_text(encoding="utf-8"))
    progress = os.environ.get("HARNESS_TRAIN_PROGRESS", "1") != "0" and is_main_process()
    train_student(job.base_model, job.read_examples(), Path(job.out_dir), job.config, progress=progress)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
