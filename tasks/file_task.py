"""A benchmark defined by a YAML file: a data file (JSONL, JSON, CSV or Parquet), a field mapping, a prompt
template, optional few-shot examples and one of the built-in graders. No Python needed.

    name: capitals                       # the task's name in results (letters, digits, _ . -)
    data: capitals.jsonl                 # relative to this YAML file
    fields: {question: q, answer: label} # template name -> column (default: the same name)
    prompt: "{question}\\n{choices}\\nAnswer with the letter."
    choices_field: options               # a list column; {choices} renders it as "A. ...\\nB. ..."
    fewshot: [{q: "...", options: [...], label: B}]   # raw rows, prompted like the others, answered by `target`
    grader: {kind: choice}               # math | choice | exact | normalized | regex | code

Every key is validated (unknown keys are one line naming the key and the valid ones, exit 2). ``--tasks
path/to/task.yaml`` or ``tasks_dir:`` in the config bring such a task in; it is then known by its ``name``, and its
path travels in the task's options so that later processes (``harness report``, ``rescore``) load it again. The
fingerprint holds the YAML's content digest and the docs' digest, so an edit to either re-evaluates.
"""
from __future__ import annotations

import csv
import json
import re
import string
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.common.files import files_digest, read_jsonl, stable_hash
from harness.common.yamlfile import DuplicateKey, YAMLSyntaxError, load_yaml
from harness.tasks.base import Doc, GenerationConfig, GenerationOptions, Scored, Task, TaskOptionError
from harness.tasks.data import DataMissing

SUFFIXES = (".yaml", ".yml")
DATA_FORMATS = ("jsonl", "json", "csv", "parquet")


class TaskFileError(TaskOptionError):
    """A task file that cannot be read or validated; one line naming the file, the key and the fix."""


class GraderSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["math", "choice", "exact", "normalized", "regex", "code"] = Field(
        description="math: math-verify equivalence of the final answer; choice: the option letter (A, B, ...) "
                    "from 'the answer is (X)' or the last letter; exact: the stripped response equals the answer; "
                    "normalized: equal after lower-casing and dropping punctuation, articles and extra spaces; "
                    "regex: `pattern`'s first group (or match) equals the answer after normalising; code: the "
                    "response's Python code followed by the row's tests runs in the sandbox without failing")
    pattern: str | None = Field(None, description="regex grader: the pattern whose last match is the answer")
    tests_field: str | None = Field(None, description="code grader: the column holding the test code")
    timeout_s: float = Field(10.0, gt=0, description="code grader: seconds per program")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"not a valid regular expression ({e})") from None
        return v


