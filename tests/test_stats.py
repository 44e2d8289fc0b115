"""Bootstrap intervals (harness.reports.intervals), paired tests (harness.reports.paired_tests), the results.json schema (harness.reports.stats)
and the paper tables."""
import json
import math

import numpy as np
import pytest
from scipy.stats import binom

from pydantic import ValidationError

from harness.common.artifacts import Comparison, ResultRow, Results, SchemaMismatch
from harness.reports import paper
from harness.reports.intervals import bootstrap_ci, bootstrap_statistic_ci
from harness.reports.paired_tests import align_by_id, holm_adjust, paired_difference, sign_flip_p
from harness.reports.stats import (
    ModelOrder, Resampling, Stamp, TaskScores, build_results, load_results, write_results,
)
from harness.tasks.base import Scored


def _binary(n: int, p: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < p).astype(float)


# --------------------------------------------------------------------------------------------- intervals
def test_ci_contains_mean_and_is_ordered():
    v = _binary(400, 0.35, 1)
    lo, hi = bootstrap_ci(v)
    assert lo < v.mean() < hi
    assert 0.0 <= lo < hi <= 1.0


def test_ci_width_shrinks_with_n():
    small = bootstrap_ci(_binary(50, 0.5, 2))
    large = bootstrap_ci(_binary(2000, 0.5, 3))
    assert (large[1] - large[0]) < 0.5 * (small[1] - small[0])
    # The normal approximation for n=2000, p=0.5 gives a half-width of about 0.022.
    assert 0.035 < large[1] - large[0] < 0.053


def test_ci_is_deterministic_for_a_seed_and_depends_on_it():
    v = np.random.default_rng(4).random(100)  # continuous: the CI bounds are not on a coarse grid
    assert bootstrap_ci(v, seed=7) == bootstrap_ci(v, seed=7)
    assert bootstrap_ci(v, seed=7) != bootstrap_ci(v, seed=8)


def test_ci_multinomial_shortcut_matches_index_resampling(monkeypatch):
    v = _binary(500, 0.3, 12)
    fast = bootstrap_ci(v, n_resamples=4000)
    import harness.reports.intervals as intervals_module

    monkeypatch.setattr(intervals_module, "MULTINOMIAL_MAX_LEVELS", 0)
    slow = bootstrap_ci(v, n_resamples=4000)
    assert fast == pytest.approx(slow, abs=0.006)  # Monte Carlo error of a 2.5% quantile, not a bias


def test_ci_degenerate_cases():
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    assert bootstrap_ci([0.3]) == (0.3, 0.3)
    assert bootstrap_ci([1.0] * 20) == (1.0, 1.0)


def test_ci_large_input_is_chunked_but_correct():
    v = _binary(20_000, 0.2, 5)  # 2000 x 20000 indices would not fit one block
    lo, hi = bootstrap_ci(v, n_resamples=300)
    assert lo < v.mean() < hi and hi - lo < 0.02


def test_statistic_ci_macro_average():
    # Two subtasks of different sizes: macro average != micro average.
    groups = np.array([0] * 30 + [1] * 170)
    scores = np.concatenate([_binary(30, 0.9, 6), _binary(170, 0.3, 7)])

    def macro(idx):
        g, s = groups[idx], scores[idx]
        parts = [s[g == k].mean() for k in (0, 1) if np.any(g == k)]
        return float(np.mean(parts)) if len(parts) == 2 else math.nan

    full = macro(np.arange(200))
    lo, hi = bootstrap_statistic_ci(200, macro, n_resamples=500)
    assert lo < full < hi
    assert all(math.isnan(x) for x in bootstrap_statistic_ci(0, macro))


# --------------------------------------------------------------------------------------------- paired tests
def test_mcnemar_p_value_matches_hand_computation():
    # 10 items: a wins 6, loses 1, 3 ties. Exact McNemar = two-sided binomial test of 6 of 7 at p=1/2:
    # P = 2 * P(X >= 6 | n=7) = 2 * (7 + 1) / 128 = 0.125.
    a = np.array([1, 1, 1, 1, 1, 1, 0, 1, 0, 0], dtype=float)
    b = np.array([0, 0, 0, 0, 0, 0, 1, 1, 0, 0], dtype=float)
    res = paired_difference(a, b)
    assert res.test == "mcnemar_exact"
    assert (res.wins, res.losses, res.n) == (6, 1, 10)
    assert res.p_value == pytest.approx(0.125)
    assert res.p_value == pytest.approx(2 * binom.sf(5, 7, 0.5))
    assert res.delta == pytest.approx(0.5)


