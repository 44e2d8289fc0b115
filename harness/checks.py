"""Checks of what a user hands the API (and so the CLI) before any work: run ids, paths of the right kind, an
output folder that can really be written, a LoRA adapter that fits its base model. Each failure is one
``UsageError`` line naming the problem and the fix; the CLI prints it and exits 2.

Light on purpose (no torch, no harness.api): `harness.cli` imports it for its own commands' paths.
"""
from __future__ import annotations

import errno
import os
import re
import tempfile
from pathlib import Path
from typing import Literal

__all__ = ["UsageError", "check_adapter", "check_adapter_fits", "check_output_dir", "check_path", "check_run_id"]


class UsageError(ValueError):
    """A bad argument of the API (the CLI's `UserError`): one line naming it and the fix."""


def check_run_id(run_id: str | None) -> None:
    """A run id is a folder name: no separators, no '..', nothing hidden (``--run-id ../x`` would write outside
    --output-dir)."""
    if run_id is None:
        return
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.=+-]*", run_id) or ".." in run_id:
        raise UsageError(f"--run-id {run_id!r} is not a plain folder name; use letters, digits, '_', '-', '.' "
                         "(no '/' or '..': the run goes under --output-dir)")


def check_path(option: str, path: str | Path | None, want: Literal["file", "dir"]) -> None:
    """A user-given path of the wrong kind is one line, not a traceback from deep inside."""
    if path is None:
        return
    p = Path(path).expanduser()
    if want == "file" and p.is_dir():
        raise UsageError(f"{option} {path} is a folder; pass a file")
    if want == "dir" and p.exists() and not p.is_dir():
        raise UsageError(f"{option} {path} is a file; pass a folder")


def check_output_dir(option: str, path: str | Path | None) -> None:
    """The folder run folders go in must be a folder this process can create and write, found out by trying:
    file modes say nothing for root, and neither they nor ``os.access`` see that /proc or /sys refuse new
    folders. The probe (an empty folder, removed at once) goes in the deepest folder of the path that exists,
    so nothing is left behind, dry run or not."""
    if path is None:
        return
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise UsageError(f"{option} {path} is a file; pass a folder (it is created if absent)")
    existing = next((q for q in [p, *p.parents] if q.exists()), None)
    if existing is None:  # a relative path's parents end at '.', which exists; kept for odd roots
        return
    if not existing.is_dir():
        raise UsageError(f"{option} {path}: {existing} cannot be written (it is a file); pass a folder you can "
                         "write to")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".harness-write-check-", dir=existing))
    except OSError as e:
        # /proc answers ENOENT for a folder it will not make: say what that means here
        why = "it takes no new folders" if e.errno == errno.ENOENT else (e.strerror or type(e).__name__)
        raise UsageError(f"{option} {path}: {existing} cannot be written ({why}); pass a folder you can write "
                         "to, e.g. --output-dir results") from None


def check_adapter(adapter: str | Path | None) -> None:
    """An adapter is a folder that exists (its contents are checked where the model is: check_adapter_fits)."""
    if adapter is None:
        return
    if not Path(adapter).expanduser().exists():
        raise UsageError(f"adapter folder {adapter} not found; pass a folder written by `harness train`")
    check_path("--adapter", adapter, want="dir")


def _tensor_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """name -> shape of every tensor in a folder's safetensors files (headers only, no weights read)."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), framework="np") as fh:
            for k in fh.keys():
                shapes[k] = tuple(fh.get_slice(k).get_shape())
    return shapes


def check_adapter_fits(model: str | Path, adapter: str | Path) -> None:
    """A LoRA adapter made for another base model (other layer sizes or names) is one line before any work,
    not a size-mismatch traceback from peft when the engine loads it."""
    base, ad = Path(model).expanduser(), Path(adapter).expanduser()
    if not base.is_dir():
        return  # a hub id: its weights are not here to compare with
    try:
        model_shapes, adapter_shapes = _tensor_shapes(base), _tensor_shapes(ad)
    except Exception as e:  # a torn or foreign file: name it
        raise UsageError(f"cannot read the weights of {base} or adapter {ad} ({type(e).__name__}: {e}); "
                         "pass a model folder and a LoRA folder written by `harness train`") from None
    if not model_shapes:
        return  # .bin weights only: nothing cheap to compare with
    for key, shape in sorted(adapter_shapes.items()):
        for part, dim in ((".lora_A.", 1), (".lora_B.", 0)):
            if part not in key or len(shape) != 2:
                continue
            target = key.split(part)[0].removeprefix("base_model.model.")
            weight = model_shapes.get(f"{target}.weight")
            if weight is None:
                raise UsageError(f"adapter {ad} was trained on another base model: it adapts {target}, which "
                                 f"{base.name} does not have; pass the base model it was trained on with --model")
            want = weight[1] if dim == 1 else weight[0]
            if len(weight) == 2 and shape[dim] != want:
                side = "inputs" if dim == 1 else "outputs"
                raise UsageError(f"adapter {ad} was trained on another base model: its {target} has {shape[dim]} "
                                 f"{side}, {base.name}'s has {want}; pass the base model it was trained on with "
                                 "--model")
