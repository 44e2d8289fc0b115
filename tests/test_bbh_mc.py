"""BBH in the leaderboard's multiple-choice variant (eval.task_options.bbh.variant: mc), checked against lm-eval's
own leaderboard_bbh_* tasks: the same few-shot context byte for byte, the same options and gold, and the same
acc / acc_norm from the same log-likelihoods."""
from __future__ import annotations

import random
from functools import lru_cache
from pathlib import Path

import pytest

from harness.tasks.base import OutputType
from harness.tasks.bbh import MC_SUBTASKS, mc_config
from harness.tasks.data import local_path
from harness.tasks.registry import TaskOptionError, get_task

BBH_JSON = local_path("bbh", "bbh")
needs_data = pytest.mark.skipif(BBH_JSON is None, reason="BBH mirror not found under HARNESS_DATA_DIR")


@lru_cache(maxsize=None)
def lm_eval_mc_task(subtask: str, cache_dir: str):
    from lm_eval.api.task import ConfigurableTask

    cfg = dict(mc_config(subtask))
    cfg.pop("dataset_name", None)
    cfg["dataset_path"] = "json"
    cfg["dataset_kwargs"] = {"data_files": {"test": str(Path(BBH_JSON) / f"{subtask}.json")}, "field": "examples",
                             "cache_dir": cache_dir}
    return ConfigurableTask(config=cfg)


@needs_data
@pytest.mark.parametrize("subtask", ["date_understanding", "boolean_expressions", "snarks", "navigate",
                                     "tracking_shuffled_objects_seven_objects", "movie_recommendation"])
def test_mc_prompt_options_and_scores_equal_lm_eval(subtask, tmp_path_factory):
    t = lm_eval_mc_task(subtask, str(tmp_path_factory.mktemp("hf")))
    task = get_task("bbh", variant="mc", subtasks=[subtask])
    assert task.output_type is OutputType.MULTIPLE_CHOICE and task.primary_metric == "acc_norm"
    ours = task.docs()
    ref = list(t.test_docs())
    assert len(ours) == len(ref)
    rng = random.Random(0)
    odd = [k for k, d in enumerate(ref) if d["target"] not in task.docs()[0].meta["options"]]  # no option named
    for i in (0, len(ours) // 2, len(ours) - 1, *odd):
        doc, rdoc = ours[i], ref[i]
        assert doc.prompt == t.fewshot_context(rdoc, num_fewshot=3)
        reqs = t.construct_requests(doc=rdoc, ctx=doc.prompt, metadata=(subtask, i, 1))
        assert [r.arguments for r in reqs] == [(doc.prompt, c) for c in doc.choices]
        assert doc.meta["options"][doc.gold] == rdoc["target"] if doc.gold >= 0 else i in odd
        lls = [(rng.uniform(-30, -1), False) for _ in doc.choices]
        theirs = t.process_results(rdoc, lls)
        mine = task.score_loglikelihoods(doc, lls)
        assert mine.metrics["acc_norm"] == theirs["acc_norm"]  # the leaderboard's metric (lm-eval reports only it)
        assert mine.score == mine.metrics["acc_norm"]


def test_mc_variant_subtasks_and_options():
    assert len(MC_SUBTASKS) == 24 and "word_sorting" not in MC_SUBTASKS
    with pytest.raises(TaskOptionError, match="variant mc has no subtask"):
        get_task("bbh", variant="mc", subtasks=["word_sorting"])
    with pytest.raises(TaskOptionError):
        get_task("bbh", variant="multiple")
    assert get_task("bbh").output_type is OutputType.GENERATE  # CoT stays the default
