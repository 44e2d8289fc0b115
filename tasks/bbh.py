"""BIG-Bench Hard: 27 subtasks, 3-shot chain of thought, graded like lm-evaluation-harness's ``bbh_cot_fewshot``;
or (``variant: mc``) the Open LLM Leaderboard's multiple-choice variant, lm-eval's ``leaderboard_bbh_*``: 24
subtasks, a 3-shot answer-only prompt, log-likelihood of each option, ``acc_norm`` (the CGD paper's BBH numbers
match this variant, 10+ points from CoT).

Prompt: the subtask's description and three worked examples from the BBH repo's ``cot-prompts/<subtask>.txt``,
then ``Q: {input}\\nA: Let's think step by step.\\n`` -- byte-identical to lm-eval's rendered few-shot context
(the tests compare all 27 subtasks). Extraction and exact match reuse lm-eval's own filter classes and metric,
configured from the YAML files shipped inside the installed ``lm_eval`` package:

- ``exact_match`` (primary): the ``get-answer`` filter of ``bbh/cot_fewshot`` (regex
  ``(?<=the answer is )(.*)(?=.)`` then take_first) and that YAML's exact-match settings (case and punctuation kept).
- ``exact_match_flexible``: the per-subtask ``flexible-extract`` filter of ``bbh/cot_zeroshot`` (cot_fewshot has
  none), with that YAML's exact-match settings (ignore_case, regexes_to_ignore).

Aggregate: per subtask ``exact_match/<subtask>``; the overall ``exact_match`` is lm-eval's ``bbh_cot_fewshot``
group score, which is weighted by subtask size (``weight_by_size: true``), i.e. the mean over all examples;
``exact_match_macro`` is the unweighted mean over subtasks.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import Field, field_validator

from harness.tasks.base import Doc, GenerationConfig, GenerationOptions, OutputType, Scored, Task
from harness.tasks.data import hub_allowed, load_hub, local_path, missing
from harness.tasks.registry import register_task

SUBTASKS: tuple[str, ...] = (
    "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa", "dyck_languages",
    "formal_fallacies", "geometric_shapes", "hyperbaton", "logical_deduction_five_objects",
    "logical_deduction_seven_objects", "logical_deduction_three_objects", "movie_recommendation",
    "multistep_arithmetic_two", "navigate", "object_counting", "penguins_in_a_table",
    "reasoning_about_colored_objects", "ruin_names", "salient_translation_error_detection", "snarks",
    "sports_understanding", "temporal_sequences", "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects", "web_of_lies",
    "word_sorting",
)

HUB_DATASET = "lukaemon/bbh"  # one config per subtask, split "test" (lm-eval 0.4.13 reads the copy SaylorTwift/bbh)
COT_CUE = "A: Let's think step by step."
# lm-eval's cot_fewshot doc_to_text; its target_delimiter is "" and its fewshot_delimiter "\n\n".
QUERY = "Q: {input}\n" + COT_CUE + "\n"
# lm-eval bbh_cot_fewshot generation_kwargs.until (a bare "Q" stops at any capital Q, as in lm-eval).
STOP = ("</s>", "Q", "\n\n")
INVALID = "[invalid]"  # lm-eval's RegexFilter fallback when nothing matches


# ---- lm-eval configuration (the installed package's YAML files) ---------------------------------------------
def _lm_eval_bbh_dir() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).parent / "tasks" / "bbh"


@lru_cache(maxsize=None)
def lm_eval_config(variant: str, subtask: str) -> dict[str, Any]:
    """The merged YAML config of lm-eval's ``bbh/<variant>/<subtask>.yaml`` (``!function`` tags resolved)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(_lm_eval_bbh_dir() / variant / f"{subtask}.yaml")


@dataclass(frozen=True)
class Grader:
    """One lm-eval filter pipeline plus the exact-match settings it is scored with."""

    filters: tuple[tuple[Any, dict], ...]  # (filter class or registered name, constructor kwargs)
    match_kwargs: dict

    def extract(self, response: str, doc: dict) -> str:
        from lm_eval.api.registry import get_filter

        resps: Any = [[response]]  # lm-eval's shape: one list of responses per doc
        for func, kwargs in self.filters:
            resps = list(get_filter(func)(**kwargs).apply(resps, [doc]))  # filters may return iterators
        out = resps[0]  # take_first has turned [[x]] into [x]
        return out[0] if isinstance(out, list) else out

    def exact_match(self, prediction: str, gold: str) -> float:
        from lm_eval.api.metrics import exact_match_hf_evaluate

        return float(exact_match_hf_evaluate(predictions=[prediction], references=[gold], **self.match_kwargs)
                     ["exact_match"])


