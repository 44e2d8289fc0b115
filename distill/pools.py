"""Training-question pools: where the x (and y*) of every method come from.

- synthetic: the embedded arithmetic word problems (harness.tasks.synthetic_problems), for the tiny default.
- math_train: the 7,500-problem MATH train split (local mirror math_train/train.jsonl); gold = last \\boxed{}.
- gsm8k_train: GSM8K train (7,473); gold after '####', calculator annotations removed from the solution.
- ``hf:<dataset id>``: any dataset through ``datasets.load_dataset`` (the paper's pool is
  ``hf:TIGER-Lab/WebInstructSub``); ``hf:<local folder>`` loads a local copy the same way.
- a JSONL file path: loaded with ``datasets.load_dataset("json", data_files=path)``.
For hf and JSONL pools the pool settings (``PoolConfig`` of harness/distill/pool_config.py: the config's ``pool:``
section, read as it is) name the question / solution / answer / id fields; the gold answer is the answer field,
else the solution's last \\boxed{}, else none (then no correctness check is possible).

Decontamination: a candidate question is dropped when, after normalisation (lower case, punctuation removed),
it shares one word n-gram (13 by default) with an evaluation prompt of the run, or, when shorter than n words,
appears whole inside one. Candidates are walked in the pool's shuffled order until n clean ones are found, so an
uncontaminated pool is exactly the sample it was before. Evaluation sets are never pools.
"""
from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from harness.common.files import read_jsonl
from harness.common.units import PoolReport
from harness.distill.pool_config import PoolConfig, check_source  # noqa: F401  (check_source: re-exported)
from harness.distill.items import GivenCritique, ItemMeta, TrainItem
from harness.tasks.data import missing, local_path
from harness.tasks.scorers.extract import last_boxed
from harness.tasks.synthetic_problems import ID_STEPS, pool_problems
from harness.tasks.synthetic_web import ANSWER_STYLES, web_solutions

#: The paper's training pool (CGD and CFT both sample WebInstruct questions).
WEBINSTRUCT = "hf:TIGER-Lab/WebInstructSub"


class PoolError(ValueError):
    """A pool that cannot be loaded as configured; the message is one line with the fix."""


# ---- decontamination -------------------------------------------------------------------------------------
_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalise(text: str) -> list[str]:
    """Lower-case words with punctuation and LaTeX markup characters removed."""
    return _NON_WORD.sub(" ", text.lower()).split()


