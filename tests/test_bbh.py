"""BBH: counts, prompts identical to lm-eval's rendered few-shot context, extraction and exact match identical to
lm-eval's own filters and process_results, and the group aggregation of ``bbh_cot_fewshot``."""
from __future__ import annotations

from collections import Counter
from functools import lru_cache
from pathlib import Path

import pytest

from harness.tasks.base import Scored
from harness.tasks.bbh import INVALID, STOP, SUBTASKS, lm_eval_config, parse_cot_prompt
from harness.tasks.data import local_path
from harness.tasks.registry import get_task

BBH_JSON = local_path("bbh", "bbh")
needs_data = pytest.mark.skipif(BBH_JSON is None, reason="BBH local mirror absent")


@lru_cache(maxsize=None)
def lm_eval_task(variant: str, subtask: str, cache_dir: str):
    """lm-eval's own ConfigurableTask for the subtask, reading the local JSON instead of the hub (offline)."""
    from lm_eval.api.task import ConfigurableTask

    cfg = dict(lm_eval_config(variant, subtask))
    cfg.pop("dataset_name", None)
    cfg["dataset_path"] = "json"
    cfg["dataset_kwargs"] = {"data_files": {"test": str(Path(BBH_JSON) / f"{subtask}.json")}, "field": "examples",
                             "cache_dir": cache_dir}
    return ConfigurableTask(config=cfg)


@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("hf_datasets"))


@pytest.fixture(scope="module")
def bbh_docs():
    return get_task("bbh").docs()


@needs_data
def test_counts_and_ids(bbh_docs):
    assert len(SUBTASKS) == 27
    assert len(bbh_docs) == 6511
    per = Counter(d.meta["subtask"] for d in bbh_docs)
    assert set(per) == set(SUBTASKS)
    assert per["boolean_expressions"] == 250 and per["causal_judgement"] == 187
    assert per["penguins_in_a_table"] == 146 and per["snarks"] == 178
    assert len({d.id for d in bbh_docs}) == 6511
    assert bbh_docs[0].id == "boolean_expressions/0" and isinstance(bbh_docs[0].prompt, str)


