"""Atomic writes, the one JSONL reader, stable hashes and content digests of files and folders."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable


def stable_hash(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj`` (key order does not matter)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def _tmp_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temp file, fsync, then rename: a reader (or a crash) never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_for(path)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl_atomic(path: Path, rows: Iterable[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))


def read_json_or_none(path: Path | str) -> Any:
    """A fingerprint sidecar's JSON, or None when it is absent or damaged: what it describes is then made again
    (through the call cache) instead of trusted or crashing."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


class CorruptFile(ValueError):
    """A stored file that cannot be read back (truncated or edited); the message names the file and line."""


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    # Split on "\n" only: some records hold Unicode line separators that str.splitlines() would break on.
    text = Path(path).read_text(encoding="utf-8")
    rows = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise CorruptFile(f"{path}:{n}: not valid JSON ({e.msg}); fix or delete the file") from None
    return rows


# ---- content digests ----------------------------------------------------------------------------------
# Files at most this large are hashed in full; larger ones by size plus their first and last MiB, so that a
# 15 GB checkpoint does not take minutes to identify.
FULL_HASH_LIMIT = 256 * 2**20


def file_digest_into(path: Path, h: "hashlib._Hash") -> None:
    """Feed a file's name, size and content (head and tail only past FULL_HASH_LIMIT) into ``h``."""
    size = path.stat().st_size
    h.update(f"{path.name}\0{size}\0".encode())
    with open(path, "rb") as fh:
        if size <= FULL_HASH_LIMIT:
            for chunk in iter(lambda: fh.read(2**20), b""):
                h.update(chunk)
        else:
            h.update(fh.read(2**20))
            fh.seek(-(2**20), 2)
            h.update(fh.read(2**20))


def files_digest(paths: Iterable[Path]) -> str | None:
    """One digest over several files (by name, size and content), in name order; None when there are none."""
    files = sorted(Path(p) for p in paths)
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        file_digest_into(f, h)
    return h.hexdigest()[:16]


def text_digest(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()[:16]


def link_file(src: Path, dst: Path) -> None:
    """dst as a hard link of src (a copy across file systems); every writer replaces files atomically, so a
    shared file is never changed in place."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def link_tree(src: Path, dst: Path) -> None:
    """dst as a tree of links to src's files, swapped in whole (a reader never sees half a tree)."""
    tmp = dst.with_name(f".{dst.name}.link-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for f in src.rglob("*"):
        if f.is_file():
            link_file(f, tmp / f.relative_to(src))
    os.replace(tmp, dst)
