"""The per-sample explorer: every item of every task, one question's responses from every model side by side
with the gold answer, the extracted answer and the metric; filtered by task, model, outcome (right, wrong, models
disagree, base right and this model wrong, ...) and a text search, by inline JavaScript that works offline.

The data travels as JSON in a ``<script type="application/json">`` block with ``<``, ``>`` and ``&`` written as
``\\u003c``, ``\\u003e``, ``\\u0026`` (so no model text can close the block), and the script puts every value on
the page with ``textContent``, never as HTML. Sensitive benchmarks (questions that must not be published) carry ids
and scores only.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from markupsafe import Markup

from harness.reports.fmt import clip, prompt_text, short
from harness.reports.sections.diagnostics import failure_status
from harness.reports.sections.samples import SampleSet

#: Characters kept from the start and the end of a long response or prompt in the explorer.
_HEAD, _TAIL = 1500, 500


def _value(v: Any, limit: int = 600) -> str | None:
    return None if v is None else short(v, limit)


def json_for_script(data: Any) -> Markup:
    """JSON safe inside a <script> element: nothing in it can end the element or open a comment."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for ch, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return Markup(text)  # noqa: S704  (escaped above: no '<', '>' or '&' is left)


def explorer_data(samples: SampleSet, models: list[str], tasks: list[str], labels: Mapping[str, str],
                  primary_metrics: Mapping[str, str], baseline: str) -> dict:
    """Every item of every task: {"models", "baseline", "tasks": [...], "items": [{t, id, q, gold, r: [per model:
    {s, x, o, f, k} or null]}]}."""
    shown_models = [m for m in models if any(m in samples.by_model(t) for t in tasks)]
    task_list, items = [], []
    for task in tasks:
        by_model = samples.by_model(task)
        if not by_model:
            continue
        sensitive = samples.sensitive.get(task, False)
        ti = len(task_list)
        task_list.append({"label": labels.get(task, task), "metric": primary_metrics.get(task, "score"),
                          "sensitive": sensitive})
        ids = list(dict.fromkeys(i for recs in by_model.values() for i in recs))
        for sid in ids:
            per_model = []
            src = None
            for m in shown_models:
                r = by_model.get(m, {}).get(sid)
                if r is None:
                    per_model.append(None)
                    continue
                src = src or r
                entry = {"s": r.score}
                if not sensitive:
                    entry.update({"x": _value(r.extracted, 300), "o": clip(samples.text(r), _HEAD, _TAIL),
                                  "f": r.finish_reason or "", "k": r.completion_tokens,
                                  "st": failure_status(r.details)})
                per_model.append(entry)
            item = {"t": ti, "id": sid, "r": per_model}
            if not sensitive and src is not None:
                item["q"] = clip(prompt_text(src.prompt), _HEAD, _TAIL) if src.prompt is not None else ""
                item["gold"] = _value(src.gold) or ""
            items.append(item)
    return {"models": shown_models, "baseline": baseline, "tasks": task_list, "items": items}


def explorer_section(samples: SampleSet, models: list[str], tasks: list[str], labels: Mapping[str, str],
                     primary_metrics: Mapping[str, str], baseline: str) -> dict:
    data = explorer_data(samples, models, tasks, labels, primary_metrics, baseline)
    return {"json": json_for_script(data), "n_items": len(data["items"]), "models": data["models"],
            "tasks": data["tasks"], "notes": samples.notes}
