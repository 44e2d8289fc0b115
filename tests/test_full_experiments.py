"""Full-scale experiment files (configs/experiments/full/): each extends a paper config, names cells of the paper's
table, and plans (dry run) with the paper's student, teacher and data without running anything."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import ConfigError, load_config
from harness.sweep import expand, plan_cells
from harness.reports import paper

FULL = sorted((Path(__file__).resolve().parents[1] / "configs" / "experiments" / "full").glob("*.yaml"))


def test_full_scale_files_cover_the_papers_tables():
    tables = {load_config(p).experiment.table for p in FULL}
    assert {"T1", "T2", "T3", "T4", "T5", "T7", "T8"} <= tables


@pytest.mark.parametrize("path", FULL, ids=lambda p: p.name)
def test_full_scale_file_plans_and_names_paper_cells(path):
    cfg = load_config(path, overrides=["eval.limit=2"])
    assert cfg.student.model != "tiny" and cfg.teacher.kind == "llm"  # the paper config it extends
    spec = cfg.experiment
    rows = paper.load_paper_rows()
    sub = rows[rows["table"] == spec.table]
    for r in spec.rows:
        for c in spec.columns:
            hit = sub[(sub["method"] == r.paper) & (sub["benchmark"] == c.paper)]
            if r.teacher:
                hit = hit[hit["teacher"] == r.teacher]
            assert len(hit) == 1, (r.paper, c.paper)
    swept = {k for c in expand(cfg) for k in c.params}
    assert all(set(c.params) <= swept for c in spec.columns)
    _, planned = plan_cells(cfg, "dry")  # every cell preflighted: data, options, combinations
    tasks = set(planned[0][1].tasks)
    for c in spec.columns:
        for t in ([c.task] if c.task else c.tasks):
            assert t in tasks or t in planned[0][1].skipped, (t, path.name)


def test_extends_merges_and_refuses_a_cycle(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("extends: b.yaml\nname: a\n")
    b.write_text("name: b\npool: {n: 7}\n")
    cfg = load_config(a)
    assert cfg.name == "a" and cfg.pool.n == 7
    b.write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(a)
