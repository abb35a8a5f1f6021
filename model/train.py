"""Train an embedding model on the ingest job's outputs and export it.

    wavelist train --data DATA --out MODEL [--model contrastive|cnn|autoencoder|features] [--epochs N]

Every kind exports ``embedder.keras``, a Keras model from log-mel tiles (or, for ``features``, a track's
summary statistics) to a vector, with ``audio_spec.json`` and ``model_info.json`` (id, kind, input) beside it;
plus ``metrics.json``, ``history.csv`` and TensorBoard ``logs/``. The default, ``contrastive`` (no labels
needed; tile pairs plus the tracks' summary statistics as a third view, see ``model.contrastive``), whitens its tile vectors and adds ``features_embedder.keras``: the track's whitened summary
statistics, the other half of its vector (``input``: ``tiles+features``; ``--no-features`` leaves it out).
When the catalogue has at least two genres of ``MIN_GENRE_TRACKS`` labelled tracks outside its test split, it also
adds ``genre_embedder.keras``, the genre probabilities the joined vector predicts as a third part
(``input``: ``tiles+features+genres``; ``--no-genres`` leaves it out; see ``model.genre_part``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core import vectors as recipe
from core.progress import Progress
from schemas import vector_parts
from schemas.audio import AudioSpec
from schemas.errors import UserError
from schemas.flags import VERBOSE_ENV, FlagParser, real, whole
from schemas.layout import DataFiles, ModelFiles
from schemas.model_info import FEATURES, GENRES, TILES, ModelInfo
from storage import files

log = logging.getLogger(__name__)
WHITENED_DIMS = 32
KINDS = ("cnn", "contrastive", "autoencoder", "features")
# contrastive: 20 x 50 steps of 64 pairs take about 11 minutes on 2 CPU cores whatever the catalogue's size
DEFAULT_EPOCHS = {"cnn": 30, "contrastive": 20, "autoencoder": 30, "features": 0}
DEFAULT_SUMMARY_VIEW = 1.0  # contrastive: weight of the summary view (benchmarks/RESULTS.md, issue 22)
PAIRS_PER_TILE = 1.0  # contrastive default: a larger catalogue trains longer, each tile drawn about this often
DEFAULT_BUDGET_MINUTES = 60.0
# contrastive: tiles held in memory up to this size (float16), read from the shards above it. Held in memory they are
# copied while loading and again into the input pipeline: 71,800 tiles (2.35 GB) peaked at 10.4 GB, read from the
# shards at 3.6 GB (benchmarks/RESULTS.md, issue 22). So fma_small's 2.6 GB are read from the shards and the
# real-music corpora's 0.2-0.4 GB held.
DEFAULT_TILES_IN_MEMORY_GB = 1.0
SAMPLE_TILES = 2048  # tiles that fit the input normaliser and the centre of the tile vectors


def contrastive_epochs(n_tiles: int, batch_size: int, steps_per_epoch: int) -> int:
    """The default length of contrastive training: at least ``DEFAULT_EPOCHS["contrastive"]`` epochs, more for a
    catalogue whose tiles would otherwise be drawn fewer than ``PAIRS_PER_TILE`` times each (a pair is two
    tiles); ``--budget-minutes`` then caps the time."""
    pairs_per_epoch = batch_size * steps_per_epoch
    return max(DEFAULT_EPOCHS["contrastive"], math.ceil(PAIRS_PER_TILE * n_tiles / (2 * pairs_per_epoch)))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = FlagParser(prog="wavelist train", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="output folder of wavelist ingest")
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--model", choices=KINDS, default="contrastive",
                        help="kind of model (default: contrastive, which needs no labels and gave the best "
                        "neighbours; see benchmarks/RESULTS.md)")
    parser.add_argument("--epochs", type=whole(1, 100_000),
                        help="training epochs (default: 30 for cnn and autoencoder; contrastive: 20, "
                        "more for catalogues of over 64,000 tiles, see contrastive_epochs)")
    parser.add_argument("--budget-minutes", type=real(0.0, 525_600.0), default=DEFAULT_BUDGET_MINUTES,
                        help="stop training before an epoch that would end after this many minutes (default 60)")
    parser.add_argument("--steps-per-epoch", type=whole(1, 10_000_000), default=50,
                        help="contrastive: pair batches per epoch")
    parser.add_argument("--batch-size", type=whole(2, 65_536), default=64)
    parser.add_argument("--tiles-in-memory-gb", type=real(0.0, 1e6), default=DEFAULT_TILES_IN_MEMORY_GB,
                        metavar="GB",
                        help="contrastive: hold the tiles in memory up to this size; a larger catalogue's are read from "
                        f"the shards at each pass (default {DEFAULT_TILES_IN_MEMORY_GB:g})")
    parser.add_argument("--patience", type=whole(0, 100_000), default=5, help="early stopping on validation loss")
    parser.add_argument("--temperature", type=real(1e-3, 100.0), default=0.1, help="contrastive: NT-Xent temperature")
    parser.add_argument("--summary-view", type=real(0.0, 1e3), default=DEFAULT_SUMMARY_VIEW, metavar="W",
                        help="contrastive: each tile also learns to find its track's whole-clip summary statistics "
                        f"among the batch's, with this weight (default {DEFAULT_SUMMARY_VIEW:g}; 0: tile pairs only)")
    parser.add_argument("--no-features", action="store_true",
                        help="contrastive: the learned vector alone, not joined with the whitened summary statistics")
    parser.add_argument("--no-genres", action="store_true",
                        help="contrastive: no genre part even when the catalogue has enough labelled tracks "
                        "(the vector then comes from the audio and label-free training alone)")
    parser.add_argument("--min-genre-tracks", type=whole(1, 10_000_000), default=None, metavar="N",
                        help="contrastive: labelled tracks (outside the test split) a genre needs to count for the genre part "
                        "(default: model.genre_part.MIN_GENRE_TRACKS, 5)")
    parser.add_argument("--genre-weight", type=real(), default=None, metavar="W",
                        help="contrastive: give the genre part this share of the cosine (between 0 and 1), whatever "
                        "its labels' measured worth (default: from the worth, see model.genre_part.weight_for)")
    parser.add_argument("--init-from", type=Path, metavar="MODEL",
                        help="cnn: start the encoder from a trained contrastive (or cnn) model, then fine-tune")
    parser.add_argument("--learning-rate", type=real(1e-9, 10.0), default=1e-3)
    parser.add_argument("--no-augment", action="store_true",
                        help="cnn: train without spectrogram augmentation (gain, frequency and time masks, roll)")
    parser.add_argument("--seed", type=whole(0, 2**32 - 1), default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing model folder")
    parser.add_argument("--verbose", type=int, default=2 if os.environ.get(VERBOSE_ENV) else 0, choices=(0, 1, 2),
                        help="Keras' own progress output (default 0: the trainer's one line per epoch; "
                             "wavelist -v: 2)")
    args = parser.parse_args(argv)
    if args.epochs is None and args.model != "contrastive":  # contrastive: from the catalogue's size, when known
        args.epochs = DEFAULT_EPOCHS[args.model]
    if args.genre_weight is not None and not 0.0 < args.genre_weight < 1.0:
        parser.error(f"--genre-weight {args.genre_weight}: give a share between 0 and 1")
    if args.summary_view < 0:
        parser.error(f"--summary-view {args.summary_view}: give a weight of 0 or more")
    if args.tiles_in_memory_gb < 0:
        parser.error(f"--tiles-in-memory-gb {args.tiles_in_memory_gb}: give a size of 0 or more")
    if args.budget_minutes <= 0:
        parser.error(f"--budget-minutes {args.budget_minutes}: give a positive number of minutes")
    return args


@dataclass
class Trained:
    """What a trainer hands to the export: the Keras model of each vector part (:mod:`schemas.vector_parts`), in the
    parts' order, and its metrics."""

    models: dict[str, Any]  # e.g. {"tiles": tiles -> vector, "features": summary statistics -> the other half}
    metrics: dict[str, Any]
    genres: list[str] | None = None  # the genre part's genres, in order

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.models)

    @property
    def embedder(self) -> Any:
        """The first part's model (``embedder.keras``)."""
        return next(iter(self.models.values()))


