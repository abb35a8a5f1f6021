"""A listener's profile: the tracks nearest to what they played, recent plays counting more."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from playlists.radio import Entry, direction, ranked
from playlists.tables import Tables
from schemas.errors import UserError


def profile(tables: Tables, history: Sequence[int] | np.ndarray, n: int = 50, *, half_life: float = 20.0,
            variety: float = 0.0, max_per_artist: int | None = None) -> list[Entry]:
    """A playlist for a listener from ``history`` (track ids, oldest play first): the tracks nearest to the
    weighted mean of the played tracks' vectors, a play ``half_life`` plays older counting half as much; every
    played track left out. ``similarity`` is to that taste vector."""
    if not len(history):
        raise UserError("the listening history is empty")
    if not half_life > 0:
        raise UserError(f"--half-life must be above 0, got {half_life}")
    rows = tables.rows_of(np.asarray(history, dtype=np.int64))
    if (rows < 0).any():
        tables.row(int(np.asarray(history)[np.argmax(rows < 0)]))  # raises UnknownTrack, with suggestions
    age = np.arange(len(rows))[::-1]  # 0 for the latest play
    # summed per track, so that memory grows with the catalogue, not with the history
    weights = np.bincount(rows, weights=0.5 ** (age / half_life), minlength=len(tables.ids))
    played = np.flatnonzero(np.bincount(rows, minlength=len(tables.ids)))
    taste = direction(weights[played] @ tables.vectors[played], "the listening profile")
    return ranked(tables, taste, played.tolist(), n, variety=variety, max_per_artist=max_per_artist)
