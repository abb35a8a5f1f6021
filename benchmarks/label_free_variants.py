"""Screen variants of the label-free training on a corpus: train one in this process, score its vectors.

    python -m benchmarks.label_free_variants CORPUS DATA [--steps 500] [--seed 0] [--temperature 0.1]
        [--batch B] [--views-of K] [--summary-view W] [--neighbour-queue Q] [--debias TAU] [--pooling time]
        [--width N] [--ab-repeats FILE] [--tag NAME]

DATA is ``wavelist ingest``'s output for CORPUS (FMA layout, e.g. ``shared/build_music_corpus.py``'s). The
encoder, augmentation, projection head, centring and whitening are the product's (``model.cnn``,
``model.contrastive``, ``model.whitening``); the variants change the training objective, and ``--pooling time``
(frequency bands kept apart) and ``--width N`` (N times the filters) the encoder:

    --views-of K         each view is the mean of K different tiles' encodings (longer context per view)
    --summary-view W     each tile view also against the track's summary statistics (what ``train --summary-view`` does)
    --neighbour-queue Q  NNCLR: the positive of view a is its nearest other track in a queue of the last Q projections
    --debias TAU         the debiased NT-Xent of Chuang et al. (2020), class prior TAU (false negatives in the batch)

Printed (one JSON line, also appended to ``--log``): source P@10 and same-track R@10 (``shared/similarity_metrics.py``,
test-split queries) of the tile half alone, of the label-free vector (tile half and whitened summary statistics,
as ``wavelist train --no-genres`` exports), and of the latter after diffusion over 5 neighbours (``--diffusion 5``).
Screening only: one seed of a short run, no intervals; ``quality.py`` measures what is kept.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks import quality  # the judge's metrics and the diffusion used by the quality benchmark


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--steps", type=int, default=500, help="pair batches (multiple of 50; 0: untrained)")
    parser.add_argument("--batch", type=int, default=64, help="tracks per pair batch (the product's default, 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=0.1)
    parser.add_argument("--views-of", type=int, default=1, metavar="K")
    parser.add_argument("--summary-view", type=float, default=0.0, metavar="W")
    parser.add_argument("--neighbour-queue", type=int, default=0, metavar="Q")
    parser.add_argument("--debias", type=float, default=0.0, metavar="TAU")
    parser.add_argument("--pooling", choices=("global", "time"), default="global",
                        help="the encoder's last pooling (model.cnn.build_encoder): time keeps the frequency bands")
    parser.add_argument("--width", type=int, default=1, help="the encoder's filters times this (model.cnn.build_encoder)")
    parser.add_argument("--ab-repeats", type=Path, default=quality.SHARED / "dev_ab_repeats.txt")
    parser.add_argument("--tag", default="")
    parser.add_argument("--log", type=Path, help="append the JSON line to this file too")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    import keras
    import tensorflow as tf

    from core.vectors import track_starts, unit
    from model import cnn, contrastive, data, features
    from model.train import (WHITENED_DIMS, adapted_normaliser, mean_embedding, per_track_mean, predict_in_chunks,
                             tf_constant_batches)
    from model.whitening import whitened
    from storage import files

    keras.utils.set_random_seed(args.seed)
    spec = files.load_audio_spec(args.data, made_by="wavelist ingest")
    tiles, track_ids = data.load_tiles(data.all_tile_files(args.data), spec)
    starts = track_starts(track_ids)
    counts = np.diff(np.r_[starts, len(track_ids)])
    ids = track_ids[starts]
    feature_ids, values = features.load_features(args.data)
    summaries = features.standardised_by_track(feature_ids, values, ids)
    k, temperature = args.views_of, args.temperature

    sample = tf_constant_batches(tiles[np.random.default_rng(args.seed).permutation(len(tiles))[:2048]])
    encoder = cnn.build_encoder(spec, adapted_normaliser(sample), pooling=args.pooling, width=args.width)
    encoded = int(encoder.output.shape[-1])
    head = contrastive.projection_head()
    view_inputs = [keras.Input((k, *spec.tile_shape)) for _ in range(2)]
    def mean_of_views(views):  # [B, k, tile] -> [B, encoded]: each view the mean of k tiles' encodings
        return keras.ops.mean(keras.ops.reshape(encoder(keras.ops.reshape(views, (-1, *spec.tile_shape))),
                                                (-1, k, encoded)), axis=1)

    outputs = [head(mean_of_views(v)) for v in view_inputs]
    inputs = list(view_inputs)
    if args.summary_view:
        summary = keras.Input((summaries.shape[1],))
        summary_head = contrastive.summary_projection_head()
        inputs.append(summary)
        outputs.append(summary_head(summary))
    model = keras.Model(inputs, keras.ops.stack(outputs, axis=1))

    def pair_loss(a, b):
        if not args.debias:
            return contrastive.nt_xent_pair(a, b, temperature)  # the product's loss
        batch = tf.shape(a)[0]
        z = tf.concat([a, b], 0)
        logits = tf.matmul(z, z, transpose_b=True) / temperature - 1e9 * tf.eye(2 * batch)
        targets = tf.concat([tf.range(batch, 2 * batch), tf.range(0, batch)], 0)
        positive = tf.gather(logits, targets, batch_dims=1)
        negatives = tf.exp(logits - positive[:, None]) * (1.0 - tf.one_hot(targets, 2 * batch))
        n = tf.cast(2 * batch - 2, tf.float32)
        corrected = tf.maximum((tf.reduce_sum(negatives, 1) - n * args.debias) / (1 - args.debias),
                               n * tf.exp(-1.0 / temperature - positive))
        return tf.reduce_mean(tf.math.log1p(corrected))

    queue_size = max(args.neighbour_queue, 1)
    queue = tf.Variable(tf.math.l2_normalize(tf.random.normal([queue_size, contrastive.PROJECTION_DIM]), 1), trainable=False)
    queue_tracks = tf.Variable(-tf.ones([queue_size]), trainable=False)

    def loss(track, projected):
        value = pair_loss(projected[:, 0], projected[:, 1])
        if args.neighbour_queue:
            a, track = projected[:, 0], tf.reshape(tf.cast(track, tf.float32), [-1])
            own = tf.cast(tf.equal(track[:, None], queue_tracks[None, :]), tf.float32)
            nearest = tf.argmax(tf.matmul(a, queue, transpose_b=True) - 10.0 * own, axis=1)
            value = pair_loss(tf.stop_gradient(tf.gather(queue, nearest)), projected[:, 1])
            with tf.control_dependencies([value]):
                updates = [queue.assign(tf.concat([tf.stop_gradient(a), queue[:-tf.shape(a)[0]]], 0)),
                           queue_tracks.assign(tf.concat([track, queue_tracks[:-tf.shape(a)[0]]], 0))]
            with tf.control_dependencies(updates):
                value = tf.identity(value)
        if args.summary_view:
            value += args.summary_view * 0.5 * (pair_loss(projected[:, 0], projected[:, 2])
                                                + pair_loss(projected[:, 1], projected[:, 2]))
        return value * tf.ones([tf.shape(projected)[0]])

    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    all_tiles, all_summaries = tf.constant(tiles), tf.constant(summaries)
    starts_t, counts_t = tf.constant(starts, tf.int64), tf.constant(counts, tf.int64)

    def views(track):
        start, count = starts_t[track], counts_t[track]
        chosen = tf.cond(count >= 2 * k, lambda: tf.random.shuffle(tf.range(count))[:2 * k],
                         lambda: tf.random.uniform([2 * k], 0, count, dtype=tf.int64))
        picked = tf.map_fn(lambda t: data.augment(tf.cast(t, tf.float32)), tf.gather(all_tiles, start + chosen),
                           fn_output_signature=tf.float32)
        x = (picked[:k], picked[k:]) + ((all_summaries[track],) if args.summary_view else ())
        return x, tf.cast(track, tf.float32)

    batches = (tf.data.Dataset.range(len(starts)).shuffle(len(starts), seed=args.seed, reshuffle_each_iteration=True)
               .repeat().map(views, num_parallel_calls=tf.data.AUTOTUNE).batch(args.batch, drop_remainder=True)
               .prefetch(tf.data.AUTOTUNE))
    started = time.perf_counter()
    model.fit(batches, epochs=args.steps // 50, steps_per_epoch=50, verbose=0)
    train_s = time.perf_counter() - started

    unit_embedder = cnn.embedder_of(encoder, mean_embedding(cnn.embedding_outputs(encoder), sample))
    embedder = whitened(unit_embedder, per_track_mean(predict_in_chunks(unit_embedder, tiles), track_ids),
                        WHITENED_DIMS)
    tile_vectors = predict_in_chunks(embedder, tiles)
    tile_half = unit(np.stack([tile_vectors[s:s + c].mean(0) for s, c in zip(starts, counts)]))
    features_half = unit(np.asarray(features.whitened_features_embedder(values, WHITENED_DIMS)(
        values[[{int(t): i for i, t in enumerate(feature_ids)}[int(t)] for t in ids]], training=False)))
    label_free = np.concatenate([tile_half, features_half], 1)

    metrics = quality.similarity_metrics()
    tracks = metrics.load_tracks(str(args.corpus / "fma_metadata" / "tracks.csv"))
    repeats = metrics.load_repeat_clips(str(args.ab_repeats))
    result = {"tag": args.tag, "steps": args.steps, "seed": args.seed, "temperature": temperature, "views_of": k,
              "summary_view": args.summary_view, "neighbour_queue": args.neighbour_queue, "debias": args.debias,
              "pooling": args.pooling, "width": args.width, "batch": args.batch, "train_s": round(train_s)}
    for name, X in (("tile half", tile_half), ("label-free", label_free),
                    ("label-free + diffusion 5", quality.diffused(label_free, 5, 3.0))):
        scores = metrics.evaluate(ids, X, tracks, repeats)["test"]
        result[name] = [round(scores["source_p10"], 3), round(scores["same_track_r10"], 3)]
    line = json.dumps(result)
    print(line)
    if args.log:
        with args.log.open("a") as handle:
            handle.write(line + "\n")


if __name__ == "__main__":
    main()