def track_level_predictions(probabilities: np.ndarray, labels: np.ndarray, track_ids: np.ndarray):
    """Mean tile probabilities per track: ``(track_ids, true labels, predicted labels)``."""
    sums: dict[int, np.ndarray] = defaultdict(lambda: 0)
    truth: dict[int, int] = {}
    for p, y, t in zip(probabilities, labels, track_ids):
        sums[int(t)] = sums[int(t)] + p
        truth[int(t)] = int(y)
    ids = np.array(sorted(sums), dtype=np.int64)
    return ids, np.array([truth[t] for t in ids]), np.array([int(np.argmax(sums[t])) for t in ids])


def classification_metrics(truth: np.ndarray, predicted: np.ndarray, genres: list[str]) -> dict[str, Any]:
    """Track-level accuracy, per-genre precision / recall / F1 and the confusion matrix."""
    from sklearn.metrics import classification_report, confusion_matrix

    present = list(range(len(genres)))
    report = classification_report(truth, predicted, labels=present, target_names=genres, output_dict=True,
                                   zero_division=0)
    return {
        "tracks": int(len(truth)),
        "accuracy": float(np.mean(truth == predicted)) if len(truth) else float("nan"),
        "per_genre": {g: {k: float(v) for k, v in report[g].items()} for g in genres},
        "confusion_matrix": confusion_matrix(truth, predicted, labels=present).tolist(),
    }


