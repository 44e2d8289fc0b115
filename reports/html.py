"""The self-contained HTML report of a run folder (inline CSS, plots as base64 PNG, no external resources).

Everything that came from a model or a dataset is rendered through Jinja2 with autoescaping on: model output is
untrusted text. Inputs are the typed artifacts: ``results.json`` (``Results``), ``manifest.json`` (``Manifest``)
and the per-sample files (``SampleRecord``). Tasks whose sample records carry no ``prompt`` (sensitive benchmarks such as GPQA, whose questions
must not be published) show sample ids and scores only.
"""
from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path
from typing import Any, Mapping, Optional

import jinja2

from common.artifacts import Manifest, Results, SampleRecord, SchemaMismatch, load_artifact, read_samples
from common.labels import conclusion_of, model_label
from reports import paper, plots
from reports.stats import NON_QUALITY_METRICS, TRUNCATION_METRIC, holm_adjust, load_results

TEMPLATES = Path(__file__).with_name("templates")
_RESPONSE_HEAD = 2500  # characters kept from the start and from the end of a long response
_RESPONSE_TAIL = 1500
# Whole words of a key name (api_key, hf_token, password): "max_new_tokens" is a budget, not a secret.
_SECRET_WORDS = {"key", "apikey", "token", "secret", "password", "credential", "credentials"}
#: Engine description keys that name the model itself (they differ between base and a trained model by design);
#: every other engine setting must be the same for all models of a comparison.
_ENGINE_OWN_KEYS = {"identity", "adapter", "path", "model", "parts", "load_seconds", "note"}
#: Above this share of completions stopped at the token budget, a model's score on a task counts cut-off answers.
TRUNCATION_WARN = 0.05
#: Above this share of target tokens cut from a method's training examples, it trained on truncated targets.
TRAIN_TOKENS_LOST_WARN = 0.01


# --------------------------------------------------------------------------------------------- formatting
def pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}"


def signed_pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.{digits}f}"


def ci_text(lo: float | None, hi: float | None) -> str:
    return "" if lo is None or hi is None else f"[{pct(lo)}, {pct(hi)}]"


def p_text(p: float | None) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def short(value: Any, limit: int = 200) -> str:
    """A one-line text form of any JSON-like value."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return short(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def _is_secret_name(name) -> bool:
    return any(part in _SECRET_WORDS for part in re.split(r"[^a-z0-9]+", str(name).lower()))


def redact(value: Any) -> Any:
    """Copy of a config with values under secret-looking keys replaced (configs may carry API keys)."""
    if isinstance(value, Mapping):
        return {k: ("***" if _is_secret_name(k) and v not in (None, "") else redact(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _describe_model(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        for key in ("identity", "model", "name", "path", "id"):
            if isinstance(value.get(key), str):
                return value[key]
    return short(value)


def _teacher_text(value: Any) -> str:
    if isinstance(value, Mapping) and value.get("kind"):
        return f"{value['kind']}" + (f": {value['model']}" if value.get("model") else "")
    return _describe_model(value)


def _config_summary(config: Mapping[str, Any]) -> list[tuple[str, str]]:
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


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        return "\n\n".join(f"[{m.get('role', '?')}]\n{m.get('content', '')}" if isinstance(m, Mapping) else str(m)
                           for m in prompt)
    return short(prompt, 10_000)


def _clip(text: str) -> str:
    if len(text) <= _RESPONSE_HEAD + _RESPONSE_TAIL + 100:
        return text
    cut = len(text) - _RESPONSE_HEAD - _RESPONSE_TAIL
    return f"{text[:_RESPONSE_HEAD]}\n\n[… {cut:,} characters not shown …]\n\n{text[-_RESPONSE_TAIL:]}"


# --------------------------------------------------------------------------------------------- run folder
def load_manifest(run_dir: Path) -> Optional[Manifest]:
    """The run's manifest.json, None when the folder has none (a results.json copied on its own)."""
    path = Path(run_dir) / "manifest.json"
    return load_artifact(Manifest, path, "manifest.json") if path.is_file() else None


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _engine_settings(engine: Mapping[str, Any]) -> dict[str, Any]:
    """An engine description without what names the model itself (identity, adapter, path, weights), plus the
    chat template digest (the same template must frame every model's prompts)."""
    out = _flatten({k: v for k, v in engine.items() if k not in _ENGINE_OWN_KEYS})
    parts = engine.get("parts")
    if isinstance(parts, Mapping) and parts.get("chat_template") is not None:
        out["chat_template"] = parts["chat_template"]
    return out


