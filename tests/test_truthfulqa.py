"""TruthfulQA MC1/MC2: 817 rows, requests identical to lm-eval's, scores identical to lm-eval's process_results."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.tasks.data import local_path
from harness.tasks.registry import get_task
from harness.tasks.truthfulqa import load_rows, mc1_score, mc2_score

needs_data = pytest.mark.skipif(local_path("truthfulqa", "v1", "mc_task.json") is None,
                                reason="TruthfulQA local mirror absent")


@pytest.fixture(scope="module")
def lm_eval_tasks(tmp_path_factory):
    """lm-eval's own truthfulqa_mc1/mc2 ConfigurableTasks over the local rows (written in the hub's shape)."""
    import lm_eval
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    tmp = tmp_path_factory.mktemp("tqa")
    rows, _ = load_rows()
    data = tmp / "validation.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ydir = Path(lm_eval.__file__).parent / "tasks" / "truthfulqa"
    out = {}
    for name in ("truthfulqa_mc1", "truthfulqa_mc2"):
        cfg = dict(load_yaml(ydir / f"{name}.yaml"))
        cfg.pop("dataset_name", None)
        cfg["dataset_path"] = "json"
        cfg["dataset_kwargs"] = {"data_files": {"validation": str(data)}, "cache_dir": str(tmp / "cache")}
        out[name] = ConfigurableTask(config=cfg)
    return out


@needs_data
def test_counts():
    for name, key in (("truthfulqa_mc1", "mc1_targets"), ("truthfulqa_mc2", "mc2_targets")):
        docs = get_task(name).docs()
        assert len(docs) == 817
        assert len({d.id for d in docs}) == 817 and docs[5].id == "truthfulqa/5"
    mc1 = get_task("truthfulqa_mc1").docs()
    assert all(d.gold[0] == 1 and sum(d.gold) == 1 for d in mc1)  # the one true answer is listed first
    assert sum(len(d.choices) for d in mc1) == 4186
    assert sum(len(d.choices) for d in get_task("truthfulqa_mc2").docs()) == 6204


@needs_data
@pytest.mark.parametrize("name", ["truthfulqa_mc1", "truthfulqa_mc2"])
def test_requests_equal_lm_eval(name, lm_eval_tasks):
    ref = lm_eval_tasks[name]
    ref_docs = list(ref.validation_docs())
    docs = get_task(name).docs()
    assert len(ref_docs) == len(docs)
    for i in (0, 1, 400, 816):
        ctx = ref.fewshot_context(ref_docs[i], num_fewshot=0)
        assert docs[i].prompt == ctx
        reqs = ref.construct_requests(doc=ref_docs[i], ctx=ctx, metadata=(name, i, 1))
        assert [(docs[i].prompt, c) for c in docs[i].choices] == [r.arguments for r in reqs]


@needs_data
def test_scores_equal_lm_eval_on_random_loglikelihoods(lm_eval_tasks):
    rng = np.random.default_rng(0)
    tasks = {n: get_task(n) for n in ("truthfulqa_mc1", "truthfulqa_mc2")}
    docs = {n: t.docs() for n, t in tasks.items()}
    ref_docs = {n: list(lm_eval_tasks[n].validation_docs()) for n in tasks}
    seen = {"truthfulqa_mc1": set(), "truthfulqa_mc2": []}
    for i in rng.choice(817, size=60, replace=False):
        for name, task in tasks.items():
            doc = docs[name][i]
            lls = [(float(x), bool(rng.random() < 0.3)) for x in rng.normal(-15, 6, size=len(doc.choices))]
            ours = task.score_loglikelihoods(doc, lls)
            ref = lm_eval_tasks[name].process_results(ref_docs[name][i], lls)["acc"]
            assert ours.score == pytest.approx(float(ref), abs=1e-12)
            if name == "truthfulqa_mc1":
                seen[name].add(ours.score)
            else:
                seen[name].append(ours.score)
    assert seen["truthfulqa_mc1"] == {0.0, 1.0}  # both outcomes exercised
    assert 0.0 < min(seen["truthfulqa_mc2"]) < max(seen["truthfulqa_mc2"]) < 1.0


def test_mc1_logic():
    assert mc1_score([-1.0, -2.0, -3.0]) == 1.0
    assert mc1_score([-2.0, -1.0, -3.0]) == 0.0
    assert mc1_score([-1.0, -1.0]) == 1.0  # ties go to the first choice, as np.argmax in lm-eval


def test_mc2_hand_computed_and_underflow():
    lls = [(np.log(0.2), False), (np.log(0.3), True), (np.log(0.5), False)]
    assert mc2_score(lls, [1, 1, 0]) == pytest.approx(0.5)
    assert mc2_score(lls, [1, 0, 0]) == pytest.approx(0.2)
    # every exp() underflows: lm-eval gives nan; we give the exact normalised mass
    assert mc2_score([(-2000.0, False), (-2000.0 - np.log(3), False)], [1, 0]) == pytest.approx(0.75)


@needs_data
def test_wrong_number_of_loglikelihoods_is_a_clear_error():
    t = get_task("truthfulqa_mc2")
    doc = t.docs()[0]
    with pytest.raises(ValueError, match="one \\(logprob, is_greedy\\) per choice"):
        t.score_loglikelihoods(doc, [(-1.0, True)])
    with pytest.raises(ValueError, match="takes no options"):
        get_task("truthfulqa_mc1", shots=5)
