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


PAIRS_PER_VISIT = 4  # streamed: pairs taken from a track each time its tiles are read
SHUFFLE_PAIRS = 4096  # streamed: pairs held to shuffle (at float16, 128 x 128 tiles: 256 MB)


def run_pairs(length: int, rng: np.random.Generator, most: int = PAIRS_PER_VISIT) -> np.ndarray:
    """Offsets ``[p, 2]`` of up to ``most`` pairs of different tiles in a run of ``length`` tiles of one track,
    no tile in two pairs (``[[0, 0]]`` for a single tile: the same tile twice, as :func:`pair_dataset` does)."""
    if length == 1:
        return np.zeros((1, 2), np.int64)
    order = rng.permutation(length)
    pairs = min(most, length // 2)
    return order[:2 * pairs].reshape(pairs, 2)


def streamed_pair_dataset(tile_files: list[str], spec: AudioSpec, *, batch_size: int, seed: int,
                          summaries: tuple[np.ndarray, np.ndarray] | None = None,
                          read_batch: int = 1024, shuffle_pairs: int = SHUFFLE_PAIRS) -> tf.data.Dataset:
    """:func:`pair_dataset`'s batches read from the tile shards instead of memory, for catalogues whose tiles do
    not fit: the shards are read one at a time (in a new order each pass), each run of one track's tiles gives
    :func:`run_pairs`, and a buffer of ``shuffle_pairs`` pairs mixes the tracks before batching. With
    ``summaries`` ``(track_ids [n], standardised statistics [n, d])`` the views are ``(tile_a, tile_b, summary)``
    (zeros, the catalogue's mean, for a track without a row). ``read_batch``: records parsed at a time (a run
    of tiles that goes on past a batch is held until it ends)."""
    row_of = None if summaries is None else {int(t): i for i, t in enumerate(summaries[0])}
    blank = None if summaries is None else np.zeros(summaries[1].shape[1], np.float32)

    def pairs_of_runs(track_ids: np.ndarray, tiles: np.ndarray, rng: np.random.Generator):
        starts = track_starts(track_ids)
        for start, end in zip(starts, np.r_[starts[1:], len(track_ids)]):
            summary = () if row_of is None else (
                summaries[1][row_of[int(track_ids[start])]] if int(track_ids[start]) in row_of else blank,)
            for a, b in run_pairs(end - start, rng):
                yield (tiles[start + a], tiles[start + b], *summary)

    def generate():
        rng = np.random.default_rng(seed)
        while True:
            for shard in rng.permutation(len(tile_files)):
                held_ids, held = np.zeros(0, np.int64), np.zeros((0, *spec.tile_shape), np.float16)
                for ids, tiles in data.stream_tiles([tile_files[shard]], spec, read_batch).as_numpy_iterator():
                    held_ids, held = np.r_[held_ids, ids], np.concatenate([held, tiles])
                    last = track_starts(held_ids)[-1]  # the last run may go on in the next batch
                    yield from pairs_of_runs(held_ids[:last], held[:last], rng)
                    held_ids, held = held_ids[last:], held[last:]
                if len(held_ids):
                    yield from pairs_of_runs(held_ids, held, rng)

    tile = tf.TensorSpec(spec.tile_shape, tf.float16)
    signature = (tile, tile) + (() if summaries is None else (tf.TensorSpec([summaries[1].shape[1]], tf.float32),))

    def augmented(*views):
        a, b = data.augment(tf.cast(views[0], tf.float32)), data.augment(tf.cast(views[1], tf.float32))
        return (a, b, *views[2:]), 0.0

    return (tf.data.Dataset.from_generator(generate, output_signature=signature)
            .shuffle(shuffle_pairs, seed=seed, reshuffle_each_iteration=True)
            .map(augmented, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE))


def nt_xent_pair(view_a: tf.Tensor, view_b: tf.Tensor, temperature: float) -> tf.Tensor:
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
        value = nt_xent_pair(y_pred[:, 0], y_pred[:, 1], temperature)
        if summary_weight and y_pred.shape[1] == 3:
            value += summary_weight * 0.5 * (nt_xent_pair(y_pred[:, 0], y_pred[:, 2], temperature)
                                             + nt_xent_pair(y_pred[:, 1], y_pred[:, 2], temperature))
        return value * tf.ones([tf.shape(y_pred)[0]])  # Keras averages over the batch

    return loss


def projection_head() -> keras.Sequential:
    """The projection head on the encoder's output: ReLU, 128, then :data:`PROJECTION_DIM` unit outputs."""
    return keras.Sequential([keras.layers.ReLU(), keras.layers.Dense(128, activation="relu"),
                             keras.layers.Dense(PROJECTION_DIM), keras.layers.UnitNormalization()], name="projection")


def summary_projection_head() -> keras.Sequential:
    """The summary statistics' own network: 256, then :data:`PROJECTION_DIM` unit outputs."""
    return keras.Sequential([keras.layers.Dense(256, activation="relu"), keras.layers.Dense(PROJECTION_DIM),
                             keras.layers.UnitNormalization()], name="summary_projection")


def build_contrastive(spec: AudioSpec, normaliser: keras.layers.Normalization,
                      summary_dim: int | None = None) -> tuple[keras.Model, keras.Model]:
    """``(trainable model, encoder)``: shared encoder, projection head 128 -> 64, unit outputs ``[B, 2, 64]``;
    with ``summary_dim``, a third input (the summary statistics) through its own 256 -> 64 network: ``[B, 3, 64]``."""
    encoder = cnn.build_encoder(spec, normaliser)
    head = projection_head()
    view_a = keras.Input(shape=spec.tile_shape, name="view_a")
    view_b = keras.Input(shape=spec.tile_shape, name="view_b")
    inputs, projected = [view_a, view_b], [head(encoder(view_a)), head(encoder(view_b))]
    if summary_dim:
        summary = keras.Input(shape=(summary_dim,), name="summary")
        summary_head = summary_projection_head()
        inputs.append(summary)
        projected.append(summary_head(summary))
    return keras.Model(inputs, keras.ops.stack(projected, axis=1), name="contrastive"), encoder
