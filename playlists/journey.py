"""Journey: a playlist from track A to track B where each step moves further along the way."""
from __future__ import annotations

import numpy as np

from playlists.radio import Entry
from playlists.tables import Tables


def progress(vectors: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Position of each vector projected on the segment start -> end: 0 at start, 1 at end."""
    direction = end - start
    return (vectors - start) @ direction / float(direction @ direction)


def slerp(start: np.ndarray, end: np.ndarray, t: float) -> np.ndarray:
    """The point a fraction ``t`` along the great circle from unit ``start`` to unit ``end``."""
    angle = float(np.arccos(np.clip(start @ end, -1.0, 1.0)))
    if angle < 1e-6:
        return start
    return (np.sin((1 - t) * angle) * start + np.sin(t * angle) * end) / np.sin(angle)


def journey(tables: Tables, start: int, end: int, n: int = 20, *, band: int = 400) -> list[Entry]:
    """``n`` tracks from ``start`` to ``end`` (both included), each further along the way, no repeats.

    Candidates are the ``band`` tracks between start and end (projection onto start -> end strictly
    inside (0, 1)) that lie closest to the great circle from start to end. Among all orderings of
    candidates by increasing progress with ``n - 1`` steps, dynamic programming picks the one with the
    least path energy, the sum of squared step lengths ``(1 - cosine)^2``: that spreads the steps evenly
    and avoids one big jump. Fewer tracks come back when too few lie between start and end.
    """
    if n < 2:
        raise ValueError("a journey needs at least two tracks (-n 2 or more)")
    a, b = tables.vector(start), tables.vector(end)
    if tables.row(start) == tables.row(end):
        raise ValueError("a journey needs two different tracks")
    position = progress(tables.vectors, a, b)
    inside = np.flatnonzero((position > 0) & (position < 1))
    inside = inside[(inside != tables.row(start)) & (inside != tables.row(end))]
    on_path = np.array([tables.vectors[i] @ slerp(a, b, float(position[i])) for i in inside])
    inside = inside[np.argsort(-on_path, kind="stable")[:band]] if inside.size else inside
    nodes = np.concatenate([[tables.row(start)], inside[np.argsort(position[inside], kind="stable")],
                            [tables.row(end)]])
    steps = _least_energy_path(tables.vectors[nodes], min(n - 1, len(nodes) - 1))
    path = nodes[steps]
    entries = [Entry(int(tables.ids[path[0]]), 1.0)]
    for previous, row in zip(path, path[1:]):
        entries.append(Entry(int(tables.ids[row]), float(tables.vectors[previous] @ tables.vectors[row])))
    return entries


def _least_energy_path(vectors: np.ndarray, n_steps: int) -> list[int]:
    """Indices ``0 = i_0 < i_1 < ... < i_n_steps = last`` minimising sum of (1 - cos(i_k, i_k+1))^2."""
    last = len(vectors) - 1
    cost = (1.0 - vectors @ vectors.T) ** 2
    cost[np.tril_indices(len(vectors))] = np.inf  # only forward steps
    best = np.full(len(vectors), np.inf)
    best[0] = 0.0
    parents = []
    for _ in range(n_steps):
        total = best[:, None] + cost
        parents.append(np.argmin(total, axis=0))
        best = total[parents[-1], np.arange(len(vectors))]
    path = [last]
    for parent in reversed(parents):
        path.append(int(parent[path[-1]]))
    return path[::-1]


def smoothness(tables: Tables, entries: list[Entry]) -> dict[str, float]:
    """How smooth a journey is: the weakest and mean similarity of consecutive tracks, and the share of
    steps that move further along start -> end (1.0 = monotonic)."""
    vectors = np.stack([tables.vector(e.track_id) for e in entries])
    steps = np.einsum("ij,ij->i", vectors[:-1], vectors[1:])
    position = progress(vectors, vectors[0], vectors[-1])
    return {
        "min_step_similarity": float(steps.min()),
        "mean_step_similarity": float(steps.mean()),
        "monotonic_fraction": float(np.mean(np.diff(position) > 0)),
    }