def evaluate_split(model, dataset, genres: list[str]) -> dict[str, Any]:
    """Track-level genre metrics of a classifier over a ``(mel, label, track_id)`` dataset."""
    probabilities, labels, track_ids = [], [], []
    for mel, label, track_id in dataset:
        probabilities.append(model(mel, training=False).numpy())
        labels.append(label.numpy())
        track_ids.append(track_id.numpy())
    if not probabilities:
        return {"tracks": 0}
    _, truth, predicted = track_level_predictions(
        np.concatenate(probabilities), np.concatenate(labels), np.concatenate(track_ids))
    return classification_metrics(truth, predicted, genres)


def _callbacks(staging: Path, monitor: str, patience: int, budget_minutes: float = DEFAULT_BUDGET_MINUTES) -> list:
    import keras

    from core.progress import progress_line

    class TimeBudget(keras.callbacks.Callback):
        """Stops before an epoch that would end after ``budget_minutes`` (at the epochs' mean pace so far)."""

        def on_train_begin(self, logs=None):
            self._start = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            elapsed = time.monotonic() - self._start
            if elapsed * (epoch + 2) / (epoch + 1) > budget_minutes * 60 and epoch + 1 < self.params.get("epochs", 0):
                log.info("train: the budget of %g minutes stops training after %d epochs", budget_minutes, epoch + 1)
                self.model.stop_training = True

    class EpochProgress(keras.callbacks.Callback):
        """``train: 3 of 20 epochs, ..., about 12 min left`` after an epoch, at most every 10 s (and after the
        last), as the jobs' workers report."""

        def on_train_begin(self, logs=None):
            self._start = self._last = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            now, epochs = time.monotonic(), self.params.get("epochs")
            if now - self._last >= 10.0 or epoch + 1 == epochs:
                self._last = now
                log.info(progress_line("train", epoch + 1, epochs, now - self._start, "epochs"))

    return [
        EpochProgress(),
        TimeBudget(),
        keras.callbacks.EarlyStopping(monitor=monitor, patience=patience, restore_best_weights=True),
        keras.callbacks.CSVLogger(str(staging / ModelFiles.HISTORY)),
        keras.callbacks.TensorBoard(log_dir=str(staging / ModelFiles.LOGS)),
    ]


