"""Rich progress bars with counts, rate and ETA for every long loop (in common/: tasks' graders show them too)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

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


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """``with progress_bar("probe", 400) as advance: ... advance(16)``"""
    with make_progress() as prog:
        tid = prog.add_task(description, total=total)
        yield lambda n=1: prog.advance(tid, n)
