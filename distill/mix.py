"""The paper's optional correctness filter: mix training items by the critique's right/wrong conclusion.

The released CGD pipeline trains on every item (no filter, ``right_fraction=None``); the ablation mixes
100/0, 75/25, 50/50, 25/75 and 0/100 right/wrong. We keep as many items as the ratio allows (the scarcer side is
used in full), pick the rest at random with a fixed seed, and return them in their original order.
Items whose critique has no valid Conclusion line are dropped whenever a filter is applied.
"""
from __future__ import annotations

import math
import random
from typing import Sequence

from harness.distill.items import TrainItem

PAPER_MIXES = (1.0, 0.75, 0.5, 0.25, 0.0)


def mix_by_conclusion(items: Sequence[TrainItem], right_fraction: float | None, seed: int) -> list[TrainItem]:
    if right_fraction is None:
        return list(items)
    if not 0.0 <= right_fraction <= 1.0:
        raise ValueError(f"right_fraction={right_fraction} is outside [0, 1]; use e.g. 0.75 for a 75/25 mix")
    right = [i for i, it in enumerate(items) if it.conclusion == "right"]
    wrong = [i for i, it in enumerate(items) if it.conclusion == "wrong"]
    n_right, n_wrong = mix_counts(len(right), len(wrong), right_fraction)
    rng = random.Random(seed)
    keep = set(rng.sample(right, n_right)) | set(rng.sample(wrong, n_wrong))
    return [it for i, it in enumerate(items) if i in keep]


def mix_counts(available_right: int, available_wrong: int, right_fraction: float) -> tuple[int, int]:
    """(right, wrong) counts of the largest set with the given right fraction that the pools can supply."""
    eps = 1e-9  # 10 / 0.25 must be 40, not 39.999...
    limits = []
    if right_fraction > 0:
        limits.append(math.floor(available_right / right_fraction + eps))
    if right_fraction < 1:
        limits.append(math.floor(available_wrong / (1 - right_fraction) + eps))
    total = min(limits)
    n_right = min(available_right, round(total * right_fraction))
    n_wrong = min(available_wrong, total - n_right)
    return n_right, n_wrong
