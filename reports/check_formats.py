"""The regression gate's outcome written out: plain text for the terminal, Markdown for a CI job summary
($GITHUB_STEP_SUMMARY), JUnit XML for CI test reports (reports/check.py decides; this module only writes)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional
from xml.etree import ElementTree

from harness.reports.check import CheckOutcome, Regression


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

    def fmt(cells: list[str]) -> str:  # names left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return [fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def format_outcome(outcome: CheckOutcome) -> str:
    """Plain-text summary: verdict line, what differs from the baseline's run, then a table of regressed rows
    and the list of missing rows."""
    lines = []
    verdict = "PASS" if outcome.passed else "FAIL"
    lines.append(f"{verdict}: {outcome.compared} rows compared, {len(outcome.regressions)} regressed, "
                 f"{len(outcome.missing)} missing{' (allowed)' if outcome.missing and outcome.allow_missing else ''}")
    if outcome.differences:
        lines.append("what differs from the baseline's run:")
        lines.extend(f"  {d}" for d in outcome.differences)
    if outcome.regressions:
        lines.append("")
        lines.extend(_table(
            ["model", "task", "metric", "baseline", "now", "delta", "tolerance"]
            + (["p", "items"] if outcome.require_significance is not None else []),
            [[r.model, r.task, r.metric, f"{r.baseline:.4f}", f"{r.value:.4f}", f"{r.delta:+.4f}",
              f"{r.tolerance:.4f}"] + ([_p(r.p_value), str(r.n_paired or 0)]
                                       if outcome.require_significance is not None else [])
             for r in outcome.regressions],
        ))
        lines.extend(f"  {r.model} / {r.task} / {r.metric}: not tested: {r.note}" for r in outcome.regressions
                     if r.note)
    quiet = [r for r in outcome.rows if r.status == "not significant"]
    if quiet:
        lines.append("")
        lines.append(f"drops beyond the tolerance that are not significant (p >= {outcome.require_significance}):")
        lines.extend(f"  {r.model} / {r.task} / {r.metric}: {r.delta:+.4f} (p={_p(r.p_value)}, {r.n_paired} items)"
                     for r in quiet)
    if outcome.missing:
        lines.append("")
        lines.append("missing from the run (model / task / metric):")
        lines.extend(f"  {m} / {t} / {k}" for m, t, k in outcome.missing)
    return "\n".join(lines)


def _p(p: Optional[float]) -> str:
    return "–" if p is None else "<0.001" if p < 0.001 else f"{p:.3f}"


def _status_text(r: Regression) -> str:
    return {"ok": "pass", "regressed": "FAIL", "not significant": "pass (drop not significant)"}[r.status]


def format_markdown(outcome: CheckOutcome) -> str:
    """The outcome as Markdown for a CI job summary ($GITHUB_STEP_SUMMARY): verdict, a table of every compared
    row (regressions first), missing rows, what differs from the baseline's run."""
    icon = "✅" if outcome.passed else "❌"
    out = [f"### {icon} harness check: {'PASS' if outcome.passed else 'FAIL'}", "",
           f"{outcome.compared} rows compared, {len(outcome.regressions)} regressed, {len(outcome.missing)} missing"
           + (" (allowed)" if outcome.missing and outcome.allow_missing else "")
           + (f"; a drop fails only when significant (paired test, alpha {outcome.require_significance})"
              if outcome.require_significance is not None else ""), ""]
    sig = outcome.require_significance is not None
    out.append("| model | task | metric | baseline | now | change | tolerance |" + (" p | items |" if sig else "")
               + " status |")
    out.append("|---|---|---|---:|---:|---:|---:|" + ("---:|---:|" if sig else "") + "---|")
    order = {"regressed": 0, "not significant": 1, "ok": 2}
    for r in sorted(outcome.rows, key=lambda r: order[r.status]):
        cells = [r.model, r.task, r.metric, f"{100 * r.baseline:.1f}", f"{100 * r.value:.1f}",
                 f"{100 * r.delta:+.1f}", f"{100 * r.tolerance:.1f}"]
        if sig:
            cells += [_p(r.p_value), str(r.n_paired or "–")]
        cells.append(_status_text(r) + (f" ({r.note})" if r.note else ""))
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if outcome.missing:
        out += ["", "**Missing from the run:** " + ", ".join(f"{m} / {t} / {k}" for m, t, k in outcome.missing)]
    if outcome.differences:
        out += ["", "**What differs from the baseline's run:**", *(f"- {d}" for d in outcome.differences)]
    return "\n".join(out) + "\n"


def write_junit(outcome: CheckOutcome, path: str | Path) -> Path:
    """JUnit XML: one test case per compared row (a regression is a failure) and per missing row (a failure,
    or skipped when missing rows are allowed)."""
    suite = ElementTree.Element("testsuite", name="harness check", tests=str(len(outcome.rows) + len(outcome.missing)),
                                failures=str(len(outcome.regressions) + (0 if outcome.allow_missing
                                                                         else len(outcome.missing))))
    for r in outcome.rows:
        case = ElementTree.SubElement(suite, "testcase", classname=f"{r.model}.{r.task}", name=r.metric)
        text = (f"baseline {r.baseline:.4f}, now {r.value:.4f}, change {r.delta:+.4f}, tolerance {r.tolerance:.4f}"
                + (f", p={_p(r.p_value)} on {r.n_paired} items" if r.p_value is not None else "")
                + (f"; {r.note}" if r.note else ""))
        if r.status == "regressed":
            ElementTree.SubElement(case, "failure", message=f"regressed: {r.delta:+.4f}").text = text
        else:
            ElementTree.SubElement(case, "system-out").text = f"{_status_text(r)}: {text}"
    for m, t, k in outcome.missing:
        case = ElementTree.SubElement(suite, "testcase", classname=f"{m}.{t}", name=k)
        tag = "skipped" if outcome.allow_missing else "failure"
        ElementTree.SubElement(case, tag, message="missing from the run")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ElementTree.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
    return path
