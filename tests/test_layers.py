"""Imports flow one way: the parts of gankit (a top-level module or package) import each other
without a cycle, including the imports made inside functions, and the engine's lower parts never
reach up to what uses them."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "gankit"

# part -> parts it must never import (directly or through others)
NEVER = {
    "nets": {"data", "objectives", "train", "metrics", "api", "evaluation"},
    "losses": {"objectives", "train", "metrics", "api", "evaluation"},
    "data": {"objectives", "train", "metrics", "api", "evaluation"},
    "metrics": {"objectives", "train", "api", "evaluation"},   # scores loaded models; run folders are evaluation's
    "objectives": {"train", "api", "evaluation"},
    "train": {"api", "evaluation", "cli"},
    "config": {"nets", "objectives", "train", "metrics", "data"},
    "checkpoint": {"nets", "objectives", "train", "metrics", "data"},
}


def part_of(module: str) -> str:
    """``gankit.metrics.fid`` -> ``metrics``; ``gankit.api`` -> ``api``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set:
    """Every gankit module ``path`` imports, at module level or inside functions."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "gankit"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "gankit":
                continue
            if node.module is None or target == "gankit":   # `from . import x`: x may be a module
                out |= {f"{target}.{a.name}" for a in node.names}
            else:
                out.add(target)
    return out


def part_graph() -> dict:
    graph = defaultdict(set)
    for path in PKG.rglob("*.py"):
        src = part_of(module_name(path))
        for target in imports_of(path):
            dst = part_of(target)
            if dst != src and ((PKG / dst).is_dir() or (PKG / f"{dst}.py").is_file()):
                graph[src].add(dst)
    return graph


def reachable(graph: dict, start: str) -> set:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_import_reader_sees_function_level_and_relative_imports():
    # what the checks below rely on: an import inside a function counts, relative levels resolve
    f = PKG / "metrics" / "translation.py"
    seen = imports_of(f)
    assert "gankit.metrics.paired" in seen and "gankit.version" in seen
    assert "gankit.data" in seen            # imported inside score_translator
    assert part_of("gankit.metrics.fid") == "metrics" and part_of("gankit") == "__init__"


def test_the_parts_of_gankit_import_each_other_without_a_cycle():
    graph = part_graph()
    cycles = sorted(f"{a} -> {b} -> ... -> {a}" for a in graph for b in graph[a] if a in reachable(graph, b))
    assert not cycles, "import cycles between parts of gankit: " + "; ".join(cycles)


@pytest.mark.parametrize("low", sorted(NEVER))
def test_lower_parts_never_reach_up(low):
    reached = reachable(part_graph(), low)
    assert not (reached & NEVER[low]), f"gankit/{low} reaches {sorted(reached & NEVER[low])}"