# --------------------------------------------------------------------------------------------- partial tasks
def partial_info(results: Results, manifest: Optional[Manifest]) -> dict[str, tuple[int, Optional[int]]]:
    """Tasks evaluated on part of their benchmark: task -> (items used, full size)."""
    out: dict[str, tuple[int, Optional[int]]] = {}
    if manifest is not None:
        for t, rec in manifest.tasks.items():
            if rec.partial:
                out[t] = (rec.n, rec.full_n)
    for r in results.rows:
        if r.partial and r.task not in out and results.primary_metrics.get(r.task) == r.metric:
            out[r.task] = (r.n, r.full_n)
    return out


def task_label(task: str, partial: Mapping[str, tuple[int, Optional[int]]]) -> str:
    """The task's name, marked when it ran on part of its benchmark: "musr (partial: 30 of 756)"."""
    if task not in partial:
        return task
    n, full = partial[task]
    return f"{task} (partial: {n} of {full if full is not None else '?'})"


# --------------------------------------------------------------------------------------------- sections
def _settings(manifest: Optional[Manifest], models: list[str], tasks: list[str], results: Results,
              labels: Mapping[str, str]) -> tuple[list, list[str]]:
    """Generation settings per task, and warnings where models were evaluated differently: engine settings
    (``models[m].engine`` other than the model's own identity/adapter/path, and against ``eval_settings``),
    per-model generation parameters (``models[m].eval[task]["generation"]``) against ``tasks[t].generation``,
    and the number of items scored."""
    rows, warnings = [], []
    task_info = manifest.tasks if manifest is not None else {}
    model_info = manifest.models if manifest is not None else {}
    for task in plots.ordered(list(task_info) + tasks):
        info = task_info.get(task)
        gen = info.generation if info is not None else None
        if gen:
            text = ", ".join(f"{k}={short(v, 60)}" for k, v in gen.items())
        elif info is not None and info.output_type == "multiple_choice":
            text = "log-likelihood of each choice (no generation)"
        else:
            text = "–"
        rows.append({"task": labels.get(task, task), "n": info.n if info is not None else "–", "generation": text,
                     "fingerprint": short(info.fingerprint, 24) if info is not None else "–"})
        per_model = {}
        for m in models:
            rec = model_info.get(m)
            got = rec.eval.get(task) if rec is not None else None
            if isinstance(got, Mapping) and isinstance(got.get("generation"), Mapping):
                per_model[m] = got["generation"]
        if per_model:
            if gen:
                per_model = {m: {**gen, **g} for m, g in per_model.items()}
            if len({json.dumps(g, sort_keys=True, default=str) for g in per_model.values()}) > 1 or (
                    gen and any(g != gen for g in per_model.values())):
                warnings.append(f"{task}: models were evaluated with different generation settings: "
                                + "; ".join(f"{m}: {short(g, 120)}" for m, g in per_model.items()))
    engines = {m: _engine_settings(model_info[m].engine) for m in models if m in model_info and model_info[m].engine}
    for key in sorted({k for e in engines.values() for k in e}):
        values = {m: e[key] for m, e in engines.items() if key in e}
        if len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) > 1:
            warnings.append(f"models were evaluated with different engine {key}: "
                            + "; ".join(f"{m}: {short(v, 80)}" for m, v in values.items()))
    if manifest is not None:
        wanted = _flatten(dict(manifest.eval_settings)) if manifest.eval_settings else {}
        for m, e in engines.items():
            off = [f"{k}={short(e[k], 60)} (run setting {short(v, 60)})" for k, v in wanted.items()
                   if k in e and json.dumps(e[k], sort_keys=True, default=str) != json.dumps(v, sort_keys=True,
                                                                                               default=str)]
            if off:
                warnings.append(f"{m} was evaluated with engine settings other than the run's: " + ", ".join(off))
    ns: dict[str, dict[str, int]] = {}
    for r in results.rows:
        if results.primary_metrics.get(r.task) == r.metric:
            ns.setdefault(r.task, {})[r.model] = r.n
    for task, by_model in ns.items():
        if len(set(by_model.values())) > 1:
            warnings.append(f"{task}: models were scored on different numbers of samples ("
                            + ", ".join(f"{m}: {n}" for m, n in by_model.items())
                            + "); paired comparisons use the shared ids only")
    return rows, warnings


