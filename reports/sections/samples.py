"""The run's per-sample records (``samples/<model>/<task>.jsonl``), read once and shared by the diagnostics and
the explorer; which tasks must not show their text (sensitive benchmarks)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from harness.common.artifacts import Manifest, SampleRecord, SchemaMismatch, read_samples


def registered_sensitive(task: str) -> bool:
    """The task class's own ``sensitive`` flag (a second guard: a record that kept its prompt by mistake)."""
    try:
        from harness.tasks.registry import TASK_REGISTRY, task_names

        task_names()
        cls = TASK_REGISTRY.get(task)
        return bool(cls is not None and cls.sensitive)
    except Exception:  # a task module that fails to import must not stop the report
        return False


@dataclass
class SampleSet:
    """task -> model -> id -> record, in the run's model order; notes for files that could not be read."""
    records: dict[str, dict[str, dict[str, SampleRecord]]] = field(default_factory=dict)
    sensitive: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, run_dir: Path, manifest: Optional[Manifest], models: list[str], tasks: list[str]) -> "SampleSet":
        out = cls()
        root = Path(run_dir) / "samples"
        task_info = manifest.tasks if manifest is not None else {}
        for task in tasks:
            by_model: dict[str, dict[str, SampleRecord]] = {}
            for model in models:
                path = root / model / f"{task}.jsonl"
                if path.is_file():
                    try:
                        by_model[model] = {r.id: r for r in read_samples(path)}
                    except SchemaMismatch as e:
                        out.notes.append(f"samples not shown: {e}")
            if by_model:
                out.records[task] = by_model
                out.sensitive[task] = (bool(task in task_info and task_info[task].sensitive)
                                       or registered_sensitive(task)
                                       or any(r.prompt is None for recs in by_model.values() for r in recs.values()))
        return out

    def by_model(self, task: str) -> dict[str, dict[str, SampleRecord]]:
        return self.records.get(task, {})

    @staticmethod
    def text(r: SampleRecord) -> str:
        """The (first) response of a record, '' when it has none."""
        response = r.response
        if response is None and r.responses:
            response = r.responses[0]
        return str(response or "")
