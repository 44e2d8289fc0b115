"""Run folders and the SQLite cache of model calls.

Every model call (student probe, teacher critique, evaluation generation, log-likelihood) goes through
``CachedEngine``. Its key is sha256 over what decides the output:

- the engine identity: backend, weights and adapter digests, tokenizer and chat-template digests, dtype, device;
- the prompt as the model sees it (``engine.render``: after the chat template, or the messages sent to an API);
- the sampling parameters (max_new_tokens, temperature, top_p, n, seed, stop) or the continuation scored.

A re-run never pays twice, and a killed run resumes from what was stored (the cache commits per batch). Each
value is stored with its own checksum; an entry that fails it is treated as a miss and recomputed.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from harness.common.files import CorruptFile, stable_hash
from harness.engines.base import Completion, Engine, Prompt, ProgressFn, SamplingParams


def default_cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE_DIR") or Path.home() / ".cache" / "harness").expanduser()


def _checksum(value_json: str) -> str:
    return hashlib.sha256(value_json.encode()).hexdigest()[:16]


def read_calls(db: sqlite3.Connection, keys: Sequence[str]) -> tuple[dict[str, Any], int]:
    """The stored values of ``keys`` whose checksum holds, and how many failed it (recomputed by the caller)."""
    found: dict[str, Any] = {}
    corrupt = 0
    for i in range(0, len(keys), 500):
        chunk = list(keys[i : i + 500])
        q = f"SELECT key, value, checksum FROM calls_v2 WHERE key IN ({','.join('?' * len(chunk))})"
        for k, v, c in db.execute(q, chunk).fetchall():
            try:
                if _checksum(v) != c:
                    raise ValueError("checksum")
                found[k] = json.loads(v)
            except ValueError:
                corrupt += 1
    return found, corrupt


class CallCache:
    """A key -> JSON value store in SQLite (WAL mode: readers do not block the writer)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=60)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a crash loses at most the last commit
            # calls_v2: keys on the rendered prompt and full engine identity, values carry a checksum. Entries of
            # the older `calls` table were keyed differently and are never read.
            self._db.execute("CREATE TABLE IF NOT EXISTS calls_v2 (key TEXT PRIMARY KEY, kind TEXT, identity TEXT, "
                             "value TEXT, checksum TEXT, created REAL)")
            self._db.commit()
        except sqlite3.DatabaseError as e:  # overwritten or truncated by something else: not ours to repair
            self._db.close()
            raise CorruptFile(f"call cache {path} is not a readable SQLite database ({e}); fix: delete it (it "
                              "only holds model calls, made again on the next run) or set HARNESS_CACHE_DIR "
                              "elsewhere") from None
        #: Entries whose checksum failed on read (recomputed by the caller as misses).
        self.corrupt = 0

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        with self._lock:
            found, corrupt = read_calls(self._db, keys)
        self.corrupt += corrupt
        return found

    def put_many(self, rows: Iterable[tuple[str, str, str, Any]]) -> None:
        """rows of (key, kind, identity, value)."""
        now = time.time()
        data = []
        for k, kind, ident, v in rows:
            text = json.dumps(v, ensure_ascii=False)
            data.append((k, kind, ident, text, _checksum(text), now))
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO calls_v2 VALUES (?, ?, ?, ?, ?, ?)", data)
            self._db.commit()

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM calls_v2").fetchone()[0]

    def close(self) -> None:
        self._db.close()


class WorkerCache:
    """A worker's view of the call cache: reads the driver's SQLite file (read-only, when this node sees it) and
    keeps the calls it makes in memory; the driver commits them (``new_rows``) from the unit's returned value.
    Workers never write SQLite: one writer, and a worker killed mid-unit leaves no half-written entry."""

    def __init__(self, path: Path | str | None) -> None:
        self.path = Path(path) if path else None
        self._db = None
        if self.path is not None and self.path.exists():
            try:
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=60)
            except sqlite3.Error:
                self._db = None  # unreadable from here: every call is a miss, made again
        self.new_rows: list[tuple[str, str, str, Any]] = []
        self._new: dict[str, Any] = {}
        self.corrupt = 0

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        found = {k: self._new[k] for k in keys if k in self._new}
        if self._db is not None:
            try:
                stored, corrupt = read_calls(self._db, [k for k in keys if k not in found])
            except sqlite3.Error:  # the driver's file became unreadable from here: misses, made again
                stored, corrupt = {}, 0
            found.update(stored)
            self.corrupt += corrupt
        return found

    def put_many(self, rows: Iterable[tuple[str, str, str, Any]]) -> None:
        for row in rows:
            self.new_rows.append(row)
            self._new[row[0]] = row[3]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


