"""Training and training data: per trained model its identity, adapter, training metrics and target
truncation; checkpoint-selection curves; what each method learned from, side by side."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from harness.common.artifacts import Manifest, TrainRecord, TruncationCounts
from harness.common.item_meta import GoldChecks, ItemMeta
from harness.common.labels import conclusion_of
from harness.common.limits import TARGET_TOKENS_LOST_WARN
from harness.common.stages import STAGES, Stage
from harness.reports import plots
from harness.reports.fmt import clip, describe_model, number, pct, prompt_text, short

#: The per-model summary table: (row, its value from a TrainRecord; None: "–"), in the order shown.
_SUMMARY: tuple[tuple[str, Callable[[TrainRecord], Any]], ...] = (
    ("steps", lambda t: t.steps), ("max_steps", lambda t: t.max_steps), ("epochs", lambda t: t.epochs),
    ("examples", lambda t: t.examples), ("examples_trained", lambda t: t.examples_trained),
    ("tokens_seen", lambda t: t.tokens_seen), ("tokens_per_epoch", lambda t: t.tokens_per_epoch),
    ("completion_tokens_per_epoch", lambda t: t.completion_tokens_per_epoch),
    ("train_loss", lambda t: t.train_loss), ("seconds", lambda t: t.seconds),
    ("train_runtime", lambda t: t.train_runtime), ("trainable_params", lambda t: t.trainable_params),
    ("total_params", lambda t: t.total_params), ("device", lambda t: t.device), ("bf16", lambda t: t.bf16),
    ("budget", lambda t: t.exposure.budget if t.exposure else None),
    ("data_passes", lambda t: round(t.exposure.data_passes, 4) if t.exposure else None),
    ("rows_per_pass", lambda t: t.exposure.rows if t.exposure else None),
    ("global_batch", lambda t: t.exposure.global_batch if t.exposure else None),
    ("own_recipe", lambda t: t.own_recipe), ("reused", lambda t: t.reused),
)


def _details(train: TrainRecord) -> list[tuple[str, str]]:
    """The nested settings of one trained model, one line each (shown per method under "details")."""
    recipe = {"own": True, **train.recipe} if train.recipe is not None else {"own": False}
    parts = [("config", train.config), ("versions", train.versions),
             ("exposure", train.exposure.model_dump(mode="json") if train.exposure else None),
             ("selection", train.selection.model_dump(mode="json", exclude_defaults=True)), ("recipe", recipe),
             ("exposure_warnings", train.exposure_warnings)]
    return [(k, short(v, 300)) for k, v in parts if v is not None]


def _truncation_text(model: str, trunc: TruncationCounts, warnings: list[str]) -> str:
    """One line on the training targets cut by train.max_length; a warning above ``TARGET_TOKENS_LOST_WARN``."""
    ex, ex_cut, tok, tok_lost = trunc.examples, trunc.examples_truncated, trunc.target_tokens, trunc.target_tokens_lost
    if trunc.lost_share > TARGET_TOKENS_LOST_WARN:
        warnings.append(f"{model} lost {pct(trunc.lost_share, 1)}% of its training target tokens to truncation "
                        f"({tok_lost:,} of {tok:,}; {ex_cut:,} of {ex:,} examples), over "
                        f"{pct(TARGET_TOKENS_LOST_WARN, 0)}%: it learned from cut-off targets")
    return (f"{ex_cut:,} of {ex:,} examples truncated; {tok_lost:,} of {tok:,} target tokens lost "
            f"({pct(trunc.lost_share, 2)}%)")


def training_example(run_dir: Path, method: str) -> Optional[dict]:
    """The first training example of a method (``data/<method>.jsonl``: prompt messages and completion) as
    role-labelled text: what the method learns to write."""
    path = Path(run_dir) / "data" / f"{method}.jsonl"
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as fh:
        line = fh.readline()
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return {"id": str(row.get("id", "")), "prompt": clip(prompt_text(row.get("prompt") or "")),
            "completion": clip(prompt_text(row.get("completion") or ""))}


def loss_chart(curves: Mapping[str, list[tuple[float, float]]], colours: Mapping[str, str]) -> bytes | None:
    """Training loss per optimiser step, one line per method."""
    curves = {m: c for m, c in curves.items() if c}
    if not curves:
        return None
    fig = plots.figure(6, 3.2)
    ax = fig.subplots()
    for m, c in curves.items():
        xs, ys = zip(*c)
        ax.plot(xs, ys, marker="o", markersize=3, label=m, color=colours.get(m))
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss (each method on its own targets: not comparable across methods)", fontsize=8)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return plots.png(fig)


def training_section(manifest: Optional[Manifest], run_dir: Path) -> tuple[dict, list[str]]:
    """Per trained model: a summary table (steps, examples, tokens, data passes, loss, own recipe, ...), details
    (identity, adapter, nested settings), target truncation, the loss curve and one formatted training example;
    warnings above ``TARGET_TOKENS_LOST_WARN`` of target tokens lost."""
    out: dict = {"models": [], "summary_keys": [], "summary": [], "curves": {}}
    warnings: list[str] = []
    if manifest is None:
        return out, warnings
    for model, info in manifest.models.items():
        if info.train is None and info.method is None:
            continue
        train = info.train
        out["curves"][model] = [(float(step), float(loss)) for step, loss in train.loss_curve] if train else []
        out["models"].append({"model": model, "method": info.method or "–",
                              "identity": describe_model(info.identity),
                              "adapter": short(info.adapter or info.path or "–"),
                              "truncation": _truncation_text(model, train.truncation, warnings) if train else None,
                              "scalars": {k: get(train) for k, get in _SUMMARY} if train else {},
                              "details": _details(train) if train else [],
                              "example": training_example(run_dir, info.method or model)})
    keys = [k for k, _ in _SUMMARY if any(m["scalars"].get(k) is not None for m in out["models"])]
    out["summary_keys"] = keys
    out["summary"] = [(k, [number(m["scalars"][k]) if m["scalars"].get(k) is not None else "–"
                           for m in out["models"]]) for k in keys]
    return out, warnings


def selection_section(manifest: Optional[Manifest]) -> tuple[list[dict], bytes | None]:
    """Checkpoint-selection curves (pool_validation score per kept step) and which step each method uses."""
    if manifest is None:
        return [], None
    out = []
    for name, rec in manifest.models.items():
        sel = rec.train.selection if rec.train is not None else None
        if sel is None or not sel.curve:
            continue
        out.append({"model": name, "metric": sel.metric, "on": sel.on, "n": sel.n, "test_set": sel.test_set_selection,
                    "selected": sel.selected_step, "last": sel.last_step,
                    "curve": [(c.step, c.value) for c in sel.curve],
                    "curve_text": ", ".join(f"{c.step}: {pct(c.value)}" for c in sel.curve)})
    if not out:
        return out, None
    fig = plots.figure(6, 3.2)
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
    return out, plots.png(fig)


_STAGE_COLUMNS = STAGES
#: (example key, heading) of the training-data examples; a column no example has text in is left out.
_EXAMPLE_COLUMNS = (("probe", "draft (student)"), ("critique", "critique (teacher)"),
                    ("refined", "refinement (teacher)"), ("direct", "direct answer (teacher)"))


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
        metas = {id(r): ItemMeta.from_dict(r.get("meta") or {}) for r in rows}

        def order(r: dict) -> tuple:
            probe_ok = (metas[id(r)].checks or GoldChecks()).correct(Stage.probe)
            return (probe_ok is not False, r.get("id", ""))
        for r in sorted(rows, key=order)[:k]:
            meta = metas[id(r)]
            checks = meta.checks or GoldChecks()
            specific = meta.teacher_critique(r.get("critique"))
            verdict = conclusion_of(specific) if specific else None
            agrees = checks.verdict_agrees
            usage = meta.usage(Stage.critique)
            examples.append({
                "id": r.get("id", ""), "question": clip(r.get("question") or ""),
                "gold": short(r.get("gold_answer") or "–", 200),
                "probe": clip(r.get("probe") or ""), "critique": clip(specific or ""),
                "trained_critique": clip(r.get("critique") or "") if r.get("critique") != specific else None,
                "critique_from": meta.critique_swap.came_from if meta.critique_swap else None,
                "refined": clip(r.get("refined") or ""), "direct": clip(r.get("direct") or ""),
                "verdict": verdict or "none (flagged)",
                "agrees": "–" if agrees is None else ("yes" if agrees else "no"),
                "probe_correct": {True: "right", False: "wrong", None: "–"}[checks.correct(Stage.probe)],
                "refined_correct": {True: "right", False: "wrong", None: "–"}[checks.correct(Stage.refine)],
                "flagged": usage.flagged, "retries": usage.retries})
    columns = [c for c in _EXAMPLE_COLUMNS if any(ex[c[0]] for ex in examples)]
    total = td.get("teacher_total") if isinstance(td.get("teacher_total"), Mapping) else None
    return {"stats": stats, "decontamination": decon, "examples": examples, "columns": columns,
            "total": [(key, short(v, 100)) for key, v in total.items()] if total else [],
            "filter": short(td.get("correctness_filter"), 200) if td.get("correctness_filter") else None}
