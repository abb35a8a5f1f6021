"""Journey: a playlist from track A to track B (or through several stops) where each step moves further along
the way, no track twice, each consecutive pair similar."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from playlists import vector_index
from playlists.radio import Entry, artist_keys
from playlists.tables import Tables, one_blas_thread
from schemas.errors import UserError


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


BINS = 20  # stretches of the way from A to B that share the candidates
INDEX_POINTS = BINS // 2 + 1  # points along the way, A and B included, near which the index is searched
INDEX_NEAREST = 200  # tracks the index finds near each of them (benchmarks/RESULTS.md, issue 34)


def _candidates(tables: Tables, a_row: int, b_row: int, banned: np.ndarray, band: int, needed: int) -> np.ndarray:
    """Rows strictly between A and B (projection onto A -> B inside (0, 1)), not among the ``banned`` rows, the
    ``band`` closest to the great circle from A to B, sorted by progress: the best ``band // BINS`` of each of
    :data:`BINS` equal stretches of the way.

    Up to :data:`playlists.vector_index.INDEX_ABOVE` tracks they are chosen among every track (one matrix product
    over the catalogue). Above, among a pool: the :data:`INDEX_NEAREST` tracks that the catalogue's approximate
    index (:attr:`Tables.vector_index`) finds nearest to each of :data:`INDEX_POINTS` points along the great circle, and
    the stored neighbours of the ones chosen from those (a second choice then picks among both); among every track
    where the pool holds fewer than ``needed`` between A and B. Where a stretch of the way lies far from every
    track, it gets fewer than its share either way."""
    if len(tables) > vector_index.INDEX_ABOVE:
        a, b = tables.vectors[a_row], tables.vectors[b_row]
        points = np.stack([slerp(a, b, t) for t in np.linspace(0.0, 1.0, INDEX_POINTS)])
        pool = tables.vector_index.near(points, INDEX_NEAREST)
        found = _closest_to_path(tables.vectors, a_row, b_row, banned, band, pool=pool)
        neighbours = tables.neighbour_rows[found].ravel()
        pool = np.union1d(pool, neighbours[neighbours >= 0])
        found = _closest_to_path(tables.vectors, a_row, b_row, banned, band, pool=pool)
        if len(found) >= needed:
            return found
    return _closest_to_path(tables.vectors, a_row, b_row, banned, band)


def _closest_to_path(vectors: np.ndarray, a_row: int, b_row: int, banned: np.ndarray, band: int,
                     pool: np.ndarray | None = None) -> np.ndarray:
    """:func:`_candidates` among the rows ``pool`` (every row if None). One matrix product over those rows; the
    rest works on the tracks between A and B only."""
    a, b = vectors[a_row], vectors[b_row]
    cos_ab = float(a @ b)
    pooled = vectors if pool is None else vectors[pool]
    to_a, to_b = np.ascontiguousarray((pooled @ np.stack([a, b], axis=1)).T)  # [2, n]
    position = to_b - to_a  # = progress(), computed in place without a copy of the catalogue
    position += 1.0 - cos_ab
    position *= 1.0 / max(2.0 - 2.0 * cos_ab, 1e-12)
    inside = np.flatnonzero((position > 0) & (position < 1))
    rows = inside if pool is None else pool[inside]
    allowed = ~np.isin(rows, banned)
    inside, rows = inside[allowed], rows[allowed]
    t = position[inside]
    angle = float(np.arccos(np.clip(cos_ab, -1.0, 1.0)))
    if angle > 1e-6:  # similarity to the point a fraction t along the great circle (vectorised slerp())
        on_path = (np.sin((1 - t) * angle) * to_a[inside] + np.sin(t * angle) * to_b[inside]) / np.sin(angle)
    else:
        on_path = to_a[inside]
    if len(inside) > band:
        # the best band // BINS of each of BINS equal stretches of the way: tracks near A and B, which lie close
        # to the great circle too, must not take every place and leave the middle of the way without candidates
        stretch = np.minimum((t * BINS).astype(np.int8), BINS - 1)  # int8: argsort is a radix sort
        order = np.argsort(stretch, kind="stable")
        bounds = np.searchsorted(stretch[order], np.arange(BINS + 1))
        keep = []
        for first, last in zip(bounds[:-1], bounds[1:]):
            members = order[first:last]
            if len(members) > band // BINS:
                members = members[np.argpartition(-on_path[members], band // BINS - 1)[: band // BINS]]
            keep.append(members)
        keep = np.concatenate(keep)
        rows, t = rows[keep], t[keep]
    return rows[np.argsort(t, kind="stable")]


def journey(tables: Tables, start: int, end: int, n: int = 20, *, band: int = 400,
            exclude: Iterable[int] = (), max_per_artist: int | None = None,
            earlier_artists: Counter | None = None) -> list[Entry]:
    """``n`` tracks from ``start`` to ``end`` (both included), each further along the way, no repeats.

    Candidates are ``band`` tracks between start and end (projection onto start -> end strictly inside
    (0, 1)): in each of 20 equal stretches of the way, those closest to the great circle from start to end (in a
    large catalogue, among the tracks its approximate index finds near the way: :func:`_candidates`). Among all
    orderings of candidates by increasing progress with ``n - 1`` steps, dynamic programming picks the one with the
    least path energy, the sum of squared step lengths ``(1 - cosine)^2``: that spreads the steps evenly
    and avoids one big jump. Fewer tracks come back when too few lie between start and end.
    ``exclude`` lists track ids that may not appear (other than start and end). ``max_per_artist`` caps the
    tracks of one artist: an artist's tracks beyond the cap are left out and the path is searched again;
    ``earlier_artists`` counts the tracks per artist that the cap must also include (by default start and end;
    :func:`journey_via` passes every stop and the earlier legs' tracks).
    """
    if n < 2:
        raise UserError("a journey needs at least two tracks (-n 2 or more)")
    a_row, b_row = tables.row(start), tables.row(end)
    if a_row == b_row:
        raise UserError("a journey needs two different tracks")
    banned = np.array([a_row, b_row, *(tables.row(i) for i in exclude)], dtype=np.int64)
    while True:
        with one_blas_thread():
            inside = _candidates(tables, a_row, b_row, banned, band, n - 2)
            nodes = np.concatenate([[a_row], inside, [b_row]]).astype(np.int64)
            path = nodes[_least_energy_path(tables.vectors[nodes], min(n - 1, len(nodes) - 1))]
        excess = _over_cap(tables, path, max_per_artist, earlier_artists) if max_per_artist is not None else []
        if not excess:
            return entries_of(tables, path)
        banned = np.concatenate([banned, excess])


def _over_cap(tables: Tables, path: np.ndarray, cap: int, counted: Counter | None = None) -> list[int]:
    """Inner rows of ``path`` whose artist already has ``cap`` tracks (``counted`` ones, by default start and
    end, then the inner ones before it)."""
    artists = artist_keys(tables)
    seen = Counter(counted) if counted is not None else Counter(artists[r] for r in (path[0], path[-1]))
    excess = []
    for row in path[1:-1]:
        artist = artists[row]
        if artist is not None:
            seen[artist] += 1
            if seen[artist] > cap:
                excess.append(int(row))
    return excess


def journey_via(tables: Tables, stops: list[int], n: int = 20, *, band: int = 400,
                exclude: Iterable[int] = (), max_per_artist: int | None = None) -> list[Entry]:
    """A journey through every stop in order (``n`` tracks in all, stops included, no track twice).

    Each leg gets one step, and the rest of the ``n - 1`` steps are shared in proportion to the legs' angles;
    each leg is a :func:`journey` that may not reuse a track of the legs before it; the artist cap holds over
    the whole journey (the stops themselves cannot be left out).
    """
    if len(stops) < 2:
        raise UserError("a journey needs at least two stops")
    rows = [tables.row(stop) for stop in stops]
    if len(set(rows)) < len(rows):
        raise UserError("a journey's stops must be different tracks")
    if n < len(stops):
        raise UserError(f"a journey through {len(stops)} stops needs -n {len(stops)} or more")
    n = min(n, max(len(tables), len(stops)))  # a longer journey cannot exist
    angles = np.array([np.arccos(np.clip(tables.vectors[p] @ tables.vectors[q], -1, 1))
                       for p, q in zip(rows, rows[1:])])
    steps = leg_steps(angles, n - 1)
    used = {int(tables.ids[r]) for r in rows} | {int(i) for i in exclude}
    entries = [Entry(int(stops[0]), 1.0)]
    artists = artist_keys(tables)
    for start, end, leg_n in zip(stops, stops[1:], steps):
        inner = [e.track_id for e in entries if e.track_id not in stops]
        earlier = Counter(artists[tables.row(i)] for i in [*stops, *inner]) if max_per_artist else None
        leg = journey(tables, start, end, leg_n + 1, band=band, exclude=used - {int(start), int(end)},
                      max_per_artist=max_per_artist, earlier_artists=earlier)
        entries += leg[1:]
        used |= {e.track_id for e in leg}
    return entries


def journey_stops(start: int | None, end: int | None, via: Sequence[int]) -> list[int]:
    """The stops of a journey given as ``start`` and ``end`` or as ``via`` (A B ...), checked."""
    if via and (start is not None or end is not None):
        raise UserError("give either --from A --to B or --via A B ..., not both")
    if via:
        if len(via) < 2:
            raise UserError("--via needs at least two tracks")
        return list(via)
    if start is None or end is None:
        raise UserError("a journey needs --from A --to B (or --via A B ...)")
    return [start, end]


def journey_playlist(tables: Tables, *, start: int | None = None, end: int | None = None, via: Sequence[int] = (),
                     avoid: Sequence[int] = (), n: int = 20,
                     max_per_artist: int | None = None) -> tuple[list[Entry], dict[str, float]]:
    """The journey kind (:data:`playlists.kinds.KINDS`): from ``start`` to ``end`` or through the ``via`` stops,
    never through ``avoid``; the entries and their :func:`smoothness`."""
    stops = journey_stops(start, end, via)
    entries = journey_via(tables, stops, n, exclude=avoid, max_per_artist=max_per_artist)
    return entries, smoothness(tables, entries, stops)


def leg_steps(angles: np.ndarray, total: int) -> list[int]:
    """``total`` steps: one per leg, the rest shared in proportion to ``angles`` (largest remainder)."""
    extra = total - len(angles)
    share = angles / angles.sum() * extra if angles.sum() > 0 else np.full(len(angles), extra / len(angles))
    steps = np.floor(share).astype(int)
    steps[np.argsort(-(share - steps), kind="stable")[: extra - steps.sum()]] += 1
    return [int(s) + 1 for s in steps]


def entries_of(tables: Tables, path: np.ndarray) -> list[Entry]:
    """The entries of the rows ``path``: each similar to the one before (the first 1.0)."""
    entries = [Entry(int(tables.ids[path[0]]), 1.0)]
    for previous, row in zip(path, path[1:]):
        entries.append(Entry(int(tables.ids[row]), float(tables.vectors[previous] @ tables.vectors[row])))
    return entries


def _least_energy_path(vectors: np.ndarray, n_steps: int) -> list[int]:
    """Indices ``0 = i_0 < i_1 < ... < i_n_steps = last`` minimising sum of (1 - cos(i_k, i_k+1))^2."""
    last = len(vectors) - 1
    arrival = ((1.0 - vectors @ vectors.T) ** 2).astype(np.float32)  # [to, from]: rows contiguous for argmin
    arrival[np.triu_indices(len(vectors))] = np.inf  # only forward steps (from < to)
    best = np.full(len(vectors), np.inf, dtype=np.float32)
    best[0] = 0.0
    parents = []
    for _ in range(n_steps):
        total = arrival + best[None, :]
        parents.append(np.argmin(total, axis=1))
        best = np.take_along_axis(total, parents[-1][:, None], axis=1)[:, 0]
    path = [last]
    for parent in reversed(parents):
        path.append(int(parent[path[-1]]))
    return path[::-1]


def smoothness(tables: Tables, entries: list[Entry], stops: list[int] | None = None) -> dict[str, float]:
    """How smooth a journey is: the weakest and mean cosine similarity of consecutive tracks (higher is
    smoother), and the share of steps that move further along their leg (projection onto start -> end, or
    onto each pair of consecutive ``stops``; 1.0 = monotonic)."""
    ids = [e.track_id for e in entries]
    vectors = np.stack([tables.vector(i) for i in ids])
    steps = np.einsum("ij,ij->i", vectors[:-1], vectors[1:])
    stops = stops or [ids[0], ids[-1]]
    at = [ids.index(int(s)) for s in stops]
    forward = []
    for first, last in zip(at, at[1:]):
        position = progress(vectors[first: last + 1], vectors[first], vectors[last])
        forward += list(np.diff(position) > 0)
    return {
        "min_step_similarity": float(steps.min()),
        "mean_step_similarity": float(steps.mean()),
        "monotonic_fraction": float(np.mean(forward)),
    }
