"""The local executor: every unit in this process, one after another, in the order given. This is the pipeline's
behaviour before executors, kept exactly (results byte-identical: tests/test_determinism.py), errors included: a
unit's exception propagates at once, as a stage's did (a user error is one line and exit 2; a killed or failed
run resumes from what is stored). Retries with fresh names are the ray executor's, where workers die."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.common.units import Outcome
from harness.executors import Job, register_executor


@register_executor("local")
class LocalExecutor:
    in_process = True

    def __init__(self, cfg) -> None:
        self.cfg = cfg

    def run(self, jobs: Sequence[Job], log_dir: Path | None = None,
            on_done: Callable[[int, Outcome], None] | None = None) -> list[Outcome]:
        outcomes = []
        for i, job in enumerate(jobs):
            outcomes.append(Outcome(job.unit, job.fn(*job.args)))
            if on_done is not None:
                on_done(i, outcomes[-1])
        return outcomes

    def engine_slots(self, r) -> int:
        """One engine at a time: this process."""
        return 1

    def describe(self) -> dict[str, Any]:
        return {"kind": "local", "resources": {"CPU": os.cpu_count()}}

    def check_visible(self, paths: Sequence[Path]) -> None:
        return None  # one process sees what the driver sees
