"""Radio and blends: the tracks nearest to one seed, or to several, by cosine similarity."""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from core.vectors import ZeroVectorError, unit
from playlists.tables import Tables, one_blas_thread
from schemas.errors import UserError

log = logging.getLogger("wavelist.playlists")


@dataclass(frozen=True)
class Entry:
    """One playlist position; ``similarity`` is to the seed (radio), the seeds (like) or the previous track
    (journey)."""

    track_id: int
    similarity: float


def artist_keys(tables: Tables) -> np.ndarray:
    """[shape=(n,)] who made each row's track: the artist id, else the artist name, else ``None`` (built once)."""
    if "artist_key" not in tables._columns:
        ids, names = tables.column("artist_id"), tables.column("artist")
        tables._columns["artist_key"] = np.array([i if i is not None else (n or None) for i, n in zip(ids, names)],
                                                 dtype=object)
    return tables._columns["artist_key"]


def pick(tables: Tables, rows: np.ndarray, scores: np.ndarray, n: int, *, variety: float = 0.0,
         max_per_artist: int | None = None) -> list[tuple[int, float]]:
    """Up to ``n`` of the candidate ``rows`` as ``(row, score)``, best ``scores`` first.

    With ``variety`` > 0 the choice is maximal marginal relevance: each step takes the candidate maximising
    ``(1 - variety) * score - variety * (its highest similarity to a track already taken)``.
    ``max_per_artist`` caps the tracks of one artist (tracks of unknown artists are not capped).
    """
    if not 0.0 <= variety < 1.0:
        raise UserError(f"variety must be in [0, 1), got {variety}")
    if max_per_artist is not None and max_per_artist < 1:
        raise UserError(f"--max-per-artist must be 1 or more, got {max_per_artist}")
    order = np.lexsort((tables.ids[rows], -scores))
    rows, scores = rows[order], scores[order]
    artists = artist_keys(tables)[rows] if max_per_artist is not None else None
    taken: list[tuple[int, float]] = []
    per_artist: Counter = Counter()
    vectors = tables.vectors[rows] if variety > 0 else None
    closest_taken = np.full(len(rows), -1.0, dtype=np.float32)
    open_ = np.ones(len(rows), dtype=bool)
    while len(taken) < n and open_.any():
        if variety > 0 and taken:
            value = (1 - variety) * scores - variety * closest_taken
        else:
            value = scores.astype(np.float64)
        best = int(np.argmax(np.where(open_, value, -np.inf)))
        open_[best] = False
        if artists is not None and artists[best] is not None:
            if per_artist[artists[best]] >= max_per_artist:
                continue
            per_artist[artists[best]] += 1
        taken.append((int(rows[best]), float(scores[best])))
        if variety > 0:
            closest_taken = np.maximum(closest_taken, vectors @ vectors[best])
    return taken


def _banned_rows(tables: Tables, seeds_rows: list[int], exclude: Iterable[int], exclude_artist: bool) -> np.ndarray:
    """Rows that may not appear: the seeds, ``exclude`` track ids and, if asked, the seeds' artists' tracks."""
    banned = np.zeros(len(tables), dtype=bool)
    banned[seeds_rows] = True
    exclude = list(exclude)
    if exclude:
        banned[[tables.row(track_id) for track_id in exclude]] = True
    if exclude_artist:
        artists = artist_keys(tables)
        seed_artists = {artists[r] for r in seeds_rows} - {None}
        if not seed_artists:
            log.warning("the catalogue does not know the seed's artist; no artist excluded")
        banned |= np.isin(artists, list(seed_artists)) if seed_artists else False
    return banned


def nearest(tables: Tables, scores: np.ndarray, banned: np.ndarray, n: int, *, variety: float = 0.0,
            max_per_artist: int | None = None) -> list[tuple[int, float]]:
    """Up to ``n`` rows by ``scores`` over the whole catalogue (``banned`` rows left out), via :func:`pick`."""
    allowed = np.flatnonzero(~banned)
    pool = min(len(allowed), max(4 * n, 100) if (variety or max_per_artist) else n)
    top = allowed[np.argpartition(-scores[allowed], pool - 1)[:pool]] if pool else allowed
    # ties at the edge of the pool: keep every candidate scoring as well as the worst one taken
    if pool and pool < len(allowed):
        top = allowed[scores[allowed] >= scores[top].min()]
    return pick(tables, top, scores[top], n, variety=variety, max_per_artist=max_per_artist)


def direction(vector: np.ndarray, what: str) -> np.ndarray:
    """``vector`` ``[d]`` at unit length (:func:`core.vectors.unit`); a zero one is the user's error naming ``what``."""
    try:
        return unit(vector)
    except ZeroVectorError:
        raise UserError(f"{what} is the zero vector (the tracks cancel out); change the tracks given") from None


