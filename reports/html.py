"""The self-contained HTML report of a run folder (inline CSS, plots as base64 PNG, no external resources).

Everything that came from a model or a dataset is rendered through Jinja2 with autoescaping on: model output is
untrusted text. Tasks whose sample records carry no ``prompt`` (sensitive benchmarks such as GPQA, whose questions
must not be published) show sample ids and scores only.
"""
from __future__ import annotations

import re

import base64
import json
import math
from pathlib import Path
from typing import Any, Mapping

import jinja2

from reports import paper, plots
from reports.stats import holm_adjust, load_results

TEMPLATES = Path(__file__).with_name("templates")
_RESPONSE_HEAD = 2500  # characters kept from the start and from the end of a long response
_RESPONSE_TAIL = 1500
# Whole words of a key name (api_key, hf_token, password): "max_new_tokens" is a budget, not a secret.
_SECRET_WORDS = {"key", "apikey", "token", "secret", "password", "credential", "credentials"}
_SETTING_KEYS = ("engine", "generation", "eval_settings", "sampling", "chat_template_hash", "dtype", "max_model_len")


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
def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); regenerate it") from None


def _read_jsonl(path: Path) -> list[dict]:
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut short by an interrupted run: the rest is still worth showing
    return out


# --------------------------------------------------------------------------------------------- sections
def _settings(manifest: Mapping, models: list[str], tasks: list[str], results: Mapping) -> tuple[list, list[str]]:
    """Generation settings per task, and warnings where models were evaluated differently."""
    rows, warnings = [], []
    task_info = manifest.get("tasks") or {}
    for task in plots.ordered(list(task_info) + tasks):
        info = task_info.get(task) or {}
        gen = info.get("generation")
        per_model = isinstance(gen, Mapping) and gen and all(k in models for k in gen) and all(
            isinstance(v, Mapping) for v in gen.values())
        if per_model:
            distinct = {json.dumps(v, sort_keys=True) for v in gen.values()}
            if len(distinct) > 1:
                warnings.append(f"{task}: models were evaluated with different generation settings: "
                                + "; ".join(f"{m}: {short(v, 120)}" for m, v in gen.items()))
            gen = next(iter(gen.values()))
        if isinstance(gen, Mapping):
            text = ", ".join(f"{k}={short(v, 60)}" for k, v in gen.items())
        elif info.get("output_type") == "multiple_choice":
            text = "log-likelihood of each choice (no generation)"
        else:
            text = short(gen) if gen else "–"
        rows.append({"task": task, "n": info.get("n", "–"), "generation": text})
    model_info = manifest.get("models") or {}
    for key in _SETTING_KEYS:
        values = {m: json.dumps(model_info[m][key], sort_keys=True, default=str)
                  for m in models if isinstance(model_info.get(m), Mapping) and key in model_info[m]}
        if len(set(values.values())) > 1:
            warnings.append(f"models were evaluated with different {key}: "
                            + "; ".join(f"{m}: {short(json.loads(v), 80)}" for m, v in values.items()))
    ns: dict[str, dict[str, int]] = {}
    for r in results["rows"]:
        if results["primary_metrics"].get(r["task"]) == r["metric"]:
            ns.setdefault(r["task"], {})[r["model"]] = r["n"]
    for task, by_model in ns.items():
        if len(set(by_model.values())) > 1:
            warnings.append(f"{task}: models were scored on different numbers of samples ("
                            + ", ".join(f"{m}: {n}" for m, n in by_model.items())
                            + "); paired comparisons use the shared ids only")
    warnings.extend(str(w) for w in manifest.get("warnings") or [])
    return rows, warnings


def _main_table(results: Mapping, models: list[str], tasks: list[str]) -> list[dict]:
    primary = plots.primary_rows(results)
    best = {}
    for task in tasks:
        values = [primary[(m, task)]["value"] for m in models if (m, task) in primary]
        best[task] = max(values) if values else None
    table = []
    for model in models:
        cells = []
        for task in tasks:
            r = primary.get((model, task))
            cells.append(None if r is None else {
                "value": pct(r["value"]), "ci": ci_text(r["ci_low"], r["ci_high"]), "n": r["n"],
                "best": best[task] is not None and abs(r["value"] - best[task]) < 1e-12 and len(
                    [m for m in models if (m, task) in primary]) > 1,
            })
        table.append({"model": model, "cells": cells})
    return table