def adapted_normaliser(dataset):
    """A per-band ``Normalization`` layer adapted to the first 50 batches of log-mel tiles in ``dataset``."""
    import keras

    normaliser = keras.layers.Normalization(axis=1, name="per_band_norm")
    normaliser.adapt(dataset.take(50))
    return normaliser


def mean_embedding(model, mels) -> np.ndarray:
    """[shape=(d,)] the mean of ``model``'s outputs over the batches ``mels``: the centre that
    :func:`model.cnn.embedder_of` subtracts."""
    return np.mean(np.concatenate([model(m, training=False).numpy() for m in mels]), axis=0)


def train_cnn(args: argparse.Namespace, spec: AudioSpec, staging: Path) -> Trained:
    """The genre CNN with balanced class weights and early stopping on the validation split."""
    from sklearn.utils.class_weight import compute_class_weight

    from model import cnn, data

    labels, genres = data.track_labels(args.data)
    if len(genres) < 2:
        raise UserError(f"{args.data}: the genre CNN needs at least two genres, found {genres}; "
                         "use --model contrastive, which needs no labels")
    train_files = data.tile_files(args.data, "train")
    train = data.tile_dataset(train_files, spec, labels=labels, batch_size=args.batch_size, shuffle=True,
                              seed=args.seed, augmented=not args.no_augment)
    plain_train = data.tile_dataset(train_files, spec, labels=labels, batch_size=args.batch_size, shuffle=False)
    splits = {split: data.tile_dataset(shards, spec, labels=labels, batch_size=args.batch_size, shuffle=False)
              for split in ("validation", "test") if (shards := data.split_files(args.data, split))}
    train_labels = np.concatenate([label.numpy() for _, label, _ in plain_train] + [np.zeros(0, np.int64)])
    if train_labels.size == 0:
        raise UserError(f"{args.data}: no labelled training tiles")
    log.info("train cnn: %d training tiles, %d genres", train_labels.size, len(genres))
    present = np.unique(train_labels)
    weights = compute_class_weight("balanced", classes=present, y=train_labels)

    classifier = cnn.build_genre_cnn(spec, len(genres), adapted_normaliser(plain_train.map(lambda m, l, t: m)))
    if args.init_from:
        copied = cnn.copy_encoder_weights(load_embedder(args.init_from), classifier)
        log.info("train cnn: encoder initialised from %s (%d layers)", args.init_from, copied)
    import keras

    classifier.compile(optimizer=keras.optimizers.Adam(args.learning_rate), loss="sparse_categorical_crossentropy",
                       metrics=["accuracy"])
    validation = splits.get("validation")
    has_validation = validation is not None and any(True for _ in validation.take(1))
    as_pairs = lambda ds: ds.map(lambda mel, label, track_id: (mel, label))  # noqa: E731
    classifier.fit(as_pairs(train), validation_data=as_pairs(validation) if has_validation else None,
                   epochs=args.epochs, class_weight={int(c): float(w) for c, w in zip(present, weights)},
                   callbacks=_callbacks(staging, "val_loss" if has_validation else "loss", args.patience,
                                              args.budget_minutes),
                   verbose=args.verbose)
    metrics = {
        "genres": genres,
        "init_from": str(args.init_from) if args.init_from else None,
        "epochs_run": len(classifier.history.epoch),
        "test": evaluate_split(classifier, splits["test"], genres) if "test" in splits else {},
        "validation": evaluate_split(classifier, validation, genres) if has_validation else {},
    }
    classifier.save(staging / ModelFiles.CLASSIFIER)
    files.write_text(staging / ModelFiles.GENRES, json.dumps(genres, indent=2) + "\n")
    raw = cnn.embedding_outputs(classifier)
    centre = mean_embedding(raw, (m for m, _, _ in plain_train))
    return Trained({TILES: cnn.embedder_of(classifier, centre)}, metrics)


