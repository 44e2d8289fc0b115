"""Any lm-evaluation-harness task or group as a harness task: ``--tasks lm_eval:<task or group>``.

The task is lm-eval's own (its YAML: prompts, few-shot sampling, filters, metrics, aggregation), loaded with
lm-eval's ``TaskManager`` (``include_path`` adds a folder of your own lm-eval YAMLs; default
``$HARNESS_LM_EVAL_INCLUDE``). This module only describes it to the pipeline: its items as ``Doc`` s (for counts,
``--limit`` and the fingerprint) and the aggregation of the per-sample metrics lm-eval returns. The model calls
are made by ``harness.lm_eval_bridge`` (an lm-eval ``LM`` answering through the harness's engines and call cache);
``output_type = OutputType.LM_EVAL`` tells the evaluate stage to hand the task to it.

Fingerprint: lm-eval's dump of each subtask's config (prompts, few-shot settings, filters, metrics, generation
kwargs) plus the docs' digest; lm-eval's version is recorded beside the scores (``grader_packages``).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, ClassVar, Iterator, Sequence

from pydantic import Field

from harness.common.files import stable_hash
from harness.tasks.base import Doc, OutputType, Scored, Task, TaskOptionError, TaskOptions
from harness.tasks.data import DataMissing

PREFIX = "lm_eval:"


class LmEvalTaskError(TaskOptionError):
    """An lm-eval task that lm-eval does not know or cannot load; one line with the fix."""


class LmEvalTask(Task):
    """Base of the per-name classes ``task_class`` makes."""

    output_type = OutputType.LM_EVAL
    lm_eval_name: ClassVar[str]
    grader_version = "1"
    grader_packages = ("lm_eval",)

    class Options(TaskOptions):
        include_path: str | None = Field(None, description="a folder of your own lm-eval task YAMLs "
                                                           "(default: $HARNESS_LM_EVAL_INCLUDE)")
        num_fewshot: int | None = Field(None, ge=0, description="override the task's few-shot count")
        fewshot_seed: int = Field(1234, description="lm-eval's fewshot_random_seed (its default)")
        apply_chat_template: bool = Field(False, description="render lm-eval's prompts with the chat template")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._leaves: dict[str, Any] | None = None
        self._docs: list[Doc] | None = None

    # ---- lm-eval's task objects ---------------------------------------------------------------------------
    @property
    def include_path(self) -> str | None:
        return self.opts.include_path or os.environ.get("HARNESS_LM_EVAL_INCLUDE") or None

    def task_manager(self) -> Any:
        """lm-eval's TaskManager, one per include path and process. Indexing lm-eval's own ~15k task YAMLs takes
        10-35 s (measured on the 2-core testbed), so a task found in ``include_path`` is loaded from there alone."""
        from lm_eval.tasks import TaskManager

        path = self.include_path
        if path is not None and not os.path.isdir(path):
            raise LmEvalTaskError(f"task {self.name}: include_path {path} is not a folder; pass the folder holding "
                                  "your lm-eval task YAMLs")
        if path is not None:
            if (path, False) not in _MANAGERS:
                _MANAGERS[(path, False)] = TaskManager(include_path=path, include_defaults=False)
            if self.lm_eval_name in _MANAGERS[(path, False)].all_tasks:
                return _MANAGERS[(path, False)]
        if (path, True) not in _MANAGERS:
            _MANAGERS[(path, True)] = TaskManager(include_path=path)
        return _MANAGERS[(path, True)]

    def task_dict(self) -> dict[str, Any]:
        """lm-eval's (possibly nested, for a group) task dict, few-shot counts and seeds set as simple_evaluate
        sets them."""
        tm = self.task_manager()
        if self.lm_eval_name not in tm.all_tasks:
            raise LmEvalTaskError(f"unknown lm-eval task or group {self.lm_eval_name!r}; list them with "
                                  "`lm-eval ls tasks`, or add your YAML folder with include_path "
                                  "(eval.task_options) or HARNESS_LM_EVAL_INCLUDE")
        with _datasets_offline_unless_hub():
            try:
                td = tm.load([self.lm_eval_name])
            except DataMissing:
                raise
            except Exception as e:  # its data: a hub dataset we cannot reach, a missing local file
                raise DataMissing(f"data for task {self.name!r}: lm-eval could not load it ({type(e).__name__}: "
                                  f"{' '.join(str(e).split())[:160]}); fix: point the task's YAML at local files "
                                  "or allow hub access") from None
        for leaf in _leaves(td).values():
            if self.opts.num_fewshot is not None:
                leaf.set_config(key="num_fewshot", value=self.opts.num_fewshot)
            leaf.set_fewshot_seed(seed=self.opts.fewshot_seed)
        return td

    def leaves(self) -> dict[str, Any]:
        if self._leaves is None:
            self._leaves = _leaves(self.task_dict())
        return self._leaves

    # ---- the Task protocol --------------------------------------------------------------------------------
    @property
    def primary_metric(self) -> str:  # type: ignore[override]
        """The first metric of the first subtask under its first filter, named as in the sample records:
        ``acc``, or ``exact_match,<filter>`` for a filter other than lm-eval's ``none``."""
        first = next(iter(self.leaves().values()))
        metrics = [m["metric"] for m in (first.config.metric_list or []) if isinstance(m.get("metric"), str)]
        metric = metrics[0] if metrics else "acc"
        filters = [f.name for f in getattr(first, "_filters", [])]
        return metric if not filters or filters[0] == "none" else f"{metric},{filters[0]}"

    def docs(self) -> list[Doc]:
        """Every evaluation doc of every subtask, id ``<subtask>/<doc index>`` (what lm-eval's ``samples=``
        selects), prompt = lm-eval's doc_to_text, gold = its doc_to_target."""
        if self._docs is None:
            docs = []
            for leaf_name, leaf in self.leaves().items():
                for i, doc in enumerate(leaf.eval_docs):
                    try:
                        prompt, gold = leaf.doc_to_text(doc), leaf.doc_to_target(doc)
                    except Exception:  # a prompt function that needs the few-shot context: shown as the doc
                        prompt, gold = str(doc), None
                    docs.append(Doc(id=f"{leaf_name}/{i}", prompt=str(prompt), gold=_plain(gold),
                                    meta={"subtask": leaf_name, "doc_index": i}))
            self._docs = docs
        return self._docs

    def selection(self, docs: Sequence[Doc]) -> dict[str, list[int]]:
        """The docs as lm-eval's ``samples=`` argument: subtask -> doc indices."""
        out: dict[str, list[int]] = {}
        for d in docs:
            out.setdefault(d.meta["subtask"], []).append(int(d.meta["doc_index"]))
        return out

    def aggregate(self, scored: Sequence[Scored]) -> dict[str, float]:
        """lm-eval's own aggregation of each metric (its ``aggregation`` functions over the per-sample values kept
        in ``details["lm_eval"]``), pooled over subtasks by size as lm-eval's groups do by default."""
        if not scored:
            return {}
        by_leaf: dict[str, list[Scored]] = {}
        for s in scored:
            by_leaf.setdefault(s.id.rsplit("/", 1)[0], []).append(s)
        totals: dict[str, list[tuple[float, int]]] = {}
        leaves = self.leaves()
        for leaf_name, items in by_leaf.items():
            agg = leaves[leaf_name].aggregation() if leaf_name in leaves else {}
            names = {k for s in items for k in s.details.get("lm_eval", {})}
            for m in sorted(names):
                vals = [s.details["lm_eval"][m] for s in items if m in s.details.get("lm_eval", {})]
                fn = agg.get(m)
                try:
                    value = float(fn(vals)) if fn is not None else sum(map(float, vals)) / len(vals)
                except (TypeError, ValueError):
                    continue
                totals.setdefault(m, []).append((value, len(vals)))
        pooled = {m: sum(v * n for v, n in parts) / sum(n for _, n in parts) for m, parts in totals.items()}
        return {m: v for m, v in pooled.items() if 0.0 <= v <= 1.0}  # results rows are rates (BLEU 0-100 is not)

    def fingerprint_parts(self, docs: Sequence[Doc]) -> dict[str, Any]:
        parts = super().fingerprint_parts(docs)
        parts["lm_eval_config"] = stable_hash({k: _plain(t.dump_config()) for k, t in self.leaves().items()})
        return parts


