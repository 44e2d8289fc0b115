"""The verdict, first on the page: a method x task grid of the paired change against the base model (and between
the methods the run compares), each with its interval and significance marker, and generated sentences saying
what changed significantly, which tasks are uninformative (every model at 0 or at 100%), what the secondary
metrics add, and what the intervals cover (item sampling only, or training seeds too)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from harness.common.artifacts import Results
from harness.reports import plots
from harness.reports.changes import ALPHA, Change, tested_changes
from harness.reports.fmt import ci_text, p_text, pct, signed_pct

#: A change this small (in points) is reported as "no change" whatever its test says.
_FLAT_POINTS = 0.05


@dataclass
class VerdictCell:
    delta: str
    ci: str
    p: str
    p_holm: str
    significant: bool
    disagrees: bool
    sign: str
    uninformative: bool


@dataclass
class VerdictRow:
    label: str  # "sft − base"
    cells: list[VerdictCell | None]


@dataclass
class Verdict:
    tasks: list[str]
    rows: list[VerdictRow]
    sentences: list[str]
    bounded: dict[str, str]  # task -> "floor" | "ceiling"
    footnotes: list[str] = field(default_factory=list)


def bounded_tasks(results: Results, models: list[str]) -> dict[str, tuple[str, int]]:
    """Tasks where every model scored 0 (floor) or 1 (ceiling) on the primary metric: task -> (kind, n)."""
    primary = plots.primary_rows(results)
    out = {}
    for task in results.primary_metrics:
        rows = [primary[(m, task)] for m in models if (m, task) in primary]
        if len(rows) < 2:
            continue
        if all(r.value <= 1e-12 for r in rows):
            out[task] = ("floor", max(r.n for r in rows))
        elif all(r.value >= 1 - 1e-12 for r in rows):
            out[task] = ("ceiling", max(r.n for r in rows))
    return out


def _cell(ch: Change, uninformative: bool) -> VerdictCell:
    c = ch.comparison
    return VerdictCell(delta=signed_pct(c.delta), ci=ci_text(c.ci_low, c.ci_high), p=p_text(c.p_value),
                       p_holm=p_text(ch.p_holm, "Holm p"), significant=ch.significant, disagrees=ch.disagrees,
                       sign="up" if (c.delta or 0) > 0 else "down" if (c.delta or 0) < 0 else "",
                       uninformative=uninformative)


def _points(delta: float | None) -> str:
    return f"{signed_pct(delta)} points"


def _pair_sentence(label: str, changes: list[Change], labels: Mapping[str, str], bounded: Mapping) -> str:
    """One sentence per compared pair: its significant changes, then the rest in brief."""
    sig = [ch for ch in changes if ch.significant and ch.comparison.task not in bounded]
    rest = [ch for ch in changes if not ch.significant and ch.comparison.task not in bounded]
    parts = [f"{_points(ch.comparison.delta)} on {labels.get(ch.comparison.task, ch.comparison.task)} "
             f"(significant, {p_text(ch.p_holm, 'Holm p')})" for ch in sig]
    if rest:
        parts.append("no significant change on " + ", ".join(
            f"{labels.get(ch.comparison.task, ch.comparison.task)} ({signed_pct(ch.comparison.delta)})"
            for ch in rest))
    return f"{label}: " + "; ".join(parts) + "." if parts else ""


def _best_sentence(results: Results, models: list[str], task: str, label: str,
                   changes: Mapping[tuple[str, str, str], Change]) -> str:
    """Which model scores highest on a task, and whether that lead over each other model is significant."""
    primary = plots.primary_rows(results)
    scored = [(primary[(m, task)].value, m) for m in models if (m, task) in primary]
    if len(scored) < 2:
        return ""
    top_value, top = max(scored)
    ties = [m for v, m in scored if abs(v - top_value) < 1e-12]
    if len(ties) > 1:
        return f"{label}: {', '.join(ties)} tie at {pct(top_value)}%."
    beaten, unclear = [], []
    for _, other in scored:
        if other == top:
            continue
        ch = changes.get((top, other, task)) or changes.get((other, top, task))
        (beaten if ch is not None and ch.significant else unclear).append(other)
    text = f"{label}: highest is {top} ({pct(top_value)}%)"
    if beaten:
        text += f", significantly above {', '.join(beaten)}"
    if unclear:
        text += f"{',' if beaten else ''} not significantly above {', '.join(unclear)}"
    return text + "."


def _secondary_sentences(results: Results, labels: Mapping[str, str], bounded: Mapping) -> list[str]:
    """Secondary metrics that moved significantly against the base while the primary metric did not, grouped by
    (task, metric): often the headline (a format probe's correctness falls while format-following holds)."""
    by: dict[tuple[str, str], list[Change]] = {}
    for ch in tested_changes(results, primary=False):
        c = ch.comparison
        if ch.significant and c.task not in bounded and abs(100 * (c.delta or 0)) >= _FLAT_POINTS:
            by.setdefault((c.task, c.metric), []).append(ch)
    out = []
    for (task, metric), chs in by.items():
        moves = ", ".join(f"{ch.comparison.model} − {ch.comparison.baseline} {signed_pct(ch.comparison.delta)} "
                          f"({p_text(ch.p_holm, 'Holm p')})" for ch in chs)
        out.append(f"Secondary metric {labels.get(task, task)} / {metric}: {moves}.")
    return out


def _seeds_sentence(results: Results) -> str:
    exp = results.stats.experiment
    seeds = exp.seeds if exp is not None else None
    if seeds and len(seeds) > 1:
        test = results.stats.seed_test or "two-level bootstrap"
        return (f"{len(seeds)} training seeds ({', '.join(map(str, seeds))}): intervals and tests include the "
                f"training-seed variance as well as item sampling ({test}).")
    return ("One training seed: intervals cover item sampling only, not the variance between training runs "
            "(repeat with --seeds 0,1,2 to include it).")


def verdict_section(results: Results, models: list[str], tasks: list[str], baseline: str,
                    labels: Mapping[str, str]) -> Verdict:
    changes = {(ch.comparison.model, ch.comparison.baseline, ch.comparison.task): ch
               for ch in tested_changes(results)}
    bounded_n = bounded_tasks(results, models)
    bounded = {t: kind for t, (kind, _) in bounded_n.items()}
    rank = {m: i for i, m in enumerate(models)}
    pairs = [(m, baseline) for m in models if m != baseline and any((m, baseline, t) in changes for t in tasks)]
    pairs += sorted({(a, b) for a, b, _ in changes if b != baseline},
                    key=lambda k: (rank.get(k[0], len(rank)), rank.get(k[1], len(rank))))
    rows, sentences = [], []
    for a, b in pairs:
        label = f"{a} − {b}"
        cells = [None if (a, b, t) not in changes else _cell(changes[(a, b, t)], t in bounded) for t in tasks]
        rows.append(VerdictRow(label, cells))
        text = _pair_sentence(label, [changes[(a, b, t)] for t in tasks if (a, b, t) in changes], labels, bounded)
        if text:
            sentences.append(text)
    for t in tasks:
        if t not in bounded:
            best = _best_sentence(results, models, t, labels.get(t, t), changes)
            if best:
                sentences.append(best)
    for t, (kind, n) in bounded_n.items():
        at = "0" if kind == "floor" else f"{n}"
        sentences.append(f"{labels.get(t, t)}: every model at {at} of {n} ({kind}): uninformative, its comparisons "
                         "cannot separate the methods.")
    sentences += _secondary_sentences(results, labels, bounded)
    sentences.append(_seeds_sentence(results))
    footnotes = [f"★ = Holm-adjusted p < {ALPHA} (adjusted across the tasks of each pair); the interval is the "
                 "unadjusted 95% paired bootstrap interval."]
    if any(c is not None and c.disagrees for r in rows for c in r.cells):
        footnotes.append("† the marker and the interval disagree: either the Holm adjustment lifted p above "
                         f"{ALPHA} although the unadjusted interval excludes 0, or the exact test and the bootstrap "
                         "differ at the edge of significance. The unadjusted and adjusted p are shown in the cell.")
    return Verdict(tasks=tasks, rows=rows, sentences=sentences, bounded=bounded, footnotes=footnotes)