def _comparison_tables(results: Mapping, models: list[str], tasks: list[str], baseline: str) -> tuple[list, list]:
    """Primary-metric deltas vs the baseline model (one row per model) and the pairwise method comparisons,
    with Holm-adjusted p-values across tasks within each (model, baseline) pair."""
    primary = results["primary_metrics"]
    comps = [c for c in results["comparisons"] if primary.get(c["task"]) == c["metric"]]
    families: dict[tuple[str, str], list[dict]] = {}
    for c in comps:
        families.setdefault((c["model"], c["baseline"]), []).append(c)
    holm: dict[int, float | None] = {}
    for fam in families.values():
        for c, adj in zip(fam, holm_adjust([c["p_value"] for c in fam])):
            holm[id(c)] = adj

    def cell(c: dict | None) -> dict | None:
        if c is None:
            return None
        adj = holm[id(c)]
        return {"delta": signed_pct(c["delta"]), "ci": ci_text(c["ci_low"], c["ci_high"]),
                "p": p_text(c["p_value"]), "p_holm": p_text(adj), "n": c["n"], "wins": c["wins"],
                "losses": c["losses"], "test": c.get("test", ""),
                "significant": adj is not None and adj < 0.05,
                "sign": "up" if (c["delta"] or 0) > 0 else "down" if (c["delta"] or 0) < 0 else ""}

    by_key = {(c["model"], c["baseline"], c["task"]): c for c in comps}
    vs_base = [{"model": m, "cells": [cell(by_key.get((m, baseline, t))) for t in tasks]}
               for m in models if m != baseline and any((m, baseline, t) in by_key for t in tasks)]
    pairs = [{"model": a, "baseline": b, "cells": [cell(by_key.get((a, b, t))) for t in tasks]}
             for (a, b) in families if b != baseline]
    return vs_base, pairs


def _metric_tables(results: Mapping, models: list[str], tasks: list[str]) -> list[dict]:
    out = []
    for task in tasks:
        rows = [r for r in results["rows"] if r["task"] == task]
        metrics = plots.ordered([r["metric"] for r in rows], results["primary_metrics"].get(task))
        by = {(r["model"], r["metric"]): r for r in rows}
        body = []
        for model in models:
            if not any((model, m) in by for m in metrics):
                continue
            body.append({"model": model, "cells": [
                None if (model, m) not in by else {"value": pct(by[model, m]["value"]),
                                                   "ci": ci_text(by[model, m]["ci_low"], by[model, m]["ci_high"])}
                for m in metrics]})
        out.append({"task": task, "primary": results["primary_metrics"].get(task), "metrics": metrics, "rows": body})
    return out


def _paper_number(v: float) -> str:
    """As printed: one decimal, except whole counts such as reasoning lengths in words."""
    if v != v:
        return "–"
    return f"{v:.0f}" if v >= 100 and v == int(v) else f"{v:.1f}"


def _paper_section(results: Mapping, models: list[str]) -> list[dict]:
    """The paper's tables with our numbers (same method and task) beside them, averages checked."""
    rows = {(r["model"], r["task"], r["metric"]): r for r in results["rows"]}
    primary = results["primary_metrics"]
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
            return None if r is None else r["value"]

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
                              "note": df.attrs["notes"].get((method, teacher, b), "")})
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
                                      "note": ""})
                body.append({"kind": "ours", "method": method, "teacher": "this run", "cells": our_cells})
        out.append({"id": table_id, "caption": df.attrs["caption"], "student": df.attrs["student"],
                    "columns": columns, "rows": body, "has_ours": has_ours})
    return out


def _training(manifest: Mapping, models: list[str]) -> list[dict]:
    out = []
    for model, info in (manifest.get("models") or {}).items():
        if not isinstance(info, Mapping):
            continue
        metrics = info.get("train_metrics") or {}
        if not metrics and "adapter" not in info:
            continue
        out.append({"model": model, "identity": _describe_model(info.get("identity")),
                    "adapter": short(info.get("adapter") or info.get("path") or "–"),
                    "metrics": [(k, number(v)) for k, v in metrics.items()]})
    return out


def _registered_sensitive(task: str) -> bool:
    """The task class's own ``sensitive`` flag (a second guard: a record that kept its prompt by mistake)."""
    try:
        from tasks.registry import TASK_REGISTRY, task_names

        task_names()
        cls = TASK_REGISTRY.get(task)
        return bool(cls is not None and cls.sensitive)
    except Exception:  # a task module that fails to import must not stop the report
        return False


