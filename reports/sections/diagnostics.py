"""Diagnostics: why a model scored what it scored, per (model, task), read from the per-sample records.

- format drift: no extractable final answer (the task's own ``extraction_failed`` flag, else an empty
  extraction), and critique-style output (a ``Conclusion:`` line, "the answer is wrong", ...: a model trained on
  critiques writing a critique instead of an answer);
- truncation (the completion stopped at the token budget) and repetition (degenerate output: one line repeated
  three times or more, or text that compresses below ``_REPETITIVE_RATIO``);
- response length (completion tokens), as a histogram per task;
- for code tasks the failure statuses the sandbox recorded (syntax error, timeout, wrong answer, refusal);
- for format_probe the format-following rate per instruction kind;
- tasks at their floor or ceiling (every model at 0 or at 100%), flagged;
- the paired tests of the secondary metrics (results.json has them), Holm-adjusted per (model, baseline).
"""
from __future__ import annotations

import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping

from harness.common.artifacts import Results, SampleRecord
from harness.reports import plots
from harness.reports.changes import tested_changes
from harness.reports.fmt import ci_text, p_text, pct, signed_pct
from harness.reports.sections.samples import SampleSet

#: Critique-style phrasing in an answer (what a model trained on critiques drifts into writing).
CRITIQUE_RE = re.compile(
    r"^\s*\**conclusion\**\s*:|\bthe (?:student'?s? |previous |given |above )?(?:answer|solution) is "
    r"(?:wrong|incorrect|right|correct)\b|\b(?:critique|the student)\b", re.IGNORECASE | re.MULTILINE)
#: zlib compressed size / raw size below this (on texts of at least _REPETITIVE_MIN chars) marks degenerate
#: repetition; ordinary prose and code compress to about 0.35-0.6.
_REPETITIVE_RATIO = 0.2
_REPETITIVE_MIN = 300


def is_critique_style(text: str) -> bool:
    return bool(text) and CRITIQUE_RE.search(text) is not None


def is_repetitive(text: str) -> bool:
    if not text:
        return False
    lines = [ln.strip() for ln in text.splitlines() if len(ln.strip()) > 3]
    if lines and Counter(lines).most_common(1)[0][1] >= 3:
        return True
    raw = text.encode("utf-8")
    return len(raw) >= _REPETITIVE_MIN and len(zlib.compress(raw)) / len(raw) < _REPETITIVE_RATIO


_EXCEPTION_RE = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt))\b")


def failure_status(details: Mapping) -> str | None:
    """A code task's sandbox status, with the exception's class when the detail names one ("error: SyntaxError")."""
    status = details.get("status")
    if status is None:
        return None
    m = _EXCEPTION_RE.match(str(details.get("detail") or ""))
    return f"{status}: {m.group(1)}" if m and status != "passed" else str(status)


def extraction_failed(r: SampleRecord) -> bool:
    flag = r.details.get("extraction_failed")
    if isinstance(flag, bool):
        return flag
    return r.extracted is None or (isinstance(r.extracted, str) and not r.extracted.strip())


@dataclass
class DiagRow:
    model: str
    n: int
    no_answer: str
    critique_style: str
    truncated: str
    repetitive: str
    tokens_mean: str
    tokens_median: str
    high: dict[str, bool]  # which of the rates above are high enough to flag


@dataclass
class TaskDiagnostics:
    task: str
    label: str
    generate: bool
    bound: str | None  # "floor" | "ceiling" | None
    rows: list[DiagRow]
    statuses: list[str] = field(default_factory=list)  # code tasks: the status columns
    status_rows: list[tuple[str, list[str]]] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # format_probe: instruction kinds
    kind_rows: list[tuple[str, list[str]]] = field(default_factory=list)


@dataclass
class SecondaryRow:
    label: str  # "sft − base"
    task: str
    metric: str
    delta: str
    ci: str
    p: str
    p_holm: str
    significant: bool
    sign: str


_FLAG = 0.10  # a rate above 10% of a model's items is highlighted


def _rate(k: int, n: int) -> str:
    return f"{pct(k / n) if n else '–'}% ({k})"


