"""MuSR: what the local mirror holds (viewer subsets only), prompts and requests identical to lm-eval's
leaderboard_musr, and acc / acc_norm identical to lm-eval's process_results."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.tasks.base import Scored
from harness.tasks.data import local_path
from harness.tasks.musr import SUBSETS, load_subset, mc_accuracies
from harness.tasks.registry import get_task

needs_data = pytest.mark.skipif(local_path("musr") is None, reason="MuSR local mirror absent")


@pytest.fixture(scope="module")
def musr_docs():
    return get_task("musr").docs()


@pytest.fixture(scope="module")
def lm_eval_musr(tmp_path_factory, musr_docs):
    """lm-eval's own leaderboard_musr_<subset> ConfigurableTasks over our rows, written in the hub's shape."""
    import lm_eval
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    tmp = tmp_path_factory.mktemp("musr")
    ydir = Path(lm_eval.__file__).parent / "tasks" / "leaderboard" / "musr"
    out = {}
    for subset in SUBSETS:
        records, _, _ = load_subset(subset)
        rows = [{"narrative": r["narrative"], "question": r["question"], "choices": str(r["choices"]),
                 "answer_index": r["answer"], "answer_choice": r["choices"][r["answer"]]} for r in records]
        path = tmp / f"{subset}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        cfg = dict(load_yaml(ydir / f"musr_{subset}.yaml"))
        cfg["dataset_path"] = "json"
        cfg["dataset_kwargs"] = {"data_files": {subset: str(path)}, "cache_dir": str(tmp / "cache")}
        cfg["metric_list"] = [{"metric": "acc"}] + cfg["metric_list"]  # the leaderboard lists acc_norm only
        out[subset] = ConfigurableTask(config=cfg)
    return out


@needs_data
def test_counts_of_what_exists(musr_docs):
    task = get_task("musr")
    counts = task.counts()
    assert counts == {"murder_mysteries": 5, "object_placements": 20, "team_allocation": 5}
    assert task.full_size() == 756  # 250 + 256 + 250: the harness marks the rows partial
    assert len(musr_docs) == 30 and len({d.id for d in musr_docs}) == 30
    assert all(d.meta["partial"] for d in musr_docs)
    assert [d.id for d in musr_docs][:2] == ["murder_mysteries/0", "murder_mysteries/1"]
    assert musr_docs[5].id == "object_placements/0"
    n_choices = {(d.meta["subset"], len(d.choices)) for d in musr_docs}
    assert n_choices == {("murder_mysteries", 2), ("team_allocation", 3), ("object_placements", 3),
                         ("object_placements", 4), ("object_placements", 5)}
    assert all(d.choices[d.gold] == " " + d.meta["answer_choice"] for d in musr_docs)


@needs_data
@pytest.mark.parametrize("subset", SUBSETS)
def test_prompt_and_requests_equal_lm_eval(subset, musr_docs, lm_eval_musr):
    ref = lm_eval_musr[subset]
    ref_docs = list(ref.test_docs())
    ours = [d for d in musr_docs if d.meta["subset"] == subset]
    assert len(ref_docs) == len(ours)
    from lm_eval.tasks.leaderboard.musr.utils import doc_to_text

    for d, r in zip(ours, ref_docs):
        assert d.prompt == doc_to_text(r)
        ctx = ref.fewshot_context(r, num_fewshot=0)
        assert d.prompt == ctx
        reqs = ref.construct_requests(doc=r, ctx=ctx, metadata=(subset, 0, 1))
        assert [(d.prompt, c) for c in d.choices] == [q.arguments for q in reqs]
    assert ours[0].prompt.endswith("\n\nAnswer:") and "\n1 - " in ours[0].prompt


@needs_data
def test_scores_equal_lm_eval_process_results(musr_docs, lm_eval_musr):
    rng = np.random.default_rng(1)
    task = get_task("musr")
    ref_docs = {s: list(lm_eval_musr[s].test_docs()) for s in SUBSETS}
    differ = 0
    for _ in range(8):
        for d in musr_docs:
            subset, i = d.id.split("/")
            lls = [(float(x), False) for x in rng.normal(-30, 10, size=len(d.choices))]
            s = task.score_loglikelihoods(d, lls)
            ref = lm_eval_musr[subset].process_results(ref_docs[subset][int(i)], lls)
            assert s.metrics["accuracy"] == ref["acc"]
            assert s.metrics["accuracy_norm"] == ref["acc_norm"] == s.score
            differ += s.metrics["accuracy"] != s.metrics["accuracy_norm"]
    assert differ > 0  # length normalisation changed some decisions


def test_acc_norm_divides_by_choice_length():
    assert mc_accuracies([-2.0, -8.0], ["a", "bbbbbbbb"], gold=0) == (1.0, 0.0)
    assert mc_accuracies([-2.0, -8.0], ["a", "bbbbbbbb"], gold=1) == (0.0, 1.0)


def test_aggregate_per_subset_and_weighted_overall():
    task = get_task("musr")

    def s(subset: str, i: int, acc: float, norm: float) -> Scored:
        return Scored(id=f"{subset}/{i}", score=norm, metrics={"accuracy": acc, "accuracy_norm": norm})

    scored = [s("murder_mysteries", 0, 1.0, 1.0), s("murder_mysteries", 1, 0.0, 1.0)]
    scored += [s("object_placements", i, 0.0, float(i == 0)) for i in range(4)]
    agg = task.aggregate(scored)
    assert agg["accuracy_norm/murder_mysteries"] == 1.0 and agg["accuracy_norm/object_placements"] == 0.25
    assert agg["accuracy/murder_mysteries"] == 0.5
    assert agg["accuracy_norm"] == pytest.approx(3 / 6) and agg["accuracy"] == pytest.approx(1 / 6)
    assert task.primary_metric == "accuracy_norm"


def test_options_and_errors():
    with pytest.raises(ValueError, match="unknown subset"):
        get_task("musr", subsets=["murder"])
    with pytest.raises(ValueError, match="unknown option"):
        get_task("musr", subset="murder_mysteries")
    t = get_task("musr", subsets="team_allocation")
    docs = t.docs()
    assert t.full_size() == 250
    assert {d.meta["subset"] for d in docs} == {"team_allocation"}
    with pytest.raises(ValueError, match="per choice"):
        t.score_loglikelihoods(docs[0], [(-1.0, False)])
    from harness.tasks.data import DataMissing

    with pytest.raises(DataMissing, match="allow_partial=False"):
        get_task("musr", allow_partial=False).docs()
