"""What a task asks of the engine (``Task.output_type``), and every behaviour that depends on it, in one place:
the stages, the manifest and the report ask this type what a task does instead of comparing strings."""
from __future__ import annotations

from enum import Enum


class OutputType(str, Enum):
    """A task's kind of evaluation. A ``str`` enum: written to manifest.json as its value ("generate"), and equal
    to that string, so task classes of plugins that still say ``output_type = "generate"`` read the same."""

    GENERATE = "generate"  # the engine writes responses; the task extracts and scores them
    MULTIPLE_CHOICE = "multiple_choice"  # the engine scores each choice's log-likelihood; nothing is generated
    LM_EVAL = "lm_eval"  # lm-eval runs the task (its prompts, requests and scoring) through the harness's engine

    def __str__(self) -> str:
        return self.value

    @property
    def generates(self) -> bool:
        """The harness generates with the task's own sampling parameters (``generation_params``): its records
        carry responses, finish reasons and truncation, and text responses can be scored (``harness score``)."""
        return self is OutputType.GENERATE

    @property
    def uses_loglikelihood(self) -> bool:
        """Each of a doc's choices is scored by its log-likelihood (``Task.score_loglikelihoods``)."""
        return self is OutputType.MULTIPLE_CHOICE

    @property
    def runs_in_lm_eval(self) -> bool:
        """lm-eval makes the requests and scores them while evaluating: stored records are never re-scored here."""
        return self is OutputType.LM_EVAL

    @property
    def shardable(self) -> bool:
        """Its docs may be split across engines (``eval.shards``); lm-eval evaluates a task in one call."""
        return self is not OutputType.LM_EVAL

    @classmethod
    def of(cls, value: "OutputType | str", where: str) -> "OutputType":
        """``value`` as an OutputType; anything else is a one-line error naming ``where`` and the valid values."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"{where}: output_type {value!r} is not one of "
                             f"{', '.join(t.value for t in cls)}") from None
