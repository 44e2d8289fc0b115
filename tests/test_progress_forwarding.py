"""A worker's bars forward their progress to the driver's display instead of drawing in the worker."""
from __future__ import annotations

from harness.common import progress
from harness.common.progress import DriverBars, ProgressEvent, progress_bar, send_progress_to


def test_forwarded_bar_sends_open_advances_and_done(monkeypatch):
    events: list[ProgressEvent] = []
    monkeypatch.setattr(progress, "FORWARD_EVERY_S", 0.0)  # every advance is sent
    send_progress_to(events.append)
    try:
        with progress_bar("eval sft/gsm8k", 5) as advance:
            advance(2)
            advance(3)
    finally:
        send_progress_to(None)
    assert [(e.advance, e.done) for e in events] == [(0, False), (2, False), (3, False), (0, True)]
    assert {e.bar for e in events} == {events[0].bar} and events[0].total == 5


def test_throttled_bar_still_delivers_every_count(monkeypatch):
    events: list[ProgressEvent] = []
    monkeypatch.setattr(progress, "FORWARD_EVERY_S", 3600.0)  # nothing sent until the bar closes
    send_progress_to(events.append)
    try:
        with progress_bar("probe", 100) as advance:
            for _ in range(100):
                advance(1)
    finally:
        send_progress_to(None)
    assert len(events) == 2 and sum(e.advance for e in events) == 100 and events[-1].done


def test_driver_bars_show_worker_bars_while_they_run():
    with DriverBars("units on ray (eval)", 2) as bars:
        bars.apply([ProgressEvent("7:0", "eval base/gsm8k", 10), ProgressEvent("7:0", "eval base/gsm8k", 10, 4)])
        (task,) = [t for t in bars.progress.tasks if "gsm8k" in t.description]
        assert task.completed == 4 and task.total == 10
        bars.apply([ProgressEvent("7:0", "eval base/gsm8k", 10, 6, done=True)])
        assert not [t for t in bars.progress.tasks if "gsm8k" in t.description]  # gone once the unit's bar closes
        bars.unit_done()
        assert bars.progress.tasks[0].completed == 1