class TaskFileSpec(BaseModel):
    """What a task YAML may hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="the task's name in results")
    description: str = ""
    data: str = Field(description="the data file, relative to the YAML file (or absolute)")
    format: Literal["jsonl", "json", "csv", "parquet"] | None = Field(None, description="default: from the suffix")
    fields: dict[str, str] = Field(default_factory=dict, description="template name -> column in the data")
    id_field: str | None = Field(None, description="column with each item's id (default: the row index)")
    answer_field: str = Field("answer", description="column (after `fields`) with the gold answer")
    choices_field: str | None = Field(None, description="column (after `fields`) with a list of options")
    prompt: str = Field(description="Python format template over the row's fields, plus {choices}")
    system: str | None = Field(None, description="a system message (chat prompts only)")
    chat: bool = Field(True, description="send the prompt as a chat message (else plain text)")
    fewshot: list[dict[str, Any]] = Field(default_factory=list, description="example rows put before each item")
    target: str = Field("{answer}", description="how a few-shot example's answer is written after its prompt")
    fewshot_separator: str = "\n\n"
    grader: GraderSpec
    max_new_tokens: int = Field(512, gt=0)
    temperature: float = Field(0.0, ge=0)
    stop: list[str] = Field(default_factory=list)


def _first_error(path: Path, err: ValidationError) -> TaskFileError:
    e = err.errors()[0]
    loc = ".".join(str(x) for x in e["loc"]) or "?"
    if e["type"] == "extra_forbidden":
        parent: type[BaseModel] = GraderSpec if e["loc"][0] == "grader" else TaskFileSpec
        valid = ", ".join(parent.model_fields)
        return TaskFileError(f"task file {path}: unknown key {loc!r}; valid keys: {valid}")
    if e["type"] == "missing":
        return TaskFileError(f"task file {path}: {loc} is required (see docs/your-own-benchmark.md)")
    msg = e["msg"].removeprefix("Value error, ")
    return TaskFileError(f"task file {path}: {loc}: {msg} (got {str(e.get('input'))[:60]!r})")


def read_spec(path: str | Path) -> TaskFileSpec:
    p = Path(path).expanduser()
    if not p.is_file():
        what = "is a folder" if p.is_dir() else "not found"
        raise TaskFileError(f"task file {p} {what}; pass a YAML file that defines a task (see "
                            "docs/your-own-benchmark.md)")
    try:
        raw = load_yaml(p)
    except (DuplicateKey, YAMLSyntaxError) as e:
        raise TaskFileError(f"task file {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TaskFileError(f"task file {p}: cannot read it ({type(e).__name__}: {e})") from None
    if not isinstance(raw, dict):
        raise TaskFileError(f"task file {p} must hold a mapping (name:, data:, prompt:, grader:)")
    try:
        return TaskFileSpec.model_validate(raw)
    except ValidationError as e:
        raise _first_error(p, e) from None


def read_rows(path: Path, fmt: str | None) -> list[dict[str, Any]]:
    fmt = fmt or path.suffix.lower().lstrip(".")
    if fmt not in DATA_FORMATS:
        raise TaskFileError(f"data file {path}: unknown format {fmt!r}; use one of {', '.join(DATA_FORMATS)} "
                            "(or set format:)")
    try:
        if fmt == "jsonl":
            return read_jsonl(path)
        if fmt == "json":
            rows = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(rows, list):
                raise TaskFileError(f"data file {path} must hold a JSON list of objects")
            return rows
        if fmt == "csv":
            with open(path, newline="", encoding="utf-8") as f:
                return list(csv.DictReader(f))
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    except TaskFileError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise TaskFileError(f"data file {path}: cannot read it as {fmt} ({type(e).__name__}: "
                            f"{' '.join(str(e).split())[:120]})") from None


# ---- graders ------------------------------------------------------------------------------------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: Any) -> str:
    """SQuAD-style normalisation: lower case, punctuation and articles dropped, spaces collapsed."""
    return " ".join(_ARTICLES.sub(" ", str(text).lower().translate(_PUNCT)).split())


def gold_letter(answer: Any, choices: Sequence[str] | None) -> str:
    """A letter, an index (0-based int) or an option's text -> the option letter."""
    letters = string.ascii_uppercase
    if isinstance(answer, bool):
        raise ValueError(f"answer {answer!r} is not an option letter, index or text")
    if isinstance(answer, int):
        return letters[answer]
    text = str(answer).strip()
    if len(text) == 1 and text.upper() in letters:
        return text.upper()
    if text.isdigit():
        return letters[int(text)]
    if choices and text in choices:
        return letters[list(choices).index(text)]
    raise ValueError(f"answer {answer!r} is not an option letter, index or one of the options")


