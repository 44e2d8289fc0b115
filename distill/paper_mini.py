"""The paper-shaped miniature's parts, built on the fly (no download): a random Llama-shaped student and teacher
and a pool with critique data given (configs/paper-mini.yaml; scripts/paper-mini.sh runs it end to end).

    python -m harness.distill.paper_mini OUT_DIR      # writes OUT_DIR/{student,teacher}/ and OUT_DIR/pool.jsonl

- Both models are 2-layer Llamas (hidden 128, 4 heads of 32: vLLM's CPU attention takes head_dim 32 or 64) with a
  byte-level BPE tokenizer trained on MATH train text, random weights (wide init, so outputs vary by prompt).
- The teacher's chat template opens a thinking block in the generation prompt (``<think>``, as DeepSeek-R1 /
  Qwen3 templates do) and its embedding of ``</think>`` is scaled up so the random model closes the block now and
  then, as a reasoning model does; ``teacher.strip_thinking: think`` then has real thinking to strip.
- The pool is real MATH train problems (short ones, to keep prompts small) with their reference solutions, and
  critique data given per row: the student answer is the problem's own solution or another problem's, and the
  critique is the reference teacher's (math-verify against the gold answer), ending in its Conclusion line.
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_TURNS = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
STUDENT_TEMPLATE = _TURNS + "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
TEACHER_TEMPLATE = _TURNS + "{% if add_generation_prompt %}<|im_start|>assistant\n" + THINK_OPEN + "\n{% endif %}"
#: How much the teacher's </think> embedding is scaled: at temperature 0.8 the random teacher then closes its
#: thinking block in most of its outputs within ~100 tokens (measured when this was written: see tests).
THINK_CLOSE_SCALE = 2.5


def math_rows(limit: int = 4000) -> list[dict]:
    from harness.tasks.data import local_path, read_jsonl

    path = local_path("math_train", "train.jsonl")
    if path is None:
        raise SystemExit("paper-mini needs the MATH train mirror (math_train/train.jsonl under HARNESS_DATA_DIR)")
    return read_jsonl(path)[:limit]


def build_tokenizer(rows: list[dict], template: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AddedToken, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1024, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([r["problem"] + "\n" + r["solution"] for r in rows], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    # not special: a server that skips special tokens still returns the markers in the text
    fast.add_tokens([AddedToken(THINK_OPEN, special=False), AddedToken(THINK_CLOSE, special=False)])
    fast.chat_template = template
    return fast


def build_model(out: Path, tokenizer, seed: int, think_scale: float | None = None) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                      bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                      tie_word_embeddings=True, initializer_range=0.3)
    model = LlamaForCausalLM(cfg)
    if think_scale:
        with torch.no_grad():
            emb = model.get_input_embeddings().weight
            emb[tokenizer.convert_tokens_to_ids(THINK_CLOSE)] *= think_scale
    model.save_pretrained(out)
    return out


def build_pool(rows: list[dict], out: Path, n: int = 96, seed: int = 0) -> Path:
    """A JSONL pool: question, solution, and given student_answer + critique (the reference teacher's)."""
    from harness.distill.items import TrainItem
    from harness.distill.teachers.reference import reference_critique
    from harness.tasks.scorers.extract import last_boxed

    short = [r for r in rows if len(r["problem"]) <= 300 and len(r["solution"]) <= 600 and last_boxed(r["solution"])]
    rng = random.Random(seed)
    rng.shuffle(short)
    chosen = short[:n]
    lines = []
    for i, r in enumerate(chosen):
        own = i % 2 == 0  # half the given answers are right, half another problem's solution
        answer = r["solution"] if own else chosen[(i + 1) % len(chosen)]["solution"]
        item = TrainItem(id=r["unique_id"], question=r["problem"], gold_solution=r["solution"],
                         gold_answer=last_boxed(r["solution"]) or "", probe=answer)
        lines.append({"id": r["unique_id"], "question": r["problem"], "solution": r["solution"],
                      "student_answer": answer, "critique": reference_critique(item)})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return out


def prepare(out_dir: Path) -> dict[str, Path]:
    """Student, teacher and pool under out_dir (rebuilt only when missing: they are deterministic)."""
    out_dir = Path(out_dir)
    paths = {"student": out_dir / "student", "teacher": out_dir / "teacher", "pool": out_dir / "pool.jsonl"}
    if all((p / "config.json").exists() if p.suffix == "" else p.exists() for p in paths.values()):
        return paths
    rows = math_rows()
    build_model(paths["student"], build_tokenizer(rows, STUDENT_TEMPLATE), seed=1)
    build_model(paths["teacher"], build_tokenizer(rows, TEACHER_TEMPLATE), seed=2, think_scale=THINK_CLOSE_SCALE)
    build_pool(rows, paths["pool"])
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m harness.distill.paper_mini OUT_DIR")
    for name, path in prepare(Path(sys.argv[1])).items():
        print(f"{name}: {path}")
