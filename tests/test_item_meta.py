"""TrainItem.meta is typed (harness/common/item_meta.py) and keeps the JSON items.jsonl has always held: a line
written before the types loads into them and writes back the same, key for key and in order."""
from __future__ import annotations

import json

from harness.common.stages import Stage
from harness.distill.items import CallUsage, ItemMeta, TrainItem

#: data/items.jsonl lines as the untyped code wrote them (the smoke compare's oracle items; an LLM teacher's with
#: thinking stripped, the irrelevant critique mode and critique data given with an hf pool)
OLD_LINES = [
    {"id": "synthetic-pool/0/0", "question": "Ben starts with 18 pencils.", "gold_solution": "\\boxed{21}",
     "gold_answer": "21", "probe": "\\boxed{23}", "critique": "Wrong.\nConclusion: wrong", "refined": "\\boxed{21}",
     "direct": None, "meta": {"task": "synthetic", "problem": {"name": "Ben", "answer": 21}, "answer_style": "web",
                              "web_kind": "full",
                              "checks": {"probe": {"text": "bdd5385bc061", "correct": False},
                                         "refined": {"text": "0c8c0fbb528d", "correct": True},
                                         "verdict": "wrong", "verdict_agrees": True}}},
    {"id": "hf/train/3", "question": "q", "gold_solution": "s", "gold_answer": "", "probe": "p", "critique": "c2",
     "refined": "r", "direct": None,
     "meta": {"row": 3, "given": {"answer": "It is 7.", "critique": "No.\nConclusion: wrong"},
              "raw": {"critique": "<think>hm</think>c"}, "thinking_missing": {"refine": True},
              "usage": {"critique": {"tokens_in": 10, "tokens_out": 4, "requests": 2, "cached": 0, "retries": 1,
                                     "flagged": False},
                        "refine": {"tokens_in": 7, "tokens_out": 3, "requests": 1, "cached": 1, "retries": 0,
                                   "flagged": False}},
              "specific_critique": "c", "critique_from": "hf/train/5"}},
]


def test_items_written_before_the_types_load_and_write_back_the_same():
    for line in OLD_LINES:
        item = TrainItem.from_dict(line)
        assert json.dumps(item.to_dict()) == json.dumps(line)
    oracle, llm = (TrainItem.from_dict(x) for x in OLD_LINES)
    assert oracle.meta.checks.correct(Stage.probe) is False and oracle.meta.checks.correct(Stage.refine) is True
    assert oracle.meta.checks.correct(Stage.direct) is None and oracle.meta.web_kind == "full"
    assert llm.meta.usage(Stage.critique) == CallUsage(10, 4, 2, 0, 1, False)
    assert llm.meta.usage(Stage.direct) == CallUsage()  # nothing recorded: zeros
    assert llm.meta.call(Stage.critique).raw.startswith("<think>") and llm.meta.call(Stage.refine).thinking_missing
    assert llm.specific_critique == "c" and llm.critique == "c2" and llm.meta.critique_swap.came_from == "hf/train/5"
    assert llm.meta.given.answer == "It is 7."


def test_missing_keys_default_and_unknown_ones_are_dropped():
    assert ItemMeta.from_dict({}) == ItemMeta() and ItemMeta().to_dict() == {}
    meta = ItemMeta.from_dict({"row": 1, "written_by_a_later_version": 1, "usage": {"probe": {"tokens_in": 2}}})
    assert meta.to_dict() == {"row": 1, "usage": {"probe": {"tokens_in": 2, "tokens_out": 0, "requests": 0,
                                                            "cached": 0, "retries": 0, "flagged": False}}}
    item = TrainItem(id="a", question="q", gold_solution="s", gold_answer="1")
    assert item.specific_critique is None and TrainItem.from_dict(item.to_dict()) == item
