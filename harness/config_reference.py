"""The config reference (docs/config-reference.md), generated from the pydantic models of ``harness.config``:
every key with its type, default and meaning (the field's description, else the ``#:`` comment above it).

    python -m harness.config_reference > docs/config-reference.md

tests/test_config_reference.py checks that the file is current and that its keys and the schema's are the same.
"""
from __future__ import annotations

import inspect
import json
import re
import sys
import types
import typing
from typing import Any, Iterator

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

HEADER = """# Config reference

Every key of a run config (`--config FILE`, `--set key=value`, presets), generated from the schema in
`harness/config.py` by `python -m harness.config_reference` (do not edit by hand; `tests/test_config_reference.py`
fails when it is out of date). Unknown keys are errors. Start from `configs/tiny.yaml` (the embedded default) or
`configs/starter.yaml` (real models). Also accepted at the top level: `presets:` (named override sets, chosen with
`--preset`) and `tasks_dir:` (a folder of task YAML files, see docs/your-own-benchmark.md).
"""


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside a field's type (X, X | None, list[X], dict[str, X])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out.extend(_models_in(arg))
    return out


def _type_name(annotation: Any) -> str:
    if annotation is type(None):
        return "null"
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _comments(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> the ``#:`` comment lines just above it in the class source."""
    out: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            lines = inspect.getsource(cls).splitlines()
        except (OSError, TypeError):
            continue
        pending: list[str] = []
        for line in lines:
            s = line.strip()
            if s.startswith("#:"):
                pending.append(s[2:].strip())
                continue
            m = re.match(r"(\w+)\s*:", s)
            if m and pending:
                out[m.group(1)] = " ".join(pending)
            if not s.startswith("#"):
                pending = []
    return out


def _default(field: Any) -> str:
    if field.default_factory is not None:
        try:
            value = field.default_factory()
        except TypeError:
            return "(computed)"
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(section)"
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def rows(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str, str, str]]:
    """(key, type, default, meaning) for every key, sections before their keys."""
    notes = _comments(model)
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        meaning = (field.description or notes.get(name, "")).replace("|", "\\|").replace("\n", " ")
        yield key, _type_name(field.annotation), _default(field), meaning
        for sub in _models_in(field.annotation):
            origin = typing.get_origin(field.annotation)
            inner = f"{key}.<name>." if origin is dict else f"{key}[]." if origin is list else f"{key}."
            yield from rows(sub, inner)


def schema_keys() -> list[str]:
    from harness.config import RunConfig

    return [k for k, *_ in rows(RunConfig)]


def render() -> str:
    from harness.config import RunConfig

    out = [HEADER, "| key | type | default | meaning |", "|---|---|---|---|"]
    for key, typ, default, meaning in rows(RunConfig):
        out.append(f"| `{key}` | {typ} | `{default}` | {meaning} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(render())
