"""What the tiny student is made from: ``TinySpec`` (every knob of the recipe) and its hash, which names the cached
and shipped builds (distill/tiny.py builds them; distill/tiny_corpus.py writes their pretraining data)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

#: Bump when the recipe (distill/tiny.py, distill/tiny_corpus.py) changes in a way that changes the weights
#: (invalidates cached students).
RECIPE_VERSION = "tiny-v3"  # v3: 3 heads of 32 (vLLM's CPU attention refuses head_dim 24)

MISTAKE_KINDS = ("sells_as_buys", "dropped_carry", "triples_as_doubles", "forgets_final_division")


@dataclass
class TinySpec:
    """Every knob of the tiny student. Same spec (and machine) -> same weights."""

    preset: str = "default"
    seed: int = 0
    # tokenizer
    vocab_size: int = 768
    tokenizer_corpus: int = 4000  # examples the BPE is trained on
    # model (Llama architecture)
    hidden_size: int = 96
    intermediate_size: int = 288
    num_layers: int = 4
    # head_dim = hidden_size / num_heads must be one vLLM serves (32, 64, 80, 96, 128, ...): 96 / 3 = 32.
    num_heads: int = 3
    max_position_embeddings: int = 2048
    # pretraining
    # About 1,100 steps of 32 are needed before the arithmetic clicks (measured: ~35% ID at 1,200 steps,
    # under 10% at 600, for the same recipe with the schedule annealed at the end).
    steps: int = 1100
    batch_size: int = 32
    learning_rate: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    # data mix
    mistake_rate: float = 0.9  # when a mistake's trigger holds, the share of solutions that make it
    mistakes: tuple[str, ...] = MISTAKE_KINDS
    step_weights: dict[int, float] = field(default_factory=lambda: {1: 0.1, 2: 0.35, 3: 0.35, 4: 0.2})
    format_share: float = 0.15  # share of format-probe prompts in the pretraining mix
    # how often each format wording is followed in pretraining: first wording / other wordings
    format_follow: tuple[float, float] = (0.9, 0.2)
    threads: int = 2

    @classmethod
    def default(cls) -> "TinySpec":
        return cls()

    @classmethod
    def smoke(cls) -> "TinySpec":
        """For CI: the same recipe cut to 500 steps (about a minute on 2 free cores). It has learned the format
        and reads the question, but its arithmetic has not clicked yet: expect only a few percent accuracy."""
        return cls(preset="smoke", steps=500, tokenizer_corpus=1500)


def spec_hash(spec: TinySpec) -> str:
    d = asdict(spec)
    d["recipe"] = RECIPE_VERSION
    blob = json.dumps(d, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
