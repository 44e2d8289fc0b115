"""MuSR (multistep soft reasoning), scored by log-likelihood like the Open LLM Leaderboard's ``leaderboard_musr``
in lm-evaluation-harness.

Prompt: lm-eval's ``leaderboard/musr/utils.doc_to_text`` -- narrative, question, numbered choices ("1 - ...") and
``Answer:``; each choice is scored as the continuation ``" " + choice``. Metrics as lm-eval's multiple-choice
``acc`` (argmax of summed log-likelihood) and ``acc_norm`` (argmax of log-likelihood divided by the choice's length
in characters); the leaderboard reports ``acc_norm``, so ``accuracy_norm`` is primary. The group score, like
lm-eval's ``leaderboard_musr`` (``weight_by_size: true``), is the mean over all questions.

Data, most complete source first: the full MuSR files in the local mirror (``murder_mystery.json``, ...), else the
hub dataset ``TAUR-Lab/MuSR``, else the small viewer subsets in the local mirror (``small_*.json``: 30 questions,
for smoke tests only; every doc then carries ``meta["partial"] = True`` and ``full_size()`` returns the real size
of the selected subsets, 756 for all three, so the harness marks the results partial).

Sizes of the full benchmark (Sprague et al., 2024, and the hub dataset card): 250 murder mysteries, 256 object
placements, 250 team allocations = 756 questions.
"""
from __future__ import annotations

import ast
import json
from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from pydantic import Field, field_validator

from harness.tasks.base import Doc, OutputType, Scored, Task, TaskOptions
from harness.tasks.data import DataMissing, data_dir, hub_allowed, hub_off_reason, load_hub, local_path
from harness.tasks.registry import register_task

HUB_DATASET = "TAUR-Lab/MuSR"
SUBSETS: tuple[str, ...] = ("murder_mysteries", "object_placements", "team_allocation")  # the hub's split names
FULL_FILES = {"murder_mysteries": "murder_mystery.json", "object_placements": "object_placements.json",
              "team_allocation": "team_allocation.json"}  # names in the MuSR GitHub repo's datasets/
SMALL_FILES = {k: f"small_{v}" for k, v in FULL_FILES.items()}
FULL_SIZES = {"murder_mysteries": 250, "object_placements": 256, "team_allocation": 250}

PROMPT = "{narrative}\n\n{question}\n\n{choices}\nAnswer:"  # lm-eval leaderboard_musr DOC_TO_TEXT


def musr_prompt(narrative: str, question: str, choices: Sequence[str]) -> str:
    numbered = "".join(f"{i + 1} - {c}\n" for i, c in enumerate(choices))
    return PROMPT.format(narrative=narrative, question=question, choices=numbered)


def mc_accuracies(loglikelihoods: Sequence[float], choices: Sequence[str], gold: int) -> tuple[float, float]:
    """(acc, acc_norm) exactly as lm-eval's ConfigurableTask.process_results for multiple_choice: np.argmax (ties
    to the first), acc_norm dividing by ``len(choice)`` in characters (the choice without the leading space)."""
    lls = np.array(loglikelihoods, dtype=float)
    lengths = np.array([float(len(c)) for c in choices])
    return float(np.argmax(lls) == gold), float(np.argmax(lls / lengths) == gold)


def _flatten(narratives: list[dict]) -> list[dict[str, Any]]:
    """The MuSR repo's structure ({context, questions: [{question, choices, answer}]}) as one row per question."""
    return [{"narrative": n["context"], "question": q["question"], "choices": list(q["choices"]),
             "answer": int(q["answer"])} for n in narratives for q in n["questions"]]


def _from_hub(row: dict) -> dict[str, Any]:
    choices = row["choices"]
    choices = ast.literal_eval(choices) if isinstance(choices, str) else list(choices)  # the hub stores a repr
    answer = row.get("answer_index")
    if answer is None:
        answer = choices.index(row["answer_choice"])
    return {"narrative": row["narrative"], "question": row["question"], "choices": choices, "answer": int(answer)}


def load_subset(subset: str, allow_partial: bool = True) -> tuple[list[dict[str, Any]], str, bool]:
    """(rows, source, partial) for one subset."""
    p = local_path("musr", FULL_FILES[subset])
    if p is not None:
        return _flatten(json.loads(p.read_text(encoding="utf-8"))), f"local:{p}", False
    hub_error: DataMissing | None = None
    if hub_allowed(HUB_DATASET):
        try:
            return [_from_hub(r) for r in load_hub("musr", HUB_DATASET, split=subset)], f"hub:{HUB_DATASET}", False
        except DataMissing as e:  # network down: the viewer subset below is still better than nothing
            hub_error = e
    small = local_path("musr", SMALL_FILES[subset])
    if small is not None and allow_partial:
        return _flatten(json.loads(small.read_text(encoding="utf-8"))), f"local:{small}", True
    root = data_dir()
    where = f"{root / 'musr' / FULL_FILES[subset]}" if root else f"$HARNESS_DATA_DIR/musr/{FULL_FILES[subset]}"
    note = "; the small viewer subset is there but allow_partial=False" if small is not None else ""
    if hub_error is not None:
        raise hub_error
    raise DataMissing(
        f"data for task 'musr' ({subset}) not found; looked in: {where} (local mirror); hub dataset {HUB_DATASET}"
        + ("" if hub_allowed(HUB_DATASET) else f" ({hub_off_reason()})") + note
        + "; fix: put the MuSR repo's datasets/*.json under HARNESS_DATA_DIR/musr or allow hub access"
    )


