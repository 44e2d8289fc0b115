"""Every YAML file the harness reads refuses a key given twice; hints keep their bracketed text."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.common.yamlfile import DuplicateKey, load_yaml, loads_yaml

ROOT = Path(__file__).resolve().parents[1]


def test_duplicate_key_names_file_key_and_both_lines(tmp_path):
    f = tmp_path / "dup.yaml"
    f.write_text("a: 1\nb:\n  c: 2\n  d: 3\n  c: 4\n")
    with pytest.raises(DuplicateKey) as e:
        load_yaml(f)
    msg = str(e.value)
    assert "\n" not in msg and str(f) in msg and "'c'" in msg and "line 3" in msg and "line 5" in msg


def test_merge_keys_and_equal_keys_in_different_mappings_are_fine():
    assert loads_yaml("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\nthird: {x: 1}\n") == {
        "base": {"x": 1, "y": 2}, "other": {"x": 3, "y": 2}, "third": {"x": 1}}


@pytest.mark.parametrize("path", sorted((ROOT / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_have_no_duplicate_keys(path):
    load_yaml(path)


def test_hint_with_brackets_survives_the_console(capsys):
    from harness.cli import user_errors
    from harness.engines import EngineUnavailable

    @user_errors
    def boom():
        raise EngineUnavailable("engine backend 'openai' needs openai: pip install -e '.[api]'")

    with pytest.raises(BaseException):
        boom()
    out = capsys.readouterr()
    assert "pip install -e '.[api]'" in out.out + out.err
