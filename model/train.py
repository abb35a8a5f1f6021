"""Train the genre CNN on the ingest job's tiles and export the embedding model.

    wavelist train --data DATA --out MODEL [--epochs 30]

MODEL holds ``embedder.keras`` (tile -> 64-d unit vector), ``classifier.keras``, ``genres.json``,
``audio_spec.json``, ``model_info.json``, ``metrics.json``, ``history.csv`` and TensorBoard ``logs/``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from beam_jobs import common
from schemas.audio import AudioSpec

log = logging.getLogger(__name__)
EMBEDDER_FILE = "embedder.keras"
MODEL_INFO_FILE = "model_info.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="wavelist train", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="output folder of wavelist ingest")
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--patience", type=int, default=5, help="early stopping on validation loss")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing model folder")
    parser.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2), help="Keras progress output")
    return parser.parse_args(argv)


def track_level_predictions(probabilities: np.ndarray, labels: np.ndarray, track_ids: np.ndarray):
    """Mean tile probabilities per track: ``(track_ids, true labels, predicted labels)``."""
    sums: dict[int, np.ndarray] = defaultdict(lambda: 0)
    truth: dict[int, int] = {}
    for p, y, t in zip(probabilities, labels, track_ids):
        sums[int(t)] = sums[int(t)] + p
        truth[int(t)] = int(y)
    ids = np.array(sorted(sums), dtype=np.int64)
    return ids, np.array([truth[t] for t in ids]), np.array([int(np.argmax(sums[t])) for t in ids])


def evaluate_split(model, dataset, genres: list[str]) -> dict[str, Any]:
    """Track-level accuracy, per-genre precision/recall/F1 and confusion matrix of ``model``."""
    from sklearn.metrics import classification_report, confusion_matrix

    probabilities, labels, track_ids = [], [], []
    for mel, label, track_id in dataset:
        probabilities.append(model(mel, training=False).numpy())
        labels.append(label.numpy())
        track_ids.append(track_id.numpy())
    if not probabilities:
        return {"tracks": 0}
    ids, truth, predicted = track_level_predictions(
        np.concatenate(probabilities), np.concatenate(labels), np.concatenate(track_ids)
    )
    present = list(range(len(genres)))
    report = classification_report(
        truth, predicted, labels=present, target_names=genres, output_dict=True, zero_division=0
    )
    return {
        "tracks": int(len(ids)),
        "accuracy": float(np.mean(truth == predicted)),
        "per_genre": {g: {k: float(v) for k, v in report[g].items()} for g in genres},
        "confusion_matrix": confusion_matrix(truth, predicted, labels=present).tolist(),
    }


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def load_embedder(model_dir: str | Path):
    """The exported tile -> unit vector Keras model of ``model_dir``."""
    import keras

    path = Path(model_dir) / EMBEDDER_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: is {model_dir} an output of wavelist train?")
    return keras.saving.load_model(path, compile=False)


def model_info(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / MODEL_INFO_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: is {model_dir} an output of wavelist train?")
    return json.loads(path.read_text())


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Train, evaluate on the test split, export; returns the metrics also written to metrics.json."""
    args = parse_args(argv)
    common.check_output(args.out, overwrite=args.overwrite)
    spec = AudioSpec.load(args.data)

    import keras
    import tensorflow as tf
    from sklearn.utils.class_weight import compute_class_weight

    from model import cnn, data

    keras.utils.set_random_seed(args.seed)
    labels, genres = data.track_labels(args.data)
    if len(genres) < 2:
        raise ValueError(f"{args.data}: the genre CNN needs at least two genres, found {genres}")
    train_files = data.tile_files(args.data, "train")
    train = data.tile_dataset(train_files, spec, labels=labels, batch_size=args.batch_size, shuffle=True,
                              seed=args.seed)
    splits = {}
    for split in ("validation", "test"):
        try:
            splits[split] = data.tile_dataset(data.tile_files(args.data, split), spec, labels=labels,
                                              batch_size=args.batch_size, shuffle=False)
        except FileNotFoundError:
            splits[split] = None

    train_labels = np.concatenate([label.numpy() for _, label, _ in train] + [np.zeros(0, np.int64)])
    if train_labels.size == 0:
        raise ValueError(f"{args.data}: no labelled training tiles")
    log.info("train: %d training tiles, %d genres", train_labels.size, len(genres))
    present = np.unique(train_labels)
    weights = compute_class_weight("balanced", classes=present, y=train_labels)
    class_weight = {int(c): float(w) for c, w in zip(present, weights)}

    normaliser = keras.layers.Normalization(axis=1, name="per_band_norm")
    normaliser.adapt(train.map(lambda mel, label, track_id: mel).take(50))
    classifier = cnn.build_genre_cnn(spec, len(genres), normaliser)
    classifier.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                       metrics=["accuracy"])

    with common.staged_output(args.out, overwrite=args.overwrite) as staging_name:
        staging = Path(staging_name)
        validation = splits["validation"]
        has_validation = validation is not None and any(True for _ in validation.take(1))
        monitor = "val_loss" if has_validation else "loss"
        callbacks = [
            keras.callbacks.EarlyStopping(monitor=monitor, patience=args.patience, restore_best_weights=True),
            keras.callbacks.ModelCheckpoint(str(staging / "checkpoint.keras"), monitor=monitor, save_best_only=True),
            keras.callbacks.CSVLogger(str(staging / "history.csv")),
            keras.callbacks.TensorBoard(log_dir=str(staging / "logs")),
        ]
        as_pairs = lambda ds: ds.map(lambda mel, label, track_id: (mel, label))  # noqa: E731
        classifier.fit(
            as_pairs(train),
            validation_data=as_pairs(validation) if has_validation else None,
            epochs=args.epochs,
            class_weight=class_weight,
            callbacks=callbacks,
            verbose=args.verbose,
        )
        (staging / "checkpoint.keras").unlink(missing_ok=True)

        metrics = {
            "kind": "cnn",
            "genres": genres,
            "epochs_run": len(classifier.history.epoch),
            "test": evaluate_split(classifier, splits["test"], genres) if splits["test"] is not None else {},
            "validation": evaluate_split(classifier, validation, genres) if has_validation else {},
        }
        classifier.save(staging / "classifier.keras")
        raw = cnn.embedding_outputs(classifier)
        centre = np.mean(np.concatenate([raw(mel, training=False).numpy() for mel, _, _ in train]), axis=0)
        cnn.embedder_of(classifier, centre).save(staging / EMBEDDER_FILE)
        spec.save(staging)
        (staging / "genres.json").write_text(json.dumps(genres, indent=2) + "\n")
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        info = {"model_id": f"cnn-{file_digest(staging / EMBEDDER_FILE)}", "kind": "cnn", "embedding_dim": 64,
                "tensorflow": tf.__version__, "keras": keras.__version__}
        (staging / MODEL_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    log.info("train: test accuracy %s on %s tracks -> %s", metrics["test"].get("accuracy"),
             metrics["test"].get("tracks"), args.out)
    return metrics


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run()
