"""Baselines that tests and benchmarks compare the playlist code with; no command uses them."""
from __future__ import annotations

import numpy as np

from playlists.journey import entries_of
from playlists.radio import Entry
from playlists.tables import Tables, one_blas_thread


def line_journey(tables: Tables, start: int, end: int, n: int = 20) -> list[Entry]:
    """The original study's journey: for each of ``n`` evenly spaced points on the straight line from A to B,
    the nearest unused track (one scan of the catalogue per point)."""
    a, b = tables.vector(start), tables.vector(end)
    used = {tables.row(start), tables.row(end)}
    path = [tables.row(start)]
    with one_blas_thread():
        for t in np.linspace(0, 1, n)[1:-1]:
            distances = np.linalg.norm(tables.vectors - ((1 - t) * a + t * b), axis=1)
            distances[list(used)] = np.inf
            path.append(int(np.argmin(distances)))
            used.add(path[-1])
    path.append(tables.row(end))
    return entries_of(tables, np.array(path))
