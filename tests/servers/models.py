"""A tiny random chat model that every server here can load (vLLM's CPU attention wants head_dim 32 or 64)."""
from __future__ import annotations

from pathlib import Path

CORPUS = [
    "Step 1: 12 + 7 = 19. The answer is \\boxed{19}. hello world",
    "Tom has 3 apples and buys 5 more; how many apples does he have now? He has 8 apples.",
    "def add(a, b):\n    return a + b\n# the quick brown fox jumps over the lazy dog",
    "Question: what is 6 times 7? Answer: 42. Critique: the second step is wrong.",
]


def build_server_chat_model(out: Path, seed: int = 0) -> Path:
    """A 2-layer Qwen2 (hidden 128, 4 heads of 32, 2 KV heads), byte-level BPE tokenizer with a chat template.
    Weights are random with a wide init so that greedy outputs vary from prompt to prompt (a narrow init
    repeats one token forever, which would make an equality check between engines vacuous)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 50, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    fast.save_pretrained(out)
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(fast), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, tie_word_embeddings=True,
                      initializer_range=0.3)
    Qwen2ForCausalLM(cfg).save_pretrained(out)
    return out
