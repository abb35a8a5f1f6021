"""Alchemy: the tracks nearest to the sum of some tracks' sound minus others'."""
from __future__ import annotations

from collections.abc import Sequence

from playlists.radio import Entry, direction, ranked
from playlists.tables import Tables
from schemas.errors import UserError


def alchemy(tables: Tables, add: Sequence[int], subtract: Sequence[int] = (), n: int = 20, *, variety: float = 0.0,
            max_per_artist: int | None = None) -> list[Entry]:
    """The ``n`` tracks nearest (cosine) to the sum of the ``add`` tracks' vectors minus the ``subtract``
    tracks', normalised; the inputs left out. ``similarity`` is to that direction."""
    if not add:
        raise UserError("alchemy needs at least one track to add (--add A ...)")
    if n < 1:
        raise UserError("a playlist needs at least one track (-n 1 or more)")
    plus, minus = [tables.row(i) for i in add], [tables.row(i) for i in subtract]
    towards = direction(tables.vectors[plus].sum(axis=0) - tables.vectors[minus].sum(axis=0), "the combined direction")
    return ranked(tables, towards, plus + minus, n, variety=variety, max_per_artist=max_per_artist)
