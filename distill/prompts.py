"""Prompt templates for the student-side training inputs and the teacher requests (our own wording).

Every field is a ``str.format`` template and can be overridden from the YAML config (``prompts:`` section).
The student's plain question input is the benchmark prompt itself (``harness.tasks.prompts.math_messages``), so that
sft / distilled_sft train on exactly what every method sees at inference, and the probe answers it too unless
``probe`` gives the probe its own wording (the released CGD code sends the raw question, no system prompt).
Each teacher request (critique, refine, direct) may have its own system prompt (``<request>_system``; unset =
the shared ``system``; empty = no system message), as the paper's appendix prompts do.
Placeholders are checked when the templates are built: a missing required one is a one-line error.
"""
from __future__ import annotations

import hashlib
import json
import string
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, SerializationInfo, SerializerFunctionWrapHandler, model_serializer, \
    model_validator

from harness.common.resources import shipped
from harness.tasks.prompts import MATH_SYSTEM, MATH_USER, math_messages


class PromptTemplateError(Exception):
    """A prompt template is unusable (missing or unknown placeholder, unknown kind, missing field).

    Not a ValueError on purpose: pydantic would wrap a ValueError into a multi-line ValidationError."""


_CFT_INPUT = (
    "Here is a math problem and a proposed solution.\n\n"
    "Problem:\n{question}\n\n"
    "Proposed solution:\n{answer}\n\n"
    "Review the proposed solution step by step. Point out any mistakes, then finish with exactly one line: "
    "\"Conclusion: right\" if the solution is correct, or \"Conclusion: wrong\" if it is not."
)

_CGD_INPUT = (
    "Here is a math problem, a first attempt at solving it, and a review of that attempt.\n\n"
    "Problem:\n{question}\n\n"
    "First attempt:\n{answer}\n\n"
    "Review:\n{critique}\n\n"
    "Using the review, write a complete and correct solution. Reason step by step and put the final answer "
    "in \\boxed{{}}."
)

_REFINE_ONLY_INPUT = (
    "Here is a math problem and a first attempt at solving it.\n\n"
    "Problem:\n{question}\n\n"
    "First attempt:\n{answer}\n\n"
    "Write a complete and correct solution, fixing anything the first attempt got wrong. Reason step by step "
    "and put the final answer in \\boxed{{}}."
)

_TEACHER_SYSTEM = (
    "You are an experienced mathematics teacher. You check students' work carefully and explain clearly."
)

_CRITIQUE_REQUEST = (
    "A student was given this problem:\n\n{question}\n\n"
    "The student's answer:\n\n{answer}\n\n"
    "Check the student's work step by step. Say which steps are correct, identify the first error if there is "
    "one and explain why it is wrong, and say whether the final answer is correct. Do not write a full new "
    "solution. End your review with exactly one line, either \"Conclusion: right\" or \"Conclusion: wrong\"."
)

_REFINE_REQUEST = (
    "A student was given this problem:\n\n{question}\n\n"
    "The student's answer:\n\n{answer}\n\n"
    "A review of the student's answer:\n\n{critique}\n\n"
    "Taking the review into account, write a complete, correct solution to the problem. Keep what the student "
    "did right, fix what was wrong, reason step by step, and put the final answer in \\boxed{{}}."
)

_DIRECT_REQUEST = (
    "Solve the following problem. Reason step by step and put the final answer in \\boxed{{}}.\n\n{question}"
)

_GENERIC_CRITIQUE = (
    "Read the solution again carefully. Check that each step follows from the previous one, that the "
    "arithmetic and algebra are right, and that the final answer answers the question that was asked."
)

_CONCLUSION_REMINDER = (
    "Your review did not end with the required verdict line. Reply with exactly one line: "
    "\"Conclusion: right\" or \"Conclusion: wrong\"."
)