class FileTask(Task):
    """Base of the classes made from task files (one subclass per file, see ``task_class``)."""

    spec: ClassVar[TaskFileSpec]
    spec_path: ClassVar[Path]
    spec_digest: ClassVar[str]
    grader_version = "1"

    class Options(GenerationOptions):
        path: str | None = Field(None, description="the task file (set by the harness)",
                                 json_schema_extra={"fingerprint": False})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._docs: list[Doc] | None = None

    @property
    def data_path(self) -> Path:
        p = Path(self.spec.data).expanduser()
        return p if p.is_absolute() else (self.spec_path.parent / p)

    def _field(self, row: dict[str, Any], name: str) -> Any:
        col = self.spec.fields.get(name, name)
        if col not in row:
            raise TaskFileError(f"task file {self.spec_path}: column {col!r} (for {name!r}) not in the data; "
                                f"columns: {', '.join(map(str, row))[:200]}")
        return row[col]

    def _view(self, row: dict[str, Any]) -> dict[str, Any]:
        """The row under its template names: mapped fields first, then every other column as it is."""
        view = dict(row)
        for name in self.spec.fields:
            view[name] = self._field(row, name)
        choices = self._choices(view)
        if choices is not None:
            view["choices"] = "\n".join(f"{string.ascii_uppercase[i]}. {c}" for i, c in enumerate(choices))
        return view

    def _choices(self, view: dict[str, Any]) -> list[str] | None:
        if self.spec.choices_field is None:
            return None
        raw = view.get(self.spec.choices_field)
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)  # CSV cells hold lists as JSON text
            except ValueError:
                raw = None
        if not isinstance(raw, list) or not 1 <= len(raw) <= 26:
            raise TaskFileError(f"task file {self.spec_path}: choices_field {self.spec.choices_field!r} must hold "
                                f"a list of 1-26 options in every row (got {str(raw)[:60]!r})")
        return [str(c) for c in raw]

    def _render(self, template: str, view: dict[str, Any], what: str) -> str:
        try:
            return template.format(**view)
        except KeyError as e:
            raise TaskFileError(f"task file {self.spec_path}: {what} names {{{e.args[0]}}}, not a field of the "
                                f"data; fields: {', '.join(map(str, view))[:200]}") from None
        except (ValueError, IndexError) as e:
            raise TaskFileError(f"task file {self.spec_path}: {what} is not a valid template ({e}); write "
                                "literal braces as {{ and }}") from None

    def _gold(self, view: dict[str, Any]) -> Any:
        answer = view.get(self.spec.answer_field)
        if answer is None:
            raise TaskFileError(f"task file {self.spec_path}: answer_field {self.spec.answer_field!r} missing in a "
                                "row; set answer_field: or map it in fields:")
        if self.spec.grader.kind == "choice":
            try:
                return gold_letter(answer, self._choices(view))
            except (ValueError, IndexError) as e:
                raise TaskFileError(f"task file {self.spec_path}: {e}") from None
        return answer

    def _target(self, view: dict[str, Any]) -> str:
        if self.spec.grader.kind == "choice":
            view = {**view, "answer": self._gold(view), self.spec.answer_field: self._gold(view)}
        return self._render(self.spec.target, view, "target")

    def docs(self) -> list[Doc]:
        if self._docs is not None:
            return self._docs
        if not self.data_path.is_file():
            raise DataMissing(f"data for task {self.name!r}: {self.data_path} "
                              f"{'is a folder' if self.data_path.is_dir() else 'not found'}; fix: the `data:` of "
                              f"{self.spec_path} is relative to that file")
        rows = read_rows(self.data_path, self.spec.format)
        shots = "".join(self._render(self.spec.prompt, v, "prompt") + " " + self._target(v) + self.spec.fewshot_separator
                        for v in map(self._view, self.spec.fewshot))
        docs = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise TaskFileError(f"data file {self.data_path}: row {i} is not an object")
            view = self._view(row)
            text = shots + self._render(self.spec.prompt, view, "prompt")
            prompt: Any = text
            if self.spec.chat:
                prompt = ([{"role": "system", "content": self.spec.system}] if self.spec.system else []) + [
                    {"role": "user", "content": text}]
            doc_id = str(self._field(row, self.spec.id_field)) if self.spec.id_field else f"{self.name}/{i}"
            meta: dict[str, Any] = {"row": i}
            if self.spec.grader.kind == "code":
                field = self.spec.grader.tests_field or "test"
                meta["tests"] = str(self._field(row, field))
            docs.append(Doc(id=doc_id, prompt=prompt, gold=self._gold(view), choices=self._choices(view),
                            meta=meta))
        self._docs = docs
        return docs

    # ---- scoring ------------------------------------------------------------------------------------------
    def score(self, doc: Doc, responses: Sequence[str]) -> Scored:
        return self.score_many([doc], [responses])[0]

    def score_many(self, docs: Sequence[Doc], responses: Sequence[Sequence[str]]) -> list[Scored]:
        kind = self.spec.grader.kind
        firsts = [(r[0] if r else "") or "" for r in responses]
        if kind == "math":
            from harness.tasks.scorers.math import grade_math_batch

            grades = grade_math_batch([(r, str(d.gold)) for d, r in zip(docs, firsts)])
            return [Scored(id=d.id, score=float(g.correct), metrics={"accuracy": float(g.correct)},
                           extracted=g.extracted, details={"extraction_failed": g.extraction_failed,
                                                           "timed_out": g.timed_out})
                    for d, g in zip(docs, grades)]
        if kind == "code":
            from harness.tasks.scorers.code import extract_code, run_many

            results = run_many([extract_code(r) + "\n\n" + d.meta["tests"] + "\n" for d, r in zip(docs, firsts)],
                               timeout_s=self.spec.grader.timeout_s)
            return [Scored(id=d.id, score=float(x.passed), metrics={"accuracy": float(x.passed)},
                           details={"status": x.status}) for d, x in zip(docs, results)]
        return [self._score_text(d, r) for d, r in zip(docs, firsts)]

    def _score_text(self, doc: Doc, response: str) -> Scored:
        kind, gold = self.spec.grader.kind, doc.gold
        if kind == "choice":
            from harness.tasks.scorers.choice import extract_flexible

            ex = extract_flexible(response, len(doc.choices or "ABCD"))
            ok, extracted, details = ex.letter == gold, ex.letter, {"how": ex.how, "extraction_failed": ex.letter is None}
        elif kind == "exact":
            extracted = response.strip()
            ok, details = extracted == str(gold).strip(), {}
        elif kind == "normalized":
            extracted = normalize(response)
            ok, details = extracted == normalize(gold), {}
        else:  # regex
            hits = list(re.finditer(self.spec.grader.pattern or r"(.+)", response))
            extracted = None
            if hits:
                m = hits[-1]
                extracted = next((g for g in m.groups() if g is not None), m.group(0))
            ok, details = extracted is not None and normalize(extracted) == normalize(gold), \
                {"extraction_failed": extracted is None}
        return Scored(id=doc.id, score=float(ok), metrics={"accuracy": float(ok)}, extracted=extracted,
                      details=details)

    def fingerprint_parts(self, docs: Sequence[Doc]) -> dict[str, Any]:
        parts = super().fingerprint_parts(docs)
        parts["task_file"] = self.spec_digest
        parts["data_file"] = files_digest([self.data_path])
        return parts