class CachedEngine:
    """Wraps an engine: answers from the cache, sends only the misses, stores them batch by batch."""

    def __init__(self, engine: Engine, cache: CallCache, chunk: int = 64) -> None:
        self.engine = engine
        self.cache = cache
        self.chunk = chunk
        self.identity = engine.identity
        self.hits = 0
        self.misses = 0

    def _key(self, kind: str, prompt: Prompt, extra: Any) -> str:
        # The rendered prompt: a changed chat template changes what the model sees, hence the key.
        return stable_hash({"kind": kind, "engine": self.identity, "prompt": self.engine.render(prompt),
                            "extra": extra})

    def describe(self) -> dict[str, Any]:
        return self.engine.describe()

    def render(self, prompt: Prompt) -> Prompt:
        return self.engine.render(prompt)

    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams, progress: ProgressFn | None = None
    ) -> list[list[Completion]]:
        keys = [self._key("generate", p, params.to_dict()) for p in prompts]
        found = self.cache.get_many(keys)
        out: list[list[Completion] | None] = [None] * len(prompts)
        todo = []
        for i, k in enumerate(keys):
            if k in found:
                out[i] = [Completion(**{**c, "cached": True}) for c in found[k]]
            else:
                todo.append(i)
        self.hits += len(prompts) - len(todo)
        self.misses += len(todo)
        if progress and len(todo) < len(prompts):
            progress(len(prompts) - len(todo))
        for start in range(0, len(todo), self.chunk):
            idx = todo[start : start + self.chunk]
            res = self.engine.generate([prompts[i] for i in idx], params, progress)
            rows = []
            for i, comps in zip(idx, res):
                out[i] = comps
                rows.append((keys[i], "generate", self.identity, [c.to_dict() for c in comps]))
            self.cache.put_many(rows)
        return out  # type: ignore[return-value]

    def loglikelihood(
        self, requests: Sequence[tuple[Prompt, str]], progress: ProgressFn | None = None
    ) -> list[tuple[float, bool]]:
        keys = [self._key("loglikelihood", p, c) for p, c in requests]
        found = self.cache.get_many(keys)
        out: list[tuple[float, bool] | None] = [None] * len(requests)
        todo = []
        for i, k in enumerate(keys):
            if k in found:
                out[i] = tuple(found[k])  # type: ignore[assignment]
            else:
                todo.append(i)
        self.hits += len(requests) - len(todo)
        self.misses += len(todo)
        if progress and len(todo) < len(requests):
            progress(len(requests) - len(todo))
        for start in range(0, len(todo), self.chunk * 4):
            idx = todo[start : start + self.chunk * 4]
            res = self.engine.loglikelihood([requests[i] for i in idx], progress)
            self.cache.put_many((keys[i], "loglikelihood", self.identity, list(r)) for i, r in zip(idx, res))
            for i, r in zip(idx, res):
                out[i] = r
        return out  # type: ignore[return-value]


# ---- run folders --------------------------------------------------------------------------------------
class RunDir:
    """The layout of one run folder (see README: results/<run-id>/...)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def results(self) -> Path:
        return self.root / "results.json"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def items(self) -> Path:
        return self.root / "data" / "items.jsonl"

    @property
    def items_meta(self) -> Path:
        return self.root / "data" / "items.meta.json"

    def train_data(self, method: str) -> Path:
        return self.root / "data" / f"{method}.jsonl"

    def model_dir(self, method: str) -> Path:
        return self.root / "models" / method

    def samples(self, model: str, task: str) -> Path:
        return self.root / "samples" / model / f"{task}.jsonl"

    def samples_meta(self, model: str, task: str) -> Path:
        return self.root / "samples" / model / f"{task}.meta.json"

    def sample_files(self) -> list[tuple[str, str, Path]]:
        base = self.root / "samples"
        if not base.exists():
            return []
        return sorted((p.parent.name, p.stem, p) for p in base.glob("*/*.jsonl"))
