"""YAML files read strictly: a mapping key written twice is an error naming the file, the key and both lines.

PyYAML's loaders let the second copy of a key silently replace the first (configs/experiments/t5-passk.yaml once
repeated ``eval:`` inside a preset, and the first copy was dropped without a word). Every YAML file the harness
reads goes through ``load_yaml`` (or ``UniqueKeyLoader``) instead of ``yaml.safe_load``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class DuplicateKey(ValueError):
    """A mapping repeats a key; the message is one line naming the file, the key and both lines."""


class YAMLSyntaxError(ValueError):
    """A file that is not valid YAML; the message is one line."""


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping key given twice (merge keys ``<<`` still work as in SafeLoader)."""

    source_name = "<string>"

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    continue  # an unhashable key: SafeLoader's own error says so
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise DuplicateKey(f"{self.source_name}: key {key!r} appears twice in the same mapping "
                                       f"(line {seen[key]} and line {line}); the second copy would silently "
                                       "replace the first: merge them into one")
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def loads_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML text with duplicate keys refused; ``source`` names it in messages."""
    loader = UniqueKeyLoader(text)
    loader.source_name = source
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise YAMLSyntaxError(f"{source} is not valid YAML ({' '.join(str(e).split())}); fix the syntax") from None
    finally:
        loader.dispose()


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file with duplicate keys refused (DuplicateKey / YAMLSyntaxError, one line each)."""
    p = Path(path)
    return loads_yaml(p.read_text(encoding="utf-8"), str(p))