def _budget(manifest: Optional[Manifest], task: str) -> str:
    info = manifest.tasks.get(task) if manifest is not None else None
    gen = (info.generation or {}) if info is not None else {}
    for key in ("max_new_tokens", "max_tokens"):
        if gen.get(key) is not None:
            return f"{key}={gen[key]}"
    return "the token budget"


def _truncation(results: Results, manifest: Optional[Manifest], models: list[str], tasks: list[str],
                labels: Mapping[str, str]) -> tuple[list[dict], list[str], list[str]]:
    """Per (model, task) share of completions that stopped at the token budget (a table in the main table's
    layout), warnings above ``TRUNCATION_WARN``, and the tasks that have any truncation row."""
    by = {(r.model, r.task): r for r in results.rows if r.metric == TRUNCATION_METRIC}
    cols = [t for t in tasks if any((m, t) in by for m in models)]
    table, warnings = [], []
    for model in models:
        cells = []
        for task in cols:
            r = by.get((model, task))
            cells.append(None if r is None else {"value": pct(r.value), "ci": ci_text(r.ci_low, r.ci_high),
                                                 "n": r.n, "high": r.value > TRUNCATION_WARN})
        if any(c is not None for c in cells):
            table.append({"model": model, "cells": cells})
    for task in cols:
        high = [(m, by[(m, task)].value) for m in models if (m, task) in by and by[(m, task)].value > TRUNCATION_WARN]
        if high:
            warnings.append(f"{labels.get(task, task)}: " + ", ".join(f"{m} {pct(v)}%" for m, v in high)
                            + f" of completions stopped at the token budget ({_budget(manifest, task)}), over "
                              f"{pct(TRUNCATION_WARN, 0)}%: those scores count cut-off answers")
    return table, warnings, cols


def _main_table(results: Results, models: list[str], tasks: list[str]) -> list[dict]:
    primary = plots.primary_rows(results)
    best = {}
    for task in tasks:
        values = [primary[(m, task)].value for m in models if (m, task) in primary]
        best[task] = max(values) if values else None
    trunc = {(r.model, r.task): r for r in results.rows if r.metric == TRUNCATION_METRIC}
    table = []
    for model in models:
        cells = []
        for task in tasks:
            r = primary.get((model, task))
            t = trunc.get((model, task))
            cells.append(None if r is None else {
                "value": pct(r.value), "ci": ci_text(r.ci_low, r.ci_high), "n": r.n,
                "best": best[task] is not None and abs(r.value - best[task]) < 1e-12 and len(
                    [m for m in models if (m, task) in primary]) > 1,
                "trunc": None if t is None else pct(t.value), "trunc_high": t is not None and t.value > TRUNCATION_WARN,
            })
        table.append({"model": model, "cells": cells})
    return table


def _comparison_tables(results: Results, models: list[str], tasks: list[str], baseline: str) -> tuple[list, list]:
    """Primary-metric deltas vs the baseline model (one row per model) and the pairwise method comparisons,
    with Holm-adjusted p-values across tasks within each (model, baseline) pair."""
    primary = results.primary_metrics
    comps = [c for c in results.comparisons
             if primary.get(c.task) == c.metric and c.metric not in NON_QUALITY_METRICS]
    families: dict[tuple[str, str], list] = {}
    for c in comps:
        families.setdefault((c.model, c.baseline), []).append(c)
    holm: dict[int, float | None] = {}
    for fam in families.values():
        for c, adj in zip(fam, holm_adjust([c.p_value for c in fam])):
            holm[id(c)] = adj

    def cell(c) -> dict | None:
        if c is None:
            return None
        adj = holm[id(c)]
        return {"delta": signed_pct(c.delta), "ci": ci_text(c.ci_low, c.ci_high),
                "p": p_text(c.p_value), "p_holm": p_text(adj), "n": c.n, "wins": c.wins,
                "losses": c.losses, "test": c.test or "",
                "significant": adj is not None and adj < 0.05,
                "sign": "up" if (c.delta or 0) > 0 else "down" if (c.delta or 0) < 0 else ""}

    by_key = {(c.model, c.baseline, c.task): c for c in comps}
    vs_base = [{"model": m, "cells": [cell(by_key.get((m, baseline, t))) for t in tasks]}
               for m in models if m != baseline and any((m, baseline, t) in by_key for t in tasks)]
    rank = {m: i for i, m in enumerate(models)}
    pair_keys = sorted((k for k in families if k[1] != baseline),
                       key=lambda k: (rank.get(k[0], len(rank)), rank.get(k[1], len(rank))))
    pairs = [{"model": a, "baseline": b, "cells": [cell(by_key.get((a, b, t))) for t in tasks]}
             for (a, b) in pair_keys]
    return vs_base, pairs


