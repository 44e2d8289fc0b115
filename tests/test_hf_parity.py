"""The hf engine feeds the model the token ids lm-eval's hf backend (``lm_eval.models.huggingface.HFLM``) feeds:
BOS where the tokenizer adds one for plain text, nothing added to chat-rendered text (the template holds its own
special tokens), and log-likelihood requests split into context / continuation exactly as lm-eval splits them.
Checked against lm-eval's own encoding functions on a tokenizer that adds BOS and on one that does not."""
from pathlib import Path

import pytest

from tests.conftest import build_random_chat_model

PLAIN = [
    "Q: What is 12 + 7?\nA:",
    "hello world",
    "  leading spaces and trailing ones  ",
    "Step 1: 12 + 7 = 19.\n\n",
]
CHATS = [
    [{"role": "user", "content": "What is 12 + 7?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello world"}],
]
PAIRS = [
    ("Q: What is 12 + 7?\nA:", " 19"),
    ("Q: What is 12 + 7?\nA: ", "19"),  # trailing space moves to the continuation
    ("Step 1: 12 + 7 =\n", " 19."),  # trailing newline too (lm-eval strips all whitespace)
    ("hello wor", "ld"),  # the continuation merges wholly into the context's last token
    ("hello wor", "ld hello"),  # ... its first token merges with the context's last one
    ("", " hello world"),  # empty context: the prefix token stands in
]


def build_bos_chat_model(out: Path) -> Path:
    """The random chat model with a Llama-3-style tokenizer: a ``<|begin_of_text|>`` BOS the tokenizer adds to
    plain text, and a chat template that writes ``{{ bos_token }}`` itself."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["Step 1: 12 + 7 = 19. The answer is \\boxed{19}. hello world"] * 50, trainer)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", bos)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   pad_token="<|end_of_text|>")
    fast.chat_template = (
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{{ m['content'] }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    )
    fast.save_pretrained(out)
    torch.manual_seed(1)
    cfg = Qwen2Config(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                      pad_token_id=fast.pad_token_id, tie_word_embeddings=True)
    Qwen2ForCausalLM(cfg).save_pretrained(out)
    return out


@pytest.fixture(scope="module", params=["no_bos", "bos"])
def engines(request, tmp_path_factory):
    """(our engine, lm-eval's HFLM) on the same local folder."""
    from lm_eval.models.huggingface import HFLM

    from harness.engines.hf import HFEngine

    root = tmp_path_factory.mktemp(request.param)
    folder = build_random_chat_model(root) if request.param == "no_bos" else build_bos_chat_model(root)
    ours = HFEngine(folder, batch_size=4, dtype="float32", device="cpu")
    theirs = HFLM(pretrained=str(folder), device="cpu", batch_size=4, dtype="float32")
    return request.param, ours, theirs


def test_bos_tokenizer_really_adds_bos(engines):
    kind, ours, _ = engines
    ids = ours.tokenizer("hello")["input_ids"]
    assert (ids[0] == ours.tokenizer.bos_token_id) == (kind == "bos")


def test_plain_prompts_encode_as_lm_eval(engines):
    kind, ours, theirs = engines
    for text in PLAIN:
        ids = ours._encode(ours.render(text), chat=False)
        assert ids == theirs.tok_encode(text)
        # the generation path: lm-eval's batch encoder (one string, so no padding)
        assert ids == theirs.tok_batch_encode([text])[0][0].tolist()
        if kind == "bos":
            assert ids[0] == ours.tokenizer.bos_token_id and ids[1] != ours.tokenizer.bos_token_id
    # a text that already starts with the BOS string gets no second one (lm-eval's has_bos_prefix)
    if kind == "bos":
        text = "<|begin_of_text|>hello"
        assert ours._encode(text) == theirs.tok_encode(text)
        assert ours._encode(text).count(ours.tokenizer.bos_token_id) == 1


def test_chat_prompts_encode_as_apply_chat_template(engines):
    kind, ours, theirs = engines
    for chat in CHATS:
        text = ours.render(chat)
        assert text == theirs.apply_chat_template(chat)  # same rendering as lm-eval --apply_chat_template
        ids = ours._encode(text, chat=True)
        assert ids == ours.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True,
                                                         return_dict=True)["input_ids"]
        assert ids == theirs.tok_encode(text)
        assert ids == theirs.tok_batch_encode([text])[0][0].tolist()
        if kind == "bos":  # the template's BOS and no second one
            assert ids[0] == ours.tokenizer.bos_token_id and ids.count(ours.tokenizer.bos_token_id) == 1


