"""Methods (input/target per the paper's table), the registry and its entry points, prompts, the mix filter."""
from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest
import yaml

import harness.distill.methods as reg
from harness.distill.items import TrainItem
from harness.distill.methods import (METHODS, UnknownMethod, build_dataset, get_method, load_entry_point_methods,
                             method_names, stages_needed)
from harness.distill.methods.base import Method
from harness.distill.mix import mix_by_conclusion, mix_counts
from harness.distill.prompts import PromptTemplateError, PromptTemplates
from harness.tasks.prompts import math_messages

X, YSTAR, YP, C, R, T = ("What is 17 * 3?", "17 * 3 = 51, so \\boxed{51}.", "17 * 3 = 41. \\boxed{41}",
                         "The product is miscomputed.\nConclusion: wrong", "17 * 3 = 51. \\boxed{51}",
                         "Multiply: 51. \\boxed{51}")


def full_item(**kw) -> TrainItem:
    d = dict(id="q1", question=X, gold_solution=YSTAR, gold_answer="51", probe=YP, critique=C, refined=R, direct=T)
    d.update(kw)
    return TrainItem(**d)


def text(messages: list[dict]) -> str:
    return "\n".join(m["content"] for m in messages)


def test_each_method_has_the_papers_input_and_target():
    item = full_item()
    ex = {n: get_method(n).build_example(item) for n in ("sft", "distilled_sft", "cft", "cgd", "refine_only")}
    for e in ex.values():
        assert e["completion"][0]["role"] == "assistant" and e["prompt"][-1]["role"] == "user"
    # x -> y* and x -> t: the prompt is exactly the benchmark prompt
    assert ex["sft"]["prompt"] == math_messages(X) and ex["sft"]["completion"][0]["content"] == YSTAR
    assert ex["distilled_sft"]["prompt"] == math_messages(X) and ex["distilled_sft"]["completion"][0]["content"] == T
    # (x, y') -> c
    assert X in text(ex["cft"]["prompt"]) and YP in text(ex["cft"]["prompt"]) and C not in text(ex["cft"]["prompt"])
    assert ex["cft"]["completion"][0]["content"] == C
    # (x, y', c) -> r
    p = text(ex["cgd"]["prompt"])
    assert X in p and YP in p and C in p and R not in p
    assert ex["cgd"]["completion"][0]["content"] == R
    # (x, y') -> r, no critique
    p = text(ex["refine_only"]["prompt"])
    assert X in p and YP in p and C not in p and "Conclusion" not in p
    assert ex["refine_only"]["completion"][0]["content"] == R


def test_missing_fields_skip_the_item():
    assert get_method("cgd").build_example(full_item(refined=None)) is None
    assert get_method("cft").build_example(full_item(probe=None)) is None
    assert get_method("distilled_sft").build_example(full_item(direct=None)) is None
    assert get_method("sft").build_example(full_item(probe=None, critique=None)) is not None
    rows = build_dataset("cgd", [full_item(id="a"), full_item(id="b", critique=None), full_item(id="c")])
    assert [r["id"] for r in rows] == ["a", "c"]


def test_stages_in_pipeline_order():
    assert stages_needed(["sft"]) == []
    assert stages_needed(["cgd"]) == ["probe", "critique", "refine"]
    assert stages_needed(["refine_only"]) == ["probe", "critique", "refine"]
    assert stages_needed(["distilled_sft", "cft"]) == ["probe", "critique", "direct"]


def test_unknown_method_is_one_line_listing_known():
    with pytest.raises(UnknownMethod) as e:
        get_method("cgdd")
    msg = str(e.value)
    assert "\n" not in msg and "cgdd" in msg and all(n in msg for n in ("sft", "cft", "cgd", "refine_only"))


class EchoRefine(Method):
    """A third-party method (loaded through a simulated entry point): (x, y') -> r with its own wording."""

    name = "echo_refine"
    description = "test plugin"
    needs = frozenset({"refine"})

    def build_example(self, item):
        return {"prompt": [{"role": "user", "content": f"again: {item.question}"}],
                "completion": [{"role": "assistant", "content": item.refined}]}