def test_no_discordant_pairs_gives_p_one():
    a = np.array([1, 0, 1, 0], dtype=float)
    res = paired_difference(a, a.copy())
    assert res.p_value == 1.0 and res.delta == 0.0 and (res.ci_low, res.ci_high) == (0.0, 0.0)


def test_permutation_test_is_deterministic_and_sensible():
    rng = np.random.default_rng(8)
    b = rng.random(200)
    a = b + 0.05 + 0.1 * rng.standard_normal(200)  # continuous scores: not binary
    r1, r2 = paired_difference(a, b), paired_difference(a, b)
    assert r1.test == "sign_flip_permutation"
    assert r1 == r2
    assert r1.p_value < 0.01 and r1.delta > 0 and r1.ci_low > 0
    null = paired_difference(b + 0.1 * rng.standard_normal(200), b)
    assert null.p_value > 0.05


def test_sign_flip_few_levels_matches_item_flipping(monkeypatch):
    # Differences with 4 distinct values take the binomial shortcut; with the shortcut disabled the same data
    # flips items one by one. Both estimate the same p-value (Monte Carlo error about 0.004 at 10K draws).
    rng = np.random.default_rng(12)
    d = rng.choice([-1.0, 0.0, 0.5, 1.0], size=300, p=[0.26, 0.32, 0.2, 0.22])
    p_short = sign_flip_p(d)
    assert p_short == sign_flip_p(d)  # deterministic
    import harness.reports.paired_tests as paired_module

    monkeypatch.setattr(paired_module, "MULTINOMIAL_MAX_LEVELS", 0)
    p_items = sign_flip_p(d)
    assert p_short == pytest.approx(p_items, abs=0.02)
    assert 0.05 < p_short < 0.4


def test_exact_sign_flip_small_n():
    # All 5 differences positive: only the all-plus and all-minus patterns are as extreme: 2 / 32.
    assert sign_flip_p([0.5, 0.2, 0.1, 0.3, 0.4]) == pytest.approx(2 / 32)


def test_paired_delta_sign():
    better, worse = _binary(300, 0.7, 9), _binary(300, 0.3, 10)
    assert paired_difference(better, worse).delta > 0
    assert paired_difference(worse, better).delta < 0
    assert paired_difference(worse, better).ci_high < 0


def test_paired_difference_rejects_unequal_lengths():
    with pytest.raises(ValueError, match="equal length"):
        paired_difference([1, 0], [1])


def test_align_by_id():
    a = [Scored("x", 1.0), Scored("y", 0.0), Scored("z", 1.0)]
    b = [Scored("z", 0.0), Scored("x", 1.0)]
    ids, ra, rb = align_by_id(a, b)
    assert ids == ["x", "z"]
    assert [r.score for r in ra] == [1, 1] and [r.score for r in rb] == [1, 0]
    with pytest.raises(ValueError, match="duplicate"):
        align_by_id(a + [Scored("x", 0.0)], b)


def test_holm_adjust():
    assert holm_adjust([0.01, 0.04, None, 0.03]) == pytest.approx([0.03, 0.06, None, 0.06])


# --------------------------------------------------------------------------------------------- results.json
def _scored(n: int, p: float, seed: int) -> list[Scored]:
    s = _binary(n, p, seed)
    return [Scored(f"q{i}", float(v), {"accuracy": float(v), "half": float(v) / 2}) for i, v in enumerate(s)]


def _entry(records, **kw) -> TaskScores:
    agg = {"accuracy": float(np.mean([r.score for r in records])),
           "half": float(np.mean([r.metrics["half"] for r in records]))}
    return TaskScores(scored=records, aggregate=agg, **kw)