@dataclass
class TrainingTiles:
    """The catalogue's tiles for label-free training: held in memory (float16, grouped by track) when they
    take at most ``--tiles-in-memory-gb``, else read from the shards at each use (``tiles`` is then None)."""

    shards: list[str]
    spec: AudioSpec
    count: int
    tracks: int
    tiles: np.ndarray | None = None
    track_ids: np.ndarray | None = None

    @classmethod
    def of(cls, data_dir: str, spec: AudioSpec, memory_gb: float) -> "TrainingTiles":
        from model import data

        shards = data.all_tile_files(data_dir)
        if not shards:
            raise UserError(f"{data_dir}: no tile shards to train on (is it an ingest output?)")
        count, tracks = data.catalogue_tiles(data_dir)
        if data.tiles_gigabytes(count, spec) > memory_gb:
            return cls(shards, spec, count, tracks)
        tiles, track_ids = data.load_tiles(shards, spec)
        return cls(shards, spec, len(tiles), len(np.unique(track_ids)), tiles, track_ids)

    @property
    def streamed(self) -> bool:
        return self.tiles is None

    def sample(self, n: int, seed: int) -> np.ndarray:
        """``n`` tiles drawn at random in memory; streamed, up to ``n`` read from the starts of all shards (an
        equal share of each, fewer from a shard that holds fewer)."""
        from model import data

        if not self.streamed:
            return self.tiles[np.random.default_rng(seed).permutation(len(self.tiles))[:n]]
        each = -(-n // len(self.shards))
        return np.concatenate([tiles for shard in self.shards
                               for _, tiles in data.stream_tiles([shard], self.spec, each).take(1).as_numpy_iterator()])

    def pairs(self, *, batch_size: int, seed: int, statistics: tuple[np.ndarray, np.ndarray] | None):
        """The pair batches of :mod:`model.contrastive`, with the summary view when ``statistics`` (the summary
        features' ``(track ids, values)``) are given."""
        from model import contrastive, features

        if self.streamed:
            summaries = None if statistics is None else (
                statistics[0], features.standardised_by_track(*statistics, statistics[0]))
            # a pass over the shards gives at most count / 2 pairs: a larger buffer only waits for more passes
            return contrastive.streamed_pair_dataset(self.shards, self.spec, batch_size=batch_size, seed=seed,
                                                     summaries=summaries,
                                                     shuffle_pairs=min(contrastive.SHUFFLE_PAIRS, self.count))
        summaries = None if statistics is None else features.standardised_by_track(
            *statistics, self.track_ids[recipe.track_starts(self.track_ids)])
        return contrastive.pair_dataset(self.tiles, self.track_ids, batch_size=batch_size, seed=seed,
                                        summaries=summaries)

    def predict(self, model) -> tuple[np.ndarray, np.ndarray]:
        """``(model's output for every tile, the tiles' track ids)``, rows aligned."""
        from model import data

        if not self.streamed:
            return predict_in_chunks(model, self.tiles), self.track_ids
        outputs, track_ids = [], []
        progress = Progress(f"train: {model.name} over the shards", self.count, unit="tiles", every_s=30.0)
        for ids, tiles in data.stream_tiles(self.shards, self.spec).as_numpy_iterator():
            outputs.append(model.predict_on_batch(tiles.astype(np.float32)))
            track_ids.append(ids)
            if line := progress.add(len(ids)):
                log.info(line)
        return np.concatenate(outputs), np.concatenate(track_ids)


def train_contrastive(args: argparse.Namespace, spec: AudioSpec, staging: Path) -> Trained:
    """NT-Xent on pairs of tiles of one track, over every track of the catalogue (no labels needed)."""
    import keras

    from model import cnn, contrastive, features
    from model.whitening import whitened

    tiles = TrainingTiles.of(args.data, spec, args.tiles_in_memory_gb)
    if tiles.tracks < 2:
        raise UserError(f"{args.data}: contrastive training needs at least two tracks")
    epochs = args.epochs or contrastive_epochs(tiles.count, args.batch_size, args.steps_per_epoch)
    log.info("train contrastive: %d tiles of %d tracks%s, %d epochs of %d pair batches (at most %g minutes)",
             tiles.count, tiles.tracks, ", read from the shards" if tiles.streamed else "", epochs,
             args.steps_per_epoch, args.budget_minutes)
    feature_ids, values = features.load_features(args.data)
    statistics = (feature_ids, values) if args.summary_view > 0 else None
    sample = tf_constant_batches(tiles.sample(SAMPLE_TILES, args.seed))
    model, encoder = contrastive.build_contrastive(spec, adapted_normaliser(sample),
                                                   summary_dim=None if statistics is None else values.shape[1])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=contrastive.nt_xent(args.temperature, args.summary_view))
    pairs = tiles.pairs(batch_size=args.batch_size, seed=args.seed, statistics=statistics)
    model.fit(pairs, epochs=epochs, steps_per_epoch=args.steps_per_epoch,
              callbacks=_callbacks(staging, "loss", args.patience, args.budget_minutes), verbose=args.verbose)
    raw = cnn.embedding_outputs(encoder)
    centre = mean_embedding(raw, sample)
    unit = cnn.embedder_of(encoder, centre)
    unit_vectors, tile_track_ids = tiles.predict(unit)
    embedder = whitened(unit, per_track_mean(unit_vectors, tile_track_ids), WHITENED_DIMS)
    history = model.history.history["loss"]
    metrics = {"epochs_run": len(history), "epochs_planned": epochs, "budget_minutes": args.budget_minutes,
               "final_loss": float(history[-1]), "tracks": tiles.tracks, "summary_view": args.summary_view,
               "tiles": tiles.count, "tiles_read_from_shards": tiles.streamed,
               "whitened_dims": int(embedder.output.shape[-1])}
    if args.no_features:
        return Trained({TILES: embedder}, metrics)
    features_embedder = features.whitened_features_embedder(values, WHITENED_DIMS)
    metrics = {**metrics, "features": "summary statistics, whitened"}
    if args.no_genres:
        return Trained({TILES: embedder, FEATURES: features_embedder}, {**metrics, "genre_part": "off (--no-genres)"})
    return with_genre_part(Trained({TILES: embedder, FEATURES: features_embedder}, metrics),
                           args.data, whitened_outputs(embedder, unit_vectors), tile_track_ids, feature_ids,
                           predict_in_chunks(features_embedder, values), args.min_genre_tracks, args.genre_weight)