def _samples(run_dir: Path, manifest: Mapping, models: list[str], tasks: list[str], k: int) -> list[dict]:
    """A few items per task, the same ids for every model (items the models disagree on first)."""
    root = run_dir / "samples"
    out = []
    task_info = manifest.get("tasks") or {}
    for task in tasks:
        by_model: dict[str, dict[str, dict]] = {}
        for model in models:
            path = root / model / f"{task}.jsonl"
            if path.is_file():
                by_model[model] = {str(r.get("id")): r for r in _read_jsonl(path)}
        if not by_model:
            continue
        records = [r for recs in by_model.values() for r in recs.values()]
        sensitive = (bool((task_info.get(task) or {}).get("sensitive")) or _registered_sensitive(task)
                     or any("prompt" not in r for r in records))
        first = next(iter(by_model.values()))
        ids = list(first)
        disagree = [i for i in ids if len({(recs.get(i) or {}).get("score") for recs in by_model.values()}) > 1]
        chosen = plots.ordered(disagree[:k] + ids)[:k] if not sensitive else ids[: max(k, 10)]
        items = []
        for sid in chosen:
            per_model = []
            for model, recs in by_model.items():
                r = recs.get(sid)
                if r is None:
                    continue
                entry = {"model": model, "score": number(r.get("score")) if r.get("score") is not None else "–"}
                if not sensitive:
                    response = r.get("response")
                    if response is None and r.get("responses"):
                        response = r["responses"][0]
                    entry.update({
                        "response": _clip(str(response or "")),
                        "n_responses": len(r.get("responses") or []),
                        "extracted": short(r.get("extracted"), 300),
                        "finish_reason": str(r.get("finish_reason", "–")),
                        "tokens": r.get("completion_tokens", "–"),
                    })
                per_model.append(entry)
            prompt = None
            if not sensitive:
                src = next((recs[sid] for recs in by_model.values() if sid in recs and "prompt" in recs[sid]), None)
                prompt = _clip(_prompt_text(src["prompt"])) if src else None
            items.append({"id": sid, "prompt": prompt, "models": per_model})
        out.append({"task": task, "sensitive": sensitive, "examples": items})
    return out


def _kv(section: Any) -> list[tuple[str, str]]:
    if not isinstance(section, Mapping):
        return [("value", short(section, 500))] if section else []
    return [(str(k), short(v, 500)) for k, v in section.items()]


def build_context(run_dir: Path, samples_per_task: int = 3, baseline_model: str = "base",
                  results: Mapping | None = None) -> dict:
    """Everything the template shows, computed from a run folder (tolerates missing models, tasks and files)."""
    run_dir = Path(run_dir)
    manifest = _read_json(run_dir / "manifest.json")
    results = results if results is not None else load_results(run_dir / "results.json")
    model_info = manifest.get("models") or {}
    models = plots.ordered([m for m in model_info] + [r["model"] for r in results["rows"]], baseline_model)
    models = [m for m in models if any(r["model"] == m for r in results["rows"])] or models
    tasks = plots.ordered(list(results["primary_metrics"]) + [r["task"] for r in results["rows"]])
    tasks = [t for t in tasks if any(r["task"] == t for r in results["rows"])]
    config = redact(manifest.get("config") or {})
    settings, warnings = _settings(manifest, models, tasks, results)
    vs_base, pairs = _comparison_tables(results, models, tasks, baseline_model)
    primary_png = plots.primary_metric_chart(results, baseline_model)
    deltas_png = plots.deltas_chart(results, baseline_model)
    student = _describe_model(config.get("student") or (model_info.get(baseline_model) or {}).get("identity"))
    base_identity = (model_info.get(baseline_model) or {}).get("identity")
    if base_identity and base_identity != student:
        student = f"{student} ({short(base_identity, 120)})"
    summary = _config_summary(config)
    if manifest.get("skipped_tasks"):
        summary.insert(0, ("skipped tasks", short(manifest["skipped_tasks"], 400)))
    return {
        "run_id": results.get("run_id") or manifest.get("run_id", run_dir.name),
        "created": manifest.get("created", "–"),
        "command": short(manifest.get("command", "–"), 2000),
        "student": student,
        "teacher": _teacher_text(config.get("teacher")),
        "config_summary": summary,
        "config_json": json.dumps(config, indent=2, sort_keys=True, default=str),
        "settings": settings,
        "warnings": warnings,
        "baseline": baseline_model,
        "models": models,
        "tasks": tasks,
        "primary_metrics": results["primary_metrics"],
        "main_table": _main_table(results, models, tasks),
        "vs_base": vs_base,
        "pairs": pairs,
        "metric_tables": _metric_tables(results, models, tasks),
        "paper_tables": _paper_section(results, models),
        "training": _training(manifest, models),
        "samples": _samples(run_dir, manifest, models, tasks, samples_per_task),
        "manifest_sections": [(name, _kv(manifest.get(name))) for name in
                              ("versions", "git", "hardware", "seeds", "data_hashes")],
        "plots": {name: base64.b64encode(png).decode("ascii")
                  for name, png in (("primary", primary_png), ("deltas", deltas_png)) if png is not None},
        "plot_bytes": {"primary": primary_png, "deltas": deltas_png},
        "stats": results.get("stats") or {},
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
