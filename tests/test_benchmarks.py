"""Every benchmark imports as ``benchmarks.NAME``, answers ``--help`` (in this process: no run, no data) and imports
only public product names that exist, so that none rots while the product changes under it."""
import ast
import importlib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
NAMES = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem != "__init__")


def test_there_are_benchmarks():
    assert {"quality", "queries", "serve", "label_free_variants"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_benchmark_imports_and_shows_its_help(name, monkeypatch, capsys):
    module = importlib.import_module(f"benchmarks.{name}")
    monkeypatch.setattr("sys.argv", [f"benchmarks/{name}.py", "--help"])
    with pytest.raises(SystemExit) as exit_:
        module.main()
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: ")


PRODUCT = ("schemas", "storage", "core", "beam_jobs", "model", "playlists", "wavelist")


def _defined(module: str) -> set[str]:
    """The names a product module defines or imports at its top level, and a package's modules."""
    path = ROOT.joinpath(*module.split("."))
    source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    names = {p.stem for p in path.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()} \
        if path.is_dir() else set()
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


@pytest.mark.parametrize("name", NAMES)
def test_benchmark_uses_only_public_product_names(name):
    """Every product name a benchmark imports (inside its functions too) exists and is public."""
    tree = ast.parse((ROOT / "benchmarks" / f"{name}.py").read_text(encoding="utf-8"))
    wrong = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PRODUCT:
            defined = _defined(node.module)
            wrong += [f"{node.module}.{a.name}" + ("" if a.name in defined else " (missing)")
                      for a in node.names if a.name.startswith("_") or a.name not in defined]
    assert wrong == []
