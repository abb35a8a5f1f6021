"""Label-free training: two tiles of one track are a positive pair, other tracks in the batch negatives
(NT-Xent, as SimCLR and COLA). Same encoder as the genre CNN."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from model import cnn, data
from schemas.audio import AudioSpec


def pair_dataset(tiles: np.ndarray, track_ids: np.ndarray, *, batch_size: int, seed: int) -> tf.data.Dataset:
    """Endless batches of ``((tile_a, tile_b), dummy)``: two different tiles of one track (the same tile
    twice when the track has one), each augmented independently; one pair per track per batch."""
    starts = np.flatnonzero(np.r_[True, track_ids[1:] != track_ids[:-1]])
    counts = np.diff(np.r_[starts, len(track_ids)])
    all_tiles = tf.constant(tiles)
    starts_t, counts_t = tf.constant(starts, tf.int64), tf.constant(counts, tf.int64)

    def pair(track):
        start, count = starts_t[track], counts_t[track]
        first = tf.random.uniform([], 0, count, dtype=tf.int64)
        other = tf.random.uniform([], 0, tf.maximum(count - 1, 1), dtype=tf.int64)
        second = tf.where(count > 1, (first + 1 + other) % count, first)
        a = data.augment(tf.cast(all_tiles[start + first], tf.float32))
        b = data.augment(tf.cast(all_tiles[start + second], tf.float32))
        return (a, b), 0.0

    return (
        tf.data.Dataset.range(len(starts))
        .shuffle(len(starts), seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .map(pair, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(min(batch_size, len(starts)), drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def nt_xent(temperature: float):
    """NT-Xent loss on ``y_pred [B, 2, d]`` (unit projections of both views); ``y_true`` is ignored."""

    def loss(y_true, y_pred):
        batch = tf.shape(y_pred)[0]
        z = tf.concat([y_pred[:, 0], y_pred[:, 1]], axis=0)  # [2B, d]
        logits = tf.matmul(z, z, transpose_b=True) / temperature
        logits = logits - 1e9 * tf.eye(2 * batch)
        targets = tf.concat([tf.range(batch, 2 * batch), tf.range(0, batch)], axis=0)
        per_view = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
        return tf.reduce_mean(per_view) * tf.ones([batch])  # Keras averages over the batch

    return loss


def build_contrastive(spec: AudioSpec, normaliser: keras.layers.Normalization) -> tuple[keras.Model, keras.Model]:
    """``(trainable two-view model, encoder)``: shared encoder, projection head 128 -> 64, unit outputs."""
    encoder = cnn.build_encoder(spec, normaliser)
    head = keras.Sequential([keras.layers.ReLU(), keras.layers.Dense(128, activation="relu"),
                             keras.layers.Dense(64), keras.layers.UnitNormalization()], name="projection")
    view_a = keras.Input(shape=spec.tile_shape, name="view_a")
    view_b = keras.Input(shape=spec.tile_shape, name="view_b")
    projected = keras.ops.stack([head(encoder(view_a)), head(encoder(view_b))], axis=1)
    return keras.Model([view_a, view_b], projected, name="contrastive"), encoder