def test_loglikelihood_split_and_scores_match_lm_eval(engines):
    from lm_eval.api.instance import Instance

    _, ours, theirs = engines
    for ctx, cont in PAIRS:
        if not ctx:
            continue
        expected_split = theirs._encode_pair(ctx, cont)
        if not expected_split[1]:  # lm-eval leaves nothing to score: we score the whole string's last token
            whole = ours._encode(ctx + cont)
            assert ours._encode_pair(ctx, cont) == (whole[:-1], whole[-1:])
        else:
            assert ours._encode_pair(ctx, cont) == expected_split, (ctx, cont)
    # merged continuations aside, the scores are lm-eval's, on the plain path and the shared-prefix path
    reqs = [(c, x) for c, x in PAIRS] + [("Q: What is 12 + 7?\nA:", " 20"), ("Q: What is 12 + 7?\nA:", " 19.")]
    # longer than the model's 512 positions: both keep the last 513 tokens
    reqs += [("Step 1: 12 + 7 = 19. " * 60 + "The answer is", " 19"), ("Step 1: 12 + 7 = 19. " * 60 + "The", " answer")]
    instances = [Instance(request_type="loglikelihood", doc={}, arguments=r, idx=i) for i, r in enumerate(reqs)]
    expected = theirs.loglikelihood(instances, disable_tqdm=True)
    got = ours.loglikelihood(reqs)
    for (ctx, cont), (lp, greedy), (lp_e, greedy_e) in zip(reqs, got, expected):
        if ctx and len(ours._encode(ctx + cont)) <= len(ours._encode(ctx.rstrip())):
            continue  # lm-eval scores nothing there (0.0); we score the merged last token (test_hf_prefix)
        assert lp == pytest.approx(lp_e, abs=1e-4), (ctx, cont)
        assert greedy == greedy_e


@pytest.mark.parametrize("stop", [(), ("\n\n", "Q"), ("19",)])
def test_greedy_generation_matches_lm_eval(engines, stop):
    """Same input ids, same greedy text, and stop strings searched in the generated text only (a prompt ending in
    "\\n" with a "\\n\\n" stop must not stop at the first generated "\\n")."""
    from lm_eval.api.instance import Instance

    from harness.engines.base import SamplingParams

    _, ours, theirs = engines
    for prompt in ["Step 1: 12 + 7 = 19.\n", "Q: What is 12 + 7?\nA:", CHATS[0]]:
        text = ours.render(prompt)
        got = ours.generate([prompt], SamplingParams(max_new_tokens=12, temperature=0.0, stop=stop))[0][0]
        kw = {"max_gen_toks": 12, "do_sample": False} | ({"until": list(stop)} if stop else {})
        expected = theirs.generate_until([Instance(request_type="generate_until", doc={}, arguments=(text, kw),
                                                   idx=0)], disable_tqdm=True)[0]
        assert got.text == expected, (prompt, stop)


def test_stop_strings_look_at_generated_text_only(engines):
    import torch

    from harness.engines.hf import stop_in_generated

    _, ours, _ = engines
    tok = ours.tokenizer
    prompt = tok("Step 1: 12 + 7 = 19.\n", add_special_tokens=False)["input_ids"]
    nl = tok("\n", add_special_tokens=False)["input_ids"]
    crit = stop_in_generated(tok, ["\n\n"], len(prompt))
    assert not crit(torch.tensor([prompt + nl]), None).item()  # "\n" + "\n" across the prompt boundary: go on
    assert crit(torch.tensor([prompt + nl + nl]), None).item()  # "\n\n" generated: stop
