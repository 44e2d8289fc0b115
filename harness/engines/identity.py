"""Identity of a local (or hub) model folder: digests of its weights, adapter, tokenizer and chat template.

The digests are stored beside the model in ``.harness-digest.json`` with each file's size and mtime, so checking
a finished run for reuse does not rehash the weights or import transformers. A folder we cannot write to (a
read-only hub cache) is simply hashed again.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from harness.common.files import file_digest_into, stable_hash, text_digest, write_json_atomic

DIGEST_FILE = ".harness-digest.json"
_WEIGHT_CONFIGS = ("config.json", "adapter_config.json", "generation_config.json", "model.safetensors.index.json",
                   "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                    "merges.txt", "tokenizer.model", "added_tokens.json", "chat_template.jinja",
                    "chat_template.json")


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    file_digest_into(path, h)
    return h.hexdigest()


def is_weight_file(name: str) -> bool:
    # Not training_args.bin (it holds the output path) nor optimizer/scheduler/rng state.
    return name.endswith(".safetensors") or (
        name.endswith((".bin", ".pt")) and name.startswith(("pytorch_model", "adapter_model", "model")))


# Files up to this size are hashed on every call (cheap, and immune to same-size rewrites within one mtime tick);
# larger ones reuse the digest stored beside them while their size and mtime are unchanged.
_REHASH_LIMIT = 2**20


def _file_digests(folder: Path, names: list[str]) -> dict[str, str]:
    side = folder / DIGEST_FILE
    stored: dict = {}
    if side.exists():
        try:
            stored = json.loads(side.read_text()).get("files", {})
        except ValueError:
            stored = {}  # a damaged sidecar is recomputed
    out, entries, changed = {}, {}, False
    for n in names:
        st = (folder / n).stat()
        stat = [st.st_size, st.st_mtime_ns]
        old = stored.get(n)
        if st.st_size > _REHASH_LIMIT and isinstance(old, dict) and old.get("stat") == stat:
            digest = old["sha256"]
        else:
            digest = file_digest(folder / n)
            changed = changed or st.st_size > _REHASH_LIMIT
        out[n] = digest
        entries[n] = {"stat": stat, "sha256": digest}
    if changed or set(stored) != set(entries):
        try:
            write_json_atomic(side, {"files": entries})
        except OSError:
            pass  # a read-only folder is hashed again next time
    return out


def _combine(digests: dict[str, str], names: list[str]) -> str | None:
    chosen = sorted(n for n in names if n in digests)
    return stable_hash([[n, digests[n]] for n in chosen])[:16] if chosen else None


def chat_template_text(folder: Path) -> str | None:
    """The chat template as transformers would find it: chat_template.jinja, else tokenizer_config.json's."""
    jinja = folder / "chat_template.jinja"
    if jinja.exists():
        return jinja.read_text(encoding="utf-8")
    cfg = folder / "tokenizer_config.json"
    if cfg.exists():
        tpl = json.loads(cfg.read_text(encoding="utf-8")).get("chat_template")
        return json.dumps(tpl, sort_keys=True) if isinstance(tpl, (list, dict)) else tpl
    return None


def folder_digests(folder: str | Path) -> dict[str, str | None]:
    """{"weights", "tokenizer", "chat_template"} digests of one model or adapter folder."""
    folder = Path(folder)
    names = sorted(f.name for f in folder.iterdir() if f.is_file() and (
        is_weight_file(f.name) or f.name in _WEIGHT_CONFIGS or f.name in _TOKENIZER_FILES))
    per_file = _file_digests(folder, names)
    weights = [n for n in names if is_weight_file(n) or n in _WEIGHT_CONFIGS]
    if not any(is_weight_file(n) for n in names):
        raise FileNotFoundError(f"no weight files in {folder}")
    return {"weights": _combine(per_file, weights),
            "tokenizer": _combine(per_file, [n for n in names if n in _TOKENIZER_FILES]),
            "chat_template": text_digest(chat_template_text(folder))}


def resolve_hub_snapshot(model: str) -> Path | None:
    """The local snapshot folder of a hub id already in the Hugging Face cache (no network), else None."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json")
    except Exception:
        return None
    return Path(found).parent if isinstance(found, str) else None


class ModelNotFound(FileNotFoundError):
    """A model or adapter that is neither a local folder nor a plausible hub id; the message says the fix."""


def local_identity(model: str | Path, adapter: str | Path | None = None) -> dict[str, Any]:
    """Identity parts of a model (+ adapter): name, revision, weights, adapter, tokenizer, chat_template."""
    p = Path(model).expanduser()
    parts: dict[str, Any] = {"name": p.name if p.is_dir() else str(model)}
    folder = p if p.is_dir() else None
    if folder is None:
        if str(model).startswith((".", "/", "~")) or os.sep * 2 in str(model) or str(model).count("/") > 1:
            raise ModelNotFound(f"model {model} not found: no such folder; pass an existing model folder or a "
                                "hub id like org/name")
        folder = resolve_hub_snapshot(str(model))
        parts["revision"] = folder.name if folder else None  # the snapshot commit
    if folder is not None:
        d = folder_digests(folder)
        parts.update(weights=d["weights"], tokenizer=d["tokenizer"], chat_template=d["chat_template"])
    if adapter is not None:
        a = Path(adapter).expanduser()
        if not (a / "adapter_config.json").exists():
            raise ModelNotFound(f"adapter {adapter} has no adapter_config.json; pass a LoRA folder written by "
                                "`harness train` (models/<method>/final)")
        d = folder_digests(a)
        parts["adapter"] = d["weights"]
        if d["tokenizer"]:  # engines load the adapter's own tokenizer when it has one
            parts.update(tokenizer=d["tokenizer"], chat_template=d["chat_template"])
    return parts


def identity_string(backend: str, parts: dict[str, Any], settings: dict[str, Any]) -> str:
    """'<name>[+adapter]@<digest>:<backend>': readable, and changing any part or setting changes it."""
    label = parts.get("name", "model") + ("+adapter" if parts.get("adapter") else "")
    return f"{label}@{stable_hash({'parts': parts, 'settings': settings})[:16]}:{backend}"
