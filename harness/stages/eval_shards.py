"""Data-parallel shards of one (model, task) evaluation: contiguous ranges of the task's docs, one unit each
(``eval/<model>/<task>/<k>of<n>``), so several engine actors evaluate one large task side by side.

- ``eval.shards``: an int, or "auto" = as many as the executor runs engines at once (its engine actors on Ray;
  1 on the local executor). lm-eval tasks are never sharded (lm-eval runs a task whole).
- Only the vllm engine shards: it seeds each prompt's samples from the request seed and the prompt itself, so a
  prompt's output does not depend on what else is in its batch (lm-eval #1751: results that change with the GPU
  count). The hf engine batches a task's prompts longest first and seeds sampling per batch, so a shard's outputs
  could depend on the shard boundaries; with hf a task is evaluated whole whatever ``eval.shards`` says.
- The driver commits each shard as it ends (NeMo-Skills' lesson): its records, then a done record, under
  samples/<model>/<task>.shards/. When every shard of the pair is in, it writes the samples file and its sidecar
  in doc order (the same file an unsharded run writes) and removes the shard files. A re-run schedules only the
  shards without a matching done record.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from harness.common.artifacts import Fingerprint, SampleRecord, SchemaMismatch, ShardDone, load_artifact, read_samples, \
    save_artifact, write_samples
from harness.common.files import stable_hash
from harness.common.output_type import OutputType


def shard_count(cfg, output_type: OutputType, slots: int) -> int:
    """How many shards one (model, task) pair is cut into (cfg: the run config; slots: engines at once)."""
    n = slots if cfg.eval.shards == "auto" else cfg.eval.shards
    if n <= 1 or not output_type.shardable or cfg.eval.engine.backend != "vllm":
        return 1
    return n


def shard_ranges(n_docs: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous (start, stop) ranges covering the docs, sizes differing by at most one."""
    n = max(1, min(shards, n_docs))
    q, r = divmod(n_docs, n)
    out, start = [], 0
    for k in range(n):
        stop = start + q + (k < r)
        out.append((start, stop))
        start = stop
    return out


@dataclass
class ShardedPair:
    """One (model, task) pair evaluated in shards, as the driver tracks it."""

    model: str
    task: str
    generation: Fingerprint
    scoring: Fingerprint
    ranges: list[tuple[int, int]]
    folder: Path  # samples/<model>/<task>.shards
    done: dict[str, ShardDone] = field(default_factory=dict)  # label -> its done record

    def label(self, k: int) -> str:
        return f"{k + 1}of{len(self.ranges)}"

    def fingerprint(self, k: int) -> str:
        start, stop = self.ranges[k]
        return stable_hash({"generation": self.generation.key, "docs": [start, stop]})[:24]

    def stored(self, k: int) -> ShardDone | None:
        """The shard's done record when it matches this shard and its records read back whole."""
        label = self.label(k)
        path = self.folder / f"{label}.done.json"
        if not path.exists():
            return None
        try:
            done = load_artifact(ShardDone, path, "shard done record")
            records = read_samples(self.folder / f"{label}.jsonl")
        except (SchemaMismatch, ValueError, FileNotFoundError):
            return None
        if done.fingerprint != self.fingerprint(k) or len(records) != done.n:
            return None
        return done

    def commit(self, k: int, records: list[SampleRecord], done: ShardDone) -> None:
        """The shard's records, then its done record."""
        label = self.label(k)
        write_samples(self.folder / f"{label}.jsonl", records)
        save_artifact(self.folder / f"{label}.done.json", done)
        self.done[label] = done

    @property
    def complete(self) -> bool:
        return len(self.done) == len(self.ranges)

    def merged(self) -> list[SampleRecord]:
        """Every shard's records in doc order; the shard files are removed once the caller stored them."""
        return [r for k in range(len(self.ranges)) for r in read_samples(self.folder / f"{self.label(k)}.jsonl")]

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
