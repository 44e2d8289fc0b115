"""MMLU-Pro (Wang et al., 2024): 12,032 questions in 14 categories, up to 10 options (A-J), 5-shot chain of thought.

Data: ``mmlu_pro/test.jsonl`` and ``mmlu_pro/validation.jsonl`` in the local mirror (rows as on the hub), else hub
``TIGER-Lab/MMLU-Pro`` splits ``test`` and ``validation``. Absent both, ``docs()`` raises ``DataMissing``.

Protocol of TIGER-Lab's ``evaluate_from_local.py`` (the paper's setting): options "N/A" dropped; the prompt is plain
text (no chat template) made of a header naming the category, the first ``num_fewshot`` (5) validation questions of
the same category with their chain-of-thought answers (``cot_content``, "A: Let's think step by step." turned into
"Answer: Let's think step by step."), then the question ending in "Answer: Let's think step by step."; greedy,
2048 new tokens, stop at "Question:". Header wording is ours. ``chat=True`` sends the same text as one user message.

Scoring: ``extract_mmlu_pro`` (the official cascade). ``accuracy`` (primary) counts any extracted letter;
``strict_accuracy`` only an explicit "answer is (X)". Differences from the official script, on purpose: when no
letter is found the item is wrong (the script credits a seeded random guess), and prompts are not shortened to fit
a context window (the script drops exemplars while the prompt exceeds 4096 - 2048 tokens).
"""
from __future__ import annotations

from typing import Any, Sequence

from pydantic import Field, field_validator

from harness.tasks.base import Doc, GenerationConfig, GenerationOptions, Scored, Task
from harness.tasks.data import resolve_jsonl
from harness.tasks.registry import register_task
from harness.tasks.scorers.choice import STRICT, extract_mmlu_pro, option_letters

HUB_DATASET = "TIGER-Lab/MMLU-Pro"
HEADER = (
    "Below are multiple-choice questions about {subject}, each followed by a worked answer. Reason step by step, "
    'then end with "The answer is (X)", where X is the letter of the correct option.\n'
)
COT_START = "Answer: Let's think step by step."


def clean_options(options: Sequence[str]) -> list[str]:
    return [o for o in options if o != "N/A"]


def format_question(row: dict[str, Any], with_answer: bool) -> str:
    options = clean_options(row["options"])
    text = "Question:\n" + row["question"] + "\nOptions:\n"
    text += "".join(f"{letter}. {opt}\n" for letter, opt in zip(option_letters(len(options)), options))
    if with_answer:
        return text + row["cot_content"].replace("A: Let's think step by step.", COT_START) + "\n\n"
    return text + COT_START


def build_prompt(row: dict[str, Any], exemplars: Sequence[dict[str, Any]]) -> str:
    prompt = HEADER.format(subject=row["category"]) + "\n"
    prompt += "".join(format_question(ex, with_answer=True) for ex in exemplars)
    return prompt + format_question(row, with_answer=False)


@register_task("mmlu_pro")
class MMLUPro(Task):
    description = "MMLU-Pro: 12,032 questions, 10 options, 5-shot chain of thought, 'the answer is (X)'"
    primary_metric = "accuracy"
    local_dir = "mmlu_pro"
    hf_dataset = HUB_DATASET
    generation = GenerationConfig(max_new_tokens=2048, stop=("Question:",))
    grader_version = "1"  # harness.tasks.scorers.choice.extract_mmlu_pro (the official cascade), no random guess
    grader_packages = ()

    class Options(GenerationOptions):
        num_fewshot: int = Field(5, ge=0, description="validation exemplars of the same category")
        chat: bool = Field(False, description="send the prompt as one user message instead of plain text")
        categories: tuple[str, ...] | None = Field(None, description="only these categories (default all)")

        @field_validator("categories", mode="before")
        @classmethod
        def _split(cls, v: Any) -> Any:
            if isinstance(v, str):
                return tuple(c.strip() for c in v.split(",") if c.strip())
            return v

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.num_fewshot = self.opts.num_fewshot
        self.chat = self.opts.chat
        self.categories = list(self.opts.categories) if self.opts.categories else None

    def docs(self) -> list[Doc]:
        test, _ = resolve_jsonl(self.name, "mmlu_pro/test.jsonl", HUB_DATASET, hub_split="test")
        val, _ = resolve_jsonl(self.name, "mmlu_pro/validation.jsonl", HUB_DATASET, hub_split="validation")
        shots: dict[str, list[dict[str, Any]]] = {}
        for ex in val:  # dataset order, as the official script's val_df[:k]
            shots.setdefault(ex["category"], []).append(ex)
        out = []
        for row in test:
            if self.categories and row["category"] not in self.categories:
                continue
            text = build_prompt(row, shots.get(row["category"], [])[: self.num_fewshot])
            n_options = len(clean_options(row["options"]))
            out.append(
                Doc(
                    id=str(row["question_id"]),
                    prompt=[{"role": "user", "content": text}] if self.chat else text,
                    gold=row["answer"],
                    meta={"category": row["category"], "src": row.get("src"), "n_options": n_options},
                )
            )
        return out

    def score(self, doc: Doc, responses: Sequence[str]) -> Scored:
        ext = extract_mmlu_pro(responses[0] if responses else "")
        metrics = {"accuracy": float(ext.letter == doc.gold),
                   "strict_accuracy": float(ext.how == STRICT and ext.letter == doc.gold)}
        details = {"how": ext.how, "extraction_failed": ext.letter is None, "category": doc.meta.get("category")}
        return Scored(id=doc.id, score=metrics["accuracy"], metrics=metrics, extracted=ext.letter, details=details)