def _metric_tables(results: Results, models: list[str], tasks: list[str], labels: Mapping[str, str]) -> list[dict]:
    out = []
    for task in tasks:
        rows = [r for r in results.rows if r.task == task]
        metrics = plots.ordered([r.metric for r in rows], results.primary_metrics.get(task))
        by = {(r.model, r.metric): r for r in rows}
        body = []
        for model in models:
            if not any((model, m) in by for m in metrics):
                continue
            body.append({"model": model, "cells": [
                None if (model, m) not in by else {"value": pct(by[model, m].value),
                                                   "ci": ci_text(by[model, m].ci_low, by[model, m].ci_high)}
                for m in metrics]})
        out.append({"task": labels.get(task, task), "primary": results.primary_metrics.get(task),
                    "metrics": metrics, "rows": body})
    return out


def _paper_number(v: float) -> str:
    """As printed: one decimal, except whole counts such as reasoning lengths in words."""
    if v != v:
        return "–"
    return f"{v:.0f}" if v >= 100 and v == int(v) else f"{v:.1f}"


def _paper_section(results: Results, models: list[str],
                   partial: Mapping[str, tuple[int, Optional[int]]]) -> list[dict]:
    """The paper's tables with our numbers (same method and task) beside them, averages checked. A column whose
    task ran on part of its benchmark here is marked "not comparable: partial data" on the paper's cells too."""
    rows = {(r.model, r.task, r.metric): r for r in results.rows}
    primary = results.primary_metrics
    checks = paper.average_checks()
    check_by = {(c.table, c.method, c.teacher, c.average): c for c in checks.itertuples()}
    out = []
    for table_id, df in paper.paper_tables().items():
        columns = list(df.columns)
        coverage = paper.average_coverage(columns)

        def ours(method: str, benchmark: str) -> float | None:
            task, metric = paper.BENCHMARK_TO_TASK_METRIC.get(benchmark, (None, None))
            if task is None:
                return None
            r = rows.get((method, task, metric or primary.get(task, "")))
            return None if r is None else r.value

        def partial_tasks(benchmark: str) -> list[str]:
            covered = coverage.get(benchmark, [benchmark])
            tasks = [paper.BENCHMARK_TO_TASK_METRIC.get(b, (None, None))[0] for b in covered]
            return [task_label(t, partial) for t in tasks if t in partial]

        col_partial = {b: partial_tasks(b) for b in columns}
        has_ours = any(ours(m, b) is not None for m in models for b in columns)
        body = []
        last_row_of = {m: i for i, (m, _) in enumerate(df.index)}  # our row follows the method's last paper row
        for i, ((method, teacher), prow) in enumerate(df.iterrows()):
            cells = []
            for b in columns:
                v = prow[b]
                chk = check_by.get((table_id, method, teacher, b))
                cells.append({"value": _paper_number(v),
                              "recomputed": None if chk is None else f"{chk.recomputed:.1f}",
                              "flag": bool(chk is not None and chk.differs),
                              "note": df.attrs["notes"].get((method, teacher, b), ""),
                              "partial": bool(col_partial[b] and has_ours)})
            body.append({"kind": "paper", "method": method, "teacher": teacher, "cells": cells})
            if method in models and has_ours and last_row_of[method] == i:
                our_cells = []
                for b in columns:
                    if b in coverage:
                        vals = [ours(method, c) for c in coverage[b]]
                        v = sum(vals) / len(vals) if vals and None not in vals else None
                    else:
                        v = ours(method, b)
                    our_cells.append({"value": pct(v) if v is not None else "", "recomputed": None, "flag": False,
                                      "note": "", "partial": bool(col_partial[b]) and v is not None})
                body.append({"kind": "ours", "method": method, "teacher": "this run", "cells": our_cells})
        headers = [{"name": b, "partial": "; ".join(col_partial[b]) if has_ours else ""} for b in columns]
        out.append({"id": table_id, "caption": df.attrs["caption"], "student": df.attrs["student"],
                    "columns": columns, "headers": headers, "rows": body, "has_ours": has_ours})
    return out


