"""The track-vector recipe, once: how a track's vector is made from the outputs of the model's parts.

    tiles     the mean of the tile vectors (in tile order), unit length
    features  the summary statistics' vector, unit length
    tiles+features         the two unit halves side by side, scaled to unit length
    tiles+features+genres  the joined halves through the genre embedder (joined halves and the square roots of
                           their genre probabilities), unit length

    + extra vectors        (``wavelist embed --extra-vectors``) the model's vector and an external one side by
                           side, weighted so that cosines mix as (1 - w) model + w external (:func:`join_extra`)

The embed job, the evaluation and the trainer all call these functions; the model parts are passed in as
callables (Keras models), so this module imports neither Beam nor TensorFlow.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from schemas.model_info import FEATURES, GENRES, TILES, ModelInfo

Embedder = Callable[[np.ndarray], np.ndarray]


class ZeroVectorError(ValueError):
    """A vector of length zero has no direction: no cosine can be taken of it."""


def track_starts(track_ids: np.ndarray) -> np.ndarray:
    """Row indices where each track's run of rows begins in ``track_ids`` grouped by track (tiles as
    ``model.data.load_tiles`` returns them, neighbour rows sorted by track and rank)."""
    track_ids = np.asarray(track_ids)
    return np.flatnonzero(np.r_[True, track_ids[1:] != track_ids[:-1]]) if len(track_ids) else np.zeros(0, np.int64)


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows of ``vectors`` ``[shape=(n, d)]`` (or one vector ``[d]``) scaled to unit length, float32.

    The one rule for a zero row: it raises :class:`ZeroVectorError` (a track or query with no direction is an
    error to report, never a row to keep or to divide by a small number)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    if np.any(norms == 0) or not np.all(np.isfinite(norms)):
        raise ZeroVectorError("cannot scale a zero vector (or a non-finite one) to unit length")
    return vectors / norms


def part_vector(outputs: np.ndarray) -> np.ndarray:
    """One part of a track's vector from the model's outputs for its inputs ``[shape=(n_inputs, d)]``, in
    input order (tile order): their mean, summed in float64 in that order, scaled to unit length ``[d]``."""
    return unit(np.asarray(outputs, np.float64).mean(axis=0).astype(np.float32))


def join_halves(tile_half: np.ndarray, features_half: np.ndarray) -> np.ndarray:
    """The two halves side by side, each of unit length, scaled to a unit vector: ``[..., d_tiles + d_features]``."""
    return np.concatenate([unit(tile_half), unit(features_half)], axis=-1) / np.float32(np.sqrt(2.0))


def track_vectors(info: ModelInfo, *, tiles: np.ndarray | None = None, features: np.ndarray | None = None,
                  genre_embedder: Embedder | None = None) -> np.ndarray:
    """Final vectors ``[shape=(n, info.embedding_dim)]`` of n tracks from their parts' vectors (rows aligned):
    ``tiles`` (each track's :func:`part_vector` of its tile outputs), ``features`` (the statistics embedder's
    output), and the genre embedder where the model has a genre part."""
    if info.parts == (TILES,):
        return unit(tiles)
    if info.parts == (FEATURES,):
        return unit(features)
    joined = join_halves(tiles, features)
    if not info.has(GENRES):
        return joined
    if genre_embedder is None:
        raise ValueError(f"model {info.model_id} has a genre part: give its genre embedder")
    return unit(np.asarray(genre_embedder(joined)))


def join_extra(vectors: np.ndarray, extra: np.ndarray, weight: float) -> np.ndarray:
    """Track vectors ``[..., d]`` joined with an external embedding of the same tracks ``[..., e]`` (rows
    aligned; any scale, each row is scaled to unit length first), as one unit vector ``[..., d + e]`` whose
    cosines are ``(1 - weight)`` times the model's cosine plus ``weight`` times the external one's."""
    if not 0.0 < weight < 1.0:
        raise ValueError(f"the extra vectors' weight must be between 0 and 1, not {weight}")
    joined = np.concatenate([np.sqrt(1.0 - weight) * unit(vectors), np.sqrt(weight) * unit(extra)], axis=-1)
    return unit(joined)
