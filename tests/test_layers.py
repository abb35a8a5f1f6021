"""The layers point one way: each package imports only the packages below it, pure code imports neither Beam
nor TensorFlow, and no module imports itself through others (no import circle)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
# Lowest first: a package may import itself and the packages before it (README, "Where things live").
LAYERS = ("schemas", "storage", "core", "beam_jobs", "model", "playlists", "wavelist")
NO_BEAM_NO_TENSORFLOW = ("core", "playlists")  # pure code, and the playlists that start fast
NO_BEAM = ("schemas",)  # the tile Example's TensorFlow parser lives beside its writer
HEAVY = ("apache_beam", "tensorflow", "keras")


def imports() -> dict[str, set[str]]:
    """Every product module -> the modules it imports (at the top or inside a function)."""
    found: dict[str, set[str]] = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            names = set()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names |= {alias.name for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module)
                    names |= {f"{node.module}.{alias.name}" for alias in node.names}
            found[module] = names
    return found


def test_packages_import_only_the_layers_below():
    wrong = []
    for module, names in imports().items():
        layer = LAYERS.index(module.split(".")[0])
        for name in names:
            top = name.split(".")[0]
            if top in LAYERS and LAYERS.index(top) > layer:
                wrong.append(f"{module} -> {name}")
            if module.split(".")[0] in NO_BEAM_NO_TENSORFLOW and top in HEAVY:
                wrong.append(f"{module} -> {name} (neither Beam nor TensorFlow here)")
            if module.split(".")[0] in NO_BEAM and top == "apache_beam":
                wrong.append(f"{module} -> {name} (no Beam here)")
    assert wrong == []


def test_no_import_circle():
    graph = imports()
    edges = {m: {n for n in names if n in graph and n != m} for m, names in graph.items()}

    def circle_from(start: str) -> list[str] | None:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in edges[node]:
                if nxt == start:
                    return path + [start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
        return None

    circles = [c for c in map(circle_from, sorted(graph)) if c]
    assert circles == []
