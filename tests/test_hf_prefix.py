"""Shared-prefix reuse in the hf engine's ``loglikelihood`` gives the plain path's scores.

Requests sharing a context run it once and score their continuations on copies of its KV cache; a batch of
contexts also runs the token prefix they share (a few-shot primer) once. Both must give what one full forward
pass per request gives, within float tolerance, for every shape of request: many choices, one-token and long
continuations, more choices than a batch, a context used once, chat contexts, and continuations whose first
token merges with the context's last one."""
import pytest

from tests.conftest import build_random_chat_model

PRIMER = "Step 1: 12 + 7 = 19. The answer is \\boxed{19}.\n\n" * 3


def requests() -> list[tuple[object, str]]:
    reqs: list[tuple[object, str]] = []
    for q, question in enumerate(["12 + 7", "19 + 1", "hello world", "7 + 7 + 7 + 7 + 7"]):
        ctx = PRIMER + f"Q: {question}?\nA:"
        choices = [" 19", " 1", " The answer is \\boxed{19}. hello world hello world", " 20.", " hello"]
        reqs += [(ctx, c) for c in choices[: 2 + q]]
    reqs += [
        ("hello wor", "ld"),  # merges wholly into the context's last token
        ("hello wor", "ld hello"),  # first token merges with the context's last one
        ("hello wor", "ld world"),
        (PRIMER + "once", " only"),  # a context used once
        ("", " hello world"),  # empty context
        ("", " world"),
        ([{"role": "user", "content": "What is 12 + 7?"}], "19"),
        ([{"role": "user", "content": "What is 12 + 7?"}], "The answer is \\boxed{19}."),
        ([{"role": "user", "content": "What is 12 + 7?"}], "hello"),
    ]
    return reqs


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from harness.engines.hf import HFEngine

    folder = build_random_chat_model(tmp_path_factory.mktemp("prefix_model"))
    return HFEngine(folder, batch_size=3, dtype="float32", device="cpu")


def run(engine, reqs, reuse: bool, monkeypatch) -> tuple[list[tuple[float, bool]], int]:
    """Scores, and the number of token positions the model ran (prefix reuse must run fewer)."""
    ran = [0]
    extend = type(engine)._extend

    def counting(self, cache, mask, rows, **kwargs):
        ran[0] += sum(len(r) for r in rows)
        return extend(self, cache, mask, rows, **kwargs)

    monkeypatch.setattr(type(engine), "_extend", counting)
    engine.prefix_reuse = reuse
    try:
        return engine.loglikelihood(reqs), ran[0]
    finally:
        engine.prefix_reuse = True
        monkeypatch.undo()


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_prefix_reuse_scores_equal_plain_path(engine, monkeypatch, batch_size):
    reqs = requests()
    engine.batch_size = batch_size
    plain, plain_tokens = run(engine, reqs, False, monkeypatch)
    shared, shared_tokens = run(engine, reqs, True, monkeypatch)
    assert len(shared) == len(reqs)
    for r, (lp, greedy), (lp_p, greedy_p) in zip(reqs, shared, plain):
        assert lp == pytest.approx(lp_p, abs=1e-4, rel=1e-5), r
        assert greedy == greedy_p, r
    assert shared_tokens < plain_tokens / 2  # the primer and each question ran once, not once per choice


def test_merged_continuation_scores_the_merged_token(engine):
    """lm-eval's split leaves a continuation that merged wholly into the context's last token nothing to score;
    the engine scores the whole string's last token given the rest, as a plain forward pass would."""
    import torch

    ctx, cont = "hello wor", "ld"
    whole = engine._encode(ctx + cont)
    assert len(whole) <= len(engine._encode(ctx))  # the case really arises with this tokenizer
    (lp, _), (lp2, _) = engine.loglikelihood([(ctx, cont), (ctx, cont)])  # a shared context, twice
    with torch.inference_mode():
        logits = engine.model(input_ids=torch.tensor([whole])).logits[0, -2]
    expected = torch.log_softmax(logits.float(), -1)[whole[-1]].item()
    assert lp == pytest.approx(expected, abs=1e-4) and lp2 == pytest.approx(expected, abs=1e-4)


def test_prefix_reuse_on_tiny_student_matches_plain(tiny_student, monkeypatch):
    """The real tiny student on TruthfulQA MC2's own requests (two questions): same scores both ways."""
    from harness.engines.hf import HFEngine
    from harness.tasks.registry import get_task

    docs = get_task("truthfulqa_mc2").docs()[:2]
    reqs = [(d.prompt, c) for d in docs for c in d.choices]
    eng = HFEngine(tiny_student, batch_size=8, dtype="float32", device="cpu")
    plain, plain_tokens = run(eng, reqs, False, monkeypatch)
    shared, shared_tokens = run(eng, reqs, True, monkeypatch)
    for (lp, g), (lp_p, g_p) in zip(shared, plain):
        assert lp == pytest.approx(lp_p, abs=1e-3, rel=1e-5) and g == g_p
    assert shared_tokens < plain_tokens / 3


def few_shot_prompts() -> list[object]:
    shots = "".join(f"Q: {a} + {b}?\nA: Step 1: {a} + {b} = {a + b}. The answer is \\boxed{{{a + b}}}.\n\n"
                    for a, b in [(12, 7), (3, 4), (10, 9)])
    prompts: list[object] = [shots + f"Q: {a} + {b}?\nA:" for a, b in [(1, 2), (19, 1), (7, 7), (123, 456), (5, 5)]]
    prompts += ["hello world", "Step 1: 12 + 7 ="]  # no shared prefix: the plain path, in the same call
    prompts += [[{"role": "user", "content": shots + "Q: 2 + 2?\nA:"}]]
    return prompts


@pytest.mark.parametrize("batch_size", [2, 16])
def test_generation_prefix_reuse_gives_plain_outputs(engine, batch_size):
    """Greedy generation with the shared few-shot prefix run once equals generation without reuse."""
    from harness.engines.base import SamplingParams

    prompts = few_shot_prompts()
    engine.batch_size = batch_size
    ran: list[int] = []
    extend = type(engine)._extend
    params = SamplingParams(max_new_tokens=12, temperature=0.0)  # the shared prefix is over 4x the budget
    try:
        engine.prefix_reuse = False
        plain = engine.generate(prompts, params)
        engine.prefix_reuse = True
        type(engine)._extend = lambda self, *a, **k: ran.append(1) or extend(self, *a, **k)
        shared = engine.generate(prompts, params)
    finally:
        type(engine)._extend = extend
        engine.prefix_reuse = True
    assert ran  # the prefix really was run on its own
    assert [c[0].text for c in shared] == [c[0].text for c in plain]
    assert [c[0].completion_tokens for c in shared] == [c[0].completion_tokens for c in plain]