@lru_cache(maxsize=None)
def grader(variant: str, subtask: str, filter_name: str) -> Grader:
    cfg = lm_eval_config(variant, subtask)
    (pipeline,) = [f["filter"] for f in cfg["filter_list"] if f["name"] == filter_name]
    steps = tuple((step["function"], {k: v for k, v in step.items() if k != "function"}) for step in pipeline)
    (metric,) = [m for m in cfg["metric_list"] if m["metric"] == "exact_match"]
    kwargs = {k: v for k, v in metric.items() if k not in ("metric", "aggregation", "higher_is_better")}
    return Grader(steps, kwargs)


def strict_grader(subtask: str) -> Grader:
    return grader("cot_fewshot", subtask, "get-answer")


def flexible_grader(subtask: str) -> Grader:
    return grader("cot_zeroshot", subtask, "flexible-extract")


# ---- data and prompts ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FewShot:
    description: str
    examples: tuple[tuple[str, str], ...]  # (input, chain-of-thought target ending "So the answer is X.")


def parse_cot_prompt(text: str) -> FewShot:
    """Parse a BBH ``cot-prompts/*.txt`` file the way lm-eval's ``_generate_configs.py`` does: drop the canary
    header (everything up to the last ``-----`` line), split on blank lines; the blocks before the first
    ``Q:`` are the description, each later block one worked example."""
    blocks = [b for b in text.split("\n-----\n")[-1].split("\n\n") if b.strip()]
    # The description may span several paragraphs (snarks); lm-eval's YAML keeps them all in ``description``.
    n_desc = next((i for i, b in enumerate(blocks) if b.startswith("Q: ")), len(blocks))
    description, shots = "\n\n".join(blocks[:n_desc]), blocks[n_desc:]
    examples = []
    for shot in shots:
        question, sep, answer = shot.partition("\n" + COT_CUE)
        if not sep or not question.startswith("Q: "):
            raise ValueError(f"unexpected BBH cot-prompt shot (want 'Q: ...\\n{COT_CUE}'): {shot[:80]!r}")
        # The target follows the cue on the next line, or after one space (sports_understanding); lm-eval's
        # rendering always puts it on the next line.
        examples.append((question[3:], answer[1:] if answer[:1] in ("\n", " ") else answer))
    return FewShot(description, tuple(examples))


@lru_cache(maxsize=None)
def fewshot(subtask: str) -> FewShot:
    """The three worked examples: the local BBH mirror's cot-prompt file, else the copy inside lm-eval's YAML."""
    p = local_path("bbh", "cot-prompts", f"{subtask}.txt")
    if p is not None:
        return parse_cot_prompt(p.read_text(encoding="utf-8"))
    return fewshot_from_lm_eval(subtask)


def fewshot_from_lm_eval(subtask: str) -> FewShot:
    cfg = lm_eval_config("cot_fewshot", subtask)
    shots = cfg["fewshot_config"]["samples"]
    return FewShot(cfg["description"].removesuffix("\n\n"), tuple((s["input"], s["target"]) for s in shots))


def cot_prompt(subtask: str, question: str) -> str:
    shots = fewshot(subtask)
    parts = [shots.description + "\n\n"]
    parts += [QUERY.format(input=q) + target + "\n\n" for q, target in shots.examples]
    parts.append(QUERY.format(input=question))
    return "".join(parts)


def load_examples(subtask: str) -> tuple[list[dict[str, str]], str]:
    """(examples with ``input``/``target``, source) from the local mirror, else the hub."""
    p = local_path("bbh", "bbh", f"{subtask}.json")
    if p is not None:
        return json.loads(p.read_text(encoding="utf-8"))["examples"], f"local:{p}"
    if hub_allowed(HUB_DATASET):
        rows = load_hub("bbh", HUB_DATASET, config=subtask, split="test")
        return [{"input": r["input"], "target": r["target"]} for r in rows], f"hub:{HUB_DATASET}/{subtask}"
    raise missing("bbh", f"bbh/bbh/{subtask}.json", HUB_DATASET)


def _subtask_of(doc_id: str) -> str:
    return doc_id.split("/", 1)[0]


