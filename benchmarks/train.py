"""Training speed on CPU: tiles per second through the tf.data input pipeline alone vs a training step.

    python -m benchmarks.train DATA [--batches 40] [--batch-size 64]

DATA is an ingest output (e.g. of the real-music corpus). The input pipeline must not be the bottleneck:
its rate should be at least 3x the training step's.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path



FMA_SMALL_TRAIN_TILES = 6_400 * 10


def rate(label: str, batches, batch_size: int, n: int) -> float:
    iterator = iter(batches)
    next(iterator)  # warm-up: graph tracing, first file reads
    started = time.perf_counter()
    for _ in range(n):
        next(iterator)
    tiles_per_s = n * batch_size / (time.perf_counter() - started)
    print(f"  {label:<52} {tiles_per_s:8.0f} tiles/s", flush=True)
    return tiles_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from model import cnn, contrastive, data
    from storage import files

    spec = files.load_audio_spec(args.data)
    labels, genres = data.track_labels(args.data)
    shards = data.tile_files(args.data, "train")
    train = data.tile_dataset(shards, spec, labels=labels, batch_size=args.batch_size, shuffle=True,
                              augmented=True).repeat()
    print(f"{args.data}: {len(genres)} genres, batch {args.batch_size}, TensorFlow {tf.__version__}, "
          f"{tf.config.threading.get_intra_op_parallelism_threads() or 'all'} intra-op threads")

    print("genre CNN:")
    pipeline = rate("tf.data input alone (read, parse, shuffle, augment, batch)", train, args.batch_size,
                    args.batches)
    normaliser = keras.layers.Normalization(axis=1)
    normaliser.adapt(train.map(lambda m, l, t: m).take(10))
    model = cnn.build_genre_cnn(spec, len(genres), normaliser)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    mel, label, _ = next(iter(train))
    step_fn = (model.train_on_batch(mel, label) for _ in iter(int, 1))
    step = rate("training step alone (one batch held in memory)", step_fn, args.batch_size, args.batches)
    pairs = train.map(lambda m, l, t: (m, l))
    fit_iter = iter(pairs)
    fitted = rate("training step fed by the pipeline", (model.train_on_batch(*next(fit_iter))
                                                          for _ in iter(int, 1)), args.batch_size, args.batches)

    print("contrastive:")
    tiles, track_ids = data.load_tiles(data.all_tile_files(args.data), spec)
    pair_batches = contrastive.pair_dataset(tiles, track_ids, batch_size=args.batch_size, seed=0)
    pair_rate = rate("pair pipeline alone (gather, 2 x augment, batch)", pair_batches, args.batch_size,
                     args.batches)
    two_view, _ = contrastive.build_contrastive(spec, normaliser)
    two_view.compile(optimizer="adam", loss=contrastive.nt_xent(0.1))
    (a, b), y = next(iter(pair_batches))
    pair_step = rate("contrastive step alone (pairs per s)", (two_view.train_on_batch((a, b), y)
                                                             for _ in iter(int, 1)), args.batch_size, args.batches)

    print("ratios (input pipeline / training step; target >= 3):")
    print(f"  genre CNN:   {pipeline / step:.1f}")
    print(f"  contrastive: {pair_rate / pair_step:.1f}")
    n_train = int(sum(1 for _ in data.tile_dataset(shards, spec, labels=labels, batch_size=1024,
                                                      shuffle=False).unbatch()))
    print(f"epoch time at the fed rate ({fitted:.0f} tiles/s): this corpus {n_train} training tiles "
          f"{n_train / fitted:.0f} s; fma_small {FMA_SMALL_TRAIN_TILES} tiles {FMA_SMALL_TRAIN_TILES / fitted / 60:.1f} min")


if __name__ == "__main__":
    main()