def whitened_outputs(embedder, unit_vectors: np.ndarray) -> np.ndarray:
    """What ``embedder`` (:func:`model.whitening.whitened`) gives for the tiles whose unit vectors these are: its
    last layer applied to them, so the tiles are not predicted (or, streamed, read) a second time."""
    return np.asarray(embedder.get_layer("whitening")(unit_vectors))


def with_genre_part(trained: Trained, data_dir: str, tile_vectors: np.ndarray, tile_track_ids: np.ndarray,
                    feature_ids: np.ndarray, features_half: np.ndarray, min_tracks: int | None = None,
                    weight: float | None = None) -> Trained:
    """``trained`` with a genre part fitted on the catalogue's labelled tracks outside its test split, or as
    it is (and why, in its metrics) when the labels are too few. The probe learns from every tile of a
    labelled track (the tile's vector joined with its track's statistics: ten examples per 30-s track rather
    than one) and is applied to the track's joined vector, as the embed job computes it."""
    from model import genre_part

    min_tracks = genre_part.MIN_GENRE_TRACKS if min_tracks is None else min_tracks
    labels, genres = genre_part.training_labels(data_dir, min_tracks)
    if len(genres) < 2:
        why = (f"off: fewer than two genres with {min_tracks} labelled tracks outside the test split "
               f"(found {genres})")
        log.info("train contrastive: genre part %s", why)
        return replace(trained, metrics={**trained.metrics, "genre_part": why})
    row_of = {int(t): i for i, t in enumerate(feature_ids)}
    labelled_tiles = np.array([int(t) in labels and int(t) in row_of for t in tile_track_ids])
    labelled_vectors, labelled_ids = tile_vectors[labelled_tiles], tile_track_ids[labelled_tiles]
    tile_joined = recipe.join_halves(labelled_vectors, features_half[[row_of[int(t)] for t in labelled_ids]])
    tile_labels = np.array([labels[int(t)] for t in labelled_ids])
    track_ids = np.unique(labelled_ids)
    track_joined = recipe.join_halves(per_track_mean(labelled_vectors, labelled_ids),
                                            features_half[[row_of[int(t)] for t in track_ids]])
    y = np.array([labels[int(t)] for t in track_ids])
    worth = genre_part.reliability(tile_joined, labelled_ids, track_ids, track_joined, y)
    counts = {"genres": genres, "labelled_tracks": len(track_ids), "labelled_tiles": len(tile_labels),
              "reliability": worth}
    if weight is None and worth == 0.0:
        why = f"off: the audio does not predict the labels of {len(track_ids)} tracks better than chance"
        log.info("train contrastive: genre part %s", why)
        return replace(trained, metrics={**trained.metrics, "genre_part": {**counts, "off": why}})
    weight = genre_part.weight_for(worth) if weight is None else weight
    embedder = genre_part.genre_part_embedder(tile_joined, tile_labels, genres, weight)
    predicted = np.asarray(embedder(track_joined, training=False))[:, track_joined.shape[1]:].argmax(axis=1)
    log.info("train contrastive: genre part on %d tiles of %d labelled tracks, %d genres; labels worth %.2f "
             "(cross-validated), so %.2f of the cosine", len(tile_labels), len(track_ids), len(genres), worth, weight)
    metrics = {**trained.metrics, "genre_part": {**counts, "weight": weight,
                                                 "training_accuracy": float(np.mean(predicted == y))}}
    return replace(trained, models={**trained.models, GENRES: embedder}, metrics=metrics, genres=genres)