class PromptTemplates(BaseModel):
    """All prompt wording in one place. System messages are used verbatim (not formatted); an empty one means
    "no system message"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Student side. `question` + `question_system` must reproduce the benchmark prompt; by default they are
    # the benchmark's own template (harness.tasks.prompts.MATH_USER / MATH_SYSTEM).
    question: str = MATH_USER
    question_system: str = MATH_SYSTEM
    # System message of the method-specific student inputs (cft / cgd / refine_only): by default the benchmark's,
    # so every training example shares the context the student sees at inference.
    input_system: str = MATH_SYSTEM
    cft_input: str = _CFT_INPUT
    cgd_input: str = _CGD_INPUT
    refine_only_input: str = _REFINE_ONLY_INPUT

    # Teacher side (LLM teacher).
    system: str = _TEACHER_SYSTEM
    critique_request: str = _CRITIQUE_REQUEST
    refine_request: str = _REFINE_REQUEST
    direct_request: str = _DIRECT_REQUEST
    conclusion_reminder: str = _CONCLUSION_REMINDER
    #: The one critique every item gets under teacher.critique_mode=generic (used verbatim, no placeholders).
    generic_critique: str = _GENERIC_CRITIQUE

    # Per-request system prompts: None = the shared `system`; "" = no system message (the paper's direct answer).
    critique_system: str | None = None
    refine_system: str | None = None
    direct_system: str | None = None
    #: The probe (the untrained student's draft y'): None = the student's question input above (the benchmark
    #: prompt); else its own user template, e.g. "{question}" for the raw question as the released code sends it.
    probe: str | None = None
    #: The probe's system prompt: None = question_system; "" = none (the released code: the question is the only
    #: message).
    probe_system: str | None = None

    #: Fields that are left out of dumps (and so of digests, run ids and cache keys) while unset: a config that
    #: does not use them keeps the fingerprints it had before they existed.
    OPTIONAL: ClassVar[tuple[str, ...]] = ("critique_system", "refine_system", "direct_system", "probe",
                                           "probe_system")
    #: system-message field -> the field it falls back to when unset
    SYSTEM_FALLBACK: ClassVar[dict[str, str]] = {"critique_system": "system", "refine_system": "system",
                                                 "direct_system": "system", "probe_system": "question_system"}

    #: kind -> (required placeholders, optional placeholders, system-message field)
    KINDS: ClassVar[dict[str, tuple[frozenset[str], frozenset[str], str]]] = {
        "question": (frozenset({"question"}), frozenset(), "question_system"),
        "cft_input": (frozenset({"question", "answer"}), frozenset(), "input_system"),
        "cgd_input": (frozenset({"question", "answer", "critique"}), frozenset(), "input_system"),
        "refine_only_input": (frozenset({"question", "answer"}), frozenset(), "input_system"),
        "critique_request": (frozenset({"question", "answer"}), frozenset({"reference"}), "critique_system"),
        "refine_request": (frozenset({"question", "answer", "critique"}), frozenset({"reference"}), "refine_system"),
        "direct_request": (frozenset({"question"}), frozenset(), "direct_system"),
        "conclusion_reminder": (frozenset(), frozenset(), ""),
        "probe": (frozenset({"question"}), frozenset(), "probe_system"),
    }
    #: The requests of a CGD pipeline in order (what the manifest lists with their system prompts).
    REQUESTS: ClassVar[dict[str, str]] = {"probe": "probe", "critique": "critique_request",
                                          "refine": "refine_request", "direct": "direct_request"}

    @model_serializer(mode="wrap")
    def _drop_unset_optional(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict:
        out = handler(self)
        for name in self.OPTIONAL:
            if out.get(name, 0) is None:
                out.pop(name)
        return out

    @model_validator(mode="after")
    def _check_placeholders(self) -> "PromptTemplates":
        for kind, (required, optional, _) in self.KINDS.items():
            if getattr(self, kind) is None:
                continue  # an unset optional template (probe): its fallback is checked
            names = _placeholders(kind, getattr(self, kind))
            if missing := sorted(required - names):
                raise PromptTemplateError(
                    f"prompt template {kind!r} lacks placeholder(s) {', '.join('{' + m + '}' for m in missing)}; "
                    f"fix: add them to prompts.{kind} in the config"
                )
            if unknown := sorted(names - required - optional):
                allowed = ", ".join("{" + a + "}" for a in sorted(required | optional)) or "none"
                raise PromptTemplateError(
                    f"prompt template {kind!r} has unknown placeholder(s) "
                    f"{', '.join('{' + u + '}' for u in unknown)} (allowed: {allowed}); "
                    "fix: remove them or write literal braces as {{ }}"
                )
        return self

    def is_benchmark_question(self) -> bool:
        """True when the question input is the benchmark's own prompt (the default)."""
        return self.question == MATH_USER and self.question_system == MATH_SYSTEM

    def messages_for(self, kind: str, **fields: str | None) -> list[dict[str, str]]:
        """Chat messages for one prompt kind, e.g. ``messages_for("cgd_input", question=x, answer=y, critique=c)``.

        Optional placeholders that are not given (or None) render as empty strings; extra fields are ignored,
        so callers can always pass e.g. ``reference`` and let the template decide whether to use it."""
        if kind not in self.KINDS:
            raise PromptTemplateError(f"unknown prompt kind {kind!r}; known: {', '.join(self.KINDS)}")
        required, optional, system_field = self.KINDS[kind]
        if missing := sorted(r for r in required if fields.get(r) is None):
            raise PromptTemplateError(f"prompt {kind!r} needs field(s) {', '.join(missing)}; pass them as keywords")
        if kind == "probe" and self.probe is None:
            return self.messages_for("question", **fields)
        if kind == "question" and self.is_benchmark_question():
            # The benchmark prompt itself, so training input == inference prompt even if its structure changes.
            return math_messages(str(fields["question"]))
        values = {k: ("" if v is None else str(v)) for k, v in fields.items()}
        values.update({o: values.get(o, "") for o in optional})
        msgs = []
        system = self.system_for(kind)
        if system:
            msgs.append({"role": "system", "content": system})
        msgs.append({"role": "user", "content": getattr(self, kind).format(**values)})
        return msgs

    def system_for(self, kind: str) -> str:
        """The system message a request kind is sent with ("" = none), after the fallbacks of unset fields."""
        field = self.KINDS[kind][2]
        if not field:
            return ""
        value = getattr(self, field)
        while value is None:
            field = self.SYSTEM_FALLBACK[field]
            value = getattr(self, field)
        return value

    def requests_summary(self) -> dict[str, dict[str, str | None]]:
        """Per request (probe, critique, refine, direct): its system prompt (None = no system message) and user
        template, as sent; for the manifest."""
        out: dict[str, dict[str, str | None]] = {}
        for request, kind in self.REQUESTS.items():
            template_kind = "question" if kind == "probe" and self.probe is None else kind
            if template_kind == "question" and self.is_benchmark_question():
                msgs = math_messages("{question}")
                system = next((m["content"] for m in msgs if m["role"] == "system"), None)
                user = next(m["content"] for m in msgs if m["role"] == "user")
            else:
                system, user = self.system_for(template_kind) or None, getattr(self, template_kind)
            out[request] = {"system": system, "user_template": user}
        return out

    def digest(self) -> str:
        """Short hash of all templates (for cache keys and the manifest)."""
        blob = json.dumps(self.model_dump(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def load_prompt_set(path: str | Path) -> dict[str, str]:
    """A prompt set from files: a folder holding ``<field>.txt`` for any PromptTemplates fields (others keep the
    default wording). A relative path is looked up from the working directory, then among the shipped files
    (``prompts/default`` and ``prompts/paper`` ship with the distribution). An unknown file name is a one-line error."""
    p = Path(path).expanduser()
    if not p.is_absolute() and not p.exists():
        p = shipped(str(p))
    if not p.is_dir():
        raise PromptTemplateError(f"prompt set {path} is not a folder; pass a folder of <field>.txt files, "
                                  "e.g. prompts/default")
    fields = set(PromptTemplates.model_fields)
    out: dict[str, str] = {}
    for f in sorted(p.iterdir()):
        if f.suffix != ".txt":
            continue
        if f.stem not in fields:
            raise PromptTemplateError(f"prompt set {p}: {f.name} names no prompt field; valid names: "
                                      f"{', '.join(sorted(x + '.txt' for x in fields))}")
        text = f.read_text(encoding="utf-8")
        out[f.stem] = text[:-1] if text.endswith("\n") else text  # an editor's final newline is not wording
    if not out:
        raise PromptTemplateError(f"prompt set {p} holds no <field>.txt file")
    return out


def _placeholders(kind: str, template: str) -> set[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:  # e.g. a single unmatched "{"
        raise PromptTemplateError(
            f"prompt template {kind!r} is not a valid format string ({e}); fix: write literal braces as {{{{ }}}}"
        ) from None
    names = set()
    for _, name, _, _ in parsed:
        if name is None:
            continue
        if name == "" or not name.isidentifier():
            raise PromptTemplateError(
                f"prompt template {kind!r} has a positional or odd placeholder {{{name}}}; "
                "fix: use named placeholders like {question}, or write literal braces as {{ }}"
            )
        names.add(name)
    return names
