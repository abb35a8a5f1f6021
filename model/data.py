"""tf.data input from the ingest job's TFRecord shards, parsed with the spec in ``schemas``."""
from __future__ import annotations

import glob
import os
from pathlib import Path

import pyarrow.parquet as pq
import tensorflow as tf

from schemas.audio import AudioSpec
from schemas.tile_example import tf_decode_mel, tf_feature_spec

TILES_FOLDER = "tiles"


def tile_files(data_dir: str | Path, split: str) -> list[str]:
    """The GZIP TFRecord shards of ``split`` under ``DATA/tiles``."""
    files = sorted(glob.glob(os.path.join(str(data_dir), TILES_FOLDER, f"{split}-*.tfrecord.gz")))
    if not files:
        raise FileNotFoundError(f"no {split} tiles under {data_dir}/{TILES_FOLDER}: is it an ingest output?")
    return files


def track_labels(data_dir: str | Path) -> tuple[dict[int, int], list[str]]:
    """``{track_id: genre index}`` for accepted tracks with a genre, and the sorted genre names."""
    table = pq.read_table(Path(data_dir) / "tracks.parquet", columns=["track_id", "genre", "status"]).to_pylist()
    ok = [row for row in table if row["status"] == "ok" and row["genre"]]
    genres = sorted({row["genre"] for row in ok})
    index = {genre: i for i, genre in enumerate(genres)}
    return {row["track_id"]: index[row["genre"]] for row in ok}, genres


def tile_dataset(
    files: list[str],
    spec: AudioSpec,
    *,
    labels: dict[int, int],
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
) -> tf.data.Dataset:
    """Batches of ``(mel [B, n_mels, tile_frames], label [B], track_id [B])``; unlabelled tiles dropped."""
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(list(labels), tf.int64), tf.constant(list(labels.values()), tf.int64)
        ),
        default_value=-1,
    )
    feature_spec = tf_feature_spec()

    def parse(serialized):
        parsed = tf.io.parse_single_example(serialized, feature_spec)
        label = table.lookup(parsed["track_id"])
        return tf_decode_mel(parsed["mel"], spec), label, parsed["track_id"]

    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP", num_parallel_reads=tf.data.AUTOTUNE)
    if shuffle:
        dataset = dataset.shuffle(4096, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)
    dataset = dataset.filter(lambda mel, label, track_id: label >= 0)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
