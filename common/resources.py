"""Files shipped inside the distribution (package data): configs, prompt sets, report templates, the paper's
tables, the shipped tiny models. Read through importlib.resources, so the same call finds them in a clone (where
harness/configs and harness/prompts link to the top-level folders, which stay editable) and in an installed wheel.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def package_path(package: str, *parts: str) -> Path:
    """The on-disk path of ``parts`` inside ``package`` (e.g. ``package_path("harness", "configs", "tiny.yaml")``).

    The distribution installs as plain files (no zip), so the resource is a real path that subprocesses,
    jinja loaders and DeepSpeed can open."""
    return Path(str(resources.files(package).joinpath(*parts)))


def shipped(*parts: str) -> Path:
    """A shipped file of the harness itself: ``shipped("configs", "tiny.yaml")``, ``shipped("prompts", "paper")``."""
    return package_path("harness", *parts)
