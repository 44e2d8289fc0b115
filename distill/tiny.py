"""The embedded default student: a tiny chat model pretrained by the harness on first use, on a 2-core CPU.

What gets built (and cached under ``$HARNESS_CACHE_DIR/tiny-<spec hash>``):

- a byte-level BPE tokenizer trained with ``tokenizers`` on the synthetic corpus. Digits and newlines are
  isolated before BPE, so every digit is its own token (arithmetic needs that) and no token spans a line break
  (so the chat prompt, which ends in a newline, tokenizes the same alone and followed by a reply). Any byte is
  encodable, so code and critiques never crash it. A ChatML-style Jinja chat template is attached.
- a small LlamaForCausalLM, randomly initialised from the seed and pretrained with plain torch on chat-formatted
  synthetic problems (distill/tiny_corpus.py), whose solutions carry SYSTEMATIC injected mistakes (an operation
  misread for one wording, a dropped carry for one digit pattern, "triples" read as doubling, a final division
  forgotten). Greedy decoding reproduces them, so the base student is imperfect in ways that training on
  corrected solutions can fix.
- a share of format-probe prompts (harness.tasks.format_probe) on which the student follows one wording of each
  instruction and mostly ignores the other, so fine-tuning can show format drift either way.

``ensure_tiny_student(spec)`` (``TinySpec``: distill/tiny_spec.py) returns the folder (loadable with
AutoModelForCausalLM / AutoTokenizer). The built default and smoke students ship with the project
(``distill/tiny_students/tiny-<spec hash>/`` with a SHA256SUMS file): a fresh clone copies them into the cache
after checking every file's digest, instead of pretraining for minutes, and every machine evaluates the same
weights. Any other spec, or a shipped folder whose digests do not
match, is built here. ``python -m harness.distill.tiny verify`` rebuilds the shipped specs and compares weight digests;
``python -m harness.distill.tiny ship`` refreshes the shipped folders after a recipe change.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

from harness.common.resources import package_path
from harness.distill.tiny_corpus import pretraining_example
from harness.distill.tiny_spec import RECIPE_VERSION, TinySpec, spec_hash

BOS, EOS, PAD, IM_START = "<|bos|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>"
SPECIAL_TOKENS = [PAD, BOS, IM_START, EOS]

CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"
)


# ---- tokenizer -------------------------------------------------------------------------------------------
def build_tokenizer(spec: TinySpec):
    """Byte-level BPE trained on the synthetic corpus, wrapped as a PreTrainedTokenizerFast with a chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(f"tiny-tokenizer:{spec.seed}")
    texts: list[str] = ["system", "user", "assistant"] * 50  # role names become single tokens
    for _ in range(spec.tokenizer_corpus):
        msgs, reply = pretraining_example(rng, spec)
        texts.extend(m["content"] for m in msgs)
        texts.append(reply)

    tok = Tokenizer(models.BPE())
    # Digits and newlines are their own pre-tokens: one token per digit, and no merge across a line break.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\d|\n"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=spec.vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   model_max_length=spec.max_position_embeddings, padding_side="left")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def encode_example(tokenizer, messages: list[dict[str, str]], reply: str) -> tuple[list[int], list[int]]:
    """(input ids, labels) with the loss on the reply and its end-of-turn token only."""
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    r_ids = tokenizer(reply + EOS, add_special_tokens=False)["input_ids"]
    return p_ids + r_ids, [-100] * len(p_ids) + r_ids


# ---- model and pretraining ---------------------------------------------------------------------------------
def build_model(spec: TinySpec, tokenizer):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    # Llama rather than Qwen2: transformers 5's AutoTokenizer swaps in Qwen2's own tokenizer class for a
    # qwen2 config, which would drop our digit-splitting pre-tokenizer on reload.
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_position_embeddings, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, use_cache=True,
    )
    torch.manual_seed(spec.seed)
    return LlamaForCausalLM(config)


def _batches(spec: TinySpec, tokenizer) -> Iterator[tuple]:
    import torch

    rng = random.Random(f"tiny-pretrain:{spec.seed}")
    pad = tokenizer.pad_token_id
    while True:
        rows = [encode_example(tokenizer, *pretraining_example(rng, spec)) for _ in range(spec.batch_size)]
        width = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (x, y) in enumerate(rows):  # right padding for training
            ids[i, : len(x)] = torch.tensor(x)
            labels[i, : len(y)] = torch.tensor(y)
            mask[i, : len(x)] = 1
        yield ids, labels, mask


def _lr_at(step: int, spec: TinySpec) -> float:
    if step < spec.warmup_steps:
        return spec.learning_rate * (step + 1) / spec.warmup_steps
    frac = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
    return spec.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


