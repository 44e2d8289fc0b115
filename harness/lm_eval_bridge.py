"""lm-eval tasks answered by the harness's engines: ``HarnessLM`` is an lm-eval ``LM`` whose loglikelihood and
generate_until requests go through an engine from the registry and the call cache, so an lm-eval task runs as
lm-eval defines it (``lm_eval.simple_evaluate``: its prompts, few-shot sampling and seeds, filters, metrics) and
its per-sample results become the run's sample records like any task's.

Generation follows lm-eval's hf backend: its ``normalize_gen_kwargs`` (greedy unless do_sample, max_gen_toks
default 256), the ``until`` strings as stop sequences, and its ``postprocess_generated_text`` on the output.
``loglikelihood_rolling`` (perplexity tasks) is not supported: the engines score continuations only.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Sequence

from lm_eval.api.model import LM

from harness.common.artifacts import SampleRecord
from harness.common.types import SamplingParams
from harness.common.progress import progress_bar
from harness.tasks.base import Doc, Scored
from harness.tasks.lm_eval_task import LmEvalTask, LmEvalTaskError


class HarnessLM(LM):
    """An lm-eval model backed by a harness engine (normally a ``CachedEngine``)."""

    def __init__(self, engine: Any, seed: int = 0, progress: Any = None) -> None:
        super().__init__()
        self.engine = engine
        self.seed = seed
        self.progress = progress
        self.stats = {"loglikelihood": 0, "generate_until": 0}

    @property
    def tokenizer_name(self) -> str:
        return str(self.engine.identity).replace("/", "__")

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        rendered = self.engine.render(chat_history)
        if not isinstance(rendered, str):
            raise LmEvalTaskError("apply_chat_template needs a local engine (hf, vllm): an API engine applies the "
                                  "server's template to messages, which lm-eval's string requests cannot carry")
        return rendered

    def loglikelihood(self, requests: Sequence[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [(str(r.args[0]), str(r.args[1])) for r in requests]
        self.stats["loglikelihood"] += len(pairs)
        return [(float(ll), bool(greedy)) for ll, greedy in self.engine.loglikelihood(pairs, self.progress)]

    def loglikelihood_rolling(self, requests: Sequence[Any], disable_tqdm: bool = False) -> list[float]:
        raise LmEvalTaskError("lm-eval tasks scored by loglikelihood_rolling (perplexity) are not supported: the "
                              "harness's engines score continuations of a context only")

    def generate_until(self, requests: Sequence[Any], disable_tqdm: bool = False) -> list[str]:
        from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text

        out: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(json.dumps(r.args[1], sort_keys=True, default=str), []).append(i)
        for key, idx in groups.items():
            kwargs = normalize_gen_kwargs(json.loads(key), 256)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=None)
            temperature = float(kwargs.get("temperature") or 0.0) if kwargs.get("do_sample") else 0.0
            params = SamplingParams(max_new_tokens=int(kwargs["max_gen_toks"]), temperature=temperature,
                                    top_p=float(kwargs.get("top_p") or 1.0), n=1, seed=self.seed,
                                    stop=tuple(until))
            comps = self.engine.generate([str(requests[i].args[0]) for i in idx], params, self.progress)
            for i, cs in zip(idx, comps):
                out[i] = postprocess_generated_text(cs[0].text, until, None)
        self.stats["generate_until"] += len(requests)
        return out  # type: ignore[return-value]


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    return None


def _jsonable(v: Any) -> Any:
    return json.loads(json.dumps(v, default=str))


def run_lm_eval(engine: Any, task: LmEvalTask, docs: Sequence[Doc], seed: int = 0, progress: Any = None
                ) -> tuple[dict[str, Any], list[tuple[Doc, Scored, dict[str, Any]]]]:
    """``lm_eval.simple_evaluate`` of ``task`` on exactly ``docs`` (its ``samples=`` selection) with the engine
    answering. Returns (lm-eval's results dict, per doc: (doc, Scored, record fields))."""
    import lm_eval

    lm = HarnessLM(engine, seed=seed, progress=progress)
    logging.getLogger("lm-eval").setLevel(logging.WARNING)
    res = lm_eval.simple_evaluate(
        model=lm, tasks=[task.lm_eval_name], task_manager=task.task_manager(), num_fewshot=task.opts.num_fewshot,
        samples=task.selection(docs), log_samples=True, bootstrap_iters=0,
        apply_chat_template=task.opts.apply_chat_template, fewshot_random_seed=task.opts.fewshot_seed,
        verbosity="WARNING")
    primary = task.primary_metric
    by_id: dict[str, dict[str, Any]] = {}
    for leaf, samples in (res or {}).get("samples", {}).items():
        for s in samples:
            entry = by_id.setdefault(f"{leaf}/{s['doc_id']}", {"values": {}, "sample": s, "filtered": {}})
            filt = s.get("filter", "none")
            for m in s.get("metrics", []):
                entry["values"][m if filt == "none" else f"{m},{filt}"] = _jsonable(s.get(m))
            entry["filtered"][filt] = _jsonable(s.get("filtered_resps"))
    out = []
    for d in docs:
        entry = by_id.get(d.id)
        if entry is None:
            raise LmEvalTaskError(f"lm-eval returned no sample for {d.id}; the task's docs changed while running")
        values = entry["values"]
        # results.json rows are rates in [0, 1]; other per-sample values (BLEU's 0-100, corpus-level tuples) stay
        # in details["lm_eval"], where the task's aggregate hands them to lm-eval's own aggregation
        metrics = {k: x for k, v in values.items() if (x := _number(v)) is not None and 0.0 <= x <= 1.0}
        s = entry["sample"]
        fields: dict[str, Any] = {"gold": _jsonable(s.get("target"))}
        resps = s.get("resps") or []
        if s["arguments"] and len(s["arguments"][0]) == 2 and isinstance(s["arguments"][0][1], dict):
            texts = [r[0] if isinstance(r, list) else r for r in resps]
            fields.update(responses=[str(t) for t in texts], response=str(texts[0]) if texts else None)
        else:
            fields["loglikelihoods"] = [list(r[0]) if isinstance(r, list) and r and isinstance(r[0], (list, tuple))
                                        else list(r) for r in resps]
        prompt = s["arguments"][0][0] if s.get("arguments") else d.prompt
        fields["prompt"] = prompt
        first_filter = next(iter(entry["filtered"].values()), None)
        scored = Scored(id=d.id, score=metrics.get(primary, 0.0), metrics=metrics, extracted=first_filter,
                        details={"lm_eval": values})
        out.append((d, scored, fields))
    return res or {}, out


def evaluate_lm_eval(engine: Any, task: LmEvalTask, docs: Sequence[Doc], seed: int, label: str,
                     make_record: Any) -> list[SampleRecord]:
    """The evaluate stage's entry: per-sample records of an lm-eval task (``make_record`` is the stage's)."""
    n_requests = len(docs)
    t0 = time.perf_counter()
    with progress_bar(f"{label} (lm-eval)", n_requests) as advance:
        _res, rows = run_lm_eval(engine, task, docs, seed=seed, progress=None)
        advance(n_requests)
    per = (time.perf_counter() - t0) / max(1, len(docs))
    return [make_record(task, d, s, **{**fields, "seconds": per}) for d, s, fields in rows]
