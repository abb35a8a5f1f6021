"""What sound-based players do with an embedding: alchemy (add and subtract tracks), mood clusters, and a
listener's profile from their history. All from the Parquet tables alone."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from playlists.radio import Entry, _banned_rows, nearest
from playlists.tables import Tables, one_blas_thread
from schemas.errors import UserError


def _unit(vector: np.ndarray, what: str) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if norm < 1e-6:
        raise UserError(f"{what} is the zero vector (the tracks cancel out); change the tracks given")
    return vector / norm


def _ranked(tables: Tables, direction: np.ndarray, inputs: list[int], n: int, *, variety: float,
            max_per_artist: int | None, exclude_artist: bool = False) -> list[Entry]:
    if n < 1:
        raise UserError("a playlist needs at least one track (-n 1 or more)")
    n = min(n, len(tables))  # a longer playlist cannot exist
    banned = _banned_rows(tables, inputs, (), exclude_artist)
    with one_blas_thread():
        scores = tables.vectors @ direction
        taken = nearest(tables, scores, banned, n, variety=variety, max_per_artist=max_per_artist)
    return [Entry(int(tables.ids[r]), s) for r, s in taken]


def alchemy(tables: Tables, add: list[int], subtract: list[int] = (), n: int = 20, *, variety: float = 0.0,
            max_per_artist: int | None = None) -> list[Entry]:
    """The ``n`` tracks nearest (cosine) to the sum of the ``add`` tracks' vectors minus the ``subtract``
    tracks', normalised; the inputs left out. ``similarity`` is to that direction."""
    if not add:
        raise UserError("alchemy needs at least one track to add (--add A ...)")
    if n < 1:
        raise UserError("a playlist needs at least one track (-n 1 or more)")
    plus, minus = [tables.row(i) for i in add], [tables.row(i) for i in subtract]
    direction = _unit(tables.vectors[plus].sum(axis=0) - tables.vectors[minus].sum(axis=0), "the combined direction")
    return _ranked(tables, direction, plus + minus, n, variety=variety, max_per_artist=max_per_artist)


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
    taste = _unit(weights[played] @ tables.vectors[played], "the listening profile")
    return _ranked(tables, taste, played.tolist(), n, variety=variety, max_per_artist=max_per_artist)


@dataclass(frozen=True)
class Cluster:
    """One sound-coherent playlist of the catalogue."""

    number: int
    name: str  # "<most common genre> · <central track's title>"
    genre: str | None
    genre_share: float  # share of its tracks with that genre
    central_track: int
    coherence: float  # mean cosine similarity of its tracks to its (normalised) centroid
    entries: list[Entry]  # best first: similarity to the centroid


def clusters(tables: Tables, k: int, *, seed: int = 0) -> tuple[list[Cluster], float]:
    """Cut the catalogue into ``k`` playlists by k-means on the unit vectors (scikit-learn; on unit vectors the
    squared Euclidean distance is ``2 - 2 cosine``, so this is cosine clustering). Returns the clusters, largest
    first, and the silhouette score (cosine; on a sample of at most 10,000 tracks)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    if not 2 <= k < len(tables):
        raise UserError(f"--k must be between 2 and {len(tables) - 1} (the catalogue has {len(tables)} tracks)")
    with one_blas_thread():
        model = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(tables.vectors)
        labels = model.labels_
        silhouette = float(silhouette_score(tables.vectors, labels, metric="cosine",
                                            sample_size=min(len(tables), 10_000), random_state=seed))
    genres = tables.column("genre")
    titles = tables.column("title")
    found = []
    for number in range(k):
        rows = np.flatnonzero(labels == number)
        centre = _unit(tables.vectors[rows].mean(axis=0), f"cluster {number}'s centroid")
        similarity = tables.vectors[rows] @ centre
        order = np.lexsort((tables.ids[rows], -similarity))
        rows, similarity = rows[order], similarity[order]
        counts = Counter(g for g in genres[rows] if g)
        genre, count = counts.most_common(1)[0] if counts else (None, 0)
        central = int(tables.ids[rows[0]])
        found.append(Cluster(
            number=number, name=f"{genre or 'unknown'} · {titles[rows[0]] or central}", genre=genre,
            genre_share=count / len(rows), central_track=central, coherence=float(similarity.mean()),
            entries=[Entry(int(tables.ids[r]), float(s)) for r, s in zip(rows, similarity)]))
    found.sort(key=lambda c: (-len(c.entries), c.number))
    return found, silhouette


CLUSTERS_FILE = "clusters.parquet"  # clusters --out: track_id, cluster, name, rank, similarity


def write_clusters(tables: Tables, found: list[Cluster], out: str) -> str:
    """``out/clusters.parquet`` (track_id, cluster, name, rank, similarity to the centroid) and one M3U8 per
    cluster, ``out/NN-<name>.m3u8`` (its name's words, lower case, made safe and bounded:
    :func:`storage.files.safe_file_names`); ``out`` local or remote."""
    import re

    import pyarrow as pa
    from playlists.output import m3u, playlist_rows
    from storage import files

    out = str(out)
    rows = [{"track_id": e.track_id, "cluster": c.number, "name": c.name, "rank": rank, "similarity": e.similarity}
            for c in found for rank, e in enumerate(c.entries, start=1)]
    schema = pa.schema([("track_id", pa.int64()), ("cluster", pa.int32()), ("name", pa.string()),
                        ("rank", pa.int32()), ("similarity", pa.float32())])
    files.write_parquet(files.join(out, CLUSTERS_FILE), pa.Table.from_pylist(rows, schema=schema))
    slugs = [f"{c.number:02d}-" + re.sub(r"\W+", "-", c.name).strip("-_").lower() for c in found]
    for c, name in zip(found, files.safe_file_names(slugs, ".m3u8")):
        files.write_text(files.join(out, name), m3u(playlist_rows(tables, c.entries)) + "\n")
    return out
