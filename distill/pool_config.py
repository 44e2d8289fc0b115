"""The training pool's settings (the ``pool:`` section of a run config), declared once: the config loader
(harness/config.py) uses this model as ``RunConfig.pool`` and the loader (harness/distill/pools.py) reads it as
it is, so a rule about the pool holds in one place.

Pure pydantic (as train_config.py), so that loading a config imports no pool loader.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

BUILTIN_POOLS = ("synthetic", "math_train", "gsm8k_train")


def check_source(source: str) -> None:
    if source in BUILTIN_POOLS:
        return
    if source.startswith("hf:") and len(source) > 3:
        return
    if source.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz")):
        return
    raise ValueError(f"unknown pool source {source!r}; use {', '.join(BUILTIN_POOLS)}, hf:<dataset id or local "
                     "dataset folder> or a .jsonl file path")


class DecontaminationConfig(BaseModel):
    """Pool questions that overlap any evaluation set of the run are removed before sampling."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    #: Word n-gram length: a pool question sharing one n-gram with an evaluation prompt is removed (13, as in
    #: GPT-3's and Tulu's decontamination). Questions shorter than n words are checked by exact containment.
    ngram: int = Field(13, ge=4)


class PoolConfig(BaseModel):
    """The training questions."""

    model_config = ConfigDict(extra="forbid")

    #: synthetic | math_train | gsm8k_train (local mirror) | hf:<dataset id or local dataset folder> |
    #: a JSONL file path (*.jsonl / *.json).
    source: str = "synthetic"
    n: int = Field(400, ge=1)
    seed: int = 0
    #: Held out from training, evaluated as the task `pool_validation` (checkpoint selection never uses a test set).
    validation_n: int = Field(0, ge=0)
    #: hf: and JSONL pools: the split and subset (hf only), and which fields hold what.
    split: str = "train"
    subset: str | None = None
    question_field: str = "question"
    #: The reference solution y* (sft's target); its last \boxed{} is the gold answer unless answer_field is set.
    solution_field: str | None = "answer"
    answer_field: str | None = None
    id_field: str | None = None
    #: Critique data given with the pool (hf: and JSONL pools): the fields holding a student answer y' and a
    #: critique c of it (e.g. TIGER-Lab/WebInstruct-CFT's input/output split into them), for methods trained on
    #: given critiques (cft_star). Both or neither.
    student_answer_field: str | None = None
    critique_field: str | None = None
    #: synthetic pool only (other pools: always "gold"). gold: y* is the full correct solution. web: y* is noisy or
    #: terse the way
    #: web-mined answers are (~20% a slip carried to a wrong final answer, ~50% final answer or a one-line
    #: sketch only, the rest full correct working; seeded per item from pool.seed); gold_answer stays true.
    answer_style: Literal["gold", "web"] = "gold"
    decontaminate: DecontaminationConfig = Field(default_factory=DecontaminationConfig)

    @field_validator("source")
    @classmethod
    def _known_source(cls, v: str) -> str:
        check_source(v)
        return v

    @model_validator(mode="after")
    def _web_is_synthetic_only(self) -> "PoolConfig":
        # Real pools keep their own reference answers: web-style noise is how the synthetic pool imitates them.
        # Normalised, not refused, so that pool.source=... works on the default config; the manifest records it.
        if self.source != "synthetic":
            self.answer_style = "gold"
        return self