_CLASSES: dict[Path, type[FileTask]] = {}


def task_class(path: str | Path) -> type[FileTask]:
    """The Task class a file defines (validated; made once per file and process)."""
    p = Path(path).expanduser().resolve()
    if p in _CLASSES:
        return _CLASSES[p]
    spec = read_spec(p)
    attrs = {
        "spec": spec, "spec_path": p, "spec_digest": stable_hash(spec.model_dump(mode="json")),
        "description": spec.description or f"task file {p.name}",
        "generation": GenerationConfig(max_new_tokens=spec.max_new_tokens, temperature=spec.temperature,
                                       stop=tuple(spec.stop)),
        "grader_packages": ("math-verify",) if spec.grader.kind == "math" else (),
        "__module__": __name__,
    }
    cls = type(f"FileTask_{re.sub(r'[^0-9A-Za-z_]', '_', spec.name)}", (FileTask,), attrs)
    cls.name = spec.name
    _CLASSES[p] = cls
    return cls


def is_task_file(item: str) -> bool:
    return item.lower().endswith(SUFFIXES)


def dir_task_files(folder: str | Path) -> list[Path]:
    d = Path(folder).expanduser()
    if not d.is_dir():
        raise TaskFileError(f"tasks_dir {d} {'is a file' if d.exists() else 'not found'}; pass a folder of task "
                            "YAML files")
    return sorted(p for p in d.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())

