"""Mood clusters: the catalogue cut into sound-coherent playlists (k-means on the unit vectors), from the Parquet
tables alone."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from playlists.radio import Entry, direction
from playlists.tables import Tables, one_blas_thread
from schemas.errors import UserError


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
        centre = direction(tables.vectors[rows].mean(axis=0), f"cluster {number}'s centroid")
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