@contextlib.contextmanager
def _torch_settings(threads: int) -> Iterator[None]:
    """Fixed thread count and deterministic kernels while building; the caller's settings come back after."""
    import torch

    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(max(1, min(threads, os.cpu_count() or 1)))
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def _make_progress():
    """A rich progress bar on stderr (built here: distill sits below harness and never imports it)."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=Console(stderr=True))


def pretrain(model, tokenizer, spec: TinySpec, progress: bool = True) -> dict:
    import torch

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": spec.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=spec.learning_rate, betas=(0.9, 0.98), eps=1e-8)
    model.train()
    batches = _batches(spec, tokenizer)
    losses: list[float] = []
    ctx = _make_progress() if progress else contextlib.nullcontext(None)
    with ctx as prog:
        task = prog.add_task(f"pretraining tiny student ({spec.preset})", total=spec.steps) if prog else None
        for step in range(spec.steps):
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, spec)
            ids, labels, mask = next(batches)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            if prog:
                prog.update(task, advance=1, description=f"pretraining tiny student ({spec.preset}) "
                                                         f"loss {sum(losses[-20:]) / len(losses[-20:]):.3f}")
    model.eval()
    tail = losses[-max(1, min(50, len(losses))):]
    return {"steps": spec.steps, "final_loss": sum(tail) / len(tail), "first_loss": losses[0] if losses else None}


def weights_digest(model) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def build_tiny_student(spec: TinySpec, out_dir: Path, progress: bool = True) -> dict:
    """Train tokenizer and model into ``out_dir``; returns the build metrics (also written there)."""
    t0 = time.time()
    with _torch_settings(spec.threads):
        tokenizer = build_tokenizer(spec)
        t_tok = time.time() - t0
        model = build_model(spec, tokenizer)
        metrics = pretrain(model, tokenizer, spec, progress=progress)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    metrics.update({
        "seconds": round(time.time() - t0, 2), "tokenizer_seconds": round(t_tok, 2),
        "parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(tokenizer),
        "weights_sha256": weights_digest(model), "threads": max(1, min(spec.threads, os.cpu_count() or 1)),
        "recipe": RECIPE_VERSION,
    })
    (out_dir / "tiny_spec.json").write_text(json.dumps(asdict(spec), indent=2, default=list) + "\n")
    (out_dir / "build_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def default_cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE_DIR") or Path.home() / ".cache" / "harness")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise concurrent builds of the same spec (best effort where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-Unix
        yield
        return
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_tiny_student(spec: TinySpec | None = None, cache_dir: Path | None = None, progress: bool = True) -> Path:
    """The folder of the tiny student for ``spec``, built on first use (atomically) and cached after."""
    spec = spec or TinySpec.default()
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    target = root / f"tiny-{spec_hash(spec)}"
    if (target / "build_metrics.json").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with _file_lock(root / f".tiny-{spec_hash(spec)}.lock"):
        if (target / "build_metrics.json").exists():  # another process built it while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=root))
        try:
            if not copy_shipped(target.name, tmp):
                build_tiny_student(spec, tmp, progress=progress)
            if target.exists():  # a leftover without build metrics is not a finished build
                shutil.rmtree(target)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


# ---- shipped students ------------------------------------------------------------------------------------
SHIPPED_DIR = package_path(__package__, "tiny_students")
_SHIPPED_FILES = ("build_metrics.json", "chat_template.jinja", "config.json", "generation_config.json",
                  "model.safetensors", "tiny_spec.json", "tokenizer.json", "tokenizer_config.json")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_shipped(name: str, dest: Path) -> bool:
    """Copy the shipped student ``name`` into ``dest`` when every file matches SHA256SUMS; False otherwise."""
    src = SHIPPED_DIR / name
    sums = src / "SHA256SUMS"
    if not sums.exists():
        return False
    want = dict(line.split()[::-1] for line in sums.read_text().splitlines() if line.strip())
    for fname, digest in want.items():
        if not (src / fname).exists() or _sha256(src / fname) != digest:
            import warnings

            warnings.warn(f"shipped tiny student {name}: {fname} does not match SHA256SUMS; building it instead")
            return False
    for fname in want:
        shutil.copyfile(src / fname, dest / fname)
    return True


def ship(specs: list[TinySpec], out: Path = SHIPPED_DIR) -> None:
    """Build (or take from the cache) each spec and write it with its digests under ``out``."""
    for spec in specs:
        built = ensure_tiny_student(spec, progress=True)
        dest = out / built.name
        dest.mkdir(parents=True, exist_ok=True)
        for fname in _SHIPPED_FILES:
            shutil.copyfile(built / fname, dest / fname)
        (dest / "SHA256SUMS").write_text("".join(f"{_sha256(dest / f)}  {f}\n" for f in _SHIPPED_FILES))
        print(f"shipped {dest}")


def verify(specs: list[TinySpec]) -> bool:
    """Rebuild each shipped spec from its recipe and compare the weights digest with the shipped one."""
    ok = True
    for spec in specs:
        name = f"tiny-{spec_hash(spec)}"
        shipped = json.loads((SHIPPED_DIR / name / "build_metrics.json").read_text())["weights_sha256"]
        with tempfile.TemporaryDirectory() as tmp:
            rebuilt = build_tiny_student(spec, Path(tmp), progress=True)["weights_sha256"]
        same = rebuilt == shipped
        ok &= same
        print(f"{name} ({spec.preset}): rebuilt {rebuilt[:16]} shipped {shipped[:16]} {'same' if same else 'DIFFERENT'}")
    return ok


if __name__ == "__main__":  # python -m harness.distill.tiny ship|verify
    import sys

    chosen = [TinySpec.default(), TinySpec.smoke()]
    if sys.argv[1:] == ["ship"]:
        ship(chosen)
    elif sys.argv[1:] == ["verify"]:
        sys.exit(0 if verify(chosen) else 1)
    else:
        sys.exit("usage: python -m harness.distill.tiny ship|verify")
