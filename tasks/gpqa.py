"""GPQA Diamond (Rein et al., 2023): 198 graduate-level multiple-choice questions (A-D), free-text answers.

Data: ``gpqa/gpqa_diamond.zip`` in the local mirror (password-protected on purpose; read in memory, never written
out), else hub ``Idavidrein/gpqa`` config ``gpqa_diamond`` (gated: needs an accepted licence and a token).
The questions must not appear in plain text in results, reports or logs: ``sensitive = True``, and Doc.id / meta
hold only the Record ID, the domain and the gold letter.

Options are shuffled per question with a fixed seed: the order sorts the four options by
sha256("gpqa-shuffle:<seed>:<Record ID>:<option index>"), so it is the same in every run and process, needs no
Python RNG, and the correct letter is spread evenly over A-D. ``shuffle_seed`` (default 0) picks another order.

Prompts (our wording) ask for step-by-step reasoning ending with "The answer is (X)".
- ``num_fewshot=0`` (default; CFT's setting): one user message, 198 scored questions.
- ``num_fewshot=5`` (CGD's LLaMA setting): only the diamond file is available here, so the exemplars are diamond
  questions themselves: the 5 with the lowest sha256("gpqa-fewshot:<Record ID>"). Each exemplar is a user/assistant
  turn whose answer is the question's own expert Explanation followed by "The answer is (X)". These exemplars are
  EXCLUDED from the scored set, which then has 193 questions (scores are not comparable to 198-question runs
  item-for-item; the report should say so).

Metrics: ``accuracy`` (primary) uses the flexible extraction of ``harness.tasks.scorers.choice`` (an explicit
"answer is (X)" first, then fallbacks); ``strict_accuracy`` counts only an explicit "answer is (X)" statement.
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from typing import Any, Sequence

from pydantic import Field

from harness.tasks.base import Doc, GenerationConfig, GenerationOptions, Scored, Task
from harness.tasks.data import DataMissing, hub_allowed, load_hub, local_path, missing
from harness.tasks.registry import register_task
from harness.tasks.scorers.choice import extract_flexible, extract_strict, option_letters

LOCAL_ZIP = "gpqa/gpqa_diamond.zip"
ZIP_MEMBER = "gpqa_diamond.jsonl"
# Published by the GPQA authors in their README; the archive is encrypted against crawling, not against readers.
ZIP_PASSWORD = b"deserted-untouched-burrito"
HUB_DATASET = "Idavidrein/gpqa"
HUB_CONFIG = "gpqa_diamond"
N_ROWS = 198
LETTERS = option_letters(4)
OPTION_KEYS = ("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")

INSTRUCTION = (
    "Answer the multiple-choice question below. Work through it step by step, then give your final answer on "
    'its own line as "The answer is (X)", where X is A, B, C or D.'
)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def shuffled_options(row: dict[str, Any], seed: int = 0) -> tuple[list[str], str]:
    """(the four option texts in their fixed shuffled order, the letter of the correct one)."""
    rid = row["Record ID"]
    order = sorted(range(4), key=lambda i: _sha(f"gpqa-shuffle:{seed}:{rid}:{i}"))
    options = [str(row[OPTION_KEYS[i]]).strip() for i in order]
    return options, LETTERS[order.index(0)]


def format_question(row: dict[str, Any], options: list[str]) -> str:
    lines = [INSTRUCTION, "", "Question: " + str(row["Question"]).strip(), ""]
    lines += [f"({letter}) {text}" for letter, text in zip(LETTERS, options)]
    return "\n".join(lines)


def fewshot_ids(rows: Sequence[dict[str, Any]], k: int) -> list[str]:
    """Record IDs of the k exemplars: lowest sha256 of the id, so the choice does not depend on file order."""
    return sorted((r["Record ID"] for r in rows), key=lambda rid: _sha(f"gpqa-fewshot:{rid}"))[:k]


def load_rows(task: str = "gpqa_diamond") -> list[dict[str, Any]]:
    """All 198 rows, from the encrypted local zip (in memory) or the gated hub dataset."""
    p = local_path(LOCAL_ZIP)
    if p is not None:
        text = zipfile.ZipFile(p).read(ZIP_MEMBER, pwd=ZIP_PASSWORD).decode("utf-8")
        # "\n" only: some fields hold Unicode line separators that str.splitlines() would split on.
        rows = [json.loads(line) for line in text.split("\n") if line.strip()]
    else:
        if not hub_allowed(HUB_DATASET):
            raise missing(task, LOCAL_ZIP, HUB_DATASET)
        try:
            rows = load_hub(task, HUB_DATASET, config=HUB_CONFIG, split="train")
        except DataMissing as e:
            raise DataMissing(f"{e}; note: {HUB_DATASET} is gated: accept its terms on the hub and set HF_TOKEN") from e
    if len(rows) != N_ROWS:
        raise DataMissing(f"GPQA Diamond should have {N_ROWS} rows, found {len(rows)}; fix: restore the original "
                          f"{LOCAL_ZIP} (see its SOURCE.md)")
    return rows


@register_task("gpqa_diamond")
class GPQADiamond(Task):
    description = "GPQA Diamond: 198 expert multiple-choice questions, shuffled A-D, 'The answer is (X)'"
    primary_metric = "accuracy"
    local_dir = "gpqa"
    hf_dataset = HUB_DATASET
    sensitive = True
    generation = GenerationConfig(max_new_tokens=2048)
    grader_version = "1"  # harness.tasks.scorers.choice: flexible and strict "The answer is (X)" extraction, A-D
    grader_packages = ()

    class Options(GenerationOptions):
        num_fewshot: int = Field(0, ge=0, le=5, description="exemplars (diamond questions, excluded from scoring)")
        shuffle_seed: int = Field(0, description="seed of the per-question option order")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.num_fewshot = self.opts.num_fewshot
        self.shuffle_seed = self.opts.shuffle_seed

    def _fewshot_messages(self, exemplars: list[dict[str, Any]]) -> list[dict[str, str]]:
        msgs = []
        for row in exemplars:
            options, letter = shuffled_options(row, self.shuffle_seed)
            explanation = str(row.get("Explanation") or "").strip()
            answer = (explanation + "\n\n" if explanation else "") + f"The answer is ({letter})."
            msgs += [{"role": "user", "content": format_question(row, options)},
                     {"role": "assistant", "content": answer}]
        return msgs

    def docs(self) -> list[Doc]:
        rows = load_rows(self.name)
        shot_ids = fewshot_ids(rows, self.num_fewshot)
        by_id = {r["Record ID"]: r for r in rows}
        prefix = self._fewshot_messages([by_id[i] for i in shot_ids])
        out = []
        for row in rows:
            if row["Record ID"] in shot_ids:
                continue  # an exemplar is never scored
            options, letter = shuffled_options(row, self.shuffle_seed)
            out.append(
                Doc(
                    id=str(row["Record ID"]),
                    prompt=prefix + [{"role": "user", "content": format_question(row, options)}],
                    gold=letter,
                    meta={"domain": row.get("High-level domain"), "subdomain": row.get("Subdomain"),
                          "num_fewshot": self.num_fewshot},
                )
            )
        return out

    def score(self, doc: Doc, responses: Sequence[str]) -> Scored:
        response = responses[0] if responses else ""
        flexible = extract_flexible(response, 4)
        strict = extract_strict(response, 4)
        metrics = {"accuracy": float(flexible.letter == doc.gold), "strict_accuracy": float(strict.letter == doc.gold)}
        details = {"how": flexible.how, "strict_letter": strict.letter, "extraction_failed": flexible.letter is None}
        return Scored(id=doc.id, score=metrics["accuracy"], metrics=metrics, extracted=flexible.letter,
                      details=details)
