"""Paired changes with their multiple-comparison correction, shared by the verdict, the result tables, the
secondary-metric table and the exports.

A family is every comparison of one (model, baseline) pair: across tasks for the primary metrics, across
(task, metric) for the secondary ones. The Holm step-down adjustment is applied within each family; a change is
significant when its Holm-adjusted p is below ``ALPHA``. The intervals in results.json are unadjusted 95% paired
bootstrap intervals, and the test is McNemar's (0/1 scores) or a sign-flip permutation test, so a star and an
interval can disagree; ``Change.disagrees`` says when, and the report footnotes it.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.common.artifacts import Comparison, Results
from harness.reports.paired_tests import holm_adjust
from harness.reports.stats import NON_QUALITY_METRICS

ALPHA = 0.05


@dataclass(frozen=True)
class Change:
    comparison: Comparison
    p_holm: float | None
    family_size: int

    @property
    def significant(self) -> bool:
        return self.p_holm is not None and self.p_holm < ALPHA

    @property
    def interval_excludes_zero(self) -> bool | None:
        c = self.comparison
        if c.ci_low is None or c.ci_high is None:
            return None
        return c.ci_low > 0 or c.ci_high < 0

    @property
    def disagrees(self) -> bool:
        """The marker (Holm-adjusted test) and the interval (unadjusted bootstrap) tell different stories."""
        excludes = self.interval_excludes_zero
        return excludes is not None and excludes != self.significant


def tested_changes(results: Results, primary: bool = True) -> list[Change]:
    """The run's quality comparisons of the primary metrics (``primary``) or of the other metrics, each with its
    Holm-adjusted p-value within its (model, baseline) family. Truncation rates are not quality metrics."""
    main = results.primary_metrics
    comps = [c for c in results.comparisons
             if (main.get(c.task) == c.metric) == primary and c.metric not in NON_QUALITY_METRICS]
    families: dict[tuple, list[Comparison]] = {}
    for c in comps:
        families.setdefault((c.model, c.baseline, c.seed, repr(sorted(c.params.items()))), []).append(c)
    out = []
    for fam in families.values():
        for c, adj in zip(fam, holm_adjust([c.p_value for c in fam])):
            out.append(Change(c, adj, sum(x.p_value is not None for x in fam)))
    return out
