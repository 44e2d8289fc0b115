"""train_student on a tiny Qwen2 model built here: completion-only masking, learning (LoRA and full FT), resume,
idempotence, loading and digests. The model is random-initialised; only the mechanics are under test."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from harness.distill.train_config import TrainConfig, TrainError
from harness.distill.train_outputs import adapter_digest, load_trained
from harness.distill.trainer import build_trainer, train_student

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_BUILT: dict[str, Path] = {}


def _synthetic_lines(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = ["problem", "answer", "review", "solution", "step", "first", "attempt", "Conclusion:", "right",
             "wrong", "the", "is", "of", "and", "we", "get", "so", "then", "final", "check", "student", "correct"]
    lines = []
    for _ in range(n):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        lines.append(f"{' '.join(rng.choices(words, k=6))} {a} + {b} = {a + b} \\boxed{{{a + b}}} $x^2$ {{}}")
    return lines


def build_tiny_model(path: Path) -> Path:
    """A byte-level BPE tokenizer (400 tokens, ChatML-like template) and a 2-layer, hidden-64 Qwen2, saved to path.
    Built once per test session (other test files import this function)."""
    if "model" in _BUILT:
        return _BUILT["model"]
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    bpe = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_synthetic_lines(400), trainer=bpe)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    hf_tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(hf_tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      tie_word_embeddings=True, eos_token_id=hf_tok.eos_token_id, pad_token_id=hf_tok.pad_token_id)
    model = Qwen2ForCausalLM(cfg)
    model.generation_config = GenerationConfig(eos_token_id=hf_tok.eos_token_id, pad_token_id=hf_tok.pad_token_id)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    hf_tok.save_pretrained(path)
    _BUILT["model"] = path
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


def examples(n: int = 8) -> list[dict]:
    return [{"prompt": [{"role": "system", "content": "Add."}, {"role": "user", "content": f"What is {a} + {a}?"}],
             "completion": [{"role": "assistant", "content": f"{a} + {a} = {2 * a} \\boxed{{{2 * a}}}"}]}
            for a in range(n)]


def cfg(**kw) -> TrainConfig:
    base = dict(max_steps=30, learning_rate=5e-3, per_device_batch_size=4, logging_steps=5, save_steps=10,
                warmup_ratio=0.0, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_collated_batch_masks_the_prompt(tiny_model, tmp_path):
    exs = examples(4)
    trainer = build_trainer(tiny_model, exs, tmp_path, cfg(), progress=False)
    batch = next(iter(trainer.get_train_dataloader()))
    tok = trainer.processing_class
    targets = {e["completion"][0]["content"] for e in exs}
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        ids, labels = ids[mask.bool()].tolist(), labels[mask.bool()].tolist()
        first = next(i for i, t in enumerate(labels) if t != -100)
        assert first > 5 and all(t == -100 for t in labels[:first])  # every prompt token masked
        assert labels[first:] == ids[first:]  # every completion token trained on
        prompt_text, target_text = tok.decode(ids[:first]), tok.decode(labels[first:])
        assert prompt_text.endswith("<|im_start|>assistant\n") and "What is" in prompt_text
        assert target_text.endswith("<|im_end|>\n") and target_text[: -len("<|im_end|>\n")] in targets
    assert trainer.args.completion_only_loss is True


@pytest.mark.parametrize("use_lora,lr", [(True, 5e-3), (False, 1e-3)])
def test_loss_decreases_and_outputs(tiny_model, tmp_path, use_lora, lr):
    res = train_student(tiny_model, examples(), tmp_path / "run", cfg(use_lora=use_lora, learning_rate=lr),
                        progress=True)
    m = res.metrics
    curve = m["loss_curve"]
    assert m["steps"] == 30 and curve[0][0] == 1 and curve[-1][0] == 30
    assert curve[-1][1] < curve[0][1] - 0.3, curve
    assert res.model_dir == tmp_path / "run" / "final" and res.adapter is use_lora
    assert (res.model_dir / ("adapter_config.json" if use_lora else "model.safetensors")).exists()
    assert (res.model_dir / "tokenizer.json").exists()
    assert not (tmp_path / "run" / "checkpoints").exists()  # removed once final/ is complete
    saved = json.loads((res.model_dir / "train_metrics.json").read_text())
    assert saved["examples"] == 8 and saved["tokens_seen"] > 0 and saved["config"]["use_lora"] is use_lora
    if use_lora:
        assert 0 < saved["trainable_params"] < saved["total_params"] / 2
    else:
        assert saved["trainable_params"] == saved["total_params"]
    # load_trained gives the trained model: its loss on a training example is below the base model's
    model, tok = load_trained(res.model_dir)
    base, _ = load_trained(tiny_model)
    text = tok.apply_chat_template(examples()[3]["prompt"] + examples()[3]["completion"], tokenize=False)
    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert model(ids, labels=ids).loss < base(ids, labels=ids).loss
    if use_lora:
        merged, _ = load_trained(res.model_dir, merge=True)
        with torch.no_grad():
            assert torch.allclose(merged(ids).logits, model(ids).logits, atol=1e-4)


def test_second_call_returns_final_without_training(tiny_model, tmp_path, monkeypatch):
    out = tmp_path / "run"
    first = train_student(tiny_model, examples(), out, cfg(max_steps=4), progress=False)
    digest = adapter_digest(first.model_dir)

    def boom(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr("harness.distill.trainer.build_trainer", boom)
    again = train_student(tiny_model, examples(), out, cfg(max_steps=4, logging_steps=1), progress=False)
    assert again.model_dir == first.model_dir and again.metrics == first.metrics
    assert adapter_digest(again.model_dir) == digest and len(digest) == 64
    with pytest.raises(TrainError, match="max_steps"):  # a different request must not reuse the folder
        train_student(tiny_model, examples(), out, cfg(max_steps=5), progress=False)


class Killed(Exception):
    pass


def test_resume_from_checkpoint_matches_uninterrupted_run(tiny_model, tmp_path):
    from transformers import TrainerCallback

    class KillAt(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step >= 10:
                raise Killed()

    c = cfg(max_steps=20, per_device_batch_size=3, warmup_ratio=0.1, device="cpu")  # bitwise claim: CPU only
    whole = train_student(tiny_model, examples(), tmp_path / "whole", c, progress=False)
    with pytest.raises(Killed):
        train_student(tiny_model, examples(), tmp_path / "cut", c, progress=True, callbacks=[KillAt()])
    assert (tmp_path / "cut" / "checkpoints" / "checkpoint-10").is_dir()
    assert not (tmp_path / "cut" / "final").exists()
    resumed = train_student(tiny_model, examples(), tmp_path / "cut", c, progress=False)
    assert resumed.metrics["resumed_from"].endswith("checkpoint-10")
    assert resumed.metrics["steps"] == 20 and resumed.metrics["tokens_seen"] == whole.metrics["tokens_seen"]
    assert resumed.metrics["loss_curve"] == whole.metrics["loss_curve"]  # history kept, same losses
    # Deterministic on CPU: the resumed adapter equals the uninterrupted one.
    assert adapter_digest(resumed.model_dir) == adapter_digest(whole.model_dir)


def test_config_validation():
    with pytest.raises(ValueError, match="lr_scheduler"):
        TrainConfig(lr_scheduler="cosine_wobble")
    with pytest.raises(ValueError):
        TrainConfig(unknown_field=1)
    assert TrainConfig().use_lora and TrainConfig().lora_r == 16 and TrainConfig().max_length == 1024
