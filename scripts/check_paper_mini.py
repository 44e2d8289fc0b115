"""Check a paper-mini run's manifest shows what the miniature is for (scripts/paper-mini.sh runs it after compare):
the teacher's thinking stripped (raw outputs kept), separate system prompts per request (none for the probe),
critique data given with the pool trained on (cft_star), per-method data_passes, evaluation seeds, checkpoint
selection. Exit 1 with one line per missing piece."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def problems(run: Path) -> list[str]:
    top = json.loads((run / "manifest.json").read_text())
    out = []
    cells = sorted((run / "cells").iterdir()) if (run / "cells").is_dir() else []
    if len(cells) < 2 or (top.get("experiment") or {}).get("seed_kind") != "eval":
        out.append("no evaluation-seed cells (eval_seeds)")
    first = json.loads((cells[0] / "manifest.json").read_text()) if cells else top
    td = first.get("training_data", {})
    req = td.get("requests") or {}
    if req.get("probe", {}).get("system") is not None or req.get("probe", {}).get("user_template") != "{question}":
        out.append("the probe does not send the raw question alone")
    systems = [req.get(s, {}).get("system") for s in ("critique", "refine")]
    if None in systems or systems[0] == systems[1]:
        out.append("critique and refine lack their own system prompts")
    for stage in ("critique", "refine"):
        if not td.get(stage, {}).get("thinking_stripped"):
            out.append(f"no {stage} had its thinking stripped")
    items = [json.loads(x) for x in (cells[0] / "data" / "items.jsonl").read_text().splitlines()] if cells else []
    if not any((it.get("meta") or {}).get("raw") for it in items):
        out.append("no raw teacher output kept in data/items.jsonl (meta.raw)")
    models = first.get("models", {})
    for m in ("sft", "cft", "cgd", "cft_star"):
        train = (models.get(m) or {}).get("train") or {}
        if m not in models:
            out.append(f"method {m} missing")
        elif train.get("data_passes") is None and (train.get("exposure") or {}).get("data_passes") is None:
            out.append(f"{m}: no data_passes in the manifest")
        if m in models and not train.get("selection"):
            out.append(f"{m}: no checkpoint selection recorded")
    return out


if __name__ == "__main__":
    found = problems(Path(sys.argv[1]))
    for p in found:
        print(f"paper-mini: {p}", file=sys.stderr)
    sys.exit(1 if found else 0)
