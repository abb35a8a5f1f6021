"""A playlist kind is declared once (playlists.kinds): a tiny kind registered here shows up, with its parameters,
limits and score column, as a ``wavelist`` subcommand, as a server route with its OpenAPI entry, and as a tab of
the app with its controls; all three answer with what its function returns."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from playlists import kinds
from playlists.radio import Entry
from wavelist.cli import main

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "wavelist" / "app.py")


def opposite(tables, *, seed: int, n: int = 3, skip: int = 0) -> list[Entry]:
    """The ``n`` tracks least like ``seed``, after the ``skip`` least like it."""
    scores = tables.vectors @ tables.vector(seed)
    rows = np.argsort(scores, kind="stable")[skip: skip + n]
    return [Entry(int(tables.ids[r]), float(scores[r])) for r in rows]


OPPOSITE = kinds.Kind("opposite", "the tracks least like a seed", "from_seed", opposite, (
    kinds.Param("seed", kinds.TRACK, "seed track", required=True, selected=True),
    kinds.count(3, cap=10, low=1, high=10, shown=3),
    kinds.Param("skip", int, "the least like it to pass over", default=0, minimum=0, maximum=5,
                shown=kinds.Shown("Pass over", low=0, high=5, default=0)),
))


@pytest.fixture(scope="module")
def tables_dir(tmp_path_factory):
    from playlists.synthetic import write_synthetic_tables

    return write_synthetic_tables(tmp_path_factory.mktemp("kinds"), 200)


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setattr(kinds, "KINDS", (*kinds.KINDS, OPPOSITE))


def expected(tables_dir, seed: int, n: int, skip: int) -> list[tuple[int, float]]:
    from playlists import load_tables

    return [(e.track_id, round(e.similarity, 4)) for e in opposite(load_tables(tables_dir), seed=seed, n=n, skip=skip)]


def test_the_command_takes_the_kind_with_its_flags_and_limits(registered, tables_dir, capsys):
    assert main(["opposite", "--tables", str(tables_dir), "--seed", "1010", "-n", "4", "--skip", "2",
                 "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["track_id"], r["from_seed"]) for r in rows] == expected(tables_dir, 1010, 4, 2)
    assert main(["opposite", "--tables", str(tables_dir), "--seed", "1010", "--skip", "9"]) == 2
    assert capsys.readouterr().err.strip() == "wavelist opposite: error: --skip must be from 0 to 5, got 9"
    with pytest.raises(SystemExit):
        main(["opposite", "--help"])
    assert "--skip SKIP" in capsys.readouterr().out


def test_the_server_has_its_route_and_openapi_entry(registered, tables_dir):
    import httpx

    from wavelist.serve import Service, create_app

    async def ask() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(Service(tables_dir, watch_seconds=0)))
        async with httpx.AsyncClient(transport=transport, base_url="http://wavelist") as client:
            return [await client.get("/opposite", params={"seed": 1010, "n": 4, "skip": 2}),
                    await client.get("/opposite", params={"seed": 1010, "n": 11}),
                    await client.get("/openapi.json")]

    answer, too_many, description = asyncio.run(ask())
    assert answer.status_code == 200 and answer.json()["kind"] == "opposite"
    assert [(r["track_id"], r["similarity"]) for r in answer.json()["tracks"]] == expected(tables_dir, 1010, 4, 2)
    assert too_many.status_code == 400 and "parameter 'n' must be between 1 and 10" in too_many.json()["error"]
    entry = description.json()["paths"]["/opposite"]["get"]
    assert {p["name"]: p["schema"].get("maximum") for p in entry["parameters"]} == {"seed": None, "n": 10, "skip": 5}
    assert entry["summary"] == "The tracks least like a seed (wavelist opposite)"


def test_the_app_has_its_tab_and_controls(registered, tables_dir, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("WAVELIST_TABLES", str(tables_dir))
    app = AppTest.from_file(APP, default_timeout=60).run()
    app.text_input(key="q").input("1010").run()
    app.session_state["tab"] = "Opposite"
    app.run()
    assert not app.exception, app.exception
    app.slider(key="opposite-skip").set_value(2).run()
    table = app.table[0].value
    shown = list(zip(table["track"], (float(x) for x in table["from_seed (cosine)"])))
    assert shown == expected(tables_dir, 1010, 3, 2)


def test_the_example_in_the_docs_applies_and_is_a_kind(tables_dir, tmp_path):
    """docs/extending.md's diff applies to playlists/ as it is, and the kind it adds answers as the page says."""
    diff = (ROOT / "docs" / "extending.md").read_text(encoding="utf-8").split("```diff\n")[1].split("```")[0]
    shutil.copytree(ROOT / "playlists", tmp_path / "playlists", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "apply", "-"], input=diff, text=True, cwd=tmp_path, check=True)
    said = ["wavelist opposite: error: --skip must be from 0 to 1000, got 2000", "from_seed"]
    code = (f"from wavelist.cli import main\n"
            f"assert main(['opposite', '--tables', {str(tables_dir)!r}, '--seed', '1010', '--skip', '2000']) == 2\n"
            f"assert main(['opposite', '--tables', {str(tables_dir)!r}, '--seed', '1010', '-n', '3']) == 0\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert said[0] in done.stderr and said[1] in done.stdout and len(done.stdout.splitlines()) == 4
