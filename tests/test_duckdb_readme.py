"""The DuckDB queries over TABLES in docs/serve.md (once the README's), run as they are written there (its
```sql block is the one copy of them), on synthetic tables, against the playlist code's answers."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.unit  # pure code: no pipeline, no training

README = Path(__file__).resolve().parents[1] / "docs" / "serve.md"  # the page that holds the queries


def readme_sql() -> tuple[list[str], list[str]]:
    """``(set statements, queries)`` of docs/serve.md's only ```sql block."""
    blocks = re.findall(r"```sql\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 1, "docs/serve.md should hold one ```sql block"
    text = "\n".join(line for line in blocks[0].splitlines() if not line.strip().startswith("--"))
    statements = [s.strip() for s in text.split(";") if s.strip()]
    return [s for s in statements if s.upper().startswith("SET ")], [s for s in statements if not s.upper().startswith("SET ")]


@pytest.fixture(scope="module")
def tables_dir(tmp_path_factory) -> Path:
    from playlists.synthetic import write_synthetic_tables

    return write_synthetic_tables(tmp_path_factory.mktemp("duckdb"), 300)


def run(tables_dir: Path, seed: int, artist: str) -> list[list[tuple]]:
    settings, queries = readme_sql()
    assert [re.match(r"SET (VARIABLE )?(\w+)", s).group(2) for s in settings] == ["file_search_path", "seed", "artist"]
    connection = duckdb.connect()
    quoted = artist.replace("'", "''")
    connection.execute(f"SET file_search_path = '{tables_dir}'")
    connection.execute(f"SET VARIABLE seed = {int(seed)}")
    connection.execute(f"SET VARIABLE artist = '{quoted}'")
    return [connection.execute(query).fetchall() for query in queries]


def test_radio_and_artist_neighbourhood_queries(tables_dir):
    from playlists import load_tables, radio

    tables = load_tables(tables_dir)
    seed, artist = 1010, tables.track(1010)["artist"]
    radio_rows, neighbourhood = run(tables_dir, seed, artist)

    assert [row[0] for row in radio_rows] == list(range(1, 11))
    assert [row[1] for row in radio_rows] == [e.track_id for e in radio(tables, seed, 10)]
    assert [row[3] for row in radio_rows] == [tables.track(row[1])["title"] for row in radio_rows]

    own = [int(i) for i in tables.ids if tables.track(int(i))["artist"] == artist]
    votes: Counter = Counter()
    for track in own:
        neighbours, _ = tables.stored_neighbours(track)
        votes.update(int(n) for n in neighbours if tables.track(int(n))["artist"] != artist)
    assert len(neighbourhood) == 10 and all(row[1] != artist for row in neighbourhood)
    assert [row[3] for row in neighbourhood] == sorted(votes.values(), reverse=True)[:10]
    assert all(votes[row[0]] == row[3] for row in neighbourhood)