def _training(manifest: Optional[Manifest]) -> tuple[list[dict], list[str]]:
    """Per trained model: identity, adapter, training metrics and how much of its targets were cut at the
    training sequence length (``models[m].train["truncation"]``); warnings above ``TRAIN_TOKENS_LOST_WARN``."""
    out, warnings = [], []
    if manifest is None:
        return out, warnings
    for model, info in manifest.models.items():
        if not info.train and info.method is None:
            continue
        train = dict(info.train)
        trunc = train.pop("truncation", None)
        metrics = [(k, number(v)) for k, v in train.items() if not isinstance(v, Mapping)]
        metrics += [(k, short(v, 300)) for k, v in train.items() if isinstance(v, Mapping)]
        trunc_text = None
        if isinstance(trunc, Mapping):
            ex, ex_cut = trunc.get("examples") or 0, trunc.get("examples_truncated") or 0
            tok, tok_lost = trunc.get("target_tokens") or 0, trunc.get("target_tokens_lost") or 0
            share = tok_lost / tok if tok else 0.0
            trunc_text = (f"{ex_cut:,} of {ex:,} examples truncated; {tok_lost:,} of {tok:,} target tokens lost "
                          f"({pct(share, 2)}%)")
            if share > TRAIN_TOKENS_LOST_WARN:
                warnings.append(f"{model} lost {pct(share, 1)}% of its training target tokens to truncation "
                                f"({tok_lost:,} of {tok:,}; {ex_cut:,} of {ex:,} examples), over "
                                f"{pct(TRAIN_TOKENS_LOST_WARN, 0)}%: it learned from cut-off targets")
        out.append({"model": model, "method": info.method or "–", "identity": _describe_model(info.identity),
                    "adapter": short(info.adapter or info.path or "–"), "truncation": trunc_text,
                    "metrics": metrics})
    return out, warnings


def _registered_sensitive(task: str) -> bool:
    """The task class's own ``sensitive`` flag (a second guard: a record that kept its prompt by mistake)."""
    try:
        from tasks.registry import TASK_REGISTRY, task_names

        task_names()
        cls = TASK_REGISTRY.get(task)
        return bool(cls is not None and cls.sensitive)
    except Exception:  # a task module that fails to import must not stop the report
        return False


def _samples(run_dir: Path, manifest: Optional[Manifest], models: list[str], tasks: list[str], k: int,
             labels: Mapping[str, str]) -> tuple[list[dict], list[str]]:
    """A few items per task, the same ids for every model (items the models disagree on first); notes for
    sample files that could not be read."""
    root = run_dir / "samples"
    out, notes = [], []
    task_info = manifest.tasks if manifest is not None else {}
    for task in tasks:
        by_model: dict[str, dict[str, SampleRecord]] = {}
        for model in models:
            path = root / model / f"{task}.jsonl"
            if path.is_file():
                try:
                    by_model[model] = {r.id: r for r in read_samples(path)}
                except SchemaMismatch as e:
                    notes.append(f"samples not shown: {e}")
        if not by_model:
            continue
        records = [r for recs in by_model.values() for r in recs.values()]
        sensitive = (bool(task in task_info and task_info[task].sensitive) or _registered_sensitive(task)
                     or any(r.prompt is None for r in records))
        first = next(iter(by_model.values()))
        ids = list(first)
        disagree = [i for i in ids if len({recs[i].score if i in recs else None for recs in by_model.values()}) > 1]
        chosen = plots.ordered(disagree[:k] + ids)[:k] if not sensitive else ids[: max(k, 10)]
        items = []
        for sid in chosen:
            per_model = []
            for model, recs in by_model.items():
                r = recs.get(sid)
                if r is None:
                    continue
                entry = {"model": model, "score": number(r.score)}
                if not sensitive:
                    response = r.response
                    if response is None and r.responses:
                        response = r.responses[0]
                    entry.update({
                        "response": _clip(str(response or "")),
                        "n_responses": len(r.responses or []),
                        "extracted": short(r.extracted, 300),
                        "finish_reason": str(r.finish_reason or "–"),
                        "truncated": r.truncated,
                        "tokens": r.completion_tokens,
                    })
                per_model.append(entry)
            prompt = None
            if not sensitive:
                src = next((recs[sid] for recs in by_model.values() if sid in recs and recs[sid].prompt is not None),
                           None)
                prompt = _clip(_prompt_text(src.prompt)) if src else None
            items.append({"id": sid, "prompt": prompt, "models": per_model})
        out.append({"task": labels.get(task, task), "sensitive": sensitive, "examples": items})
    return out, notes


def _kv(section: Any) -> list[tuple[str, str]]:
    if not isinstance(section, Mapping):
        return [("value", short(section, 500))] if section else []
    return [(str(k), short(v, 500)) for k, v in section.items()]


