"""The layers point one way: each package imports only the packages it may (:data:`ALLOWED`), the three siblings
beam_jobs, model and playlists none of each other; pure code imports neither Beam nor TensorFlow, not even
through another product module; and no module imports itself through others (no import circle)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "storage", "core", "beam_jobs", "model", "playlists", "wavelist")
_BASE = {"schemas", "storage", "core"}
# Each package -> the packages it may import (README, "Where things live"): schemas < storage < core <
# {beam_jobs, model, playlists} < wavelist.
ALLOWED = {
    "schemas": {"schemas"},
    "storage": {"schemas", "storage"},
    "core": {"schemas", "storage", "core"},
    "beam_jobs": _BASE | {"beam_jobs"},
    "model": _BASE | {"model"},
    "playlists": _BASE | {"playlists"},
    "wavelist": set(PACKAGES),
}
HEAVY = {"apache_beam": "Beam", "tensorflow": "TensorFlow", "keras": "TensorFlow"}
# Each package -> the heavy libraries it must not reach, directly or through the product modules it imports.
BANNED = {
    "core": {"apache_beam", "tensorflow", "keras"},  # pure code
    "playlists": {"apache_beam", "tensorflow", "keras"},  # the playlists start fast
    "schemas": {"apache_beam"},  # the tile Example's TensorFlow parser lives beside its writer
    "storage": {"tensorflow", "keras"},
}
# Imports of a heavy library inside a function of a module that pure code reaches: (module, library) -> why.
LAZY_ALLOWED = {
    ("storage.paths", "apache_beam"): "Beam's FileSystems, for gs:// paths only",
    ("schemas.tile_example", "tensorflow"): "the tile Example's tf.io parse spec, which only the trainer asks for",
}

TOP, LAZY, TYPING = "top", "lazy", "typing"  # when an import runs: on import, when a function runs, never


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_imports(source: str, modules: set[str]) -> dict[str, str]:
    """The names one module's ``source`` imports -> when (:data:`TOP`, :data:`LAZY` or :data:`TYPING`); a
    ``from a import b`` names ``a.b`` when that is one of the product ``modules``, else ``a``."""
    found: dict[str, str] = {}
    rank = {TOP: 0, LAZY: 1, TYPING: 2}

    def add(name: str, when: str) -> None:
        if name not in found or rank[when] < rank[found[name]]:
            found[name] = when

    def visit(node: ast.AST, when: str) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, when)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            named = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
            for name in named:
                add(name, when)
            if len(named) < len(node.names):
                add(node.module, when)
        inner = LAZY if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) else when
        for child in ast.iter_child_nodes(node):
            in_typing = isinstance(node, ast.If) and _is_type_checking(node) and child in node.body
            visit(child, TYPING if in_typing else inner)

    visit(ast.parse(source), TOP)
    return found


def product_graph() -> dict[str, dict[str, str]]:
    """Every product module -> :func:`module_imports` of it."""
    paths = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
             for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}
    return {m: module_imports(p.read_text(encoding="utf-8"), set(paths)) for m, p in paths.items()}


def _runs(name: str, graph: dict[str, dict[str, str]]) -> list[str]:
    """The product modules that importing ``name`` runs: its packages' ``__init__`` and itself."""
    parts = name.split(".")
    return [m for m in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if m in graph]