def ranked(tables: Tables, towards: np.ndarray, inputs: list[int], n: int, *, variety: float = 0.0,
           max_per_artist: int | None = None, exclude_artist: bool = False) -> list[Entry]:
    """The ``n`` tracks nearest (cosine) to the unit vector ``towards`` ``[d]``, the ``inputs`` rows left out."""
    if n < 1:
        raise UserError("a playlist needs at least one track (-n 1 or more)")
    n = min(n, len(tables))  # a longer playlist cannot exist
    banned = _banned_rows(tables, inputs, (), exclude_artist)
    with one_blas_thread():
        scores = tables.vectors @ towards
        taken = nearest(tables, scores, banned, n, variety=variety, max_per_artist=max_per_artist)
    return [Entry(int(tables.ids[r]), s) for r, s in taken]


def radio(tables: Tables, seed: int, n: int = 20, *, exclude_artist: bool = False, variety: float = 0.0,
          max_per_artist: int | None = None, exclude: Iterable[int] = ()) -> list[Entry]:
    """The ``n`` tracks most similar to ``seed``, best first, the seed itself excluded.

    Takes them from the stored neighbour lists (arrays loaded once) when those hold enough candidates after the
    filters; otherwise ranks the whole catalogue. ``exclude_artist`` leaves out the seed's artist; ``variety``
    trades similarity for variety (see :func:`pick`); ``exclude`` lists track ids to leave out.
    """
    if n < 1:
        raise UserError("a radio needs at least one track (-n 1 or more)")
    row = tables.row(seed)
    exclude_rows = [tables.row(i) for i in exclude]
    stored = tables.neighbour_rows[row]
    stored_scores = tables.neighbour_similarities[row]
    usable = (stored >= 0) & (stored != row)  # filters on the stored list only: no work of catalogue size
    if exclude_rows:
        usable &= ~np.isin(stored, exclude_rows)
    if exclude_artist and artist_keys(tables)[row] is not None:
        usable &= artist_keys(tables)[stored] != artist_keys(tables)[row]
    enough = min(n, len(tables) - 1 - len(exclude_rows))
    if usable.sum() >= enough and not variety and max_per_artist is None:  # the common case: a slice
        return [Entry(int(i), float(s)) for i, s in zip(tables.ids[stored[usable][:n]], stored_scores[usable][:n])]
    if usable.sum() >= enough * (2 if variety else 1):
        taken = pick(tables, stored[usable], stored_scores[usable], n, variety=variety, max_per_artist=max_per_artist)
        if len(taken) >= enough:
            return [Entry(int(tables.ids[r]), s) for r, s in taken]
    banned = _banned_rows(tables, [row], exclude, exclude_artist)
    with one_blas_thread():
        scores = tables.vectors @ tables.vectors[row]
        taken = nearest(tables, scores, banned, n, variety=variety, max_per_artist=max_per_artist)
    return [Entry(int(tables.ids[r]), s) for r, s in taken]


def like(tables: Tables, seeds: list[int], n: int = 20, *, exclude_artist: bool = False, variety: float = 0.0,
         max_per_artist: int | None = None, exclude: Iterable[int] = ()) -> list[Entry]:
    """A playlist that blends several ``seeds``, taking turns between them.

    Each track belongs to the seed it is most similar to; the seeds take turns (in the order given), each
    giving its best remaining track by the blend score, the mean cosine similarity to all seeds (that is
    ``similarity``). So every seed has its share, and within it the tracks that suit the whole blend come
    first. With seeds alike, this is the tracks nearest to their mean. Options as in :func:`radio`.
    """
    if not seeds:
        raise UserError("like needs at least one seed (--seeds A B ...)")
    if n < 1:
        raise UserError("a playlist needs at least one track (-n 1 or more)")
    n = min(n, len(tables))  # a longer playlist cannot exist
    rows = [tables.row(seed) for seed in seeds]
    banned = _banned_rows(tables, rows, exclude, exclude_artist)
    with one_blas_thread():
        to_seeds = tables.vectors @ tables.vectors[rows].T  # [n_tracks, n_seeds]
        scores = to_seeds.mean(axis=1)
        owner = to_seeds.argmax(axis=1)
        shares = []
        for k in range(len(rows)):
            shares.append(nearest(tables, scores, banned | (owner != k), n, variety=variety,
                                  max_per_artist=max_per_artist))
    taken: list[tuple[int, float]] = []
    for turn in range(n):
        taken += [share[turn] for share in shares if turn < len(share)]
    return [Entry(int(tables.ids[r]), s) for r, s in taken[:n]]


def radio_genre_agreement(tables: Tables, n: int = 10) -> float:
    """Share of each track's ``n`` stored nearest neighbours that have its genre, over all tracks with
    a genre: the demo's check that the space carries style, not noise (chance is about 1/genres)."""
    genre = tables.column("genre")
    neighbours = tables.neighbour_rows[:, :n]
    same = [
        genre[row] == genre[other]
        for row in range(len(tables)) if genre[row]
        for other in neighbours[row] if other >= 0
    ]
    return float(np.mean(same)) if same else float("nan")