def predict_in_chunks(model, tiles: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """``model`` over float16 ``tiles`` a chunk at a time (float32 copies of fma_small's tiles would take 5 GB)."""
    return np.concatenate([model.predict_on_batch(tiles[i:i + chunk].astype(np.float32))
                           for i in range(0, len(tiles), chunk)])


def per_track_mean(vectors: np.ndarray, track_ids: np.ndarray) -> np.ndarray:
    """Mean vector of each track (rows grouped by sorted track id)."""
    _, inverse, counts = np.unique(track_ids, return_inverse=True, return_counts=True)
    sums = np.zeros((len(counts), vectors.shape[1]), np.float64)
    np.add.at(sums, inverse, vectors)
    return (sums / counts[:, None]).astype(np.float32)


def tf_constant_batches(tiles: np.ndarray, batch: int = 256):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(tiles.astype(np.float32)).batch(batch)


def train_autoencoder(args: argparse.Namespace, spec: AudioSpec, staging: Path) -> Trained:
    """The original study's conv autoencoder on 32-frame crops; reconstruction loss; label-free."""
    import keras

    from model import autoencoder, data, features

    train = data.tile_dataset(data.tile_files(args.data, "train"), spec, labels=_all_tracks(args.data),
                              batch_size=args.batch_size, shuffle=True, seed=args.seed)
    crops = train.unbatch().map(lambda mel, label, track_id: autoencoder.random_crops(mel)).batch(args.batch_size)
    model, encoder = autoencoder.build_autoencoder(spec, adapted_normaliser(crops))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=autoencoder.reconstruction_loss)
    validation = None
    if shards := data.split_files(args.data, "validation"):
        validation = data.tile_dataset(shards, spec, labels=_all_tracks(args.data), batch_size=args.batch_size,
                                       shuffle=False).unbatch().map(
            lambda mel, label, track_id: (autoencoder.random_crops(mel), 0.0)).batch(args.batch_size)
    model.fit(crops.map(lambda c: (c, 0.0)), validation_data=validation, epochs=args.epochs,
              callbacks=_callbacks(staging, "val_loss" if validation else "loss", args.patience, args.budget_minutes),
              verbose=args.verbose)
    latents = np.concatenate([encoder(c, training=False).numpy() for c in crops])
    mean, kernel = features.pca_components(latents)
    history = model.history.history["loss"]
    metrics = {"epochs_run": len(history), "final_reconstruction_mse": float(history[-1])}
    return Trained({TILES: autoencoder.tile_embedder(spec, encoder, mean, kernel)}, metrics)


