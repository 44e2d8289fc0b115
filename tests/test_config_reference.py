"""The config reference (docs/config-reference.md) is generated from the schema: every key in it exists in the
schema, every schema key is in it, and the file is what the generator writes today."""
from __future__ import annotations

import re
from pathlib import Path

from harness.config import RunConfig, load_config
from harness.config_reference import render, schema_keys

DOC = Path(__file__).resolve().parents[1] / "docs" / "config-reference.md"


def doc_keys() -> list[str]:
    return [m.group(1) for m in re.finditer(r"^\| `([^`]+)` \|", DOC.read_text(encoding="utf-8"), re.M)]


def _exists(key: str) -> bool:
    """Walk the pydantic models along the dotted key (`<name>` = any dict key, `[]` = list items)."""
    from harness.config_reference import _models_in

    models = [RunConfig]
    for part in key.replace("[]", "").split("."):
        if part == "<name>":
            continue
        hits = [m.model_fields[part] for m in models if part in m.model_fields]
        if not hits:
            return False
        models = [sub for f in hits for sub in _models_in(f.annotation)]
    return True


def test_every_doc_key_is_in_the_schema_and_back():
    keys = doc_keys()
    assert len(keys) > 50 and len(keys) == len(set(keys))
    assert [k for k in keys if not _exists(k)] == []
    assert sorted(set(schema_keys()) - set(keys)) == []
    for k in ("prompts", "teacher.engine", "eval.task_options", "sweep", "seeds", "tracking.mlflow.tracking_uri"):
        assert k in keys, k


def test_reference_is_current():
    assert DOC.read_text(encoding="utf-8") == render(), "regenerate: python -m harness.config_reference > " \
                                                         "docs/config-reference.md"


def test_a_leaf_key_from_the_reference_is_accepted_by_the_loader():
    cfg = load_config(None, None, ["train.learning_rate=0.001", "tracking.mlflow.experiment=x"])
    assert cfg.train.learning_rate == 0.001 and cfg.tracking.mlflow.experiment == "x"