def _plain(x: Any) -> Any:
    """JSON-able: lm-eval configs hold functions and callables (their names stand in)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return getattr(x, "__qualname__", None) or type(x).__name__


def _leaves(td: dict[Any, Any]) -> dict[str, Any]:
    """A (nested) lm-eval task dict -> subtask name -> Task, groups flattened."""
    if isinstance(td.get("tasks"), dict):  # TaskManager.load: {"tasks": {name: Task}, "groups": ..., ...}
        return dict(td["tasks"])
    out: dict[str, Any] = {}
    for key, val in td.items():
        if isinstance(val, dict):
            out.update(_leaves(val))
        elif val is not None and hasattr(val, "eval_docs"):
            out[getattr(key, "task_name", None) or getattr(val, "task_name", None) or str(key)] = val
    return out


@contextmanager
def _datasets_offline_unless_hub() -> Iterator[None]:
    """lm-eval loads data with ``datasets``, which retries an unreachable hub for minutes: when the hub is off
    (the one probe of harness.tasks.data), load offline (local files and the cache only)."""
    from harness.tasks.data import hub_allowed

    if hub_allowed():
        yield
        return
    import datasets
    import huggingface_hub.constants as hub_constants

    saved = hub_constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = saved


_CLASSES: dict[str, type[LmEvalTask]] = {}
_MANAGERS: dict[tuple[str | None, bool], Any] = {}


def is_lm_eval(name: str) -> bool:
    return name.startswith(PREFIX) and len(name) > len(PREFIX)


def task_class(name: str) -> type[LmEvalTask]:
    """The harness task class for ``lm_eval:<task or group>`` (made once per name and process)."""
    if name not in _CLASSES:
        cls = type(f"LmEval_{name[len(PREFIX):]}", (LmEvalTask,), {"lm_eval_name": name[len(PREFIX):],
                                                                     "__module__": __name__})
        cls.name = name
        cls.description = f"lm-eval task {name[len(PREFIX):]} (lm-eval's prompts, filters and metrics)"
        _CLASSES[name] = cls
    return _CLASSES[name]