def test_entry_point_methods(monkeypatch):
    monkeypatch.setattr(reg, "METHODS", dict(METHODS))
    monkeypatch.setattr(reg, "_entry_point_errors", {})
    eps = [EntryPoint(name="echo_refine", value=f"{__name__}:EchoRefine", group="harness.methods"),
           EntryPoint(name="broken", value="no_such_module_xyz:Thing", group="harness.methods")]
    seen_groups = []

    def fake_entry_points(group=None):
        seen_groups.append(group)
        return eps if group == "harness.methods" else []

    monkeypatch.setattr(reg, "entry_points", fake_entry_points)
    load_entry_point_methods(force=True)
    assert seen_groups == ["harness.methods"]
    assert "echo_refine" in method_names() and method_names()[:5] == ["sft", "distilled_sft", "cft", "cgd",
                                                                      "refine_only"]
    ex = get_method("echo_refine").build_example(full_item())
    assert ex["completion"][0]["content"] == R
    assert stages_needed(["echo_refine"]) == ["probe", "critique", "refine"]  # refine pulls in its inputs
    with pytest.raises(UnknownMethod, match="failed to load"):
        get_method("broken")
    assert "sft" in method_names()  # a broken plugin does not hide the built-ins


def test_prompts_default_question_is_the_benchmark_prompt_and_overrides_work():
    p = PromptTemplates()
    assert p.messages_for("question", question=X) == math_messages(X)
    cfg = yaml.safe_load('cgd_input: "Q: {question}\\nA: {answer}\\nR: {critique}\\nFix it."\ninput_system: ""\n')
    custom = PromptTemplates.model_validate(cfg)
    msgs = custom.messages_for("cgd_input", question="x1", answer="y1", critique="c1")
    assert msgs == [{"role": "user", "content": "Q: x1\nA: y1\nR: c1\nFix it."}]
    assert custom.digest() != p.digest()
    # The optional {reference} is used only by templates that contain it.
    with_ref = PromptTemplates(critique_request="{question} | {answer} | ref: {reference}")
    assert with_ref.messages_for("critique_request", question="q", answer="a", reference="R*")[-1]["content"] \
        == "q | a | ref: R*"
    assert "R*" not in text(p.messages_for("critique_request", question="q", answer="a", reference="R*"))


@pytest.mark.parametrize("field,template,needle", [
    ("cgd_input", "{question} {answer}", "{critique}"),
    ("cft_input", "{question} {answer} {critique}", "unknown"),
    ("direct_request", "Solve {0}", "positional"),
])
def test_bad_template_is_a_one_line_error(field, template, needle):
    with pytest.raises(PromptTemplateError) as e:
        PromptTemplates(**{field: template})
    assert "\n" not in str(e.value) and field in str(e.value) and needle in str(e.value)


def test_messages_for_missing_field():
    with pytest.raises(PromptTemplateError, match="critique"):
        PromptTemplates().messages_for("cgd_input", question="q", answer="a")


def _items_with(n_right: int, n_wrong: int, n_none: int) -> list[TrainItem]:
    items = []
    for i in range(n_right + n_wrong + n_none):
        verdict = "right" if i < n_right else "wrong" if i < n_right + n_wrong else None
        crit = f"review {i}\nConclusion: {verdict}" if verdict else f"review {i} without a verdict"
        items.append(full_item(id=f"i{i:02d}", critique=crit))
    # interleave so that order preservation is visible
    return sorted(items, key=lambda it: (int(it.id[1:]) * 7) % len(items))


@pytest.mark.parametrize("fraction,expected", [(1.0, (12, 0)), (0.75, (12, 4)), (0.5, (4, 4)), (0.25, (1, 4)),
                                               (0.0, (0, 4))])
def test_mix_ratios(fraction, expected):
    items = _items_with(12, 4, 3)
    kept = mix_by_conclusion(items, fraction, seed=0)
    got = (sum(it.conclusion == "right" for it in kept), sum(it.conclusion == "wrong" for it in kept))
    assert got == expected
    assert all(it.conclusion is not None for it in kept)
    pos = [items.index(it) for it in kept]
    assert pos == sorted(pos)  # original order kept
    assert mix_by_conclusion(items, fraction, seed=0) == kept  # deterministic


def test_mix_none_and_seeds_and_bounds():
    items = _items_with(12, 4, 3)
    assert mix_by_conclusion(items, None, seed=0) == items
    a = {it.id for it in mix_by_conclusion(items, 0.5, seed=0)}
    b = {it.id for it in mix_by_conclusion(items, 0.5, seed=1)}
    assert a != b  # 4 of 12 right items: a different seed picks others
    assert mix_counts(10, 10, 0.25) == (3, 10)  # 13 in all: the wrong side is the limit
    assert mix_counts(10, 30, 0.25) == (10, 30)  # exactly 40 at 25/75, no float shortfall
    with pytest.raises(ValueError, match="outside"):
        mix_by_conclusion(items, 1.5, seed=0)