def prompt_text(prompt: Any) -> str:
    """The text a model is shown for a Doc prompt: the user turns of a chat, or the string itself."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(m.get("content", "") for m in prompt if m.get("role") != "system")


class Decontaminator:
    """Word n-gram index over evaluation texts. Texts are split at blank lines and deduplicated first, so the
    few-shot exemplars every prompt of a task repeats are indexed once."""

    def __init__(self, texts_by_task: Mapping[str, Iterable[str]], n: int = 13) -> None:
        self.n = n
        self.tasks = list(texts_by_task)
        self._grams: dict[int, str] = {}
        self._chunks: list[tuple[str, str]] = []  # (" normalised chunk ", task) for short-question containment
        seen: set[str] = set()
        for task, texts in texts_by_task.items():
            for text in texts:
                for chunk in re.split(r"\n\s*\n", text):
                    words = normalise(chunk)
                    key = " ".join(words)
                    if not key or key in seen:
                        continue
                    seen.add(key)
                    self._chunks.append((f" {key} ", task))
                    for i in range(len(words) - n + 1):
                        self._grams.setdefault(hash(" ".join(words[i : i + n])), task)

    def match(self, question: str) -> tuple[str, str] | None:
        """(task, rule) of the first overlap, rule = 'ngram' or 'exact'; None when clean."""
        words = normalise(question)
        if not words:
            return None
        if len(words) >= self.n:
            for i in range(len(words) - self.n + 1):
                task = self._grams.get(hash(" ".join(words[i : i + self.n])))
                if task is not None:
                    return task, "ngram"
            return None
        q = f" {' '.join(words)} "
        for chunk, task in self._chunks:
            if q in chunk:
                return task, "exact"
        return None


# ---- sources ------------------------------------------------------------------------------------------
def synthetic_pool(n: int, seed: int = 0, steps: Sequence[int] = ID_STEPS,
                   answer_style: str = "gold") -> list[TrainItem]:
    """Training questions (never an evaluation question) with reference solutions and the structured problem.

    answer_style gold: y* (gold_solution) is the full correct solution. web: y* is noisy or terse the way
    web-mined answers are (harness.tasks.synthetic_web.web_solution, seeded per item from the pool seed; the kind is in
    meta.web_kind); gold_answer is the true answer either way (graders use it).
    """
    if answer_style not in ANSWER_STYLES:
        raise ValueError(f"unknown pool.answer_style {answer_style!r}; use one of {', '.join(ANSWER_STYLES)}")
    problems = pool_problems(n, seed, steps)
    if answer_style == "gold":
        return [
            TrainItem(id=f"synthetic-pool/{seed}/{i}", question=p.question, gold_solution=p.gold_solution(),
                      gold_answer=str(p.answer), meta=ItemMeta(task="synthetic", problem=p.to_meta()))
            for i, p in enumerate(problems)
        ]
    return [
        TrainItem(id=f"synthetic-pool/{seed}/{i}", question=p.question, gold_solution=text,
                  gold_answer=str(p.answer), meta=ItemMeta(task="synthetic", problem=p.to_meta(),
                                                           answer_style=answer_style, web_kind=kind))
        for i, (p, (kind, text)) in enumerate(zip(problems, web_solutions(problems, seed)))
    ]


def math_train_candidates() -> list[TrainItem]:
    path = local_path("math_train", "train.jsonl")
    if path is None:
        raise missing("math_train (pool)", "math_train/train.jsonl", None)
    items = []
    for row in read_jsonl(path):
        gold = last_boxed(row["solution"])
        if gold is None:  # a handful of solutions have no box; they cannot be graded
            continue
        items.append(TrainItem(id=row["unique_id"], question=row["problem"], gold_solution=row["solution"],
                               gold_answer=gold, meta=ItemMeta(level=row["level"], type=row["type"])))
    return items


def gsm8k_train_candidates() -> list[TrainItem]:
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
    return items


def load_rows(spec: PoolConfig):
    """The pool's rows as a ``datasets.Dataset`` (hf: ids, local dataset folders, JSONL files)."""
    import datasets

    src = spec.source
    target = src[3:] if src.startswith("hf:") else src
    local = Path(target).expanduser()
    try:
        if local.is_file():
            return datasets.load_dataset("json", data_files=str(local), split="train")
        if local.is_dir():
            if (local / "state.json").exists() or (local / "dataset_dict.json").exists():
                ds = datasets.load_from_disk(str(local))
                return ds[spec.split] if isinstance(ds, datasets.DatasetDict) else ds
            return datasets.load_dataset(str(local), name=spec.subset, split=spec.split)
        if not src.startswith("hf:"):
            raise PoolError(f"pool file {src} not found; pass an existing JSONL file or hf:<dataset id>")
        return datasets.load_dataset(target, name=spec.subset, split=spec.split)
    except PoolError:
        raise
    except Exception as e:  # offline, unknown id, bad split: one line with the fix
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise PoolError(f"pool {src} (split {spec.split!r}) could not be loaded: {first}; fix: allow hub access, "
                        "or download it and pass hf:<local folder> or a JSONL file") from None


def _row_item(spec: PoolConfig, row: Mapping[str, Any], index: int) -> TrainItem:
    question = row[spec.question_field]
    solution = str(row[spec.solution_field] or "") if spec.solution_field else ""
    if spec.answer_field:
        gold = str(row[spec.answer_field] or "").strip()
    else:
        gold = (last_boxed(solution) or "").strip()
    rid = str(row[spec.id_field]) if spec.id_field else f"{spec.source}/{spec.split}/{index}"
    meta = ItemMeta(row=index)
    if spec.student_answer_field and spec.critique_field:
        meta.given = GivenCritique(answer=str(row[spec.student_answer_field] or ""),
                                   critique=str(row[spec.critique_field] or ""))
    return TrainItem(id=rid, question=str(question), gold_solution=solution, gold_answer=gold, meta=meta)


