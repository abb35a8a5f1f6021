"""Radio: the nearest neighbours of one seed track by cosine similarity."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from playlists.tables import Tables


@dataclass(frozen=True)
class Entry:
    """One playlist position; ``similarity`` is to the seed (radio) or to the previous track (journey)."""

    track_id: int
    similarity: float


def radio(tables: Tables, seed: int, n: int = 20) -> list[Entry]:
    """The ``n`` tracks most similar to ``seed``, best first, the seed itself excluded.

    Reads the precomputed neighbour list; when it holds fewer than ``n`` rows, ranks the whole catalogue.
    """
    if n < 1:
        raise ValueError("a radio needs at least one track (-n 1 or more)")
    neighbour_ids, similarities = tables.stored_neighbours(seed)
    if len(neighbour_ids) < min(n, len(tables) - 1):
        scores = tables.vectors @ tables.vector(seed)
        scores[tables.row(seed)] = -np.inf
        order = np.lexsort((tables.ids, -scores))[: min(n, len(tables) - 1)]
        neighbour_ids, similarities = tables.ids[order], scores[order]
    return [Entry(int(i), float(s)) for i, s in zip(neighbour_ids[:n], similarities[:n])]


def radio_genre_agreement(tables: Tables, n: int = 10) -> float:
    """Share of each track's ``n`` stored nearest neighbours that have its genre, over all tracks with
    a genre: the demo's check that the space carries style, not noise (chance is about 1/genres)."""
    import pyarrow.parquet as pq

    neighbours = pq.read_table(tables.folder / "neighbours.parquet", filters=[("rank", "<=", n)])
    genre = {track_id: row.get("genre") for track_id, row in tables.tracks.items()}
    same = [
        genre.get(a) == genre.get(b)
        for a, b in zip(neighbours["track_id"].to_pylist(), neighbours["neighbour_id"].to_pylist())
        if genre.get(a)
    ]
    return float(np.mean(same)) if same else float("nan")
