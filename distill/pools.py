"""Training-question pools: where the x (and y*) of every method come from.

- synthetic: the embedded arithmetic word problems (tasks.synthetic), for the tiny default.
- math_train: the 7,500-problem MATH train split (local mirror math_train/train.jsonl); gold = last \\boxed{}.
- gsm8k_train: GSM8K train (7,473); gold after '####', calculator annotations removed from the solution.
Evaluation sets are never pools (BBH etc. carry canary strings; MATH-500 is a test set).
"""
from __future__ import annotations

import random
import re
from typing import Sequence

from common.files import read_jsonl
from distill.items import TrainItem
from tasks.data import missing, local_path
from tasks.scorers.extract import last_boxed
from tasks.synthetic import ID_STEPS, pool_problems


def _sample(items: list[TrainItem], n: int, seed: int) -> list[TrainItem]:
    rng = random.Random(seed)
    picked = list(items)
    rng.shuffle(picked)
    return picked[:n]


def synthetic_pool(n: int, seed: int = 0, steps: Sequence[int] = ID_STEPS) -> list[TrainItem]:
    """Training questions (never an evaluation question) with gold solutions and the structured problem."""
    return [
        TrainItem(id=f"synthetic-pool/{seed}/{i}", question=p.question, gold_solution=p.gold_solution(),
                  gold_answer=str(p.answer), meta={"task": "synthetic", "problem": p.to_meta()})
        for i, p in enumerate(pool_problems(n, seed, steps))
    ]


def math_train_pool(n: int, seed: int) -> list[TrainItem]:
    path = local_path("math_train", "train.jsonl")
    if path is None:
        raise missing("math_train (pool)", "math_train/train.jsonl", None)
    items = []
    for row in read_jsonl(path):
        gold = last_boxed(row["solution"])
        if gold is None:  # a handful of solutions have no box; they cannot be graded
            continue
        items.append(TrainItem(id=row["unique_id"], question=row["problem"], gold_solution=row["solution"],
                               gold_answer=gold, meta={"level": row["level"], "type": row["type"]}))
    return _sample(items, n, seed)


def gsm8k_train_pool(n: int, seed: int) -> list[TrainItem]:
    path = local_path("gsm8k", "train.jsonl")
    if path is None:
        raise missing("gsm8k_train (pool)", "gsm8k/train.jsonl", None)
    items = []
    for i, row in enumerate(read_jsonl(path)):
        body, _, gold = row["answer"].rpartition("####")
        gold = gold.strip().replace(",", "")
        body = re.sub(r"<<[^>]*>>", "", body).strip()  # drop the <<48/2=24>> calculator annotations
        items.append(TrainItem(id=f"gsm8k_train/{i}", question=row["question"],
                               gold_solution=f"{body}\nThe answer is \\boxed{{{gold}}}.", gold_answer=gold))
    return _sample(items, n, seed)


def load_pool(source: str, n: int, seed: int) -> list[TrainItem]:
    if source == "synthetic":
        return synthetic_pool(n, seed=seed)
    if source == "math_train":
        return math_train_pool(n, seed)
    if source == "gsm8k_train":
        return gsm8k_train_pool(n, seed)
    raise ValueError(f"unknown pool source {source!r}; use synthetic, math_train or gsm8k_train")


def split_validation(items: list[TrainItem], validation_n: int) -> tuple[list[TrainItem], list[TrainItem]]:
    """(train, validation): the last validation_n items are held out (pools are already shuffled)."""
    if validation_n <= 0:
        return items, []
    if validation_n >= len(items):
        raise ValueError(f"pool.validation_n={validation_n} leaves no training items; lower it or raise pool.n")
    return items[:-validation_n], items[-validation_n:]