def _check_fields(spec: PoolConfig, columns: Sequence[str]) -> None:
    for key in ("question_field", "solution_field", "answer_field", "id_field", "student_answer_field",
                "critique_field"):
        name = getattr(spec, key)
        if name is not None and name not in columns:
            raise PoolError(f"pool {spec.source}: pool.{key}={name!r} is not a column; its columns are "
                            f"{', '.join(columns)}")


def candidates(spec: PoolConfig) -> tuple[int, Callable[[int], TrainItem]]:
    """(number of candidate rows, row index -> TrainItem) for non-synthetic sources; rows are read lazily."""
    if spec.source == "math_train":
        items = math_train_candidates()
        return len(items), items.__getitem__
    if spec.source == "gsm8k_train":
        items = gsm8k_train_candidates()
        return len(items), items.__getitem__
    ds = load_rows(spec)
    _check_fields(spec, ds.column_names)
    return len(ds), lambda i: _row_item(spec, ds[i], i)


def _walk(order: Iterator[int], get: Callable[[int], TrainItem], n: int, report: PoolReport,
          check: Callable[[str], tuple[str, str] | None] | None) -> list[TrainItem]:
    out: list[TrainItem] = []
    for i in order:
        if len(out) >= n:
            break
        it = get(i)
        report.examined += 1
        if not it.question.strip():
            continue
        hit = check(it.question) if check else None
        if hit:
            task, rule = hit
            report.removed += 1
            report.removed_by_task[task] = report.removed_by_task.get(task, 0) + 1
            report.removed_by_rule[rule] = report.removed_by_rule.get(rule, 0) + 1
            if len(report.removed_examples) < 20:
                report.removed_examples.append({"id": it.id, "task": task, "rule": rule})
            continue
        out.append(it)
    report.kept = len(out)
    return out


def load_pool_spec(spec: PoolConfig, decontaminator: Decontaminator | None = None) -> tuple[list[TrainItem],
                                                                                         PoolReport]:
    """n training questions, shuffled by the seed, with those overlapping an evaluation set removed."""
    report = PoolReport(source=spec.source)
    if spec.source == "synthetic":
        items = synthetic_pool(spec.n, seed=spec.seed, answer_style=spec.answer_style)
        report.candidates = report.examined = report.kept = len(items)
        report.decontamination = "not needed (synthetic questions are disjoint from the evaluation sets)"
        return items, report
    if (spec.student_answer_field is None) != (spec.critique_field is None):
        raise PoolError("critique data given with the pool needs both pool.student_answer_field and "
                        "pool.critique_field (the y' and the c of each row); set both or neither")
    if spec.critique_field and spec.source in ("math_train", "gsm8k_train"):
        raise PoolError(f"pool {spec.source} has no critique fields; given critiques need a hf: or JSONL pool")
    total, get = candidates(spec)
    report.candidates = total
    if decontaminator is not None:
        report.decontamination, report.ngram, report.against = "on", decontaminator.n, decontaminator.tasks
    order = list(range(total))
    random.Random(spec.seed).shuffle(order)  # the same order the pools always had
    items = _walk(iter(order), get, spec.n, report, decontaminator.match if decontaminator else None)
    return items, report


def load_pool(source: str, n: int, seed: int) -> list[TrainItem]:
    """A builtin or hf/JSONL pool with default fields and no decontamination (kept for callers and tests)."""
    return load_pool_spec(PoolConfig(source=source, n=n, seed=seed))[0]


def math_train_pool(n: int, seed: int) -> list[TrainItem]:
    return load_pool("math_train", n, seed)


def gsm8k_train_pool(n: int, seed: int) -> list[TrainItem]:
    return load_pool("gsm8k_train", n, seed)


def split_validation(items: list[TrainItem], validation_n: int) -> tuple[list[TrainItem], list[TrainItem]]:
    """(train, validation): the last validation_n items are held out (pools are already shuffled)."""
    if validation_n <= 0:
        return items, []
    if validation_n >= len(items):
        raise ValueError(f"pool.validation_n={validation_n} leaves no training items; lower it or raise pool.n")
    return items[:-validation_n], items[-validation_n:]
