"""The paper's prompt structure: per-request system prompts (or none), a probe that sends the raw question, thinking
stripped from teacher outputs (raw kept), sampling settings that reach the API or are refused in one line, list
prices; and the embedded default's prompts and fingerprints unchanged."""
from __future__ import annotations

import pytest

from harness.distill.items import TrainItem
from harness.distill.prompts import PromptTemplates, load_prompt_set
from harness.distill.teachers.api_models import list_price, sampling_refusal
from harness.distill.teachers.llm import LLMTeacher
from harness.distill.teachers.thinking import ThinkingPatternError, strip_thinking, thinking_pattern
from harness.config import ConfigError, load_config
from harness.engines.base import Completion, SamplingParams
from harness.models import teacher_fingerprint
from harness.stages.plan import config_hash, config_identity, plan_run


def test_default_prompts_and_run_ids_unchanged():
    # frozen: the embedded default's prompt digest and run ids from before per-request system prompts existed
    assert PromptTemplates().digest() == "11f5a8471ffff86d"
    ident = config_identity(load_config())  # unset, the new switches are not in the run id
    assert "strip_thinking" not in ident["teacher"] and "seed" not in ident["eval"] and "eval_seeds" not in ident
    assert "probe" not in PromptTemplates().model_dump() and "critique_system" not in PromptTemplates().model_dump()


def test_paper_set_has_separate_system_prompts_and_a_raw_probe():
    p = PromptTemplates(**load_prompt_set("prompts/paper"))
    assert p.messages_for("probe", question="What is 2+2?") == [{"role": "user", "content": "What is 2+2?"}]
    crit = p.messages_for("critique_request", question="Q", answer="A")
    ref = p.messages_for("refine_request", question="Q", answer="A", critique="C")
    direct = p.messages_for("direct_request", question="Q")
    assert crit[0]["role"] == ref[0]["role"] == "system" and crit[0]["content"] != ref[0]["content"]
    assert [m["role"] for m in direct] == ["user"]  # no system prompt for the direct answer
    # the student still trains and is evaluated on the benchmark prompt
    assert p.messages_for("question", question="Q") == PromptTemplates().messages_for("question", question="Q")
    summary = p.requests_summary()
    assert summary["probe"] == {"system": None, "user_template": "{question}"}
    assert summary["direct"]["system"] is None and summary["critique"]["system"] == crit[0]["content"]
    # unset per-request system prompts fall back to the shared one
    q = PromptTemplates(system="S", refine_system="R")
    assert q.system_for("critique_request") == "S" and q.system_for("refine_request") == "R"
    assert PromptTemplates().messages_for("probe", question="Q") == PromptTemplates().messages_for("question",
                                                                                                   question="Q")


class Scripted:
    identity = "scripted@1"

    def __init__(self, reply):
        self.reply, self.calls = reply, []

    def generate(self, prompts, params, progress=None):
        self.calls.append(list(prompts))
        return [[Completion(text=self.reply(p))] for p in prompts]


S1_OUT = "think\nLet me check 1+1... it is 2.\nanswer\nThe draft is right.\nConclusion: right"


@pytest.mark.parametrize("spec, text, expected, found", [
    ("s1", S1_OUT, "The draft is right.\nConclusion: right", True),
    ("s1", "<|im_start|>think\nhmm\n<|im_start|>answer\nAnswer: \\boxed{2}", "Answer: \\boxed{2}", True),
    ("s1", "think\nstill thinking when the budget ran out", "think\nstill thinking when the budget ran out", False),
    ("think", "<think>\nhmm, 2\n</think>\n\nSo \\boxed{2}", "So \\boxed{2}", True),
    ("think", "hmm, 2 (template opened the block)\n</think>\nSo \\boxed{2}", "So \\boxed{2}", True),
    (r"(?s)^.*?FINAL:\s*", "scratch FINAL: \\boxed{2}", "\\boxed{2}", True),
])
def test_strip_thinking_choices(spec, text, expected, found):
    assert strip_thinking(text, thinking_pattern(spec)) == (expected, found)


def test_bad_thinking_pattern_is_one_line():
    with pytest.raises(ThinkingPatternError, match="not a valid regular expression"):
        thinking_pattern("(unclosed")
    with pytest.raises(ConfigError, match="strip_thinking"):
        load_config(overrides=["teacher.strip_thinking=(unclosed"])


def test_llm_teacher_strips_thinking_keeps_raw_and_changes_identity():
    engine = Scripted(lambda msgs: S1_OUT)
    items = [TrainItem(id="a", question="1+1?", gold_solution="2", gold_answer="2", probe="2")]
    plain = LLMTeacher(engine, PromptTemplates(), SamplingParams())
    t = LLMTeacher(engine, PromptTemplates(), SamplingParams(), strip_thinking="s1")
    assert t.identity != plain.identity
    crits = t.critique(items)
    assert crits == ["The draft is right.\nConclusion: right"] and t.last_raw == [S1_OUT]
    assert plain.critique(items) == [S1_OUT] and plain.last_raw == [None]


def test_strip_thinking_is_part_of_the_teacher_fingerprint_only_when_set():
    over = ["teacher.kind=llm", "teacher.model=gpt-4o", "teacher.engine.backend=openai"]
    a, b = load_config(overrides=over), load_config(overrides=[*over, "teacher.strip_thinking=think"])
    assert "strip_thinking" not in teacher_fingerprint(a) and teacher_fingerprint(a) != teacher_fingerprint(b)
    assert config_hash(a) != config_hash(b)


def test_sampling_refusals_and_prices():
    assert sampling_refusal("openai", "o3-mini", None, 0.0) is not None
    assert sampling_refusal("openai", "o3-mini", "http://127.0.0.1:8000/v1", 0.0) is None  # self-hosted name
    assert sampling_refusal("openai", "gpt-4o", None, 0.0) is None
    assert sampling_refusal("anthropic", "claude-3-7-sonnet-20250219", None, 1.5) is not None
    assert sampling_refusal("anthropic", "claude-3-7-sonnet-20250219", None, 1.5, sent=False) is None
    assert list_price("claude-3-7-sonnet-20250219") == (3.0, 15.0)
    assert list_price("gpt-4o-mini-2024-07-18") == (0.15, 0.6) and list_price("my-local-model") is None
    with pytest.raises(ConfigError, match="temperature.*rejected by o3-mini") as e:
        plan_run(load_config(overrides=["teacher.kind=llm", "teacher.model=o3-mini", "teacher.engine.backend=openai",
                                        "pool.source=math_train", "eval.tasks=[math500]"]), run_id="x")
    assert "\n" not in str(e.value)
    cfg = load_config("configs/paper-qwen25-math-7b.yaml")
    assert cfg.teacher.known_prices() == (3.0, 15.0)  # the shipped list price
    assert load_config("configs/paper-llama31-8b.yaml").teacher.known_prices() is None  # self-hosted: unknown
