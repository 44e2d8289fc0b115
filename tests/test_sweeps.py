"""Sweeps and seeds: the grid of cells, the dry-run print, and the combined results (rows over seeds with sd,
comparisons by the two-level bootstrap over seeds and items)."""
from __future__ import annotations

import numpy as np
import pytest

from harness.common.artifacts import ResultRow, Results, SampleRecord, save_artifact, write_samples
from harness.config import ConfigError, load_config
from harness import experiment_results, sweep
from harness.store import RunDir


def test_grid_cells_params_and_training_seed():
    cfg = load_config(None, "smoke", extra={"sweep": {"train.learning_rate": [1e-3, 2e-3]}, "seeds": "0,1"})
    cells = sweep.expand(cfg)
    assert [(c.params["train.learning_rate"], c.seed) for c in cells] == [(1e-3, 0), (1e-3, 1), (2e-3, 0), (2e-3, 1)]
    for c in cells:  # the seed reaches training only; the run seed (probe, eval sampling) is shared
        assert c.config.train.seed == c.seed and c.config.seed == cfg.seed
        assert c.config.train.learning_rate == c.params["train.learning_rate"]
        assert not c.config.sweep and c.config.seeds is None
    assert len({c.id for c in cells}) == 4 and cells[0].group == cells[1].group != cells[2].group


def test_sweep_seed_key_and_bad_key():
    cfg = load_config(None, "smoke", extra={"sweep": {"seed": [3, 4]}})
    assert [c.seed for c in sweep.expand(cfg)] == [3, 4]
    bad = load_config(None, "smoke", extra={"sweep": {"train.learning_rat": [1.0]}})
    with pytest.raises(ConfigError, match="learning_rat"):
        sweep.expand(bad)


def test_dry_run_prints_grid_with_cost(tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    res = CliRunner().invoke(app, ["compare", "--preset", "smoke", "--methods", "sft,cgd", "--seeds", "0,1",
                                   "--dry-run", "--output-dir", str(tmp_path), "--limit", "4"])
    assert res.exit_code == 0, res.output
    assert "2 cells" in res.output and "seed=0" in res.output and "seed=1" in res.output
    assert "teacher_calls" in res.output
    assert not any(tmp_path.iterdir())  # nothing ran


def _fake_cell(root, seed: int, shift: float) -> RunDir:
    rd = RunDir(root / f"seed={seed}")
    rng = np.random.default_rng(seed)
    rows = []
    for model, p in (("base", 0.3), ("sft", 0.4 + shift), ("cgd", 0.6 + shift)):
        scores = (rng.random(30) < p).astype(float)
        write_samples(rd.samples(model, "synthetic_id"), [
            SampleRecord(id=f"synthetic_id/{i}", score=s, metrics={"accuracy": s}) for i, s in enumerate(scores)])
        rows.append(ResultRow(model=model, task="synthetic_id", metric="accuracy", value=float(scores.mean()), n=30,
                              params={}, seed=seed))
    save_artifact(rd.results, Results(run_id="x", model_order=["base", "sft", "cgd"],
                                      primary_metrics={"synthetic_id": "accuracy"}, rows=rows))
    return rd


def test_combine_rows_over_seeds_and_seed_aware_test(tmp_path):
    cfg = load_config(None, "smoke", extra={"seeds": [0, 1, 2], "methods": ["sft", "cgd"]})
    cells = sweep.expand(cfg)
    dirs = [_fake_cell(tmp_path, c.seed, 0.05 * c.seed) for c in cells]
    res = experiment_results.combine("exp", list(zip(cells, dirs)), sweep.experiment_about(cfg))
    per_seed = [r for r in res.rows if r.model == "cgd" and r.seed is not None]
    agg = [r for r in res.rows if r.model == "cgd" and r.params.get("aggregate") == experiment_results.AGGREGATE]
    assert len(per_seed) == 3 and len(agg) == 1
    a = agg[0]
    vals = [r.value for r in per_seed]
    assert a.seed is None and a.seeds == [0, 1, 2]
    assert a.value == pytest.approx(np.mean(vals)) and a.sd == pytest.approx(np.std(vals, ddof=1))
    assert a.ci_low <= a.value <= a.ci_high and a.ci_method.startswith("hierarchical_bootstrap")
    comps = [c for c in res.comparisons if c.test == experiment_results.SEED_TEST]
    pair = next(c for c in comps if c.model == "cgd" and c.baseline == "sft")
    assert pair.delta == pytest.approx(a.value - next(r for r in res.rows if r.model == "sft" and r.seed is None).value)
    assert pair.n == 30 and 0 < pair.p_value <= 1
    Results.model_validate(res.model_dump())  # a valid results.json


def test_hierarchical_interval_widens_with_seed_variance():
    rng = np.random.default_rng(0)
    items = (rng.random((1, 50)) < 0.5).astype(float)
    same = np.repeat(items, 3, axis=0)
    varied = np.clip(same + np.array([[-0.2], [0.0], [0.2]]), 0, 1)
    lo1, hi1 = experiment_results.hierarchical_ci(same)
    lo2, hi2 = experiment_results.hierarchical_ci(varied)
    assert hi2 - lo2 > hi1 - lo1
    d, lo, hi, p = experiment_results.hierarchical_paired_test(same, same)
    assert d == 0 and p == 1.0