def violations(graph: dict[str, dict[str, str]]) -> list[str]:
    """Every import in ``graph`` (module -> imported name -> when) that breaks :data:`ALLOWED` or :data:`BANNED`;
    a banned library counts when a module reaches it through other product modules too (their imports at the
    top and inside functions, less :data:`LAZY_ALLOWED`)."""
    wrong = []
    for module, names in sorted(graph.items()):
        package = module.split(".")[0]
        for name in sorted(names):
            top = name.split(".")[0]
            if top in ALLOWED and top not in ALLOWED[package]:
                wrong.append(f"{module} -> {name} ({package} may import only {', '.join(sorted(ALLOWED[package]))})")
            if top in BANNED.get(package, ()):
                wrong.append(f"{module} -> {name} (no {HEAVY[top]} in {package})")
        if package not in BANNED:
            continue
        # the product modules this one runs, each with the chain that reaches it
        chain = {module: [module]}
        todo = [module]
        while todo:
            current = todo.pop()
            for name, when in graph[current].items():
                for reached in _runs(name, graph) if when != TYPING else ():
                    if reached not in chain:
                        chain[reached] = chain[current] + [reached]
                        todo.append(reached)
        for reached, path in sorted(chain.items()):
            if reached.split(".")[0] == package:
                continue  # its own imports are checked above
            for name, when in sorted(graph[reached].items()):
                top = name.split(".")[0]
                lazy_ok = when == LAZY and (reached, top) in LAZY_ALLOWED
                if top in BANNED[package] and when != TYPING and not lazy_ok:
                    wrong.append(f"{' -> '.join(path)} -> {name} (no {HEAVY[top]} in {package}, not even "
                                 "through other modules)")
    return wrong


def test_packages_import_only_the_layers_allowed():
    assert violations(product_graph()) == []


@pytest.mark.parametrize("graph, expected", [
    ({"model.train": {"beam_jobs.embed": LAZY}, "beam_jobs.embed": {}},
     "model.train -> beam_jobs.embed (model may import only core, model, schemas, storage)"),
    ({"playlists.radio": {"model.cnn": TOP}, "model.cnn": {}},
     "playlists.radio -> model.cnn (playlists may import only core, playlists, schemas, storage)"),
    ({"core.vectors": {"playlists": TOP}, "playlists": {}},
     "core.vectors -> playlists (core may import only core, schemas, storage)"),
    ({"playlists.radio": {"core.helper": LAZY}, "core": {}, "core.helper": {"storage.paths": TOP},
      "storage.paths": {"tensorflow": LAZY}},
     "playlists.radio -> core.helper -> storage.paths -> tensorflow (no TensorFlow in playlists, not even "
     "through other modules)"),
    ({"playlists.radio": {"core.x": TOP}, "core": {"core.y": TOP}, "core.x": {}, "core.y": {"apache_beam": TOP}},
     "playlists.radio -> core -> core.y -> apache_beam (no Beam in playlists, not even through other modules)"),
])
def test_the_checker_flags_a_bad_edge(graph, expected):
    """A sibling import, an upward import, and Beam or TensorFlow reached through other modules (a package's
    ``__init__`` included) are each flagged, with the chain that reaches them."""
    assert expected in violations(graph)


def test_the_checker_flags_a_sibling_import_added_to_the_product():
    """playlists.radio given an import of a Beam job module: the sibling edge and the Beam behind it."""
    graph = product_graph()
    job = next(m for m in sorted(graph) if m.startswith("beam_jobs.") and graph[m].get("apache_beam") == TOP)
    graph["playlists.radio"] = {**graph["playlists.radio"], job: LAZY}
    found = violations(graph)
    assert f"playlists.radio -> {job} (playlists may import only core, playlists, schemas, storage)" in found
    assert f"playlists.radio -> {job} -> apache_beam (no Beam in playlists, not even through other modules)" in found


def test_the_checker_lets_through_what_is_allowed():
    graph = {"playlists.radio": {"storage.files": TOP, "numpy": TOP},
             "storage.files": {"storage.paths": TOP, "apache_beam": TYPING}, "storage.paths": {"apache_beam": LAZY},
             "model.train": {"core.vectors": TOP, "tensorflow": TOP}, "core.vectors": {"numpy": TOP}}
    assert violations(graph) == []


def test_imports_are_told_apart_by_when_they_run():
    source = ("import numpy\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import apache_beam\n"
              "from storage import files, nothing\ndef f():\n    from model.train import x\n    import numpy\n")
    assert module_imports(source, {"storage.files", "model.train"}) == {
        "numpy": TOP, "typing": TOP, "apache_beam": TYPING, "storage.files": TOP, "storage": TOP, "model.train": LAZY}


def test_no_import_circle():
    graph = product_graph()
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