def test_build_results_schema_and_comparisons(tmp_path):
    # Run order cft, cgd (the baseline is moved first): pairwise comparisons are later - earlier.
    per = {("cft", "t1"): _entry(_scored(120, 0.5, 3)), ("cgd", "t1"): _entry(_scored(120, 0.7, 1)),
           ("base", "t1"): _entry(_scored(120, 0.4, 2))}
    # A macro metric (not a per-sample mean: unequal groups) with an aggregate_fn: bootstrap of the statistic.
    def macro(rs):
        groups = {}
        for r in rs:
            groups.setdefault(r.details["group"], []).append(r.score)
        return {"accuracy": float(np.mean([np.mean(g) for g in groups.values()]))} if rs else {}

    for model, p, seed in (("base", 0.4, 4), ("cgd", 0.6, 5)):
        recs = _scored(60, p, seed)
        for i, r in enumerate(recs):
            r.details = {"group": 0 if i < 10 else 1}
        per[(model, "t2")] = TaskScores(scored=recs, aggregate=macro(recs), aggregate_fn=macro)
        assert macro(recs)["accuracy"] != pytest.approx(np.mean([r.score for r in recs]))

    res = build_results("run-1", per, {"t1": "accuracy", "t2": "accuracy"}, resampling=Resampling(n_resamples=300))
    assert isinstance(res, Results) and res.model_order == ["base", "cft", "cgd"]
    assert [r.model for r in res.rows][:2] == ["base", "base"]  # baseline first
    row = next(r for r in res.rows if (r.model, r.task, r.metric) == ("cgd", "t1", "accuracy"))
    assert row.n == 120 and row.ci_low < row.value < row.ci_high
    assert row.ci_method == "bootstrap_mean" and not row.partial and row.full_n is None
    comps = {(c.model, c.baseline, c.task, c.metric) for c in res.comparisons}
    assert ("cgd", "base", "t1", "accuracy") in comps and ("cgd", "base", "t1", "half") in comps
    assert ("cgd", "cft", "t1", "accuracy") in comps  # pairwise on the primary metric
    assert ("cgd", "cft", "t1", "half") not in comps and ("cft", "cgd", "t1", "accuracy") not in comps
    # An explicit model order (the configured methods) decides which model of a pair is the later one.
    reordered = build_results("run-1", per, {"t1": "accuracy"}, ModelOrder(configured=["cgd", "cft"]),
                              resampling=Resampling(n_resamples=50))
    assert ("cft", "cgd", "t1", "accuracy") in {(c.model, c.baseline, c.task, c.metric)
                                                for c in reordered.comparisons}
    assert [r.model for r in reordered.rows][0] == "base" and reordered.model_order == ["base", "cgd", "cft"]
    c = next(c for c in res.comparisons if (c.model, c.baseline, c.task, c.metric) == ("cgd", "base", "t1", "accuracy"))
    assert c.delta > 0 and c.test == "mcnemar_exact" and c.wins > c.losses
    t2 = next(r for r in res.rows if r.task == "t2" and r.model == "base")
    assert t2.ci_method == "bootstrap_statistic" and t2.ci_low < t2.value < t2.ci_high
    c2 = next(c for c in res.comparisons if c.task == "t2")
    assert c2.test == "bootstrap" and c2.ci_low < c2.delta < c2.ci_high and 0 <= c2.p_value <= 1

    path = write_results(tmp_path / "results.json", res)
    assert load_results(path) == res
    assert json.loads(path.read_text())["schema_version"] == 3


def test_subtask_rows_and_macro_average():
    # BBH's layout: ids "<subtask>/<i>", rows "accuracy/<subtask>" and an unweighted macro over subtasks.
    rng = np.random.default_rng(13)
    recs = [Scored(f"{'a' if i < 60 else 'b'}/{i}", float(rng.random() < (0.8 if i < 60 else 0.3)))
            for i in range(300)]
    calls = []

    def agg(rs):
        calls.append(1)
        by = {}
        for r in rs:
            by.setdefault(r.id.split("/")[0], []).append(r.score)
        out = {f"accuracy/{g}": float(np.mean(v)) for g, v in by.items()}
        out["accuracy"] = float(np.mean([r.score for r in rs]))
        out["accuracy_macro"] = float(np.mean([np.mean(v) for v in by.values()])) if len(by) == 2 else float("nan")
        out["top_group"] = float(max(np.mean(v) for v in by.values()))  # neither a mean nor a macro
        return out

    per = {("base", "t"): TaskScores(scored=recs, aggregate=agg(recs), aggregate_fn=agg)}
    calls.clear()
    rows = {r.metric: r for r in build_results("r", per, {"t": "accuracy"},
                                               resampling=Resampling(statistic_resamples=50)).rows}
    assert rows["accuracy/a"].n == 60 and rows["accuracy/b"].n == 240 and rows["accuracy"].n == 300
    assert rows["accuracy/a"].ci_method == "bootstrap_mean"
    assert rows["accuracy/a"].ci_low < rows["accuracy/a"].value < rows["accuracy/a"].ci_high
    assert len(calls) == 50  # only "top_group" needs aggregate_fn: one call per resample
    assert rows["top_group"].ci_method == "bootstrap_statistic" and rows["top_group"].ci_low is not None
    # The vectorised macro interval agrees with the generic bootstrap of aggregate_fn.
    macro = rows["accuracy_macro"]
    generic = bootstrap_statistic_ci(300, lambda idx: agg([recs[i] for i in idx])["accuracy_macro"],
                                     n_resamples=2000)
    assert macro.ci_low < macro.value < macro.ci_high
    assert (macro.ci_low, macro.ci_high) == pytest.approx(generic, abs=0.012)


