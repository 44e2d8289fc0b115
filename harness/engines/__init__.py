"""Generation backends behind one small protocol (see base.py). One module per engine."""
from harness.engines.base import Completion, Engine, Prompt, SamplingParams

__all__ = ["Completion", "Engine", "Prompt", "SamplingParams"]
