"""The rich progress bar a training run shows over its optimiser steps (count, rate, ETA, latest loss)."""
from __future__ import annotations


def rich_progress_callback():
    """A TrainerCallback showing a rich progress bar over optimiser steps: count, rate, ETA, latest loss.
    (Built in a function so importing this module does not import transformers.)"""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    from transformers import TrainerCallback

    class RichTrainProgress(TrainerCallback):
        def __init__(self) -> None:
            self.progress: Progress | None = None
            self.task = None

        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            self.progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("loss {task.fields[loss]}"),
                console=Console(stderr=True),  # stdout stays clean for machine-readable output
            )
            self.progress.start()
            # On resume global_step starts above 0: the bar starts there too.
            self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step,
                                               rate="-", loss="-")

        def on_step_end(self, args, state, control, **kwargs):
            if self.progress is None:
                return
            self.progress.update(self.task, completed=state.global_step)
            speed = self.progress.tasks[0].speed
            if speed:
                self.progress.update(self.task, rate=f"{speed:.2f} steps/s")

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.progress is not None and logs and "loss" in logs:
                self.progress.update(self.task, loss=f"{logs['loss']:.4f}")

        def on_train_end(self, args, state, control, **kwargs):
            self.close()

        def close(self) -> None:  # also called when training raises, so the terminal is left clean
            if self.progress is not None:
                self.progress.stop()
                self.progress = None

    return RichTrainProgress()