# ---- the leaderboard's multiple-choice variant (lm-eval leaderboard_bbh_*) --------------------------------------
#: The 24 subtasks of lm-eval's leaderboard_bbh group (no dyck_languages, multistep_arithmetic_two, word_sorting:
#: their answers are free text, not options).
MC_SUBTASKS: tuple[str, ...] = tuple(s for s in SUBTASKS
                                     if s not in ("dyck_languages", "multistep_arithmetic_two", "word_sorting"))
MC_QUERY = "Q: {input}\nA:"  # leaderboard_bbh doc_to_text; choices follow after lm-eval's target_delimiter " "


@lru_cache(maxsize=None)
def mc_config(subtask: str) -> dict[str, Any]:
    """lm-eval's ``leaderboard/bbh_mc/<subtask>.yaml`` (its description, 3 few-shot samples, doc_to_choice)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(_lm_eval_bbh_dir().parent / "leaderboard" / "bbh_mc" / f"{subtask}.yaml")


def mc_prompt(subtask: str, question: str) -> str:
    """The leaderboard's 3-shot answer-only context: description, three "Q: ...\nA: target" shots, the query."""
    cfg = mc_config(subtask)
    shots = cfg["fewshot_config"]["samples"][:3]
    # lm-eval joins the leaderboard's description straight onto the first shot ("...from context.Q: ..."): its
    # YAML descriptions lack the trailing blank line the CoT ones have. Kept, to score what the leaderboard scores.
    parts = [cfg["description"]]
    parts += [MC_QUERY.format(input=s["input"]) + " " + s["target"] + "\n\n" for s in shots]
    parts.append(MC_QUERY.format(input=question))
    return "".join(parts)


def acc_norm(loglikelihoods: Sequence[float], choices: Sequence[str], gold: int) -> tuple[float, float, int]:
    """(acc, acc_norm, chosen index) as lm-eval's multiple-choice process_results: acc_norm divides each
    choice's log-likelihood by its length in characters (the option text, without the delimiter)."""
    import numpy as np

    lls = np.array(loglikelihoods, dtype=float)
    lengths = np.array([float(len(c)) for c in choices])
    chosen = int(np.argmax(lls / lengths))
    return float(int(np.argmax(lls)) == gold), float(chosen == gold), chosen