def _all_tracks(data_dir: str) -> dict[int, int]:
    """Every accepted track labelled 0: the label-free trainers read tiles through the same parser."""
    table = files.read_parquet(files.join(data_dir, DataFiles.TRACKS), ["track_id", "status"],
                               made_by="wavelist ingest").to_pylist()
    return {row["track_id"]: 0 for row in table if row["status"] == "ok"}


def train_features(args: argparse.Namespace, spec: AudioSpec, staging: Path) -> Trained:
    """Standardised librosa summary statistics, PCA to 64 dims; fitted on every track, no labels."""
    from model import features

    track_ids, values = features.load_features(args.data)
    if len(track_ids) < 2:
        raise UserError(f"{args.data}: the features baseline needs at least two tracks")
    return Trained({FEATURES: features.features_embedder(values)}, {"tracks": int(len(track_ids))})


TRAINERS: dict[str, Callable[[argparse.Namespace, AudioSpec, Path], Trained]] = {
    "cnn": train_cnn, "contrastive": train_contrastive, "autoencoder": train_autoencoder, "features": train_features,
}


def files_digest(paths: list[str | Path]) -> str:
    """First 16 hex digits of the SHA-256 of the files' bytes, one after the other (the files that exist)."""
    digest = hashlib.sha256()
    for path in paths:
        if files.exists(path):
            digest.update(files.read_bytes(path))
    return digest.hexdigest()[:16]


def load_embedder(model_dir: str | Path, file: str = ModelFiles.EMBEDDER):
    """The exported input -> vector Keras model of ``model_dir`` (``file``: which of its embedders)."""
    import keras

    path = Path(model_dir) / file
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: is {model_dir} an output of wavelist train?")
    return keras.saving.load_model(path, compile=False)


def part_dims(trained: Trained) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The parts of the vectors the embed job makes with this model, and the length of each (a part declared
    without one, :mod:`schemas.vector_parts`: one per genre)."""
    dims = tuple(len(trained.genres or []) if vector_parts.part(name).dim is None
                 else int(model.output.shape[-1]) for name, model in trained.models.items())
    return trained.parts, dims


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Train the kind asked for and export it; returns the metrics also written to metrics.json."""
    args = parse_args(argv)
    inputs = [args.data, args.init_from and str(args.init_from)]
    files.check_output(args.out, overwrite=args.overwrite, kind="train", inputs=inputs)
    files.require_complete(args.data, made_by="wavelist ingest")
    with files.read_locally(args.data) as data_dir:  # a gs:// DATA is copied here: tf.data reads it locally
        args.data = data_dir
        spec = files.load_audio_spec(args.data, made_by="wavelist ingest")

        import keras
        import tensorflow as tf

        keras.utils.set_random_seed(args.seed)
        with files.staged_output(args.out, overwrite=args.overwrite, kind="train", inputs=inputs) as staging_name, \
                files.written_locally(staging_name) as local:
            staging = Path(local)
            trained = TRAINERS[args.model](args, spec, staging)
            for name, model in trained.models.items():
                model.save(staging / vector_parts.embedder_file(trained.parts, name))
            files.save_audio_spec(staging, spec)
            metrics = {"kind": args.model, **trained.metrics}
            files.write_text(staging / ModelFiles.METRICS, json.dumps(metrics, indent=2) + "\n")
            # every embedder counts: the same tile model with and without a genre part makes other vectors
            digest = files_digest([staging / f for f in vector_parts.embedder_files()])
            parts, dims = part_dims(trained)
            info = ModelInfo(model_id=f"{args.model}-{digest}", kind=args.model, parts=parts, part_dims=dims,
                             genres=trained.genres,
                             versions={"tensorflow": tf.__version__, "keras": keras.__version__})
            files.write_text(staging / ModelFiles.INFO, info.to_json())
    log.info("train %s -> %s", args.model, args.out)
    return metrics


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run()
