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

Labels vary from catalogue to catalogue (a few tagged tracks, tags that say little about the sound, many fine
genres), so the genre part's weight follows what the labels are worth: the probe's balanced accuracy in a
cross-validation over the labelled tracks, as a share of the way from chance to perfect (:func:`reliability`).
Labels worth at least :data:`FULL_WORTH` keep a third of the cosine; below, the weight falls in proportion to
nothing for labels the audio cannot predict (:func:`weight_for`).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import keras
import numpy as np

from schemas.layout import DataFiles
from storage import files

MIN_GENRE_TRACKS = 5  # labelled tracks (outside the test split) a genre needs before the probe learns it
FULL_WEIGHT = 1 / 3  # the genre part's share of the cosine when its labels are worth enough
# Clean labels are not perfectly predictable from audio: the pooled real-music corpora's (one source package a
# genre, 32 genres) are worth 0.67, and there the full third gave +0.022 source P@10 over a weight of 0.22
# (benchmarks/RESULTS.md, issue 22); so the weight is full from this worth and falls linearly below it.
FULL_WORTH = 0.5
CV_FOLDS = 5
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


def reliability(tile_joined: np.ndarray, tile_track_ids: np.ndarray, track_ids: np.ndarray,
                track_joined: np.ndarray, track_labels: np.ndarray, seed: int = 0) -> float:
    """What the labels are worth to the probe, in [0, 1]: its balanced accuracy in a cross-validation by track
    (stratified by label; the probe fitted as the trainer fits it, on the tiles of the other folds' tracks,
    and asked about each held-out track's joined vector, as the embed job asks it), rescaled so that chance
    (one over the number of genres) is 0 and perfect is 1."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold

    present = np.unique(track_labels)
    folds = min(CV_FOLDS, int(np.bincount(track_labels)[present].min()))
    if len(present) < 2 or folds < 2:
        return 0.0
    predicted = np.zeros_like(track_labels)
    label_of = dict(zip(track_ids.tolist(), track_labels.tolist()))
    tile_labels = np.array([label_of[int(t)] for t in tile_track_ids])
    for train, held_out in StratifiedKFold(folds, shuffle=True, random_state=seed).split(track_joined, track_labels):
        tiles = np.isin(tile_track_ids, track_ids[train])
        kernel, bias = fit_probe(tile_joined[tiles], tile_labels[tiles], int(track_labels.max()) + 1)
        predicted[held_out] = (track_joined[held_out] @ kernel + bias).argmax(axis=1)
    chance = 1.0 / len(present)
    score = balanced_accuracy_score(track_labels, predicted)
    return float(np.clip((score - chance) / (1.0 - chance), 0.0, 1.0))


def weight_for(worth: float) -> float:
    """The genre part's share of the cosine for labels of this :func:`reliability`."""
    return FULL_WEIGHT * min(1.0, max(0.0, worth) / FULL_WORTH)


def genre_part_embedder(joined: np.ndarray, labels: np.ndarray, genres: list[str],
                        weight: float = FULL_WEIGHT) -> keras.Model:
    """joined vector [d] -> final unit vector [d + n_genres]: the joined vector and the square roots of its
    genre probabilities, the genre part given ``weight`` of the cosine (the halves keep the rest; at
    :data:`FULL_WEIGHT`, one part of three)."""
    kernel, bias = fit_probe(joined, labels, len(genres))
    inputs = keras.Input(shape=(joined.shape[1],), name="joined")
    probe = keras.layers.Dense(len(genres), activation="softmax", name="genre_probabilities")
    probabilities = probe(inputs)
    probe.set_weights([kernel, bias])
    genre_part = keras.layers.Rescaling(float(np.sqrt(weight)), name="genre_weight")(
        keras.layers.UnitNormalization(name="unit_genres")(keras.ops.sqrt(probabilities)))
    halves = keras.layers.Rescaling(float(np.sqrt(1.0 - weight)), name="halves_weight")(inputs)
    return keras.Model(inputs, keras.layers.Concatenate(name="with_genres")([halves, genre_part]),
                       name="genre_embedder")
