"""Synthetic TABLES folders (clustered unit vectors) for tests and benchmarks of the playlist code.

Each style has a random unit centre and each artist a centre near it; a track lies near its artist's centre.
A share of tracks are crossovers, a blend of two styles (their genre is the larger part), so journeys between
styles have tracks to pass through. The tables have the embed job's schemas and file metadata.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa

from core.vectors import unit
from schemas import tables as schemas
from schemas.layout import TableFiles
from storage import files

MODEL_ID = "synthetic"


def synthetic_vectors(n_tracks: int, *, n_styles: int = 8, tracks_per_artist: int = 10, dim: int = 64,
                      crossover: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(vectors [n, dim] float32 unit rows, style [n] int, artist [n] int)``."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_styles, dim))
    n_artists = max(n_styles, -(-n_tracks // tracks_per_artist))
    artist_style = np.arange(n_artists) % n_styles
    artist_centres = centres[artist_style] + 0.6 * rng.standard_normal((n_artists, dim))
    artist = np.sort(rng.integers(0, n_artists, n_tracks))
    style = artist_style[artist]
    vectors = artist_centres[artist] + 0.6 * rng.standard_normal((n_tracks, dim))
    mixed = rng.random(n_tracks) < crossover
    other = rng.integers(0, n_styles, n_tracks)
    weight = rng.uniform(0.1, 0.5, n_tracks)[:, None]
    vectors[mixed] = (1 - weight[mixed]) * vectors[mixed] + weight[mixed] * centres[other[mixed]] * 1.5
    vectors = unit(vectors.astype(np.float32))
    return vectors, style, artist


def neighbour_lists(vectors: np.ndarray, k: int, *, exact_up_to: int = 50_000, nprobe: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``(rows [n, k], similarities [n, k])``: each row's ``k`` most similar other rows by faiss (exact inner
    product up to ``exact_up_to`` tracks, an IVF index above)."""
    import faiss

    n, dim = vectors.shape
    if n <= exact_up_to:
        index = faiss.IndexFlatIP(dim)
    else:
        quantiser = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantiser, dim, int(np.sqrt(n)), faiss.METRIC_INNER_PRODUCT)
        index.train(vectors[np.random.default_rng(0).choice(n, min(n, 64 * index.nlist), replace=False)])
        index.nprobe = nprobe
    index.add(vectors)
    similarities, rows = index.search(vectors, k + 1)
    short = np.flatnonzero((rows < 0).any(axis=1))  # the probed lists held fewer than k + 1 tracks: search exactly
    if len(short):
        similarities[short], rows[short] = faiss.knn(vectors[short], vectors, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    own = rows == np.arange(n)[:, None]
    # drop each row's own entry (or, if the search missed it, its last one)
    drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
    keep = np.ones_like(own)
    keep[np.arange(n), drop] = False
    return rows[keep].reshape(n, k), similarities[keep].reshape(n, k)


def write_synthetic_tables(folder: str | Path, n_tracks: int, *, n_styles: int = 8, k: int = 50, seed: int = 0,
                           audio: bool = False, model_id: str = MODEL_ID) -> str | Path:
    """Write embeddings, neighbours, tracks and map3d Parquet tables of ``n_tracks`` synthetic tracks.

    Track ids are ``1000 + row``; genres ``Style0`` ...; ``audio=True`` also writes a tiny WAV per track at its
    ``path`` (``folder/audio/ID.wav``); ``k=0`` writes no neighbour table (playlists then rank the whole
    catalogue), which makes large tables quick to write. ``folder`` may be local (returned as a ``Path``) or
    remote.
    """
    folder = str(folder)
    vectors, style, artist = synthetic_vectors(n_tracks, n_styles=n_styles, seed=seed)
    ids = np.arange(1000, 1000 + n_tracks, dtype=np.int64)
    metadata = {"model_id": model_id}
    flat = pa.array(vectors.reshape(-1))
    embedding = pa.ListArray.from_arrays(pa.array(np.arange(0, vectors.size + 1, vectors.shape[1], dtype=np.int32)), flat)
    files.write_parquet(files.join(folder, TableFiles.EMBEDDINGS), pa.table(
        [pa.array(ids), embedding], schema=schemas.with_metadata(schemas.EMBEDDINGS, **metadata)))

    if k > 0:
        rows, similarities = neighbour_lists(vectors, min(k, n_tracks - 1))
        files.write_parquet(files.join(folder, TableFiles.NEIGHBOURS), pa.table({
            "track_id": np.repeat(ids, rows.shape[1]),
            "rank": np.tile(np.arange(1, rows.shape[1] + 1, dtype=np.int32), n_tracks),
            "neighbour_id": ids[rows.reshape(-1)],
            "similarity": similarities.reshape(-1).astype(np.float32),
        }, schema=schemas.with_metadata(schemas.NEIGHBOURS, **metadata)), row_group_size=1000 * rows.shape[1])

    paths = [files.join(folder, "audio", f"{i}.wav") for i in ids]
    if audio:
        import soundfile

        for path, s in zip(paths, style):
            t = np.arange(4000) / 8000
            wav = io.BytesIO()
            soundfile.write(wav, 0.3 * np.sin(2 * np.pi * (220 + 55 * s) * t), 8000, format="WAV")
            files.write_bytes(path, wav.getvalue())
    files.write_parquet(files.join(folder, TableFiles.TRACKS), schemas.with_missing_columns(pa.table({
        "track_id": ids,
        "path": paths,
        "genre": [f"Style{s}" for s in style],
        "artist_id": artist.astype(np.int64),
        "artist": [f"Artist {a}" for a in artist],
        "title": [f"Song {i}" for i in ids],
        "split": ["training"] * n_tracks,
        "duration_s": np.full(n_tracks, 30.0, dtype=np.float32),
        "n_tiles": np.full(n_tracks, 10, dtype=np.int32),
        "status": ["ok"] * n_tracks,
    }, schema=schemas.TRACKS_BEFORE_TAGS), schemas.TRACKS))

    from sklearn.decomposition import PCA

    xyz = PCA(n_components=3, random_state=seed).fit_transform(vectors).astype(np.float32)
    files.write_parquet(files.join(folder, TableFiles.MAP3D), pa.table(
        {"track_id": ids, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]},
        schema=schemas.with_metadata(schemas.MAP3D, **metadata)))
    return folder if files.is_remote(folder) else Path(folder)