# ---- experiments: sweeps, seeds, checkpoint selection ----------------------------------------------------------
_AGGREGATE = "mean_over_seeds"


def _label(model: str, params: Mapping[str, Any]) -> str:
    return model_label(model, {k: v for k, v in params.items() if k not in ("aggregate", "across")})


def display_results(results: Results) -> Results:
    """An experiment's results as the generic sections show them: only the rows aggregated over seeds, one model
    label per (model, cell params), and the seed-aware comparisons. A plain run is returned as it is."""
    if not results.stats.get("experiment"):
        return results
    rows = [r.model_copy(update={"model": _label(r.model, r.params)}) for r in results.rows
            if r.params.get("aggregate") == _AGGREGATE]
    comps = []
    for c in results.comparisons:
        if c.params.get("aggregate") != _AGGREGATE:
            continue
        if "across" in c.params:
            comps.append(c)
        else:
            comps.append(c.model_copy(update={"model": _label(c.model, c.params),
                                              "baseline": _label(c.baseline, c.params)}))
    order = []
    for m in results.model_order:
        order += [r.model for r in rows if r.model.split(" [")[0] == m and r.model not in order]
    return results.model_copy(update={"rows": rows, "comparisons": comps, "model_order": order})


def _seed_table(results: Results) -> dict | None:
    """Per (model, cell) and task: mean ± sd over seeds of the primary metric, beside each seed's value."""
    exp = results.stats.get("experiment") or {}
    if not exp.get("seeds"):
        return None
    tasks = list(results.primary_metrics)
    per_seed: dict[tuple[str, str], dict] = {}
    for r in results.rows:
        if r.metric == results.primary_metrics.get(r.task) and r.seed is not None and "aggregate" not in r.params:
            per_seed.setdefault((_label(r.model, r.params), r.task), {})[r.seed] = r.value
    table = []
    for r in display_results(results).rows:
        if r.metric != results.primary_metrics.get(r.task):
            continue
        row = next((x for x in table if x["model"] == r.model), None)
        if row is None:
            row = {"model": r.model, "cells": {}}
            table.append(row)
        seeds = per_seed.get((r.model, r.task), {})
        row["cells"][r.task] = {"mean": pct(r.value), "sd": pct(r.sd), "ci": ci_text(r.ci_low, r.ci_high),
                                "seeds": ", ".join(f"s{s}: {pct(v)}" for s, v in sorted(seeds.items()))}
    for row in table:
        row["cells"] = [row["cells"].get(t) for t in tasks]
    return {"tasks": tasks, "rows": table, "seeds": exp.get("seeds"), "test": results.stats.get("seed_test", "")}


def _experiment_tables(results: Results) -> list[dict]:
    spec = (results.stats.get("experiment") or {}).get("table")
    if not spec:
        return []
    t = paper.experiment_table(results, spec)

    def fmt(v, unit):
        if v is None:
            return "–"
        return f"{v:.0f}" if unit == "words" else f"{v:.1f}"

    for row in t["rows"]:
        for c in row["cells"]:
            c["paper_text"] = "–" if c["paper"] is None else _paper_number(c["paper"])
            c["ours_text"] = fmt(c["ours"], c["unit"]) + ("" if c["sd"] is None else f" ± {fmt(c['sd'], c['unit'])}")
            c["seeds_text"] = ", ".join(f"s{k}: {fmt(v, c['unit'])}" for k, v in c["per_seed"].items()
                                        if k not in ("None",))
    return [t]


def _selection(manifest: Optional[Manifest]) -> tuple[list[dict], bytes | None]:
    """Checkpoint-selection curves (pool_validation score per kept step) and which step each method uses."""
    if manifest is None:
        return [], None
    out = []
    for name, rec in manifest.models.items():
        sel = (rec.train or {}).get("selection") or {}
        if not sel.get("curve"):
            continue
        out.append({"model": name, "metric": sel.get("metric"), "on": sel.get("on"), "n": sel.get("n"),
                    "selected": sel.get("selected_step"), "last": sel.get("last_step"),
                    "curve": [(c["step"], c["value"]) for c in sel["curve"]],
                    "curve_text": ", ".join(f"{c['step']}: {pct(c['value'])}" for c in sel["curve"])})
    if not out:
        return out, None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    for s in out:
        xs, ys = zip(*s["curve"])
        line, = ax.plot(xs, [100 * (y or 0) for y in ys], marker="o", label=s["model"])
        sel_y = dict(s["curve"]).get(s["selected"])
        if sel_y is not None:
            ax.plot([s["selected"]], [100 * sel_y], marker="*", markersize=14, color=line.get_color())
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(f"{out[0]['metric']} on pool_validation (%)")
    ax.legend(fontsize=7)
    ax.set_title("checkpoint selection (★ = chosen)", fontsize=9)
    fig.tight_layout()
    return out, plots._png(fig)


