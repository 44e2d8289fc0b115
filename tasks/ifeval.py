"""IFEval (Zhou et al., 2023): 541 prompts with verifiable instructions ("answer in all capital letters", ...).

Data: ``ifeval/input_data.jsonl`` in the local mirror, else hub ``google/IFEval`` (split ``train``). The raw prompt
is the only user message. Scoring calls lm-evaluation-harness's own IFEval code
(``lm_eval.tasks.ifeval.utils.process_results``), so per-sample values are lm-eval's, with lm-eval's metric names:

- ``prompt_level_strict_acc`` (primary), ``prompt_level_loose_acc``: 1 if every instruction is followed;
- ``inst_level_strict_acc``, ``inst_level_loose_acc``: per sample, the fraction of the prompt's instructions
  followed; the raw per-instruction lists are kept in ``details`` and ``aggregate`` flattens them like lm-eval's
  ``agg_inst_level_acc`` (so the task-level value weights prompts by their number of instructions, as lm-eval does,
  and is not the mean of the per-sample fractions).

The checkers need NLTK's ``punkt_tab``: looked up on NLTK_DATA / nltk.data.path; downloaded only when hub access is
allowed. Two sources of randomness inside lm-eval's checkers are pinned so a response always gets the same
verdict: ``langdetect`` is seeded, and Python's global ``random`` is seeded per prompt (from its key) around each
check, because lm-eval draws a random letter when an instruction's letter is not a letter (keys 1122 and 1129 ask
for '#' and '!'); the caller's random state is restored afterwards.
"""
from __future__ import annotations

import contextlib
import os
import random
import sys
from typing import Any, Sequence

from harness.tasks.base import Doc, GenerationConfig, GenerationOptions, Scored, Task
from harness.tasks.data import DataMissing, hub_allowed, resolve_jsonl
from harness.tasks.registry import register_task

PROMPT_METRICS = ("prompt_level_strict_acc", "prompt_level_loose_acc")
INST_METRICS = ("inst_level_strict_acc", "inst_level_loose_acc")

_lm_eval_utils: Any = None


def ensure_punkt_tab() -> None:
    """Make NLTK's punkt_tab findable, downloading it only when the network is allowed; else a one-line error."""
    import nltk

    # NLTK reads NLTK_DATA once, at import; honour a value set after nltk was first imported.
    for p in filter(None, os.environ.get("NLTK_DATA", "").split(os.pathsep)):
        if p not in nltk.data.path:
            nltk.data.path.insert(0, p)
    try:
        nltk.data.find("tokenizers/punkt_tab")
        return
    except LookupError:
        pass
    if hub_allowed():
        print("ifeval: downloading NLTK punkt_tab (needed by the IFEval checkers)...", file=sys.stderr)
        nltk.download("punkt_tab", quiet=True)
        try:
            nltk.data.find("tokenizers/punkt_tab")
            return
        except LookupError:
            pass
    raise DataMissing(
        "NLTK data 'punkt_tab' (needed by the IFEval checkers) not found; fix: set NLTK_DATA to a folder holding "
        "tokenizers/punkt_tab, or allow network access so it can be downloaded"
    )


def lm_eval_ifeval() -> Any:
    """lm-eval's IFEval utils, imported only after punkt_tab is in place (its import would try to download)."""
    global _lm_eval_utils
    if _lm_eval_utils is None:
        ensure_punkt_tab()
        import langdetect

        langdetect.DetectorFactory.seed = 0  # langdetect is random by default; fix it for reproducible verdicts
        from lm_eval.tasks.ifeval import utils

        _lm_eval_utils = utils
    return _lm_eval_utils


@contextlib.contextmanager
def seeded_random(key: int | str):
    """Seed Python's global random for one lm-eval check, then restore the previous state."""
    state = random.getstate()
    random.seed(f"ifeval:{key}")  # str seeds hash with sha512: the same in every process
    try:
        yield
    finally:
        random.setstate(state)


def _as_lm_eval_doc(doc: Doc) -> dict[str, Any]:
    return {
        "key": doc.meta["key"],
        "prompt": doc.meta["prompt"],
        "instruction_id_list": doc.meta["instruction_id_list"],
        "kwargs": doc.meta["kwargs"],
    }


@register_task("ifeval")
class IFEval(Task):
    description = "IFEval: 541 prompts with verifiable instructions, lm-eval's strict/loose checkers"
    primary_metric = "prompt_level_strict_acc"
    local_dir = "ifeval"
    hf_dataset = "google/IFEval"
    generation = GenerationConfig(max_new_tokens=1280)
    grader_version = "1"  # lm-eval's IFEval checkers, langdetect and the per-prompt random seed pinned
    grader_packages = ("lm_eval", "nltk", "langdetect")

    class Options(GenerationOptions):
        """Generation overrides only."""

    def docs(self) -> list[Doc]:
        rows, _source = resolve_jsonl(self.name, "ifeval/input_data.jsonl", self.hf_dataset, hub_split="train")
        ensure_punkt_tab()  # preflight: fail before generation, not after it
        return [
            Doc(
                id=str(r["key"]),
                prompt=[{"role": "user", "content": r["prompt"]}],
                gold=None,  # no reference answer: the instructions are checked programmatically
                meta={"key": r["key"], "prompt": r["prompt"], "instruction_id_list": list(r["instruction_id_list"]),
                      "kwargs": [dict(k) for k in r["kwargs"]]},
            )
            for r in rows
        ]

    def score(self, doc: Doc, responses: Sequence[str]) -> Scored:
        utils = lm_eval_ifeval()
        response = responses[0] if responses else ""
        with seeded_random(doc.meta["key"]):
            res = utils.process_results(_as_lm_eval_doc(doc), [response])
        metrics = {name: float(res[name]) for name in PROMPT_METRICS}
        for name in INST_METRICS:
            flags = res[name]
            metrics[name] = sum(flags) / len(flags) if flags else 0.0
        details = {name: [bool(x) for x in res[name]] for name in INST_METRICS}
        details["instruction_id_list"] = doc.meta["instruction_id_list"]
        return Scored(id=doc.id, score=metrics[self.primary_metric], metrics=metrics, details=details)

    def aggregate(self, scored: Sequence[Scored]) -> dict[str, float]:
        """Prompt-level: mean. Instruction-level: lm-eval's ``agg_inst_level_acc`` over the per-prompt lists."""
        if not scored:
            return {}
        out = {name: sum(s.metrics[name] for s in scored) / len(scored) for name in PROMPT_METRICS}
        utils = lm_eval_ifeval()
        for name in INST_METRICS:
            out[name] = float(utils.agg_inst_level_acc([s.details[name] for s in scored]))
        return out
