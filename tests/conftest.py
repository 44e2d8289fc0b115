"""Shared test setup: point the harness at the offline benchmark mirror and NLTK data beside the checkout."""
import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

os.environ.setdefault("HARNESS_DATA_DIR", str(SHARED / "data"))
os.environ.setdefault("NLTK_DATA", str(SHARED / "data" / "nltk_data"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HARNESS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Model calls, tiny students and the call cache of a test session live in a fresh folder, never in ~/.cache.
os.environ.setdefault("HARNESS_CACHE_DIR", tempfile.mkdtemp(prefix="harness-test-cache-"))

import pytest


def build_random_chat_model(out: Path, seed: int = 0) -> Path:
    """A 2-layer Qwen2 with a small byte-level BPE tokenizer and a chat template: real transformers
    weights and tokenizer, random init, built in about a second."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["Step 1: 12 + 7 = 19. The answer is \\boxed{19}. hello world"] * 50, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    fast.save_pretrained(out)
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, tie_word_embeddings=True)
    Qwen2ForCausalLM(cfg).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def random_chat_model(tmp_path_factory) -> Path:
    return build_random_chat_model(tmp_path_factory.mktemp("random_chat_model"))


@pytest.fixture(scope="session")
def tiny_cache() -> Path:
    return Path(os.environ["HARNESS_CACHE_DIR"])


@pytest.fixture(scope="session")
def tiny_student(tiny_cache) -> Path:
    """The smoke-preset tiny student, built once per test session."""
    from harness.distill.tiny import ensure_tiny_student
    from harness.distill.tiny_spec import TinySpec

    return ensure_tiny_student(TinySpec.smoke(), cache_dir=tiny_cache, progress=False)


@pytest.fixture(scope="session")
def served_model_dir(tmp_path_factory) -> Path:
    """A random chat model vLLM's CPU attention accepts (head_dim 32), for the OpenAI-compatible server tests."""
    from servers.models import build_server_chat_model

    return build_server_chat_model(tmp_path_factory.mktemp("served_model"))


@pytest.fixture(scope="session")
def openai_server(served_model_dir, tmp_path_factory):
    """A real OpenAI-compatible server on loopback (vLLM's when it imports, else `transformers serve`), shared by
    the engine and fault tests and stopped at the end of the session."""
    from servers.openai_server import start_openai_server

    srv = start_openai_server(served_model_dir, tmp_path_factory.mktemp("server_logs"))
    yield srv
    srv.stop()