@needs_data
@pytest.mark.parametrize("subtask", SUBTASKS)
def test_prompt_equals_lm_eval_fewshot_context(subtask, bbh_docs, hf_cache):
    t = lm_eval_task("cot_fewshot", subtask, hf_cache)
    ref_docs = list(t.test_docs())
    ours = [d for d in bbh_docs if d.meta["subtask"] == subtask]
    assert len(ours) == len(ref_docs)
    for i in (0, len(ours) // 2, len(ours) - 1):
        assert ours[i].prompt == t.fewshot_context(ref_docs[i], num_fewshot=3)
        assert ours[i].gold == ref_docs[i]["target"]


def test_generation_settings_follow_lm_eval():
    cfg = lm_eval_config("cot_fewshot", "navigate")
    assert STOP == tuple(cfg["generation_kwargs"]["until"])
    task = get_task("bbh")
    assert task.generation.stop == STOP and task.generation.temperature == 0.0
    assert task.generation.max_new_tokens == 512
    assert get_task("bbh", max_new_tokens=1024).generation.max_new_tokens == 1024


def test_parse_cot_prompt_strips_header_and_keeps_multiparagraph_description():
    text = ("CANARY LINE\n-----\nFirst line of description.\n\nSecond paragraph.\n\n"
            "Q: two plus two\nA: Let's think step by step.\n2+2=4. So the answer is 4.\n\n"
            "Q: yes?\nA: Let's think step by step. Obviously. So the answer is yes.")
    fs = parse_cot_prompt(text)
    assert fs.description == "First line of description.\n\nSecond paragraph."
    assert fs.examples == (("two plus two", "2+2=4. So the answer is 4."), ("yes?", "Obviously. So the answer is yes."))


@needs_data
def test_cot_prompt_files_parse_to_lm_eval_fewshot_samples():
    """The hub fallback (lm-eval's YAML copy of the examples) gives the same few-shot text as the local files."""
    from harness.tasks.bbh import fewshot_from_lm_eval

    for sub in SUBTASKS:
        text = (Path(local_path("bbh", "cot-prompts")) / f"{sub}.txt").read_text(encoding="utf-8")
        assert parse_cot_prompt(text) == fewshot_from_lm_eval(sub), sub


BATTERY = [
    "Step one. So the answer is (A).",
    "So the answer is (A)",  # no final character: lm-eval's (?=.) drops the last one
    "So the answer is True.\nLater: the answer is False.",
    "The answer is (B).",  # capital T: the strict filter misses it
    "",
    "I am fairly sure that option (C) is right here",
    "So the answer is: (D).",
    "there are twelve objects in total",
    "So the answer is 12.",
    "Sam is telling the truth. So the answer is Yes.",
    "That is not plausible.",
    "So the answer is ] ) }.",
    "Sorted: apple banana cherry. So the answer is apple banana cherry.",
    "So the answer is valid.",
]


def _lm_eval_scores(subtask: str, variant: str, filter_name: str, doc_index: int, response: str, hf_cache: str):
    """(filtered answer, exact_match) from lm-eval's filter ensemble and process_results on one response."""
    t = lm_eval_task(variant, subtask, hf_cache)
    doc = list(t.test_docs())[doc_index]
    req = t.construct_requests(doc=doc, ctx="ctx", metadata=(subtask, doc_index, 1))
    (inst,) = req if isinstance(req, list) else [req]
    inst.resps = [response]
    (ensemble,) = [f for f in t._filters if f.name == filter_name]
    ensemble.apply([inst])
    filtered = inst.filtered_resps[filter_name]
    return filtered, float(t.process_results(doc, [filtered])["exact_match"])


@needs_data
@pytest.mark.parametrize("subtask", ["date_understanding", "boolean_expressions", "object_counting",
                                     "web_of_lies", "sports_understanding", "dyck_languages", "word_sorting",
                                     "formal_fallacies", "ruin_names"])
def test_extraction_and_exact_match_agree_with_lm_eval(subtask, bbh_docs, hf_cache):
    task = get_task("bbh", subtasks=[subtask])
    docs = [d for d in bbh_docs if d.meta["subtask"] == subtask][:2]
    agree_flex_hits = 0
    for k, doc in enumerate(docs):
        battery = BATTERY + [f"Reasoning. So the answer is {doc.gold}.", f"... {doc.gold}"]
        for response in battery:
            s = task.score(doc, [response])
            ref, ref_em = _lm_eval_scores(subtask, "cot_fewshot", "get-answer", k, response, hf_cache)
            assert s.extracted == ref, (response, s.extracted, ref)
            assert s.metrics["exact_match"] == ref_em == s.score
            assert s.details["extraction_failed"] == (ref == INVALID)
            ref_f, ref_em_f = _lm_eval_scores(subtask, "cot_zeroshot", "flexible-extract", k, response, hf_cache)
            assert s.details["extracted_flexible"] == ref_f, (response, s.details, ref_f)
            assert s.metrics["exact_match_flexible"] == ref_em_f
            agree_flex_hits += int(ref_em_f)
        # the correct answer written the way the few-shot examples write it is always a strict hit
        assert task.score(doc, [f"So the answer is {doc.gold}."]).score == 1.0
    assert agree_flex_hits >= 2  # the battery really exercises matches, not only misses


def test_strict_regex_battery_matches_plain_regexfilter():
    """The brief's filter spelled out: RegexFilter('(?<=the answer is )(.*)(?=.)') then take_first."""
    from lm_eval.filters.extraction import RegexFilter
    from lm_eval.filters.selection import TakeFirstFilter

    from harness.tasks.bbh import strict_grader

    g = strict_grader("navigate")
    for response in BATTERY:
        ref = list(TakeFirstFilter().apply(RegexFilter(regex_pattern="(?<=the answer is )(.*)(?=.)").apply(
            [[response]], [{}]), [{}]))[0]
        assert g.extract(response, {"input": "", "target": "Yes"}) == ref
    assert g.extract("So the answer is (A)", {}) == "(A"
    assert g.extract("no answer", {}) == INVALID


def test_aggregate_is_size_weighted_like_lm_eval_group():
    task = get_task("bbh")

    def s(sub: str, i: int, em: float, flex: float) -> Scored:
        return Scored(id=f"{sub}/{i}", score=em, metrics={"exact_match": em, "exact_match_flexible": flex})

    scored = [s("navigate", i, 1.0, 1.0) for i in range(3)]  # 3/3
    scored += [s("snarks", i, float(i == 0), 0.0) for i in range(5)]  # 1/5
    agg = task.aggregate(scored)
    assert agg["exact_match/navigate"] == 1.0 and agg["exact_match/snarks"] == pytest.approx(0.2)
    assert agg["exact_match"] == pytest.approx(4 / 8)  # lm-eval bbh_cot_fewshot: weight_by_size: true
    assert agg["exact_match_macro"] == pytest.approx((1.0 + 0.2) / 2)
    assert agg["exact_match_flexible"] == pytest.approx(3 / 8)
    assert agg["exact_match_flexible_macro"] == pytest.approx(0.5)
    assert task.aggregate([]) == {}
    import yaml

    from harness.tasks.bbh import _lm_eval_bbh_dir

    spec = yaml.safe_load((_lm_eval_bbh_dir() / "cot_fewshot" / "_bbh_cot_fewshot.yaml").read_text())
    assert spec["aggregate_metric_list"][0]["weight_by_size"] is True


@needs_data
def test_options_subtasks_and_chat():
    t = get_task("bbh", subtasks="navigate,snarks", chat=True)
    docs = t.docs()
    assert len(docs) == 250 + 178
    assert {d.meta["subtask"] for d in docs} == {"navigate", "snarks"}
    assert docs[0].prompt[0]["role"] == "user" and docs[0].prompt[0]["content"].endswith("step by step.\n")
    with pytest.raises(ValueError, match="unknown subtask"):
        get_task("bbh", subtasks=["navigat"])
    with pytest.raises(ValueError, match="unknown option"):
        get_task("bbh", subtask="navigate")
