"""Rich progress bars with counts, rate and ETA for every long loop (in common/: tasks' graders show them too)."""
from __future__ import annotations

import itertools
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

console = Console(stderr=True, soft_wrap=True)  # one message, one line: logs stay greppable


def quiet_hf_progress() -> None:
    """transformers/datasets tqdm bars ("Writing model shards", "Map") would interleave with ours."""
    from datasets.utils.logging import disable_progress_bar as datasets_quiet
    from transformers.utils.logging import disable_progress_bar as transformers_quiet

    transformers_quiet()
    datasets_quiet()


class RateColumn(TextColumn):
    def __init__(self) -> None:
        super().__init__("")

    def render(self, task):  # type: ignore[override]
        from rich.text import Text

        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f}/s" if speed else "  -/s", style="progress.data.speed")


def make_progress(transient: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
        RateColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=console, transient=transient,
    )


@dataclass(frozen=True)
class ProgressEvent:
    """One bar's news from a worker process to the driver: it opened, advanced by ``advance``, or ``done``."""

    bar: str  # unique across workers: "<host pid>:<n>"
    description: str
    total: int
    advance: int = 0
    done: bool = False


#: In a worker process, where bars send their events instead of drawing (set by the executor; None: draw here).
_sink: Callable[[ProgressEvent], None] | None = None
#: A forwarded bar sends at most this often (each send is a message to the driver).
FORWARD_EVERY_S = 0.5
_bar_ids = itertools.count()


def send_progress_to(sink: Callable[[ProgressEvent], None] | None) -> None:
    """Make this process's bars forward their progress to ``sink`` (None: draw them here again)."""
    global _sink
    _sink = sink


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """``with progress_bar("probe", 400) as advance: ... advance(16)``"""
    if _sink is not None:
        with _forwarded_bar(_sink, description, total) as advance:
            yield advance
        return
    with make_progress() as prog:
        tid = prog.add_task(description, total=total)
        yield lambda n=1: prog.advance(tid, n)


@contextmanager
def _forwarded_bar(sink: Callable[[ProgressEvent], None], description: str,
                   total: int) -> Iterator[Callable[[int], None]]:
    bar = f"{os.getpid()}:{next(_bar_ids)}"
    pending = 0
    last = time.monotonic()
    sink(ProgressEvent(bar, description, total))

    def advance(n: int = 1) -> None:
        nonlocal pending, last
        pending += n
        if time.monotonic() - last >= FORWARD_EVERY_S:
            sink(ProgressEvent(bar, description, total, pending))
            pending, last = 0, time.monotonic()

    try:
        yield advance
    finally:
        sink(ProgressEvent(bar, description, total, pending, done=True))


class DriverBars:
    """The driver's live display while units run elsewhere: one bar counting units, and a bar per bar a worker
    forwards (shown while it runs: its description, count, rate and ETA, as if it ran here)."""

    def __init__(self, description: str, total: int) -> None:
        self.progress = make_progress()
        self.units = self.progress.add_task(description, total=total)
        self.bars: dict[str, int] = {}

    def __enter__(self) -> "DriverBars":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        for tid in self.bars.values():
            self.progress.remove_task(tid)
        self.progress.__exit__(*exc)

    def unit_done(self, n: int = 1) -> None:
        self.progress.advance(self.units, n)

    def apply(self, events: Iterable[ProgressEvent]) -> None:
        for e in events:
            tid = self.bars.get(e.bar)
            if tid is None:
                tid = self.bars[e.bar] = self.progress.add_task(f"  {e.description}", total=e.total)
            self.progress.advance(tid, e.advance)
            if e.done:
                self.progress.remove_task(self.bars.pop(e.bar))
