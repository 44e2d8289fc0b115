"""Setup (collapsed, at the end): the command, student, teacher, configuration, engine settings, evaluation
settings per task, warnings where models were evaluated differently, and the manifest's other sections."""
from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from harness.common.artifacts import EngineDescription, Manifest, ModelRecord, Results, TaskRecord
from harness.reports import plots
from harness.reports.fmt import flatten, short

def config_summary(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Scalar settings (and lists of scalars) one level deep, as "section.key"; prompt templates are left to the
    full configuration below."""
    out = []
    for key, value in config.items():
        if key in ("student", "teacher", "prompts"):
            continue
        items = value.items() if isinstance(value, Mapping) else [(None, value)]
        for sub, v in items:
            scalar = not isinstance(v, (Mapping, list)) or (
                isinstance(v, list) and all(not isinstance(x, (Mapping, list)) for x in v))
            if scalar and v not in (None, {}, []):
                out.append((f"{key}.{sub}" if sub is not None else key,
                            ", ".join(map(str, v)) if isinstance(v, list) else short(v, 160)))
    return out


def _engine_settings(engine: EngineDescription) -> dict[str, Any]:
    """An engine description without what names the model itself (identity, adapter, path, weights), plus the
    chat template digest (the same template must frame every model's prompts)."""
    out = flatten(engine.settings())
    if engine.chat_template is not None:
        out["chat_template"] = engine.chat_template
    return out


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def settings_section(manifest: Optional[Manifest], models: list[str], tasks: list[str], results: Results,
                     labels: Mapping[str, str]) -> tuple[list, list[str]]:
    """Generation settings per task, and warnings where models were evaluated differently: engine settings
    (``models[m].engine`` other than the model's own identity/adapter/path, and against ``eval_settings``),
    per-model generation parameters (``models[m].eval[task].generation``) against ``tasks[t].generation``,
    and the number of items scored."""
    rows, warnings = [], []
    task_info = manifest.tasks if manifest is not None else {}
    model_info = manifest.models if manifest is not None else {}
    for task in plots.ordered(list(task_info) + tasks):
        info = task_info.get(task)
        rows.append(_task_row(info, labels.get(task, task)))
        warnings += _generation_warnings(task, info, {m: model_info[m] for m in models if m in model_info})
    engines = {m: _engine_settings(model_info[m].engine) for m in models
               if m in model_info and model_info[m].engine is not None}
    for key in sorted({k for e in engines.values() for k in e}):
        values = {m: e[key] for m, e in engines.items() if key in e}
        if len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) > 1:
            warnings.append(f"models were evaluated with different engine {key}: "
                            + "; ".join(f"{m}: {short(v, 80)}" for m, v in values.items()))
    if manifest is not None and manifest.eval_settings is not None:
        # "auto" (dtype, device) is resolved per model by the engine: what it resolved to is compared between the
        # models above, not against the word "auto".
        wanted = {k: v for k, v in flatten(manifest.eval_settings.model_dump(mode="json")).items() if v != "auto"}
        for m, e in engines.items():
            off = [f"{k}={short(e[k], 60)} (run setting {short(v, 60)})" for k, v in wanted.items()
                   if k in e and not _same(e[k], v)]
            if off:
                warnings.append(f"{m} was evaluated with engine settings other than the run's: " + ", ".join(off))
    return rows, warnings + _sample_count_warnings(results)


def _task_row(info: Optional[TaskRecord], label: str) -> dict:
    gen = info.generation if info is not None else None
    if gen is not None:
        text = ", ".join(f"{k}={short(v, 60)}" for k, v in gen.model_dump(mode="json").items())
    elif info is not None and info.output_type.uses_loglikelihood:
        text = "log-likelihood of each choice (no generation)"
    else:
        text = "–"
    return {"task": label, "n": info.n if info is not None else "–", "generation": text,
            "fingerprint": short(info.fingerprint, 24) if info is not None else "–"}


def _generation_warnings(task: str, info: Optional[TaskRecord], records: Mapping[str, ModelRecord]) -> list[str]:
    """Models whose recorded generation settings for ``task`` differ from each other's or from the task's."""
    gen = info.generation.model_dump(mode="json") if info is not None and info.generation is not None else None
    per_model = {}
    for name, rec in records.items():
        got = rec.eval.get(task)
        if got is not None and got.generation is not None:
            per_model[name] = got.generation.model_dump(mode="json")
    if not per_model:
        return []
    if len({json.dumps(g, sort_keys=True, default=str) for g in per_model.values()}) > 1 or (
            gen and any(g != gen for g in per_model.values())):
        return [f"{task}: models were evaluated with different generation settings: "
                + "; ".join(f"{m}: {short(g, 120)}" for m, g in per_model.items())]
    return []


def _sample_count_warnings(results: Results) -> list[str]:
    ns: dict[str, dict[str, int]] = {}
    for r in results.rows:
        if results.primary_metrics.get(r.task) == r.metric:
            ns.setdefault(r.task, {})[r.model] = r.n
    return [f"{task}: models were scored on different numbers of samples ("
            + ", ".join(f"{m}: {n}" for m, n in by_model.items()) + "); paired comparisons use the shared ids only"
            for task, by_model in ns.items() if len(set(by_model.values())) > 1]