def _median(xs: list[int]) -> float:
    s = sorted(xs)
    return (s[len(s) // 2] + s[(len(s) - 1) // 2]) / 2 if s else 0.0


def task_diagnostics(samples: SampleSet, task: str, label: str, bound: str | None) -> TaskDiagnostics | None:
    by_model = samples.by_model(task)
    if not by_model:
        return None
    generate = any(r.response is not None or r.responses for recs in by_model.values() for r in recs.values())
    out = TaskDiagnostics(task=task, label=label, generate=generate, bound=bound, rows=[])
    for model, recs in by_model.items():
        rs = list(recs.values())
        n = len(rs)
        texts = [samples.text(r) for r in rs]
        counts = {"no_answer": sum(extraction_failed(r) for r in rs) if generate else 0,
                  "critique_style": sum(is_critique_style(t) for t in texts),
                  "truncated": sum(bool(r.truncated) or r.finish_reason == "length" for r in rs),
                  "repetitive": sum(is_repetitive(t) for t in texts)}
        tokens = [r.completion_tokens for r in rs]
        out.rows.append(DiagRow(model=model, n=n, **{k: _rate(v, n) for k, v in counts.items()},
                                tokens_mean=f"{sum(tokens) / n:.0f}" if n else "–",
                                tokens_median=f"{_median(tokens):.0f}",
                                high={k: bool(n) and v / n > _FLAG for k, v in counts.items()}))
    statuses = Counter(failure_status(r.details) for recs in by_model.values() for r in recs.values()
                       if "status" in r.details)
    if statuses:
        out.statuses = [s for s, _ in statuses.most_common()]
        for model, recs in by_model.items():
            c = Counter(failure_status(r.details) for r in recs.values())
            out.status_rows.append((model, [_rate(c.get(s, 0), len(recs)) for s in out.statuses]))
    kinds = sorted({str(r.details["kind"]) for recs in by_model.values() for r in recs.values()
                    if "kind" in r.details})
    if kinds:
        out.kinds = kinds
        for model, recs in by_model.items():
            cells = []
            for k in kinds:
                rs = [r for r in recs.values() if str(r.details.get("kind")) == k]
                ok = sum(r.score for r in rs)
                cells.append(f"{pct(ok / len(rs)) if rs else '–'}% of {len(rs)}")
            out.kind_rows.append((model, cells))
    return out


def secondary_tests(results: Results, labels: Mapping[str, str]) -> list[SecondaryRow]:
    out = []
    for ch in tested_changes(results, primary=False):
        c = ch.comparison
        out.append(SecondaryRow(label=f"{c.model} − {c.baseline}", task=labels.get(c.task, c.task), metric=c.metric,
                                delta=signed_pct(c.delta), ci=ci_text(c.ci_low, c.ci_high), p=p_text(c.p_value),
                                p_holm=p_text(ch.p_holm, "Holm p"), significant=ch.significant,
                                sign="up" if (c.delta or 0) > 0 else "down" if (c.delta or 0) < 0 else ""))
    return out


def length_histogram(samples: SampleSet, tasks: list[str], labels: Mapping[str, str],
                     colours: Mapping[str, str]) -> bytes | None:
    """Completion length (tokens) per model, one panel per generative task (step histograms, shared bins)."""
    panels = []
    for t in tasks:
        by_model = samples.by_model(t)
        lengths = {m: [r.completion_tokens for r in recs.values()] for m, recs in by_model.items()}
        if any(any(v) for v in lengths.values()):
            panels.append((t, lengths))
    if not panels:
        return None

    def draw(ax, lengths):
        top = max(max(v) if v else 0 for v in lengths.values()) or 1
        bins = [top * i / 20 for i in range(21)]
        for m, v in lengths.items():
            ax.hist(v, bins=bins, histtype="step", linewidth=1.6, label=m, color=colours.get(m))

    return plots.task_panels(panels, labels, draw, "completion tokens", "items")


def diagnostics_section(samples: SampleSet, results: Results, tasks: list[str], labels: Mapping[str, str],
                        bounded: Mapping[str, str]) -> list[TaskDiagnostics]:
    return [d for t in tasks if (d := task_diagnostics(samples, t, labels.get(t, t), bounded.get(t))) is not None]



def pass_at_k_chart(results: Results, labels: Mapping[str, str], colours: Mapping[str, str]) -> bytes | None:
    """pass@k against k per model, one panel per task that sampled several responses per item (metrics named
    ``pass@<k>`` for at least two k)."""
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for r in results.rows:
        if r.metric.startswith("pass@") and r.metric[5:].isdigit() and not r.params:
            curves.setdefault(r.task, {}).setdefault(r.model, []).append((int(r.metric[5:]), r.value))
    curves = {t: c for t, c in curves.items() if any(len(v) > 1 for v in c.values())}
    if not curves:
        return None

    def draw(ax, by_model):
        for m, pts in by_model.items():
            ks, vs = zip(*sorted(pts))
            ax.plot(ks, [100 * v for v in vs], marker="o", label=m, color=colours.get(m))
        ax.set_xticks(sorted({k for pts in by_model.values() for k, _ in pts}))

    return plots.task_panels(list(curves.items()), labels, draw, "k (samples per item)", "pass@k (%)")