def test_non_mean_metric_without_fn_has_null_ci():
    recs = _scored(20, 0.5, 5)
    per = {("base", "t"): TaskScores(scored=recs, aggregate={"accuracy": 0.123})}  # not the mean of the scores
    row = build_results("r", per, {"t": "accuracy"}).rows[0]
    assert row.ci_low is None and row.ci_high is None and row.value == 0.123


def test_reaggregation_keeps_the_run_model_order(tmp_path):
    # The run trained sft then cft: "cft - sft" is the pairwise comparison. A later `harness report` that
    # re-aggregates without the manifest's order must keep it (from the results.json it replaces).
    per = {("base", "t"): _entry(_scored(80, 0.4, 1)), ("cft", "t"): _entry(_scored(80, 0.6, 2)),
           ("sft", "t"): _entry(_scored(80, 0.5, 3))}  # dict order (sample folders sorted) puts cft first
    fast = Resampling(n_resamples=50)
    first = build_results("r", per, {"t": "accuracy"}, ModelOrder(configured=["base", "sft", "cft"]),
                          resampling=fast)
    pair = [(c.model, c.baseline) for c in first.comparisons if c.baseline != "base"]
    assert pair == [("cft", "sft")]
    path = write_results(tmp_path / "results.json", first)
    again = build_results("r", per, {"t": "accuracy"}, ModelOrder.kept_from(load_results(path)), resampling=fast)
    assert again.model_order == ["base", "sft", "cft"]
    assert [(c.model, c.baseline) for c in again.comparisons if c.baseline != "base"] == [("cft", "sft")]
    assert [r.model for r in again.rows] == [r.model for r in first.rows]
    # Without either, first-seen order: the pair flips, which is what the stored order prevents.
    plain = build_results("r", per, {"t": "accuracy"}, resampling=fast)
    assert [(c.model, c.baseline) for c in plain.comparisons if c.baseline != "base"] == [("sft", "cft")]


def test_truncation_rows_partial_and_sweep_stamps():
    base, cgd = _scored(50, 0.4, 1), _scored(50, 0.6, 2)
    trunc_base = [0.0] * 45 + [1.0] * 5  # 10%
    trunc_cgd = [0.0] * 40 + [0.5] * 10  # 10% as half of two completions on 10 items
    per = {("base", "t"): _entry(base, truncated=trunc_base), ("cgd", "t"): _entry(cgd, truncated=trunc_cgd),
           ("base", "mc"): _entry(_scored(30, 0.5, 3)), ("cgd", "mc"): _entry(_scored(30, 0.5, 4))}
    res = build_results("r", per, {"t": "accuracy", "mc": "accuracy"},
                        stamp=Stamp(params={"lr": 1e-5}, seed=3, partial={"t": 756}),
                        resampling=Resampling(n_resamples=200))
    rows = {(r.model, r.task, r.metric): r for r in res.rows}
    tr = rows[("base", "t", "truncation_rate")]
    assert tr.value == pytest.approx(0.1) and tr.n == 50 and tr.ci_method == "bootstrap_mean"
    assert tr.ci_low < 0.1 < tr.ci_high
    assert rows[("cgd", "t", "truncation_rate")].value == pytest.approx(0.1)
    assert ("base", "mc", "truncation_rate") not in rows  # log-likelihood task: no truncation row
    # Not a quality metric: never compared, while the quality metrics are.
    assert not any(c.metric == "truncation_rate" for c in res.comparisons)
    assert any(c.metric == "accuracy" and c.task == "t" for c in res.comparisons)
    # Partial task rows stamped with the benchmark's full size; the others not.
    assert all(r.partial and r.full_n == 756 for r in res.rows if r.task == "t")
    assert not any(r.partial or r.full_n for r in res.rows if r.task == "mc")
    # Sweep cell parameters and seed on every row and comparison.
    assert all(r.params == {"lr": 1e-5} and r.seed == 3 for r in res.rows)
    assert res.comparisons and all(c.params == {"lr": 1e-5} and c.seed == 3 for c in res.comparisons)
    with pytest.raises(ValueError, match=r"base/t: truncated fractions must lie in \[0, 1\]"):
        build_results("r", {("base", "t"): _entry(base, truncated=[1.5] * 50)}, {"t": "accuracy"})


