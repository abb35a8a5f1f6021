"""Label-free training: two tiles of one track are a positive pair, other tracks in the batch negatives
(NT-Xent, as SimCLR and COLA). Same encoder as the genre CNN.

With a summary view (``wavelist train --summary-view W``), each track's whole-clip summary statistics are a
third view: a small network projects them beside the tiles, and each tile must also find its own track's
statistics among the batch's (weight W). A 3-s tile then learns what the whole clip sounds like, not only
what tells it from other tiles; the statistics' network is dropped after training."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from core.vectors import track_starts
from model import cnn, data
from schemas.audio import AudioSpec

PROJECTION_DIM = 64


def pair_dataset(tiles: np.ndarray, track_ids: np.ndarray, *, batch_size: int, seed: int,
                 summaries: np.ndarray | None = None) -> tf.data.Dataset:
    """Endless batches of ``((tile_a, tile_b), dummy)``: two different tiles of one track (the same tile
    twice when the track has one), each augmented independently; one pair per track per batch. With
    ``summaries`` ``[n_tracks, d]`` (each track's standardised summary statistics, in the order of the
    tracks in ``track_ids``), the views are ``(tile_a, tile_b, summary)``."""
    starts = track_starts(track_ids)
    counts = np.diff(np.r_[starts, len(track_ids)])
    all_tiles = tf.constant(tiles)
    starts_t, counts_t = tf.constant(starts, tf.int64), tf.constant(counts, tf.int64)
    all_summaries = None if summaries is None else tf.constant(summaries, tf.float32)

    def pair(track):
        start, count = starts_t[track], counts_t[track]
        first = tf.random.uniform([], 0, count, dtype=tf.int64)
        other = tf.random.uniform([], 0, tf.maximum(count - 1, 1), dtype=tf.int64)
        second = tf.where(count > 1, (first + 1 + other) % count, first)
        a = data.augment(tf.cast(all_tiles[start + first], tf.float32))
        b = data.augment(tf.cast(all_tiles[start + second], tf.float32))
        views = (a, b) if all_summaries is None else (a, b, all_summaries[track])
        return views, 0.0

    return (
        tf.data.Dataset.range(len(starts))
        .shuffle(len(starts), seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .map(pair, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(min(batch_size, len(starts)), drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def _nt_xent_pair(view_a: tf.Tensor, view_b: tf.Tensor, temperature: float) -> tf.Tensor:
    """Mean NT-Xent of two aligned batches of unit projections ``[B, d]``: row i of each is the other's positive."""
    batch = tf.shape(view_a)[0]
    z = tf.concat([view_a, view_b], axis=0)  # [2B, d]
    logits = tf.matmul(z, z, transpose_b=True) / temperature
    logits = logits - 1e9 * tf.eye(2 * batch)
    targets = tf.concat([tf.range(batch, 2 * batch), tf.range(0, batch)], axis=0)
    return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True))


def nt_xent(temperature: float, summary_weight: float = 0.0):
    """NT-Xent loss on ``y_pred [B, views, d]`` (unit projections; ``y_true`` is ignored): the two tile views
    against each other, plus ``summary_weight`` times the mean of each tile view against the summary view
    (the third, when there is one)."""

    def loss(y_true, y_pred):
        value = _nt_xent_pair(y_pred[:, 0], y_pred[:, 1], temperature)
        if summary_weight and y_pred.shape[1] == 3:
            value += summary_weight * 0.5 * (_nt_xent_pair(y_pred[:, 0], y_pred[:, 2], temperature)
                                             + _nt_xent_pair(y_pred[:, 1], y_pred[:, 2], temperature))
        return value * tf.ones([tf.shape(y_pred)[0]])  # Keras averages over the batch

    return loss


def build_contrastive(spec: AudioSpec, normaliser: keras.layers.Normalization,
                      summary_dim: int | None = None) -> tuple[keras.Model, keras.Model]:
    """``(trainable model, encoder)``: shared encoder, projection head 128 -> 64, unit outputs ``[B, 2, 64]``;
    with ``summary_dim``, a third input (the summary statistics) through its own 256 -> 64 network: ``[B, 3, 64]``."""
    encoder = cnn.build_encoder(spec, normaliser)
    head = keras.Sequential([keras.layers.ReLU(), keras.layers.Dense(128, activation="relu"),
                             keras.layers.Dense(PROJECTION_DIM), keras.layers.UnitNormalization()], name="projection")
    view_a = keras.Input(shape=spec.tile_shape, name="view_a")
    view_b = keras.Input(shape=spec.tile_shape, name="view_b")
    inputs, projected = [view_a, view_b], [head(encoder(view_a)), head(encoder(view_b))]
    if summary_dim:
        summary = keras.Input(shape=(summary_dim,), name="summary")
        summary_head = keras.Sequential([keras.layers.Dense(256, activation="relu"), keras.layers.Dense(PROJECTION_DIM),
                                         keras.layers.UnitNormalization()], name="summary_projection")
        inputs.append(summary)
        projected.append(summary_head(summary))
    return keras.Model(inputs, keras.ops.stack(projected, axis=1), name="contrastive"), encoder
