"""A run's tables as text for a README or a paper (``harness report RUN --format md|latex|csv``): the primary
metric per model and task with its 95% interval, and the paired change against the base model (and between the
methods the run compares) with interval, p and Holm-adjusted p (★ = Holm p < 0.05). CSV is long-form, one line per
result row and per comparison, every metric included."""
from __future__ import annotations

import csv
import io

from harness.common.artifacts import Results
from harness.reports import plots
from harness.reports.changes import tested_changes
from harness.reports.fmt import p_text, pct, signed_pct

FORMATS = ("md", "latex", "csv")


def _tables(results: Results, baseline: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of the primary-metric table and the change table."""
    models = [m for m in plots.model_order(results, baseline) if any(r.model == m for r in results.rows)]
    tasks = list(results.primary_metrics)
    primary = plots.primary_rows(results)
    main = [[m] + [f"{pct(r.value)} [{pct(r.ci_low)}, {pct(r.ci_high)}]" if (r := primary.get((m, t))) else "–"
                   for t in tasks] for m in models]
    changes = {(c.comparison.model, c.comparison.baseline, c.comparison.task): c for c in tested_changes(results)}
    pairs = list(dict.fromkeys((a, b) for a, b, _ in changes))
    pairs.sort(key=lambda k: (k[1] != baseline,))
    delta_rows = []
    for a, b in pairs:
        cells = [f"{a} − {b}"]
        for t in tasks:
            ch = changes.get((a, b, t))
            if ch is None:
                cells.append("–")
                continue
            c = ch.comparison
            cells.append(f"{signed_pct(c.delta)}{' ★' if ch.significant else ''} [{pct(c.ci_low)}, {pct(c.ci_high)}] "
                         f"{p_text(ch.p_holm, 'Holm p')}")
        delta_rows.append(cells)
    header = [f"{t} ({results.primary_metrics[t]})" for t in tasks]
    return [("Primary metric (%, 95% bootstrap interval)", ["model", *header], main),
            ("Paired change in points (95% paired bootstrap interval; ★ Holm p < 0.05)", ["pair", *header],
             delta_rows)]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(results: Results, baseline: str = "base") -> str:
    out = []
    for title, header, rows in _tables(results, baseline):
        if not rows:
            continue
        out += [f"**{title}**", "", "| " + " | ".join(map(_md_cell, header)) + " |",
                "|" + "---|" * len(header)]
        out += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in rows]
        out.append("")
    return "\n".join(out)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "★": r"$^\star$", "−": "$-$", "<": r"$<$"}


def _tex(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(results: Results, baseline: str = "base") -> str:
    """booktabs tables (\\usepackage{booktabs})."""
    out = []
    for title, header, rows in _tables(results, baseline):
        if not rows:
            continue
        out += [r"\begin{table}[t]", r"\centering", f"\\caption{{{_tex(title)}}}",
                r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
                " & ".join(map(_tex, header)) + r" \\", r"\midrule"]
        out += [" & ".join(map(_tex, r)) + r" \\" for r in rows]
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


def to_csv(results: Results, baseline: str = "base") -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["kind", "model", "baseline", "task", "metric", "primary", "value", "ci_low", "ci_high", "n", "p",
                "p_holm", "significant"])
    for r in results.rows:
        w.writerow(["result", r.model, "", r.task, r.metric, results.primary_metrics.get(r.task) == r.metric,
                    r.value, r.ci_low, r.ci_high, r.n, "", "", ""])
    for primary in (True, False):
        for ch in tested_changes(results, primary=primary):
            c = ch.comparison
            w.writerow(["change", c.model, c.baseline, c.task, c.metric, primary, c.delta, c.ci_low, c.ci_high, c.n,
                        c.p_value, ch.p_holm, ch.significant])
    return buf.getvalue()


def export(results: Results, fmt: str, baseline: str = "base") -> str:
    return {"md": to_markdown, "latex": to_latex, "csv": to_csv}[fmt](results, baseline)
