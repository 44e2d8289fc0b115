"""Training throughput of harness.distill.trainer.train_student: examples/s and tokens/s on this machine.

    python bench/train_step.py                         # random-init tiny Qwen2 (hidden 64), CPU or GPU
    python bench/train_step.py --arch qwen0.5b --steps 30 --batch-size 8        # Qwen2.5-0.5B-shaped, random init
    python bench/train_step.py --model /path/to/model --full --steps 20        # a real checkpoint, full FT

Examples are CGD-shaped (cgd_input prompt with question, draft and critique -> refined answer) with synthetic text
of fixed lengths, so the prompt/target split resembles a real run. Throughput is measured on the Trainer's own
train_runtime (model loading and tokenisation excluded); one JSON line is printed.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ARCHS = {  # random-init shapes (vocabulary: our small BPE below)
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2),
    "qwen0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                     num_key_value_heads=2),
}
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WORDS = ("the sum of both sides is so we get step first then check answer value equation solve term factor "
         "divide multiply square root prime number triangle angle area").split()


def words(rng: random.Random, n: int) -> str:
    out = []
    for i in range(n):
        out.append(str(rng.randint(0, 999)) if i % 7 == 3 else rng.choice(WORDS))
    return " ".join(out)


def build_random_model(arch: str, path: Path, vocab: int = 4096) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    rng = random.Random(0)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    bpe = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([words(rng, 40) for _ in range(2000)], trainer=bpe)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    hf_tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(hf_tok), max_position_embeddings=4096, tie_word_embeddings=True,
                      eos_token_id=hf_tok.eos_token_id, pad_token_id=hf_tok.pad_token_id, **ARCHS[arch])
    model = Qwen2ForCausalLM(cfg)
    model.generation_config = GenerationConfig(eos_token_id=hf_tok.eos_token_id, pad_token_id=hf_tok.pad_token_id)
    model.save_pretrained(path)
    hf_tok.save_pretrained(path)
    return path


def cgd_examples(n: int, prompt_words: int, target_words: int, seed: int = 0) -> list[dict]:
    from harness.distill.prompts import PromptTemplates

    p, rng = PromptTemplates(), random.Random(seed)
    third = max(1, prompt_words // 3)
    return [{"prompt": p.messages_for("cgd_input", question=words(rng, third), answer=words(rng, third),
                                      critique=words(rng, third) + "\nConclusion: wrong"),
             "completion": [{"role": "assistant", "content": words(rng, target_words) + " \\boxed{7}"}]}
            for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="local model folder or hub id (default: a random-init --arch model)")
    ap.add_argument("--arch", choices=sorted(ARCHS), default="tiny")
    ap.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--prompt-words", type=int, default=240)
    ap.add_argument("--target-words", type=int, default=160)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    args = ap.parse_args()

    import torch

    from harness.distill.train_config import TrainConfig
    from harness.distill.trainer import train_student

    with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp:
        model = args.model or str(build_random_model(args.arch, Path(tmp) / "model"))
        cfg = TrainConfig(use_lora=not args.full, max_steps=args.steps, per_device_batch_size=args.batch_size,
                          gradient_accumulation_steps=args.grad_accum, max_length=args.max_length,
                          learning_rate=1e-4, warmup_ratio=0.0, logging_steps=max(1, args.steps // 4),
                          save_steps=10**9, device=args.device, gradient_checkpointing=args.gradient_checkpointing)
        exs = cgd_examples(args.examples, args.prompt_words, args.target_words)
        t0 = time.perf_counter()
        res = train_student(model, exs, Path(tmp) / "out", cfg, progress=False)
        wall = time.perf_counter() - t0
        m = res.metrics
        runtime = m["train_runtime"]
        seen_examples = m["steps"] * args.batch_size * args.grad_accum
        target_per_example = m["target_tokens_per_epoch"] / max(1, m["examples_trained"])
        print(json.dumps({
            "model": args.model or f"random:{args.arch}", "mode": "full" if args.full else "lora",
            "device": m["device"], "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "bf16": m["bf16"], "steps": m["steps"], "batch": args.batch_size * args.grad_accum,
            "mean_tokens_per_example": round(m["tokens_per_epoch"] / max(1, m["examples_trained"]), 1),
            "params": m["total_params"], "trainable_params": m["trainable_params"],
            "train_runtime_s": round(runtime, 3), "wall_s_incl_load": round(wall, 3),
            "examples_per_s": round(seen_examples / runtime, 2),
            "tokens_per_s": round(m["tokens_seen"] / runtime, 1),
            "target_tokens_per_s": round(seen_examples * target_per_example / runtime, 1),
            "final_loss": m["loss_curve"][-1][1] if m["loss_curve"] else None,
        }))


if __name__ == "__main__":
    main()