# ---- the task -----------------------------------------------------------------------------------------------
@register_task("bbh")
class BBH(Task):
    """BIG-Bench Hard, 3-shot CoT. Options: ``subtasks`` (list or comma-separated names), ``chat`` (wrap the
    prompt as one user message; default: plain completion text), and the generation overrides
    (``max_new_tokens`` default 512, ``stop`` default lm-eval's)."""

    description = "BIG-Bench Hard (27 subtasks, 6,511 items), 3-shot chain of thought, exact match as lm-eval"
    output_type = OutputType.GENERATE
    primary_metric = "exact_match"
    local_dir = "bbh"
    hf_dataset = HUB_DATASET
    generation = GenerationConfig(max_new_tokens=512, temperature=0.0, stop=STOP)
    # lm-eval's bbh cot_fewshot get-answer filter + exact match (primary), cot_zeroshot flexible-extract
    grader_version = "1"
    grader_packages = ("lm_eval",)

    class Options(GenerationOptions):
        subtasks: tuple[str, ...] = Field(SUBTASKS, description="subtasks to evaluate (default all 27)")
        chat: bool = Field(False, description="send the prompt as one user message instead of plain text")
        #: cot: 3-shot chain of thought, exact match (lm-eval bbh_cot_fewshot); mc: the Open LLM Leaderboard's
        #: multiple-choice variant (lm-eval leaderboard_bbh_*: 3-shot answer-only prompt, log-likelihood over the
        #: options, acc_norm, 24 subtasks), whose numbers the CGD paper's BBH column matches.
        variant: Literal["cot", "mc"] = Field("cot", description="cot (generation) or mc (leaderboard, log-likelihood)")

        @field_validator("subtasks", mode="before")
        @classmethod
        def _subtasks(cls, v: Any) -> Any:
            if v is None or v == "" or v == []:
                return SUBTASKS
            if isinstance(v, str):
                v = [s.strip() for s in v.split(",") if s.strip()]
            if isinstance(v, (list, tuple)):
                bad = [s for s in v if s not in SUBTASKS]
                if bad:
                    raise ValueError(f"unknown subtask(s) {bad}; choose from: {', '.join(SUBTASKS)}")
                return tuple(dict.fromkeys(v))
            return v

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.variant = self.opts.variant
        self.subtasks: list[str] = list(self.opts.subtasks)
        if self.variant == "mc":
            if "subtasks" in options and (bad := [s for s in self.subtasks if s not in MC_SUBTASKS]):
                from harness.tasks.base import TaskOptionError

                raise TaskOptionError(f"task bbh: option 'subtasks': variant mc has no subtask(s) {', '.join(bad)} (free-text answers); "
                                      f"choose from {', '.join(MC_SUBTASKS)}")
            self.subtasks = [s for s in self.subtasks if s in MC_SUBTASKS]
            self.output_type = OutputType.MULTIPLE_CHOICE
            self.primary_metric = "acc_norm"
        self.chat = self.opts.chat

    def docs(self) -> list[Doc]:
        if self.variant == "mc":
            return self._mc_docs()
        out: list[Doc] = []
        for sub in self.subtasks:
            examples, source = load_examples(sub)
            for i, ex in enumerate(examples):
                text = cot_prompt(sub, ex["input"])
                out.append(Doc(
                    id=f"{sub}/{i}",
                    prompt=[{"role": "user", "content": text}] if self.chat else text,
                    gold=ex["target"],
                    meta={"subtask": sub, "input": ex["input"], "source": source},
                ))
        return out

    def _mc_docs(self) -> list[Doc]:
        out: list[Doc] = []
        for sub in self.subtasks:
            examples, source = load_examples(sub)
            options = [str(c) for c in mc_config(sub)["doc_to_choice"]]
            for i, ex in enumerate(examples):
                text = mc_prompt(sub, ex["input"])
                out.append(Doc(
                    id=f"{sub}/{i}",
                    prompt=[{"role": "user", "content": text}] if self.chat else text,
                    # three BBH targets name no option (e.g. "Monsters, Inc"); lm-eval scores them 0, and so do we
                    gold=options.index(ex["target"]) if ex["target"] in options else -1,
                    choices=[" " + c for c in options],  # lm-eval's target_delimiter before each option
                    meta={"subtask": sub, "options": options, "source": source},
                ))
        return out

    def score_loglikelihoods(self, doc: Doc, loglikelihoods: Sequence[tuple[float, bool]]) -> Scored:
        options = doc.meta["options"]
        if len(loglikelihoods) != len(options):
            raise ValueError(f"bbh {doc.id}: got {len(loglikelihoods)} log-likelihoods for {len(options)} options")
        acc, norm, chosen = acc_norm([x[0] for x in loglikelihoods], options, int(doc.gold))
        return Scored(id=doc.id, score=norm, metrics={"acc_norm": norm, "acc": acc}, extracted=options[chosen])

    def score(self, doc: Doc, responses: Sequence[str]) -> Scored:
        sub = doc.meta.get("subtask") or _subtask_of(doc.id)
        response = responses[0] if responses else ""  # lm-eval's take_first
        record = {"input": doc.meta.get("input", ""), "target": doc.gold}
        strict, flexible = strict_grader(sub), flexible_grader(sub)
        pred = strict.extract(response, record)
        pred_flex = flexible.extract(response, record)
        em = strict.exact_match(pred, doc.gold)
        em_flex = flexible.exact_match(pred_flex, doc.gold)
        return Scored(
            id=doc.id,
            score=em,
            metrics={"exact_match": em, "exact_match_flexible": em_flex},
            extracted=pred,
            details={"extracted_flexible": pred_flex, "extraction_failed": pred == INVALID},
        )

    def aggregate(self, scored: Sequence[Scored]) -> dict[str, float]:
        from lm_eval.api.metrics import aggregate_subtask_metrics

        by_sub: dict[str, list[Scored]] = defaultdict(list)
        for s in scored:
            by_sub[_subtask_of(s.id)].append(s)
        if not by_sub:
            return {}
        subs = sorted(by_sub)
        sizes = [len(by_sub[s]) for s in subs]
        out: dict[str, float] = {}
        metrics = ("acc_norm", "acc") if self.variant == "mc" else ("exact_match", "exact_match_flexible")
        for metric in metrics:
            means = []
            for sub in subs:
                vals = [s.metrics.get(metric, s.score if metric == metrics[0] else 0.0) for s in by_sub[sub]]
                means.append(sum(vals) / len(vals))
                out[f"{metric}/{sub}"] = means[-1]
            # lm-eval's group score (weight_by_size: true), and the plain mean over subtasks beside it.
            out[metric] = float(aggregate_subtask_metrics(means, sizes, weight_by_size=True))
            out[f"{metric}_macro"] = float(aggregate_subtask_metrics(means, sizes, weight_by_size=False))
        return out