# ---- training data (data/items.jsonl): what each method learned from, side by side ---------------------------
_STAGE_COLUMNS = ("probe", "critique", "refine", "direct")


def training_data_section(run_dir: Path, manifest: Optional[Manifest], k: int = 6) -> Optional[dict]:
    """Per-stage statistics from the manifest (tokens, cost, seconds, flags, retries, right/wrong, lengths) and,
    for a few pool questions (wrong drafts first), the draft, critique, refinement and direct answer with the
    critique's verdict and its agreement with the gold answer. Every text is untrusted model output: the template
    escapes it."""
    path = run_dir / "data" / "items.jsonl"
    td = (manifest.training_data if manifest is not None else None) or {}
    if not path.exists() and not td:
        return None
    stats = []
    for stage in _STAGE_COLUMNS:
        rec = td.get(stage)
        if isinstance(rec, Mapping):
            stats.append({"stage": stage, "rows": [(key, short(v, 200)) for key, v in rec.items()
                                                     if key not in ("fingerprint",)]})
    pool = td.get("pool") if isinstance(td.get("pool"), Mapping) else {}
    decon = None
    if pool:
        decon = {"source": pool.get("source"), "mode": pool.get("decontamination"), "ngram": pool.get("ngram"),
                 "examined": pool.get("examined"), "removed": pool.get("removed", 0),
                 "by_task": short(pool.get("removed_by_task") or {}, 300),
                 "by_rule": short(pool.get("removed_by_rule") or {}, 200),
                 "against": ", ".join(pool.get("against") or [])}
    examples = []
    if path.exists():
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
        def order(r: dict) -> tuple:
            probe_ok = ((r.get("meta") or {}).get("checks") or {}).get("probe", {}).get("correct")
            return (probe_ok is not False, r.get("id", ""))
        for r in sorted(rows, key=order)[:k]:
            meta = r.get("meta") or {}
            checks = meta.get("checks") or {}
            specific = meta.get("specific_critique") or r.get("critique")
            verdict = conclusion_of(specific) if specific else None
            agrees = checks.get("verdict_agrees")
            usage = meta.get("usage") or {}
            examples.append({
                "id": r.get("id", ""), "question": _clip(r.get("question") or ""),
                "gold": short(r.get("gold_answer") or "–", 200),
                "probe": _clip(r.get("probe") or ""), "critique": _clip(specific or ""),
                "trained_critique": _clip(r.get("critique") or "") if r.get("critique") != specific else None,
                "critique_from": meta.get("critique_from"),
                "refined": _clip(r.get("refined") or ""), "direct": _clip(r.get("direct") or ""),
                "verdict": verdict or "none (flagged)",
                "agrees": "–" if agrees is None else ("yes" if agrees else "no"),
                "probe_correct": {True: "right", False: "wrong", None: "–"}[(checks.get("probe") or {}).get("correct")],
                "refined_correct": {True: "right", False: "wrong", None: "–"}[
                    (checks.get("refined") or {}).get("correct")],
                "flagged": bool((usage.get("critique") or {}).get("flagged")),
                "retries": (usage.get("critique") or {}).get("retries", 0)})
    total = td.get("teacher_total") if isinstance(td.get("teacher_total"), Mapping) else None
    return {"stats": stats, "decontamination": decon, "examples": examples,
            "total": [(key, short(v, 100)) for key, v in total.items()] if total else [],
            "filter": short(td.get("correctness_filter"), 200) if td.get("correctness_filter") else None}