def test_the_model_rejects_bad_values(tmp_path):
    row = {"model": "m", "task": "t", "metric": "acc", "value": 0.5, "n": 3}
    ResultRow(**row)
    with pytest.raises(ValidationError):
        ResultRow(**{**row, "value": 1.7})
    with pytest.raises(ValidationError):
        ResultRow(**{**row, "n": -1})
    with pytest.raises(ValidationError):
        ResultRow(**{**row, "typo": 1})
    assert ResultRow(**{**row, "ci_low": float("nan")}).ci_low is None  # never written as NaN
    with pytest.raises(ValidationError):
        Comparison(model="a", baseline="b", task="t", metric="acc", n=3, wins=1, losses=0, p_value=1.5)
    # A stored file with a bad value is refused in one line naming the file and the field.
    good = build_results("r", {("base", "t"): _entry(_scored(10, 0.5, 1))}, {"t": "accuracy"},
                         resampling=Resampling(n_resamples=20))
    p = write_results(tmp_path / "results.json", good)
    data = json.loads(p.read_text())
    data["rows"][0]["value"] = 1.7
    p.write_text(json.dumps(data))
    with pytest.raises(SchemaMismatch, match=r"results.json: invalid results.json \(rows.0.value") as e:
        load_results(p)
    assert "\n" not in str(e.value)
    with pytest.raises(TypeError, match="Results"):
        write_results(p, data)  # a dict is not a results.json any more


def test_schema_1_results_is_a_one_line_mismatch(tmp_path):
    old = {"schema_version": 1, "run_id": "r", "primary_metrics": {}, "comparisons": [],
           "rows": [{"model": "m", "task": "t", "metric": "acc", "value": 0.5, "n": 3, "ci_low": None,
                     "ci_high": None}]}
    p = tmp_path / "results.json"
    p.write_text(json.dumps(old))
    with pytest.raises(SchemaMismatch, match="schema version 1") as e:
        load_results(p)
    assert "\n" not in str(e.value) and "re-run the command that made the run" in str(e.value)
    with pytest.raises(ValueError, match="no results file"):
        load_results(tmp_path / "nope.json")


# --------------------------------------------------------------------------------------------- paper tables
def test_paper_rows_and_known_values():
    rows = paper.load_paper_rows()
    assert len(rows) == 188
    t1 = paper.paper_table("T1")
    assert t1.loc[("cgd", "LLaMA3.3-70B-Instruct"), "AMC23"] == 37.5
    assert t1.loc[("cft", "LLaMA3.3-70B-Instruct"), "AMC23"] == 22.5
    assert paper.paper_table("T2").loc[("cgd", "S1.1-32B"), "MATH500"] == 61.8
    assert list(t1.columns)[:6] == ["MATH500", "Minerva-Math", "GSM8K", "OlympiadBench", "AMC23", "Avg(G1)"]
    assert set(rows[rows["benchmark"] == "GPQA"]["task"]) == {"gpqa_diamond"}
    assert set(rows[rows["benchmark"] == "TruthfulQA"]["task"]) == {"truthfulqa_mc2"}
    with pytest.raises(ValueError, match="no paper table"):
        paper.paper_table("T99")


def test_average_coverage_and_flags():
    assert paper.average_coverage(list(paper.paper_table("T1").columns)) == {
        "Avg(G1)": ["MATH500", "Minerva-Math", "GSM8K", "OlympiadBench", "AMC23"],
        "Avg(G2)": ["TheoremQA", "GPQA", "MMLU-Pro"],
    }
    checks = paper.average_checks()
    assert len(checks) == 27  # 6+6 (T1) + 5+5 (T2) + 5 (T3)
    flagged = paper.flagged_averages()
    got = {(r.table, r.method, r.teacher, r.average) for r in flagged.itertuples()}
    assert got == {
        ("T1", "cft", "LLaMA3.3-70B-Instruct", "Avg(G2)"),
        ("T1", "cft_star", "GPT-4o (WebInstruct-CFT-50K)", "Avg(G2)"),
        ("T2", "base", "-", "Avg(G1)"),
        ("T2", "base", "-", "Avg(G2)"),
        ("T3", "cft", "S1.1-32B", "Avg"),
    }
    # Our computation agrees with every csv note, and every flagged row has one.
    for r in flagged.itertuples():
        assert r.note == f"printed {r.printed:.1f}; mean of cells is {r.recomputed:.1f}"
    t3 = checks[(checks.table == "T3") & (checks.method == "cft") & (checks.teacher == "S1.1-32B")].iloc[0]
    assert t3.recomputed == pytest.approx(42.22) and t3.printed == 46.9
    cgd = checks[(checks.table == "T1") & (checks.method == "cgd") & (checks.average == "Avg(G1)")].iloc[0]
    assert cgd.recomputed == pytest.approx(46.94) and not cgd.differs
