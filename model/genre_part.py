"""The genre part of a track vector: what the track's audio vector predicts of its genre, when the catalogue
has enough labelled tracks to learn it.

A linear probe (logistic regression) on the joined label-free vector of a track (its whitened tile half and
its whitened statistics half) gives genre probabilities; their square roots (a unit vector: the cosine of two
of them is the Bhattacharyya coefficient of the two distributions, the Hellinger embedding) become a third part
of equal weight beside the two halves. Square roots rather than the probabilities scaled to unit length: two
excerpts of one track that the probe assigns to different genres, each with some doubt, stay closer, so the
genre part does not push a track's own other excerpt out of its nearest neighbours. The trainer fits the
probe on every tile of a labelled track (the tile's vector joined with its track's statistics), which gives it
ten examples per 30-s track rather than one, and only on labelled tracks outside the test split (held out for
evaluation), so test tracks are predicted from their audio, as any new track is. It is computed from audio
alone at embed time: a track whose sound is unlike its genre gets the probabilities of what it sounds like.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import keras
import numpy as np

from schemas.layout import DataFiles
from storage import files

MIN_GENRE_TRACKS = 5  # labelled tracks (outside the test split) a genre needs before the probe learns it
HELD_OUT_SPLIT = "test"


def training_labels(data_dir: str | Path, min_tracks: int = MIN_GENRE_TRACKS) -> tuple[dict[int, int], list[str]]:
    """``({track_id: genre index}, genres)`` of accepted tracks outside the test split whose genre has at
    least ``min_tracks`` of them; tracks of rarer genres and unlabelled tracks are left out."""
    rows = files.read_parquet(files.join(data_dir, DataFiles.TRACKS), ["track_id", "genre", "split", "status"],
                              made_by="wavelist ingest").to_pylist()
    labelled = [r for r in rows if r["status"] == "ok" and r["genre"] and r["split"] != HELD_OUT_SPLIT]
    counts = Counter(r["genre"] for r in labelled)
    genres = sorted(g for g, n in counts.items() if n >= min_tracks)
    index = {g: i for i, g in enumerate(genres)}
    return {r["track_id"]: index[r["genre"]] for r in labelled if r["genre"] in index}, genres


def fit_probe(joined: np.ndarray, labels: np.ndarray, n_genres: int) -> tuple[np.ndarray, np.ndarray]:
    """``(kernel [d, n_genres], bias [n_genres])`` of a softmax over genres fitted by logistic regression
    (scikit-learn's defaults, C = 1, with balanced class weights) on ``joined`` vectors (of tracks or of
    tiles) and their labels."""
    from sklearn.linear_model import LogisticRegression

    probe = LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000).fit(joined, labels)
    kernel = np.zeros((joined.shape[1], n_genres), np.float32)
    bias = np.zeros(n_genres, np.float32)
    if len(probe.classes_) == 2:  # one logit for the second class; the first class's logit is 0
        kernel[:, probe.classes_[1]], bias[probe.classes_[1]] = probe.coef_[0], probe.intercept_[0]
    else:
        kernel[:, probe.classes_] = probe.coef_.T
        bias[probe.classes_] = probe.intercept_
    return kernel, bias


def genre_part_embedder(joined: np.ndarray, labels: np.ndarray, genres: list[str]) -> keras.Model:
    """joined vector [d] -> final unit vector [d + n_genres]: the joined vector and the square roots of its
    genre probabilities, each given the weight of one part of three (the halves keep 2/3 of the similarity)."""
    kernel, bias = fit_probe(joined, labels, len(genres))
    inputs = keras.Input(shape=(joined.shape[1],), name="joined")
    probe = keras.layers.Dense(len(genres), activation="softmax", name="genre_probabilities")
    probabilities = probe(inputs)
    probe.set_weights([kernel, bias])
    genre_part = keras.layers.Rescaling(1 / np.sqrt(3.0), name="genre_weight")(
        keras.layers.UnitNormalization(name="unit_genres")(keras.ops.sqrt(probabilities)))
    halves = keras.layers.Rescaling(np.sqrt(2 / 3), name="halves_weight")(inputs)
    return keras.Model(inputs, keras.layers.Concatenate(name="with_genres")([halves, genre_part]),
                       name="genre_embedder")
