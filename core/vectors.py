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

from typing import Callable, Mapping

import numpy as np

from schemas.model_info import ModelInfo
from schemas.vector_parts import input_parts, joined_parts

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


def join_parts(parts: list[np.ndarray]) -> np.ndarray:
    """Parts side by side, each of unit length, scaled to a unit vector: ``[..., sum of the parts' d]``."""
    return np.concatenate([unit(part) for part in parts], axis=-1) / np.float32(np.sqrt(len(parts)))


def join_halves(tile_half: np.ndarray, features_half: np.ndarray) -> np.ndarray:
    """The two halves side by side, each of unit length, scaled to a unit vector: ``[..., d_tiles + d_features]``."""
    return join_parts([tile_half, features_half])


def track_vectors(info: ModelInfo, *, embedders: Mapping[str, Embedder] | None = None,
                  **parts: np.ndarray) -> np.ndarray:
    """Final vectors ``[shape=(n, info.embedding_dim)]`` of n tracks (rows aligned) from the vectors of the model's
    parts that take model inputs, by name (``tiles=``: each track's :func:`part_vector` of its tile outputs,
    ``features=``: the statistics embedder's output), joined (:func:`join_parts`; one part: scaled to unit length),
    then through the ``embedders`` of the parts that take the joined vector (``{"genres": ...}``), in order
    (:mod:`schemas.vector_parts`)."""
    missing = [p.name for p in input_parts(info.parts) if parts.get(p.name) is None]
    if missing:
        raise ValueError(f"model {info.model_id} has the part(s) {missing}: give their vectors")
    given = [parts[p.name] for p in input_parts(info.parts)]
    vectors = unit(given[0]) if len(given) == 1 else join_parts(given)
    for part in joined_parts(info.parts):
        if not embedders or part.name not in embedders:
            raise ValueError(f"model {info.model_id} has a {part.name} part: give its embedder")
        vectors = unit(np.asarray(embedders[part.name](vectors)))
    return vectors


def join_extra(vectors: np.ndarray, extra: np.ndarray, weight: float) -> np.ndarray:
    """Track vectors ``[..., d]`` joined with an external embedding of the same tracks ``[..., e]`` (rows
    aligned; any scale, each row is scaled to unit length first), as one unit vector ``[..., d + e]`` whose
    cosines are ``(1 - weight)`` times the model's cosine plus ``weight`` times the external one's."""
    if not 0.0 < weight < 1.0:
        raise ValueError(f"the extra vectors' weight must be between 0 and 1, not {weight}")
    joined = np.concatenate([np.sqrt(1.0 - weight) * unit(vectors), np.sqrt(weight) * unit(extra)], axis=-1)
    return unit(joined)
