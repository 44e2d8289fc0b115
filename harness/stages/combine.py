"""Several runs in one report (``harness report RUN1 RUN2 ... --output FILE``).

Runs are combined only when they evaluated alike: the same task data and prompts (task fingerprints), generation
budgets and sampling, grader versions and grader packages, and engine settings, on the tasks they share. Otherwise
``evaluation_differences`` names what differs and the command refuses unless ``--force``, which puts those lines
in the report's notes.

The combined folder is a temporary run folder whose sample files link to each run's: a model keeps its name when
it is the first of that name, a model whose samples are the same as an earlier one's (the same generation
fingerprint, or byte-identical files where a run has no sample meta: the base model of two runs of one student)
is shown once, any other gets "<model> @ <run-id>". The
combined results.json is aggregated from those samples, so models of different runs are compared paired on items
like models of one run.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from harness.common.artifacts import Manifest, ModelRecord, SampleFileMeta, load_artifact
from harness.store import RunDir


def _sample_metas(run: RunDir) -> dict[tuple[str, str], SampleFileMeta]:
    out = {}
    for model, task, path in run.sample_files():
        meta = path.with_suffix(".meta.json")
        if meta.is_file():
            out[(model, task)] = load_artifact(SampleFileMeta, meta, "sample file meta")
    return out


def _evaluation_signature(manifest: Manifest, metas: dict[tuple[str, str], SampleFileMeta]) -> dict[str, str]:
    """What must agree between runs, as "what" -> value text."""
    def text(v) -> str:
        return v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)

    sig: dict[str, str] = {}
    for t, rec in manifest.tasks.items():
        sig[f"task {t} data/prompts fingerprint"] = rec.fingerprint
        for k, v in (rec.generation.model_dump(mode="json") if rec.generation is not None else {}).items():
            sig[f"task {t} generation {k}"] = text(v)
    for (_, t), meta in metas.items():
        parts = meta.scoring.parts
        sig[f"task {t} grader version"] = text(parts.get("grader_version"))
        for pkg, version in (parts.get("packages") or {}).items():
            sig[f"task {t} grader package {pkg}"] = text(version)
    settings = manifest.eval_settings
    for k, v in (settings.model_dump(mode="json") if settings is not None else {}).items():
        sig[f"engine setting {k}"] = text(v)
    return sig


def evaluation_differences(runs: list[RunDir], manifests: list[Manifest]) -> list[str]:
    """One line per evaluation setting that differs between the first run and a later one (shared tasks only)."""
    first = _evaluation_signature(manifests[0], _sample_metas(runs[0]))
    out = []
    for run, man in zip(runs[1:], manifests[1:]):
        sig = _evaluation_signature(man, _sample_metas(run))
        for key in sorted(set(first) & set(sig)):
            if first[key] != sig[key]:
                out.append(f"{key}: {first[key][:60]} ({runs[0].root.name}) vs {sig[key][:60]} ({run.root.name})")
    return out


def combine_runs(runs: list[RunDir], manifests: list[Manifest], notes: list[str]) -> RunDir:
    """A temporary run folder holding every run's models (see the module docstring); the caller removes it
    (``shutil.rmtree(folder.root)``) after rendering."""
    from harness.stages.aggregate import aggregate

    root = Path(tempfile.mkdtemp(prefix="harness-report-"))
    out = RunDir(root)
    models: dict[str, ModelRecord] = {}
    seen: dict[str, str] = {}  # what made a model's sample files -> its combined name
    order: list[str] = []
    tasks = {}
    for run, man in zip(runs, manifests):
        metas = _sample_metas(run)
        by_model: dict[str, list[tuple[str, Path]]] = {}
        for model, task, path in run.sample_files():
            if model in man.models and task in man.tasks:
                by_model.setdefault(model, []).append((task, path))
        for t, rec in man.tasks.items():
            tasks.setdefault(t, rec)
        for model in man.model_order or list(by_model):
            files = sorted(by_model.get(model, []))
            if not files:
                continue
            fp = json.dumps([(t, metas[(model, t)].generation.key if (model, t) in metas
                              else hashlib.sha256(path.read_bytes()).hexdigest()) for t, path in files])
            if fp in seen:
                continue
            name = model if model not in models else f"{model} @ {run.root.name}"
            seen[fp] = name
            models[name] = man.models[model]
            order.append(name)
            folder = root / "samples" / name
            folder.mkdir(parents=True)
            for task, path in files:
                (folder / path.name).symlink_to(path.resolve())
                meta = path.with_suffix(".meta.json")
                if meta.is_file():
                    (folder / meta.name).symlink_to(meta.resolve())
    first = manifests[0]
    combined = first.model_copy(update={
        "run_id": " + ".join(r.root.name for r in runs), "models": models, "model_order": order, "tasks": tasks,
        "methods": [m for m in order if m != "base"],
        "command": " ; ".join(m.command for m in manifests if m.command),
        "warnings": [*first.warnings, f"combined report of {len(runs)} runs: "
                     + ", ".join(r.root.name for r in runs), *notes]})
    out.manifest.write_text(combined.model_dump_json(), encoding="utf-8")
    aggregate(out, combined)
    return out


def remove(folder: RunDir) -> None:
    shutil.rmtree(folder.root, ignore_errors=True)