def build_context(run_dir: Path, samples_per_task: int = 3, baseline_model: str = "base",
                  results: Results | None = None) -> dict:
    """Everything the template shows, computed from a run folder (tolerates missing models, tasks and files)."""
    run_dir = Path(run_dir)
    results = results if results is not None else load_results(run_dir / "results.json")
    full_results = results
    results = display_results(results)
    manifest = load_manifest(run_dir)
    selection, selection_png = _selection(manifest)
    models = [m for m in plots.model_order(results, baseline_model) if any(r.model == m for r in results.rows)]
    tasks = plots.ordered(list(results.primary_metrics) + [r.task for r in results.rows])
    tasks = [t for t in tasks if any(r.task == t for r in results.rows)]
    partial = partial_info(results, manifest)
    labels = {t: task_label(t, partial) for t in {*tasks, *(manifest.tasks if manifest else {})}}
    config = redact(manifest.config if manifest is not None else {})
    settings, warnings = _settings(manifest, models, tasks, results, labels)
    truncation, truncation_warnings, truncation_tasks = _truncation(results, manifest, models, tasks, labels)
    training, training_warnings = _training(manifest)
    samples, sample_notes = _samples(run_dir, manifest, models, tasks, samples_per_task, labels)
    notes = [*truncation_warnings, *training_warnings]
    notes += [f"{labels[t]}: evaluated on part of the benchmark; its numbers are not comparable to full-benchmark "
              "results (the paper's included)" for t in tasks if t in partial]
    notes += [str(w) for w in (manifest.warnings if manifest is not None else [])] + sample_notes
    vs_base, pairs = _comparison_tables(results, models, tasks, baseline_model)
    primary_png = plots.primary_metric_chart(results, baseline_model)
    deltas_png = plots.deltas_chart(results, baseline_model)
    base_rec = manifest.models.get(baseline_model) if manifest is not None else None
    student = _describe_model(config.get("student") or (base_rec.identity if base_rec else None))
    base_identity = base_rec.identity if base_rec else None
    if base_identity and base_identity != student:
        student = f"{student} ({short(base_identity, 120)})"
    summary = _config_summary(config)
    if manifest is not None and manifest.skipped_tasks:
        summary.insert(0, ("skipped tasks", short(manifest.skipped_tasks, 400)))
    m = manifest
    return {
        "run_id": results.run_id or (m.run_id if m else run_dir.name),
        "created": m.created if m else "–",
        "command": short(m.command if m and m.command else "–", 2000),
        "student": student,
        "teacher": _teacher_text(config.get("teacher")),
        "config_summary": summary,
        "config_json": json.dumps(config, indent=2, sort_keys=True, default=str),
        "eval_settings": _kv(redact(m.eval_settings)) if m else [],
        "settings": settings,
        "warnings": warnings,
        "notes": notes,
        "baseline": baseline_model,
        "models": models,
        "tasks": tasks,
        "task_labels": labels,
        "primary_metrics": results.primary_metrics,
        "main_table": _main_table(results, models, tasks),
        "truncation_table": truncation,
        "truncation_tasks": truncation_tasks,
        "truncation_warn": pct(TRUNCATION_WARN, 0),
        "vs_base": vs_base,
        "pairs": pairs,
        "metric_tables": _metric_tables(results, models, tasks, labels),
        "paper_tables": _paper_section(results, models, partial),
        "training": training,
        "training_data": training_data_section(run_dir, m),
        "samples": samples,
        "manifest_sections": [(name, _kv(redact(getattr(m, name)))) if m else (name, [])
                              for name in ("versions", "git", "hardware", "seeds", "training_data", "cache",
                                           "timings_seconds")],
        "plots": {name: base64.b64encode(png).decode("ascii")
                  for name, png in (("primary", primary_png), ("deltas", deltas_png), ("selection", selection_png))
                  if png is not None},
        "plot_bytes": {"primary": primary_png, "deltas": deltas_png, "selection": selection_png},
        "experiment_tables": _experiment_tables(full_results),
        "seed_table": _seed_table(full_results),
        "selection": selection,
        "experiment_cells": ((m.experiment or {}).get("cells") or []) if m else [],
        "stats": results.stats,
    }


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every value is untrusted text unless marked otherwise (nothing is)
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_report(run_dir: Path, out_path: Path | None = None, samples_per_task: int = 3,
                  baseline_model: str = "base") -> Path:
    """Write ``report.html`` (and ``plots/*.png``) into the run folder; return the report's path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"no run folder at {run_dir}; pass a folder under results/")
    ctx = build_context(run_dir, samples_per_task=samples_per_task, baseline_model=baseline_model)
    plot_dir = run_dir / "plots"
    for name, png in ctx.pop("plot_bytes").items():
        if png is not None:
            plot_dir.mkdir(exist_ok=True)
            (plot_dir / f"{name}.png").write_bytes(png)
    html = _environment().get_template("report.html").render(**ctx)
    out = Path(out_path) if out_path else run_dir / "report.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out