@register_task("musr")
class MuSR(Task):
    """MuSR, three subsets. Options: ``subsets`` (list or comma-separated), ``allow_partial`` (default True: fall
    back to the 30-question viewer subsets when neither the full files nor the hub are available)."""

    description = "MuSR (murder mysteries, object placements, team allocation), log-likelihood, acc_norm as lm-eval"
    output_type = OutputType.MULTIPLE_CHOICE
    primary_metric = "accuracy_norm"
    local_dir = "musr"
    hf_dataset = HUB_DATASET
    grader_version = "1"  # lm-eval multiple-choice acc / acc_norm (length in characters), weight_by_size group
    grader_packages = ()

    class Options(TaskOptions):
        subsets: tuple[str, ...] = Field(SUBSETS, description="subsets to evaluate (default all three)")
        allow_partial: bool = Field(True, description="fall back to the 30-question viewer subsets")

        @field_validator("subsets", mode="before")
        @classmethod
        def _subsets(cls, v: Any) -> Any:
            if v is None or v == "" or v == []:
                return SUBSETS
            if isinstance(v, str):
                v = [s.strip() for s in v.split(",") if s.strip()]
            if isinstance(v, (list, tuple)):
                bad = [s for s in v if s not in SUBSETS]
                if bad:
                    raise ValueError(f"unknown subset(s) {bad}; choose from: {', '.join(SUBSETS)}")
                return tuple(dict.fromkeys(v))
            return v

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.subsets: list[str] = list(self.opts.subsets)
        self.allow_partial = self.opts.allow_partial
        self._docs: list[Doc] | None = None

    def docs(self) -> list[Doc]:
        if self._docs is not None:
            return list(self._docs)
        out: list[Doc] = []
        for subset in self.subsets:
            rows, source, partial = load_subset(subset, self.allow_partial)
            for i, r in enumerate(rows):
                out.append(Doc(
                    id=f"{subset}/{i}",
                    prompt=musr_prompt(r["narrative"], r["question"], r["choices"]),
                    gold=r["answer"],
                    choices=[" " + c for c in r["choices"]],
                    meta={"subset": subset, "answer_choice": r["choices"][r["answer"]], "source": source,
                          "partial": partial},
                ))
        self._docs = out
        return list(out)

    def full_size(self) -> int | None:
        """The full benchmark's size for the selected subsets (756 for all three) when only the viewer subsets
        were loaded; None when the docs are the full data."""
        if any(d.meta.get("partial") for d in self.docs()):
            return sum(FULL_SIZES[s] for s in self.subsets)
        return None

    def counts(self) -> dict[str, int]:
        """Questions per subset in the data actually loaded (the full benchmark has 250 / 256 / 250)."""
        per: dict[str, int] = defaultdict(int)
        for d in self.docs():
            per[d.meta["subset"]] += 1
        return dict(per)

    def score_loglikelihoods(self, doc: Doc, loglikelihoods: Sequence[tuple[float, bool]]) -> Scored:
        choices = doc.choices or []
        if len(loglikelihoods) != len(choices):
            raise ValueError(f"musr {doc.id}: got {len(loglikelihoods)} log-likelihoods for {len(choices)} choices; "
                             "pass one (logprob, is_greedy) per choice in order")
        lls = [x[0] for x in loglikelihoods]
        raw = [c[1:] for c in choices]  # lm-eval normalises by the choice text, without the delimiter space
        acc, acc_norm = mc_accuracies(lls, raw, int(doc.gold))
        return Scored(id=doc.id, score=acc_norm, metrics={"accuracy": acc, "accuracy_norm": acc_norm},
                      extracted=int(np.argmax(np.array(lls) / np.array([float(len(c)) for c in raw]))))

    def aggregate(self, scored: Sequence[Scored]) -> dict[str, float]:
        by_subset: dict[str, list[Scored]] = defaultdict(list)
        for s in scored:
            by_subset[s.id.split("/", 1)[0]].append(s)
        out: dict[str, float] = {}
        for metric in ("accuracy", "accuracy_norm"):
            total = 0.0
            for subset, items in sorted(by_subset.items()):
                vals = [s.metrics.get(metric, s.score) for s in items]
                out[f"{metric}/{subset}"] = sum(vals) / len(vals)
                total += sum(vals)
            if scored:
                out[metric] = total / len(scored)  # lm-eval leaderboard_musr group: weight_by_size
        return out
