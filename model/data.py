"""tf.data input from the ingest job's TFRecord shards, parsed with the spec in ``schemas``."""
from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from schemas.audio import AudioSpec
from schemas.errors import UserError
from schemas.layout import SPLITS, DataFiles
from schemas.tile_example import TILE_COMPRESSION_TF, TILE_FILE_SUFFIX, TILES_FOLDER, tf_decode_mel, tf_feature_spec
from storage import files



def tile_files(data_dir: str | Path, split: str) -> list[str]:
    """The TFRecord shards of ``split`` under ``DATA/tiles``."""
    shards = sorted(glob.glob(os.path.join(str(data_dir), TILES_FOLDER, f"{split}-*{TILE_FILE_SUFFIX}")))
    if not shards:
        raise FileNotFoundError(f"no {split} tiles under {data_dir}/{TILES_FOLDER}: is it an ingest output?")
    return shards


def track_labels(data_dir: str | Path) -> tuple[dict[int, int], list[str]]:
    """``{track_id: genre index}`` for accepted tracks with a genre, and the sorted genre names."""
    table = files.read_parquet(files.join(data_dir, DataFiles.TRACKS), ["track_id", "genre", "status"],
                               made_by="wavelist ingest").to_pylist()
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
    augmented: bool = False,
) -> tf.data.Dataset:
    """Batches of ``(mel [B, n_mels, tile_frames], label [B], track_id [B])``; unlabelled tiles dropped.

    ``augmented`` applies :func:`augment` to every tile (training only)."""
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

    dataset = tf.data.TFRecordDataset(files, compression_type=TILE_COMPRESSION_TF, num_parallel_reads=tf.data.AUTOTUNE)
    if shuffle:
        dataset = dataset.shuffle(4096, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)
    dataset = dataset.filter(lambda mel, label, track_id: label >= 0)
    if augmented:
        dataset = dataset.map(lambda mel, label, track_id: (augment(mel), label, track_id),
                              num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def all_tile_files(data_dir: str | Path) -> list[str]:
    """Every split's tile shards (label-free training may learn from the whole catalogue)."""
    return [f for split in SPLITS for f in split_files(data_dir, split)]


def split_files(data_dir: str | Path, split: str) -> list[str]:
    """:func:`tile_files` of ``split``, or an empty list when the split has no shards."""
    try:
        return tile_files(data_dir, split)
    except FileNotFoundError:
        return []


def catalogue_tiles(data_dir: str | Path) -> tuple[int, int]:
    """``(tiles, tracks)`` the ingest job wrote for the accepted tracks (``tracks.parquet``'s ``n_tiles``),
    without reading a shard."""
    rows = files.read_parquet(files.join(data_dir, DataFiles.TRACKS), ["n_tiles", "status"],
                              made_by="wavelist ingest").to_pylist()
    counts = [row["n_tiles"] for row in rows if row["status"] == "ok" and row["n_tiles"]]
    return int(sum(counts)), len(counts)


def tiles_gigabytes(n_tiles: int, spec: AudioSpec) -> float:
    """The memory ``n_tiles`` take as :func:`load_tiles` holds them (float16)."""
    return n_tiles * spec.n_mels * spec.tile_frames * np.dtype(np.float16).itemsize / 1e9


def parsed_tile_batches(files: list[str], spec: AudioSpec, batch: int = 1024, *,
                        parallel_reads: bool = False) -> tf.data.Dataset:
    """Batches of ``(track_ids [B] int64, tile_indices [B] int64, tiles [B, n_mels, frames] float16)`` parsed
    from the tile records of ``files``: one file after the other, each in its records' order, or with
    ``parallel_reads`` several files at once (faster; the order is then the reads')."""
    feature_spec = tf_feature_spec()

    def parse(serialized):
        records = tf.io.parse_example(serialized, feature_spec)
        mel = tf.io.decode_raw(records["mel"], tf.float16, little_endian=True)
        return records["track_id"], records["tile_index"], tf.reshape(mel, (-1, *spec.tile_shape))

    dataset = tf.data.TFRecordDataset(files, compression_type=TILE_COMPRESSION_TF,
                                      num_parallel_reads=tf.data.AUTOTUNE if parallel_reads else None)
    return dataset.batch(batch).map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def stream_tiles(files: list[str], spec: AudioSpec, batch: int = 1024) -> tf.data.Dataset:
    """Batches of ``(track_ids [B] int64, tiles [B, n_mels, frames] float16)`` read from ``files`` one after
    the other, each file's records in their order (a track's tiles, written together, stay together), for
    catalogues whose tiles do not fit in memory."""
    return parsed_tile_batches(files, spec, batch).map(lambda track_ids, tile_indices, tiles: (track_ids, tiles))


def load_tiles(files: list[str], spec: AudioSpec) -> tuple[np.ndarray, np.ndarray]:
    """All tiles of ``files`` in memory, grouped by track: ``(tiles [n, n_mels, frames] float16,
    track_ids [n])`` sorted by (track, tile index). float16 keeps fma_small's 80,000 tiles at 2.6 GB."""
    tiles, keys = [], []
    for track_ids, tile_indices, batch in parsed_tile_batches(files, spec, parallel_reads=True).as_numpy_iterator():
        tiles.append(batch)
        keys.append(np.stack([track_ids, tile_indices], axis=1))
    if not tiles:
        raise UserError("no tiles to train on")
    tiles_array, keys_array = np.concatenate(tiles), np.concatenate(keys)
    order = np.lexsort((keys_array[:, 1], keys_array[:, 0]))
    return tiles_array[order], keys_array[order, 0]


def augment(mel: tf.Tensor, seed: tf.Tensor | None = None) -> tf.Tensor:
    """Spectrogram augmentation of one tile (dB values): random gain of +-6 dB, one frequency mask of up
    to 16 mel bands and one time mask of up to 16 frames (filled with the tile's mean), a random roll in time."""
    n_mels, frames = mel.shape
    mel = mel + tf.random.uniform([], -6.0, 6.0)
    mean = tf.reduce_mean(mel)

    def mask(length: int, width_max: int, axis: int) -> tf.Tensor:
        width = tf.random.uniform([], 0, width_max + 1, dtype=tf.int32)
        start = tf.random.uniform([], 0, length - width + 1, dtype=tf.int32)
        positions = tf.range(length)
        inside = (positions >= start) & (positions < start + width)
        return tf.expand_dims(inside, 1 - axis) if axis == 0 else tf.expand_dims(inside, 0)

    band = mask(n_mels, 16, 0)  # [n_mels, 1]
    span = mask(frames, 16, 1)  # [1, frames]
    mel = tf.where(band | span, mean, mel)
    return tf.roll(mel, shift=tf.random.uniform([], 0, frames, dtype=tf.int32), axis=1)
