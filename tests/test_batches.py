"""run_batches: several run folders' units in one executor call; the same work (kind + fingerprint) runs once
and every batch holding it commits the outcome, marked with the folder that ran it."""
from __future__ import annotations

import pytest

from harness.common.units import Unit
from harness.config import ExecutorConfig
from harness.executors import Batch, Job, UnitFailed, run_batches
from harness.executors.local import LocalExecutor

CALLS: list[str] = []


def work(x: str) -> str:
    CALLS.append(x)
    if x == "bad":
        raise ValueError("bad input to the unit")
    return x.upper()


def batch(label: str, units: list[tuple[str, str]]) -> tuple[Batch, dict]:
    committed: dict = {}
    jobs = [Job(Unit("eval", name, fp), work, (fp,)) for name, fp in units]
    return Batch(jobs, lambda i, o: committed.__setitem__(jobs[i].unit.name, o),
                 lambda: dict(committed), label=label), committed


def test_shared_units_run_once_and_every_holder_commits():
    CALLS.clear()
    a, _ = batch("cell-a", [("eval/base/t", "same"), ("eval/sft/t", "a-only")])
    b, _ = batch("cell-b", [("eval/base/t", "same"), ("eval/sft/t", "b-only")])
    out_a, out_b = run_batches(LocalExecutor(ExecutorConfig()), [a, b])
    assert CALLS == ["same", "a-only", "b-only"]  # the base model's evaluation ran once
    assert out_a["eval/base/t"].value == out_b["eval/base/t"].value == "SAME"
    assert out_a["eval/base/t"].shared_from is None and out_b["eval/base/t"].shared_from == "cell-a"
    assert out_b["eval/sft/t"].value == "B-ONLY" and out_b["eval/sft/t"].shared_from is None


def test_a_failure_is_raised_after_the_other_units_commit():
    CALLS.clear()
    a, committed = batch("cell-a", [("eval/x/t", "bad"), ("eval/y/t", "fine")])

    class Collecting(LocalExecutor):  # the ray executor's contract: failures are outcomes, not exceptions
        def run(self, jobs, log_dir=None, on_done=None):
            from harness.common.units import Outcome

            outs = []
            for i, job in enumerate(jobs):
                try:
                    outs.append(Outcome(job.unit, job.fn(*job.args)))
                except ValueError as e:
                    outs.append(Outcome(job.unit, error=str(e)))
                on_done(i, outs[-1])
            return outs

    with pytest.raises(UnitFailed, match="eval/x/t"):
        run_batches(Collecting(ExecutorConfig()), [a])
    assert committed["eval/y/t"].value == "FINE"  # committed before the failure was raised


def test_a_stage_object_is_a_batch():
    """run_batches drives any object with jobs, commit, finish and label (the evaluation's EvalBatch is one)."""
    from harness.executors import UnitBatch

    class Doubling:
        label = "cell-c"

        def __init__(self) -> None:
            self.jobs = [Job(Unit("eval", f"eval/m/{x}", x), work, (x,)) for x in ("p", "q")]
            self.seen: dict[int, str] = {}

        def commit(self, i, outcome) -> None:
            self.seen[i] = outcome.value * 2

        def finish(self) -> list[str]:
            return [self.seen[i] for i in sorted(self.seen)]

    CALLS.clear()
    stage = Doubling()
    assert isinstance(stage, UnitBatch) and isinstance(batch("x", [])[0], UnitBatch)
    assert run_batches(LocalExecutor(ExecutorConfig()), [stage]) == [["PP", "QQ"]]
