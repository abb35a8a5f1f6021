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


def journey(tables: Tables, start: int, end: int, n: int = 20) -> list[Entry]:
    """``n`` tracks from ``start`` to ``end`` (both included), no track twice.

    Each step picks, among unused tracks strictly further along start -> end than the current one, the
    track that best matches both the current track and the next waypoint on the great circle from start
    to end. So the path advances monotonically and each consecutive pair stays similar. Stops early if
    no track lies further along.
    """
    if n < 2:
        raise ValueError("a journey needs at least two tracks (-n 2 or more)")
    a, b = tables.vector(start), tables.vector(end)
    if tables.row(start) == tables.row(end):
        raise ValueError("a journey needs two different tracks")
    position = progress(tables.vectors, a, b)
    available = (position > 0) & (position < 1)
    available[[tables.row(start), tables.row(end)]] = False
    path = [tables.row(start)]
    for step in range(1, n - 1):
        current = tables.vectors[path[-1]]
        candidates = available & (position > position[path[-1]])
        if not candidates.any():
            break
        waypoint = slerp(a, b, step / (n - 1))
        score = tables.vectors @ current + tables.vectors @ waypoint
        score[~candidates] = -np.inf
        choice = int(np.argmax(score))
        path.append(choice)
        available[choice] = False
    path.append(tables.row(end))
    entries = [Entry(int(tables.ids[path[0]]), 1.0)]
    for previous, row in zip(path, path[1:]):
        entries.append(Entry(int(tables.ids[row]), float(tables.vectors[previous] @ tables.vectors[row])))
    return entries


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
