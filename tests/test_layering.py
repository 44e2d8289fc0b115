"""Layering (README, "What a run does"): harness -> distill and reports -> tasks -> common. Every import counts, the ones inside
functions too (a deferred import is still a dependency; only checking what loads at import time missed three).
No cycle between modules either: a cycle means no module of it can be read, tested or shipped alone."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RANK = {"common": 0, "tasks": 1, "distill": 2, "reports": 2, "harness": 3}
#: The top-level folders installed under the project's own name (harness/<pkg> links to ../<pkg>).
MAPPED = ("common", "tasks", "distill", "reports")


def layer(module: str) -> str | None:
    """The layer of a module name: harness.tasks.base -> tasks, harness.cli -> harness, torch -> None."""
    parts = module.split(".")
    if parts[0] != "harness":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in MAPPED else "harness"


def modules() -> dict[str, Path]:
    """Every project module by its import name, read from the real folders (rglob does not follow the links
    under harness/)."""
    out = {}
    for top in RANK:
        for p in sorted((ROOT / top).rglob("*.py")):
            parts = p.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name if top == "harness" else f"harness.{name}"] = p
    return out


def imports_of(path: Path, name: str, known: dict[str, Path]) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, at any depth; relative imports resolved; a name imported
    from a package counts as its submodule when it is one (``from harness import sweep``)."""
    out = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{a.name}") for a in node.names if f"{base}.{a.name}" in known]
    return out


def owner(module: str, known: dict[str, Path]) -> str | None:
    """The project module an import loads (``harness.config.ConfigError`` -> ``harness.config``)."""
    while module and module not in known:
        module = module.rpartition(".")[0]
    return module or None


def graph() -> tuple[dict[str, set[str]], list[str]]:
    known = modules()
    edges: dict[str, set[str]] = {m: set() for m in known}
    upward = []
    for name, path in known.items():
        top = layer(name)
        for line, imported in imports_of(path, name, known):
            dep_top = layer(imported)
            if dep_top is not None and dep_top != top and RANK[dep_top] >= RANK[top]:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
            dep = owner(imported, known)
            if dep is not None and dep != name:
                edges[name].add(dep)
    return edges, upward


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_no_upward_or_sideways_import_anywhere():
    _, upward = graph()
    assert upward == [], "imports against the layering (pass a callback or a value down instead):\n" + "\n".join(upward)


def test_no_import_cycle():
    edges, _ = graph()
    assert cycles(edges) == []


def test_the_checks_see_what_they_claim_to(tmp_path):
    """The checker itself: a deferred upward import, a relative import and a 3-module cycle are found."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from harness.pipeline import run\n    from .base import Task\n")
    found = imports_of(probe, "harness.tasks.probe", modules())
    assert (2, "harness.pipeline") in found and (3, "harness.tasks.base") in found
    assert layer("harness.tasks.base") == "tasks" and layer("harness.progress") == "harness" and layer("torch") is None


def test_no_bare_top_level_names():
    """Nothing imports common/tasks/distill/reports by their folder names: installed, those names do not exist
    (the distribution adds only `harness`), and a clone would load a second copy of every module."""
    bare = []
    # rglob does not follow the links under harness/, so each file is read once
    for path in (p for top in (*RANK, "tests", "bench", "scripts") for p in (ROOT / top).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and not node.level and node.module else []
            bare += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] in MAPPED]
    assert bare == []
