"""Beam job 2, embed: tiles -> model -> one unit vector per track -> neighbour tables and map.

    wavelist embed --data DATA --model MODEL --out TABLES [--k 50] [beam flags]

(``wavelist add`` extends existing tables with new audio: beam_jobs/add_tracks.py.)

Writes ``TABLES/embeddings.parquet``, ``neighbours.parquet``, ``tracks.parquet``, ``map3d.parquet`` and
``summary.json``; the folder appears only when complete. Embeddings and neighbours carry the model id
and audio parameters in their Parquet metadata.
"""
from __future__ import annotations

import io
import json
import logging
import os
import posixpath
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.utils import shared

from beam_jobs import common
from core import vectors as recipe
from core.neighbours import (DIFFUSION_NEIGHBOURS, DIFFUSION_POWER, MAP_SAMPLE, block_of, diffusion_weights, merge_block_top_k, merge_top_k, nearest_rows,
                             smallest_by_rank, sum_by_track, top_k_faiss, tsne_coordinates)
from core.progress import Progress
from schemas import tables
from schemas.flags import real, whole
from schemas.audio import AudioSpec
from schemas.errors import UserError
from schemas.layout import SUMMARY, DataFiles, ModelFiles, TableFiles
from schemas.model_info import FEATURES, GENRES, TILES, ModelInfo
from schemas.tile_example import TILE_COMPRESSION_BEAM, TILE_FILE_SUFFIX, TILES_FOLDER, decode_tile
from storage import files

log = logging.getLogger(__name__)
NEIGHBOUR_REPORT = TableFiles.NEIGHBOUR_REPORT
EXACT_LIMIT = 200_000  # see benchmarks/RESULTS.md: above this, exact all-pairs costs far more than the index


class EmbedOptions(PipelineOptions):
    """The flags of ``wavelist embed``."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--data", help="output folder of wavelist ingest (required)")
        parser.add_argument("--k", type=whole(1, 10_000), default=50, help="neighbours kept per track")
        parser.add_argument("--neighbours", choices=("auto", "exact", "approximate"), default="auto",
                            help=f"exact block top-k, or a faiss IVF index; auto: exact up to "
                            f"{EXACT_LIMIT:,} tracks")
        parser.add_argument("--nprobe", type=whole(1, 1_000_000), default=None,
                            help="approximate: inverted lists probed per query (default: the fewest that reach "
                            "--target-recall on 1,000 sampled tracks)")
        parser.add_argument("--target-recall", "--target_recall", dest="target_recall",
                            type=real(0.01, 1.0), default=0.95,
                            help="approximate: recall@10 against exact search that the automatic --nprobe must reach")
        parser.add_argument("--diffusion", type=whole(0, 10_000), default=DIFFUSION_NEIGHBOURS, metavar="M",
                            help="graph diffusion: each vector becomes the weighted mean of itself and its M "
                            f"nearest before the neighbour tables are made (default {DIFFUSION_NEIGHBOURS}; 0: off)")
        parser.add_argument("--diffusion-power", "--diffusion_power", dest="diffusion_power",
                            type=real(0.0, 100.0),
                            default=None, help="the diffusion's weight of a neighbour: its cosine to this power "
                            f"(default {DIFFUSION_POWER:g})")
        parser.add_argument("--extra-vectors", "--extra_vectors", dest="extra_vectors",
                            help="Parquet file or folder (track_id, vector) of an external embedding (e.g. "
                            "MusiCNN, CLAP, your own model) to join to every track's vector as one more part")
        parser.add_argument("--extra-weight", "--extra_weight", dest="extra_weight", type=real(0.0, 1.0), default=0.5,
                            help="the extra vectors' share of each cosine, between 0 and 1 (default 0.5)")


TENSORFLOW_THREADS = 1  # as ingest's BLAS limit: the runner already runs one worker process per core
_tensorflow_threads: list[int] = []


def limit_tensorflow_threads(threads: int = TENSORFLOW_THREADS) -> bool:
    """Size this process's TensorFlow thread pools (intra-op and inter-op) to ``threads``, once, before the
    first model runs. False where TensorFlow had already started its pools (e.g. a test process that trained
    a model): they stay as they are. See benchmarks/RESULTS.md for the measured effect."""
    if _tensorflow_threads:
        return _tensorflow_threads[0] == threads
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow refuses once its runtime started
        log.info("TensorFlow already started in this process: its thread pools keep their size")
        return False
    _tensorflow_threads.append(threads)
    return True


class EmbedBatchFn(beam.DoFn):
    """A batch of ``(track_id, (order, model input))`` -> ``(track_id, (order, vector))``; the model loads
    once per process. Every batch is padded to ``batch_size`` rows: the CPU kernels give bit-identical
    rows for one batch shape wherever a row sits, but not across shapes, and the runner sizes batches by
    timing, so without the padding two runs would differ in the last bits (and t-SNE would amplify it)."""

    def __init__(self, model_dir: str, model_handle: shared.Shared, file: str = ModelFiles.EMBEDDER,
                 batch_size: int = 256, progress: tuple[int | None, str, float] = (None, "model inputs", 10.0)):
        self._model_dir = model_dir
        self._model_handle = model_handle
        self._file = file
        self._batch_size = batch_size
        self._share, self._unit, self._every_s = progress  # what this worker expects to embed, its unit, how often
        self._inputs = Metrics.counter(common.METRICS_NAMESPACE, "embed_model_inputs")

    def setup(self) -> None:
        with common.quiet_native_stderr():
            import keras  # the embedder files are Keras models; the jobs never import the trainer

        limit_tensorflow_threads()

        class _Holder:  # Shared needs a weak-referenceable object
            def __init__(self, model):
                self.model = model

        def load() -> _Holder:
            try:
                path = Path(files.local_folder(self._model_dir)) / self._file
                return _Holder(keras.saving.load_model(path, compile=False))
            except (ValueError, OSError, TypeError) as error:  # e.g. Keras' safe mode refusing a Lambda layer
                first = str(error).strip().split(". ")[0]
                raise common.InputError(f"{files.join(self._model_dir, self._file)}: Keras cannot load this "
                                        f"model ({first}); retrain it with wavelist train") from error

        self._model = self._model_handle.acquire(load).model
        self._progress = Progress(f"embed worker {os.getpid()}", self._share, unit=self._unit, every_s=self._every_s)

    def process(self, batch: list[tuple[int, tuple[int, np.ndarray]]]) -> Iterator[tuple[int, tuple[int, np.ndarray]]]:
        inputs = np.stack([x for _, (_, x) in batch])
        padded = np.zeros((max(self._batch_size, len(inputs)), *inputs.shape[1:]), inputs.dtype)
        padded[: len(inputs)] = inputs
        vectors = np.asarray(self._model(padded, training=False))[: len(inputs)]
        self._inputs.inc(len(batch))
        line = self._progress.add(len(batch))
        if line:
            print(line, file=sys.stderr, flush=True)
        for (track_id, (order, _)), vector in zip(batch, vectors):
            yield track_id, (order, vector)


class OrderedMean(beam.CombineFn):
    """A track's part vector (:func:`core.vectors.part_vector`) from its ``(order, vector)`` model outputs,
    summed in ``order``: the same bits however the runner splits and merges them (a track has tens of tiles,
    so the accumulator stays small)."""

    def create_accumulator(self) -> list:
        return []

    def add_input(self, accumulator: list, part) -> list:
        accumulator.append(part)
        return accumulator

    def merge_accumulators(self, accumulators) -> list:
        return [part for accumulator in accumulators for part in accumulator]

    def extract_output(self, accumulator: list) -> np.ndarray:
        parts = sorted(accumulator, key=lambda part: part[0])
        return recipe.part_vector(np.stack([v for _, v in parts]))


class EmbedTracks(beam.PTransform):
    """``(track_id, (order, model input))`` -> ``(track_id, unit vector)``: the part vector of a track's inputs
    (its tiles in tile order, or its one row of summary features; :func:`core.vectors.part_vector`).

    Each worker says every ``every_s`` seconds how many ``unit`` it embedded, of its share of ``total`` (the
    inputs shared among ``workers`` local workers; unknown on a remote runner: then only counts and pace)."""

    def __init__(self, model_dir: str, batch_size: int, file: str = ModelFiles.EMBEDDER, *, total: int | None = None,
                 workers: int | None = None, unit: str = "model inputs", every_s: float = 10.0):
        super().__init__()
        self._model_dir = model_dir
        self._batch_size = batch_size
        self._file = file
        self._progress = (-(-total // workers) if total and workers else None, unit, every_s)

    def expand(self, inputs):
        return (
            inputs
            # full batches: EmbedBatchFn pads every batch to batch_size rows (one shape, the same bits), so a
            # batch of 16 cost as much as one of 256 (issue 21: 16x the model's work per tile)
            | "Batch" >> beam.BatchElements(min_batch_size=self._batch_size, max_batch_size=self._batch_size)
            | "Model" >> beam.ParDo(EmbedBatchFn(self._model_dir, shared.Shared(), self._file, self._batch_size,
                                               self._progress))
            | "PartVector" >> beam.CombinePerKey(OrderedMean())
        )


UNITS = {TILES: "tiles", FEATURES: "tracks", GENRES: "tracks"}  # what the model takes, one input each


def model_input_count(data: str, part: str) -> int:
    """How many inputs the model takes for ``part`` of DATA's accepted tracks: their tiles, or one each."""
    tracks = files.read_parquet(files.join(data, DataFiles.TRACKS), ["n_tiles", "status"], made_by="wavelist ingest")
    ok = tracks.column("status").to_numpy(zero_copy_only=False) == "ok"
    return int(tracks.column("n_tiles").to_numpy(zero_copy_only=False)[ok].sum()) if part == TILES else int(ok.sum())


def read_model_inputs(pipeline, data: str, spec: AudioSpec, part: str, expected: int):
    """``(track_id, (order, array))`` pairs the model takes: every log-mel tile (in tile order), of which there
    must be ``expected`` (:func:`model_input_count`), or each track's summary features (order 0)."""
    if part == FEATURES:
        names = tables.summary_feature_names()
        return (
            pipeline
            | "ReadFeatures" >> beam.io.ReadFromParquet(posixpath.join(data, DataFiles.FEATURES))
            | "FeatureVector" >> beam.Map(
                lambda row: (row["track_id"], (0, np.array([row[n] for n in names], np.float32))))
        )
    shards = sorted(m.path for m in FileSystems.match(
        [posixpath.join(data, TILES_FOLDER, f"*{TILE_FILE_SUFFIX}")])[0].metadata_list)
    tiles = (
        pipeline
        | "TileShards" >> beam.Create(shards)
        | "SpreadShards" >> beam.Reshuffle()
        | "ReadTiles" >> beam.FlatMap(read_tile_shard)
        | "DecodeTiles" >> beam.Map(lambda record: decode_tile(record, spec))
    )
    _ = (tiles
         | "CountTiles" >> beam.combiners.Count.Globally()
         | "CheckTileCount" >> beam.Map(check_tile_count, expected, posixpath.join(data, TILES_FOLDER)))
    return tiles | "TrackAndMel" >> beam.Map(lambda tile: (tile.track_id, (tile.tile_index, tile.mel)))


def check_tile_count(found: int, expected: int, folder: str) -> None:
    """Every tile ``tracks.parquet`` counts must have been read: an uncompressed shard cut at a record boundary
    reads as a shorter valid one, so the count is what finds it."""
    if found != expected:
        raise common.InputError(f"{folder} holds {found} tiles where tracks.parquet counts {expected}: a tile shard "
                                "is damaged or missing; rerun wavelist ingest")


def read_tile_shard(path: str) -> Iterator[bytes]:
    """The records of one TFRecord shard, their CRCs checked; a truncated or damaged shard raises an
    :class:`~beam_jobs.common.InputError` that names it (Beam's reader would not say which file)."""
    from apache_beam.io.tfrecordio import _TFRecordUtil

    with FileSystems.open(path, compression_type=TILE_COMPRESSION_BEAM) as handle:
        while True:
            try:
                record = _TFRecordUtil.read_record(handle)
            except Exception as error:  # EOFError, zlib.error, ValueError (CRC): all mean a damaged file
                reason = f"{type(error).__name__}: {str(error)[:120]}"  # its message may quote the record
                raise common.InputError(f"{path} is a damaged tile shard ({reason}); rerun wavelist ingest") from error
            if record is None:
                return
            yield record


def join_halves(track_id: int, halves: dict[str, list[np.ndarray]]):
    """A ``tiles+features`` track: :func:`core.vectors.join_halves` of its two halves. A track with one half
    only (no tiles, or no summary row) is counted and left out."""
    if halves[TILES] and halves[FEATURES]:
        yield track_id, recipe.join_halves(halves[TILES][0], halves[FEATURES][0])
    else:
        Metrics.counter(common.METRICS_NAMESPACE, "tracks_missing_a_half").inc()


class TrackVectors(beam.PTransform):
    """The tracks of an ingest output folder -> ``(track_id, unit vector)``, as the model's input kind
    says: the mean of its tile vectors (``tiles``), its summary statistics (``features``), both halves
    joined per track (``tiles+features``), and then the genre part the joined vector predicts
    (``tiles+features+genres``)."""

    def __init__(self, data: str, model_dir: str, spec: AudioSpec, info: ModelInfo, batch_size: int):
        super().__init__()
        self._data, self._model_dir, self._spec = data, model_dir, spec
        self._info, self._batch_size = info, batch_size

    def expand(self, pipeline):
        workers = common.local_workers(pipeline.pipeline)
        counts = {kind: model_input_count(self._data, kind) for kind in (TILES, FEATURES) if self._info.has(kind)}
        log.info("embed: the model takes %s", " and ".join(f"{n:,} {UNITS[k]}" for k, n in counts.items()))

        def embed(kind: str, file: str):
            total = counts.get(kind, counts.get(FEATURES))  # genres: one input per track
            return EmbedTracks(self._model_dir, self._batch_size, file, total=total, workers=workers,
                               unit=UNITS[kind])

        def part(kind: str, file: str = ModelFiles.EMBEDDER):
            return (read_model_inputs(pipeline, self._data, self._spec, kind, counts[kind])
                    | f"Embed{kind.title()}" >> embed(kind, file))

        if not (self._info.has(TILES) and self._info.has(FEATURES)):
            return part(self._info.parts[0])
        halves = {TILES: part(TILES), FEATURES: part(FEATURES, ModelFiles.FEATURES_EMBEDDER)}
        joined = halves | "JoinHalves" >> beam.CoGroupByKey() | "Concatenate" >> beam.FlatMapTuple(join_halves)
        if not self._info.has(GENRES):
            return joined
        return (joined
                | "AsModelInput" >> beam.MapTuple(lambda track_id, vector: (track_id, (0, vector)))
                | "EmbedGenres" >> embed(GENRES, ModelFiles.GENRE_EMBEDDER))


def check_extra_vectors(path: str, catalogue: np.ndarray) -> tuple[str, int]:
    """The vector column of an ``--extra-vectors`` file and its vectors' length, after every row was checked here,
    in the launching process, before any pipeline starts (a batch at a time: bounded memory): integer track ids,
    vectors of one length, finite and not all zero, one for each track of ``catalogue`` (the accepted track ids
    of DATA). Anything else is a one-line :class:`UserError` naming the file, and the row and track."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    shards = files.table_files(path)
    if not shards:
        raise UserError(f"--extra-vectors {path}: no such Parquet file or folder")
    column, dim, seen = None, None, []
    for shard in shards:
        try:
            reader = pq.ParquetFile(io.BytesIO(files.read_bytes(shard)) if files.is_remote(shard) else shard)
            schema = reader.schema_arrow
        except (pa.ArrowException, OSError) as error:
            raise UserError(f"--extra-vectors {shard}: not a readable Parquet file ({error})") from None
        names = schema.names
        column = next((c for c in tables.EXTRA_VECTOR_COLUMNS if c in names), None)
        if "track_id" not in names or column is None:
            raise UserError(f"--extra-vectors {shard}: needs the columns track_id and one of "
                            f"{' or '.join(tables.EXTRA_VECTOR_COLUMNS)}; it has {names[:20]}")
        vector_type = schema.field(column).type
        if not pa.types.is_integer(schema.field("track_id").type) or not (
                pa.types.is_list(vector_type) or pa.types.is_large_list(vector_type)
                or pa.types.is_fixed_size_list(vector_type)) or not (
                pa.types.is_floating(vector_type.value_type) or pa.types.is_integer(vector_type.value_type)):
            raise UserError(f"--extra-vectors {shard}: track_id must be integers and {column} lists of numbers; they "
                            f"are {schema.field('track_id').type} and {vector_type}")
        row = 0
        try:
            for batch in reader.iter_batches(batch_size=8192, columns=["track_id", column]):
                ids, vectors = batch.column(0), batch.column(1)
                lengths = pc.fill_null(pc.list_value_length(vectors), -1).to_numpy()
                dim = dim if dim is not None else max(int(lengths[0]), 1)  # the first vector's length
                good = (lengths == dim) & ~ids.is_null().to_numpy(zero_copy_only=False)
                if good.all():
                    values = pc.list_flatten(vectors).to_numpy(zero_copy_only=False).astype(np.float64)
                    values = values.reshape(-1, dim)
                    good = np.isfinite(values).all(axis=1) & values.any(axis=1)
                if not good.all():
                    at = int(np.argmin(good))
                    raise UserError(f"--extra-vectors {shard} row {row + at + 1} (track {ids[at].as_py()}): the "
                                    f"vector is not {dim} finite numbers, not all zero")
                seen.append(ids.to_numpy())
                row += len(batch)
        except (pa.ArrowException, OSError) as error:
            raise UserError(f"--extra-vectors {shard}: not a readable Parquet file ({error})") from None
    if dim is None:
        raise UserError(f"--extra-vectors {path}: holds no rows")
    given = np.concatenate(seen) if seen else np.zeros(0, np.int64)
    ids, counts = np.unique(given[np.isin(given, catalogue)], return_counts=True)
    if (counts > 1).any():
        raise UserError(f"--extra-vectors {path}: {counts.max()} vectors for track {ids[np.argmax(counts)]}; every "
                        "track of the catalogue needs exactly one")
    missing = np.setdiff1d(catalogue, ids)
    if len(missing):
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise UserError(f"--extra-vectors {path}: 0 vectors for track {missing[0]}{more}; every track of the "
                        "catalogue needs exactly one")
    return column, dim


def extra_rows(table, path: str, column: str, dim: int) -> Iterator[tuple[int, np.ndarray]]:
    """Rows of an ``--extra-vectors`` batch -> ``(track_id, vector)``; a vector of another length, a
    non-finite or zero one stops the job with the file and the track named."""
    ids = table.column("track_id").to_numpy()
    for track_id, vector in zip(ids.tolist(), table.column(column).to_pylist()):
        vector = np.asarray(vector, np.float32)
        if vector.shape != (dim,) or not np.isfinite(vector).all() or not vector.any():
            raise common.InputError(f"--extra-vectors {path}: the vector of track {track_id} is not {dim} finite "
                                    f"numbers, not all zero")
        yield track_id, vector


def join_extra_vector(grouped: tuple[int, dict[str, list[np.ndarray]]], path: str, weight: float):
    """One track's ``(track_id, {"model": [vector], "extra": [vector]})`` -> the joined vector (:func:`core.vectors.join_extra`).
    Extra vectors of tracks outside the catalogue are counted and ignored; a track without one (or with two)
    stops the job: every vector of a table must have the same parts."""
    track_id, parts = grouped
    if not parts["model"]:
        Metrics.counter(common.METRICS_NAMESPACE, "extra_vectors_unused").inc()
        return
    if len(parts["extra"]) != 1:
        raise common.InputError(f"--extra-vectors {path}: {len(parts['extra'])} vectors for track {track_id}; "
                                "every track of the catalogue needs exactly one")
    yield track_id, recipe.join_extra(parts["model"][0], parts["extra"][0], weight)


class JoinExtraVectors(beam.PTransform):
    """``(track_id, unit vector)`` -> the same tracks' vectors joined with an external embedding read from
    ``path`` inside the pipeline (a join by track id, never a table on one worker)."""

    def __init__(self, path: str, column: str, dim: int, weight: float):
        super().__init__()
        self._path, self._column, self._dim, self._weight = path, column, dim, weight

    def expand(self, vectors):
        extra = (vectors.pipeline
                 | "ReadExtra" >> beam.io.ReadFromParquetBatched(common.table_pattern(self._path),
                                                                 columns=["track_id", self._column])
                 | "ExtraRows" >> beam.FlatMap(extra_rows, self._path, self._column, self._dim))
        return ({"model": vectors, "extra": extra} | "ByTrack" >> beam.CoGroupByKey()
                | "Join" >> beam.FlatMap(join_extra_vector, self._path, self._weight))


def stack_catalogue(pairs: Iterable[tuple[int, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """``(ids [n], vectors [n, d])`` sorted by id."""
    return stack_batch(sorted(pairs, key=lambda pair: pair[0]))


class KeepBest(beam.CombineFn):
    """Inputs -> the best ``size`` of them by a pure merge function ``merge(parts, size)`` (the subclass's
    ``merge``), starting from ``empty``; the accumulator never holds more than ``size`` plus one input."""

    empty: tuple[np.ndarray, np.ndarray]

    def __init__(self, size: int):
        self._size = size

    def create_accumulator(self):
        return self.empty

    def add_input(self, accumulator, part):
        return self.merge([accumulator, part], self._size)

    def merge_accumulators(self, accumulators):
        return self.merge(list(accumulators), self._size)

    def extract_output(self, accumulator):
        return accumulator


class MergeTopK(KeepBest):
    """Partial ``(ids, similarities)`` lists of one track -> its top k (:func:`core.neighbours.merge_top_k`)."""

    empty = (np.zeros(0, np.int64), np.zeros(0, np.float32))
    merge = staticmethod(merge_top_k)


NeighbourBlock = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Neighbour lists of many tracks at once: ``(track ids [m], neighbour ids [m, k], similarities [m, k])``,
best first; a row the search could not fill is padded with id -1 (see :func:`core.neighbours.stack_lists`).
The neighbour transforms emit these rather than one element per track: a million tracks are a few hundred
elements to move between workers instead of a million."""


def stack_batch(batch: list[tuple[int, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """A batch of ``(track_id, vector)`` -> ``(ids [m], vectors [m, d])`` in batch order."""
    return np.array([i for i, _ in batch], np.int64), np.stack([v for _, v in batch]).astype(np.float32)


def split_by_block(batch: tuple[np.ndarray, np.ndarray], n_blocks: int):
    """``(ids, vectors)`` -> ``(block, (ids, vectors))`` for each block that the batch has tracks of."""
    ids, vectors = batch
    blocks = block_of(ids, n_blocks)
    for block in np.unique(blocks).tolist():
        rows = blocks == block
        yield block, (ids[rows], vectors[rows])


def stack_block(block: int, parts: Iterable[tuple[np.ndarray, np.ndarray]]):
    """All pieces of one block -> ``(block, ids, vectors)``, rows sorted by id."""
    parts = list(parts)
    ids = np.concatenate([i for i, _ in parts])
    vectors = np.concatenate([v for _, v in parts])
    order = np.argsort(ids, kind="stable")
    return block, ids[order], vectors[order]


def block_pairs(block: int, ids: np.ndarray, vectors: np.ndarray, n_blocks: int):
    """Send a block to every (query block, candidate block) pair it belongs to."""
    for other in range(n_blocks):
        yield (block, other), ("query", ids, vectors)
        if other != block:
            yield (other, block), ("candidates", ids, vectors)


def partial_top_k(pair_and_parts, k: int):
    """Top k of one query block among one candidate block: ``(query block, (query ids, ids, similarities))``
    with the query ids in the block's (sorted) order, so partials of a block line up row by row."""
    (query_block, candidate_block), parts = pair_and_parts
    parts = list(parts)
    query = next(p for p in parts if p[0] == "query")
    candidates = query if query_block == candidate_block else next(p for p in parts if p[0] == "candidates")
    _, query_ids, query_vectors = query
    _, candidate_ids, candidate_vectors = candidates
    import faiss

    faiss.omp_set_num_threads(1)  # one worker per core already
    neighbour_ids, similarities = top_k_faiss(query_vectors, query_ids, candidate_vectors, candidate_ids, k)
    yield query_block, (query_ids, neighbour_ids, similarities)


class MergeBlockTopK(beam.CombineFn):
    """Partial top-k matrices of one query block -> its top k, merged a whole block at a time."""

    def __init__(self, k: int):
        self._k = k

    def create_accumulator(self):
        return None

    def add_input(self, accumulator, partial):
        return self.merge_accumulators([accumulator, partial])

    def merge_accumulators(self, accumulators):
        parts = [a for a in accumulators if a is not None]
        if not parts:
            return None
        query_ids = parts[0][0]
        ids, sims = merge_block_top_k([(i, s) for _, i, s in parts], self._k)
        return query_ids, ids, sims

    def extract_output(self, accumulator):
        return accumulator


TRACKS_PER_ROW_GROUP = 1000


def write_neighbour_table(blocks: list[NeighbourBlock], path: str, schema) -> int:
    """Write neighbour blocks as one Parquet file sorted by (track_id, rank), with row groups of
    ``TRACKS_PER_ROW_GROUP`` tracks and page checksums; returns the number of rows. (The jobs write the
    table as shards with :class:`~beam_jobs.common.WriteTable`; this one-file writer is for small tools.)"""
    import pyarrow as pa

    width = max((b[1].shape[1] for b in blocks), default=0)

    def padded(array: np.ndarray, fill) -> np.ndarray:
        return np.pad(array, ((0, 0), (0, width - array.shape[1])), constant_values=fill)

    block = (np.concatenate([b[0] for b in blocks]) if blocks else np.zeros(0, np.int64),
             np.concatenate([padded(b[1], -1) for b in blocks]) if blocks else np.zeros((0, 0), np.int64),
             np.concatenate([padded(b[2], -np.inf) for b in blocks]) if blocks else np.zeros((0, 0), np.float32))
    parts = [t.cast(schema) for t in neighbour_tables(block, TRACKS_PER_ROW_GROUP)]
    table = pa.concat_tables(parts) if parts else schema.empty_table()
    with FileSystems.create(path, compression_type="uncompressed") as handle:
        pq.write_table(table, handle, row_group_size=max(1, TRACKS_PER_ROW_GROUP * max(1, width)),
                       write_page_checksum=True)
    return table.num_rows


def auto_block_size(n: int) -> int:
    """About 64 sqrt(n), at least 4,096: blocks grow with the catalogue so that the data sent to the block
    pairs (each block goes to 2 n_blocks pairs) grows as n^1.5 rather than n^2; two blocks of a
    million-track catalogue still take only 16 MB."""
    return max(4096, int(64 * np.sqrt(n)))


VECTOR_BATCH = 4096  # tracks per element when vectors move between workers


def count_batches(batches):
    """The number of tracks in a PCollection of ``(ids, vectors)`` batches, as a one-element PCollection."""
    return (batches | "Sizes" >> beam.Map(lambda batch: len(batch[0]))
            | "Total" >> beam.CombineGlobally(sum))


class StackVectors(beam.PTransform):
    """``(track_id, vector)`` -> ``(ids [m], vectors [m, d])`` batches of up to ``batch_size`` tracks: the one
    place where the tail turns per-track elements into arrays."""

    def __init__(self, batch_size: int = 4096):
        super().__init__()
        self._batch_size = batch_size

    def expand(self, vectors):
        return (vectors
                | "Batch" >> beam.BatchElements(min_batch_size=min(256, self._batch_size),
                                                max_batch_size=self._batch_size)
                | "Stack" >> beam.Map(stack_batch))


class BlockNeighbours(beam.PTransform):
    """``(ids, vectors)`` batches -> :data:`NeighbourBlock` elements: exact cosine top-k, block against block.

    The catalogue is cut into blocks of ``block_size`` tracks (default :func:`auto_block_size`) by a hash
    of the id; every pair of blocks meets once on some worker, which computes the top k of the query block
    among the candidate block (``faiss.knn``); a CombinePerKey merges the partial lists of each query block,
    a whole block at a time. No worker holds more than two blocks; the work is n_blocks^2 independent pairs.
    """

    def __init__(self, k: int, block_size: int | None = None):
        super().__init__()
        self._k = k
        self._block_size = block_size

    def expand(self, batches):
        k, size = self._k, self._block_size
        n_blocks = (count_batches(batches)
                    | "Blocks" >> beam.Map(lambda n: max(1, -(-n // (size or auto_block_size(n))))))
        return (
            batches
            | "SplitByBlock" >> beam.FlatMap(split_by_block, beam.pvalue.AsSingleton(n_blocks))
            | "GroupBlocks" >> beam.GroupByKey()
            | "StackBlocks" >> beam.MapTuple(stack_block)
            | "ToBlockPairs" >> beam.FlatMap(lambda b, n: block_pairs(*b, n), beam.pvalue.AsSingleton(n_blocks))
            | "MeetBlocks" >> beam.GroupByKey()
            | "PartialTopK" >> beam.FlatMap(partial_top_k, k)
            | "MergeTopK" >> beam.CombinePerKey(MergeBlockTopK(k))
            | "Lists" >> beam.Values()
        )


class NearestNeighbours(beam.PTransform):
    """``(track_id, unit vector)`` -> :data:`NeighbourBlock` elements: :class:`BlockNeighbours` of the vectors
    stacked in batches of up to :data:`VECTOR_BATCH` tracks (never one element per track between workers)."""

    def __init__(self, k: int, block_size: int | None = None):
        super().__init__()
        self._k = k
        self._block_size = block_size

    def expand(self, vectors):
        return (vectors | "Vectors" >> StackVectors(VECTOR_BATCH)
                | "Search" >> BlockNeighbours(self._k, self._block_size))


INDEX_FILE = TableFiles.INDEX
DIFFUSION_INDEX_FILE = TableFiles.DIFFUSION_INDEX


def build_index_file(batches: list[tuple[np.ndarray, np.ndarray]], path: str, nprobe: int | None,
                     target_recall: float = 0.95, recall_queries: int = 1000) -> dict[str, Any]:
    """Build the IVF index over the whole catalogue, save it with its ids to ``path`` (any Beam file
    system), and measure its recall@10 against exact search on up to ``recall_queries`` sampled tracks.
    ``nprobe`` None: the fewest lists (1, 2, 4, ... all) whose recall reaches ``target_recall``; search time
    grows with ``nprobe``, and clustered catalogues need far fewer lists than uniform noise.
    Returns the report (with the ``nprobe`` to search with), the file's path under ``"path"``."""
    import io

    import faiss

    from core.neighbours import build_ivf_index, recall_at, search_ivf

    _, ids, vectors = stack_block(0, batches)
    del batches
    index = build_ivf_index(vectors)
    # two disjoint samples: one chooses nprobe, the other reports the recall of that choice
    drawn = np.random.default_rng(0).permutation(len(ids))
    tuning, held_out = np.sort(drawn[:recall_queries]), np.sort(drawn[recall_queries:2 * recall_queries])
    if len(held_out) == 0:
        held_out = tuning

    def recall_of(sample: np.ndarray):
        """recall@10 of the index on ``sample`` as a function of nprobe (exact search done once)."""
        exact_ids, _ = top_k_faiss(vectors[sample], ids[sample], vectors, ids, 10)
        return lambda probes: recall_at(search_ivf(index, ids, vectors[sample], ids[sample], 10, probes)[0],
                                        exact_ids, 10)

    tried: dict[int, float] = {}
    if nprobe is None:
        tuning_recall = recall_of(tuning)
        for probes in sorted({*(2**i for i in range(int(np.log2(index.nlist)) + 1)), index.nlist}):
            tried[probes] = tuning_recall(probes)
            if tried[probes] >= target_recall:
                break
        nprobe = probes
    reported = recall_of(held_out)(nprobe)
    buffer = io.BytesIO()
    np.savez(buffer, ids=ids, index=faiss.serialize_index(index))
    with FileSystems.create(path, compression_type="uncompressed") as handle:
        handle.write(buffer.getvalue())
    log.info("neighbour index: %d tracks in %d lists -> %s", len(ids), index.nlist, path)
    return {"mode": "approximate", "index": "faiss IVFFlat, inner product", "lists": int(index.nlist),
            "nprobe": int(nprobe), "recall_queries": int(len(held_out)), "recall@10": reported,
            "target_recall": target_recall, "tuning recall@10 by nprobe": tried, "path": path}


class _LoadedIndex:
    """An index file read into this process (held by a ``shared.Shared`` handle, one per worker)."""

    def __init__(self, path: str):
        import io

        import faiss

        with FileSystems.open(path, compression_type="uncompressed") as handle:
            saved = np.load(io.BytesIO(handle.read()))
        self.ids = saved["ids"]
        self.index = faiss.deserialize_index(saved["index"])


class SearchIndexFn(beam.DoFn):
    """``(ids, vectors)`` query batches -> :data:`NeighbourBlock`; the index file is loaded once per worker
    process, on its first batch (the file's path arrives as a side input once the index is built)."""

    def __init__(self, k: int, index_handle: shared.Shared):
        self._k, self._index_handle = k, index_handle
        self._queries = Metrics.counter(common.METRICS_NAMESPACE, "neighbour_queries")

    def setup(self) -> None:
        import faiss

        faiss.omp_set_num_threads(1)  # one worker per core already

    def process(self, batch: tuple[np.ndarray, np.ndarray], report: dict[str, Any]):
        from core.neighbours import search_ivf

        path = report["path"]
        loaded = self._index_handle.acquire(lambda: _LoadedIndex(path), tag=path)
        query_ids, queries = batch
        found, sims = search_ivf(loaded.index, loaded.ids, queries, query_ids, self._k, report["nprobe"])
        self._queries.inc(len(query_ids))
        yield query_ids, found, sims


class IndexNeighbours(beam.PTransform):
    """``(ids, vectors)`` batches -> :data:`NeighbourBlock` elements from a faiss IVF index.

    The index is built once over the whole catalogue (which arrives in batches, not one element per track)
    and written to ``index_dir``; each worker loads it once and searches batches of queries, probing
    ``nprobe`` lists. Its recall@10 against exact search, on up to 1,000 sampled queries, goes to ``report``.
    """

    def __init__(self, k: int, nprobe: int | None, index_dir: str, target_recall: float = 0.95,
                 file: str = INDEX_FILE):
        super().__init__()
        self._k, self._nprobe, self._index_dir, self._file = k, nprobe, index_dir, file
        self._target_recall = target_recall

    def expand(self, batches):
        path = files.join(self._index_dir, self._file)
        built = (batches | "Catalogue" >> beam.combiners.ToList()
                 | "BuildIndex" >> beam.Map(build_index_file, path, self._nprobe, self._target_recall))
        self.report = built | "Report" >> beam.Map(lambda report: {k: v for k, v in report.items() if k != "path"})
        return batches | "Search" >> beam.ParDo(SearchIndexFn(self._k, shared.Shared()),
                                                beam.pvalue.AsSingleton(built))


class ApproximateNeighbours(beam.PTransform):
    """``(track_id, unit vector)`` -> :data:`NeighbourBlock` elements: :class:`IndexNeighbours` of the vectors
    stacked in batches of up to ``batch_size`` tracks; its recall report is ``report``."""

    def __init__(self, k: int, nprobe: int | None, index_dir: str, batch_size: int = VECTOR_BATCH,
                 target_recall: float = 0.95):
        super().__init__()
        self._batch_size = batch_size
        self._search = IndexNeighbours(k, nprobe, index_dir, target_recall)

    def expand(self, vectors):
        lists = vectors | "Vectors" >> StackVectors(self._batch_size) | "Index" >> self._search
        self.report = self._search.report
        return lists


def diffusion_requests(block: NeighbourBlock, n_buckets: int, power: float):
    """A :data:`NeighbourBlock` -> ``(bucket of the neighbour, ("want", track ids, neighbour ids, weights))``:
    which neighbour vectors each track needs, sent to the bucket that holds them."""
    track_ids, ids, sims = block
    weights = diffusion_weights(ids, sims, power)
    keep = weights > 0
    tracks = np.broadcast_to(np.asarray(track_ids, np.int64)[:, None], ids.shape)[keep]
    wanted, weights = np.asarray(ids, np.int64)[keep], weights[keep]
    buckets = block_of(wanted, n_buckets)
    for bucket in np.unique(buckets).tolist():
        rows = buckets == bucket
        yield bucket, ("want", tracks[rows], wanted[rows], weights[rows])


def tagged_by_bucket(batch: tuple[np.ndarray, np.ndarray], n_buckets: int):
    """``(ids, vectors)`` -> ``(bucket, ("have", ids, vectors))`` per bucket (:func:`split_by_block`)."""
    for bucket, (ids, vectors) in split_by_block(batch, n_buckets):
        yield bucket, ("have", ids, vectors)


def weighted_neighbours(bucket_and_parts, n_buckets: int):
    """One bucket's vectors and the requests for them -> ``(bucket of the track, ("sum", track ids, summed
    weighted neighbour vectors))``: each track's share of its diffused vector from this bucket."""
    _, parts = bucket_and_parts
    parts = list(parts)
    have = [p for p in parts if p[0] == "have"]
    wants = [p for p in parts if p[0] == "want"]
    if not have or not wants:
        return
    ids = np.concatenate([p[1] for p in have])
    vectors = np.concatenate([p[2] for p in have])
    order = np.argsort(ids)
    tracks = np.concatenate([p[1] for p in wants])
    wanted = np.concatenate([p[2] for p in wants])
    weights = np.concatenate([p[3] for p in wants])
    rows = order[np.searchsorted(ids, wanted, sorter=order)]
    summed_ids, sums = sum_by_track(tracks, weights[:, None] * vectors[rows])
    buckets = block_of(summed_ids, n_buckets)
    for bucket in np.unique(buckets).tolist():
        keep = buckets == bucket
        yield bucket, ("sum", summed_ids[keep], sums[keep])


def diffused_batches(bucket_and_parts, batch_size: int = VECTOR_BATCH):
    """One bucket's own vectors and the weighted sums of their neighbours -> ``(ids, unit vectors)`` batches
    of up to ``batch_size`` tracks, sorted by id (:func:`core.neighbours.diffuse`, computed by buckets)."""
    _, parts = bucket_and_parts
    parts = list(parts)
    ids, summed = sum_by_track(np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]))
    own = np.isin(ids, np.concatenate([p[1] for p in parts if p[0] == "have"]))
    ids, vectors = ids[own], recipe.unit(summed[own])
    for start in range(0, len(ids), batch_size):
        yield ids[start:start + batch_size], vectors[start:start + batch_size]


class Diffuse(beam.PTransform):
    """``(ids, unit vectors)`` batches -> the same tracks' vectors after diffusion over their nearest
    (:func:`core.neighbours.diffuse`, weights: cosine to ``power``): the neighbour lists from ``search`` (exact
    blocks or the index), then two joins by bucket of track id (the neighbours' vectors fetched where they live, the
    weighted sums sent home), so no step holds more than one bucket of :data:`TRACKS_PER_BUCKET` tracks."""

    def __init__(self, power: float, search: beam.PTransform):
        super().__init__()
        self._power, self._search = power, search

    def expand(self, batches):
        n_buckets = beam.pvalue.AsSingleton(
            count_batches(batches) | "Buckets" >> beam.Map(lambda n: max(1, -(-n // TRACKS_PER_BUCKET))))
        lists = batches | "Graph" >> self._search
        have = batches | "Have" >> beam.FlatMap(tagged_by_bucket, n_buckets)
        wants = lists | "Want" >> beam.FlatMap(diffusion_requests, n_buckets, self._power)
        sums = ((have, wants) | "Requests" >> beam.Flatten() | "AtNeighbours" >> beam.GroupByKey()
                | "Weighted" >> beam.FlatMap(weighted_neighbours, n_buckets))
        return ((have, sums) | "Sums" >> beam.Flatten() | "AtTracks" >> beam.GroupByKey()
                | "Diffused" >> beam.FlatMap(diffused_batches))


def embedding_table(batch: tuple[np.ndarray, np.ndarray]):
    """An ``(ids, vectors)`` batch -> rows of ``embeddings.parquet`` (sorted by id), built column-wise."""
    import pyarrow as pa

    ids, vectors = batch
    order = np.argsort(ids, kind="stable")
    ids, vectors = ids[order], np.ascontiguousarray(vectors[order], np.float32)
    offsets = np.arange(len(ids) + 1, dtype=np.int32) * np.int32(vectors.shape[1])
    lists = pa.ListArray.from_arrays(pa.array(offsets), pa.array(vectors.reshape(-1)))
    return pa.table({"track_id": pa.array(ids, pa.int64()), "embedding": lists})


def map_table(ids: np.ndarray, coords: np.ndarray):
    """Map rows ``track_id, x, y, z`` for ``ids`` and their ``[n, 3]`` coordinates, sorted by id."""
    import pyarrow as pa

    order = np.argsort(ids, kind="stable")
    coords = np.asarray(coords, np.float32)[order]
    return pa.table({"track_id": pa.array(np.asarray(ids, np.int64)[order]), "x": coords[:, 0],
                     "y": coords[:, 1], "z": coords[:, 2]})


class MapSample(KeepBest):
    """``(ids, vectors)`` batches -> the ``sample`` tracks of smallest :func:`~core.neighbours.sample_rank`,
    as ``(ids, vectors)`` sorted by id; no accumulator holds more than ``sample`` tracks plus one batch."""

    empty = (np.zeros(0, np.int64), np.zeros((0, 0), np.float32))
    merge = staticmethod(smallest_by_rank)


def embed_sample(sample: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The t-SNE sample ``(ids, vectors)`` -> ``(ids, vectors, coordinates)``."""
    ids, vectors = sample
    Metrics.counter(common.METRICS_NAMESPACE, "map_tracks_tsne").inc(len(ids))
    return ids, vectors, tsne_coordinates(vectors)


def nearest_sampled(batch: tuple[np.ndarray, np.ndarray], sample: tuple[np.ndarray, np.ndarray]):
    """The tracks of ``batch`` outside the t-SNE ``sample`` -> ``(ids, rows of their 5 nearest sampled tracks)``;
    needs only the sample's vectors, so it runs while the t-SNE does."""
    import faiss

    faiss.omp_set_num_threads(1)  # one worker per core already
    ids, vectors = batch
    sample_ids, sample_vectors = sample
    outside = ~np.isin(ids, sample_ids)
    if outside.any():
        Metrics.counter(common.METRICS_NAMESPACE, "map_tracks_placed").inc(int(outside.sum()))
        yield ids[outside], nearest_rows(vectors[outside], sample_vectors)


def place_batch(nearest: tuple[np.ndarray, np.ndarray], sample: tuple[np.ndarray, np.ndarray, np.ndarray]):
    """``(ids, nearest sampled rows)`` -> their map rows, at the mean position of those sampled tracks."""
    ids, rows = nearest
    return map_table(ids, sample[2][rows].mean(axis=1))


class MapCoordinates(beam.PTransform):
    """``(ids, vectors)`` batches -> map tables: 3-D t-SNE of a sample of ``sample`` tracks chosen by a hash of
    the id (the only step on one worker, bounded by ``sample``), every other track placed in parallel, batch
    by batch, at the mean position of its 5 nearest sampled tracks (found while the t-SNE runs);
    :func:`~core.neighbours.map_coordinates` computes the same in one process."""

    def __init__(self, sample: int = MAP_SAMPLE):
        super().__init__()
        self._sample = sample

    def expand(self, batches):
        sample = batches | "Sample" >> beam.CombineGlobally(MapSample(self._sample))
        embedded = sample | "TSNE" >> beam.Map(embed_sample)
        sampled = embedded | "SampleRows" >> beam.MapTuple(lambda ids, _, coords: map_table(ids, coords))
        placed = (batches | "Nearest" >> beam.FlatMap(nearest_sampled, beam.pvalue.AsSingleton(sample))
                  | "Place" >> beam.Map(place_batch, beam.pvalue.AsSingleton(embedded)))
        return (sampled, placed) | "MapRows" >> beam.Flatten()


def neighbour_tables(block: NeighbourBlock, tracks_per_table: int = 1000):
    """A :data:`NeighbourBlock` -> rows of ``neighbours.parquet`` sorted by (track_id, rank), in tables of up to
    ``tracks_per_table`` tracks (each becomes a row group); padding (id -1) is dropped."""
    import pyarrow as pa

    track_ids, ids, sims = block
    order = np.argsort(track_ids, kind="stable")
    track_ids, ids, sims = np.asarray(track_ids, np.int64)[order], ids[order], sims[order]
    width = ids.shape[1] if ids.ndim == 2 else 0
    for start in range(0, len(track_ids), tracks_per_table):
        rows = slice(start, start + tracks_per_table)
        found = ids[rows] >= 0  # padding sits at the end of a row, so a found entry's rank is its column + 1
        yield pa.table({
            "track_id": np.repeat(track_ids[rows], found.sum(axis=1)).astype(np.int64),
            "rank": np.broadcast_to(np.arange(1, width + 1, dtype=np.int32), found.shape)[found],
            "neighbour_id": ids[rows][found].astype(np.int64),
            "similarity": sims[rows][found].astype(np.float32),
        })


def tracks_by_bucket(table, n_buckets: int):
    """Rows of a DATA ``tracks.parquet`` batch with status ok -> ``(bucket, ("rows", table))`` per bucket of
    :func:`~core.neighbours.block_of` the track id."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = table.filter(pc.equal(table["status"], "ok"))
    buckets = block_of(table["track_id"].to_numpy(), n_buckets)
    for bucket in np.unique(buckets).tolist():
        yield bucket, ("rows", table.filter(pa.array(buckets == bucket)))


def ids_by_bucket(ids: np.ndarray, n_buckets: int):
    """Embedded track ids -> ``(bucket, ("ids", ids))`` per bucket, as :func:`tracks_by_bucket` cuts rows."""
    buckets = block_of(ids, n_buckets)
    for bucket in np.unique(buckets).tolist():
        yield bucket, ("ids", ids[buckets == bucket])


def join_bucket(bucket: int, parts) -> Iterator[Any]:
    """One bucket's catalogue rows and embedded ids -> the rows of the embedded tracks, sorted by id."""
    import pyarrow as pa

    parts = list(parts)
    ids = np.concatenate([p for kind, p in parts if kind == "ids"] or [np.zeros(0, np.int64)])
    rows = [p for kind, p in parts if kind == "rows"]
    if not rows or not len(ids):
        return
    table = pa.concat_tables(rows).sort_by("track_id")
    kept = table.filter(pa.array(np.isin(table["track_id"].to_numpy(), ids)))
    Metrics.counter(common.METRICS_NAMESPACE, "tracks_without_vector").inc(table.num_rows - kept.num_rows)
    if kept.num_rows:
        yield kept


TRACKS_PER_BUCKET = 100_000


class EmbeddedTracks(beam.PTransform):
    """``(ids, vectors)`` batches -> the catalogue rows (``tracks_file``, status ok) of the tracks that have a
    vector: a hash join by track id in buckets of about :data:`TRACKS_PER_BUCKET` tracks, the catalogue read
    inside the pipeline (never a list in the job graph, never gathered on one worker)."""

    def __init__(self, tracks_file: str):
        super().__init__()
        self._tracks_file = tracks_file

    def expand(self, batches):
        n_buckets = beam.pvalue.AsSingleton(
            count_batches(batches) | "Buckets" >> beam.Map(lambda n: max(1, -(-n // TRACKS_PER_BUCKET))))
        ids = batches | "Ids" >> beam.FlatMap(lambda batch, n: ids_by_bucket(batch[0], n), n_buckets)
        rows = (batches.pipeline
                | "ReadCatalogue" >> beam.io.ReadFromParquetBatched(common.table_pattern(self._tracks_file))
                | "TagColumns" >> beam.Map(tables.with_missing_columns, tables.TRACKS)  # DATA from before tags
                | "RowsByBucket" >> beam.FlatMap(tracks_by_bucket, n_buckets))
        return ((ids, rows) | "Both" >> beam.Flatten() | "ByBucket" >> beam.GroupByKey()
                | "Join" >> beam.FlatMapTuple(join_bucket))


class EmbedTail(beam.PTransform):
    """``(track_id, unit vector)`` -> the tables of an embed output written into ``staging``: embeddings,
    neighbours (exact or approximate), tracks (joined from ``tracks_file``) and the map, each a folder of
    Parquet shards (:class:`~beam_jobs.common.WriteTable`). Every step is parallel except the t-SNE of
    the map's sample (and, in approximate mode, building the index). ``report`` is the neighbour report."""

    def __init__(self, *, staging: str, tracks_file: str, provenance: dict[str, Any], k: int,
                 approximate: bool = False, nprobe: int | None = None, target_recall: float = 0.95,
                 map_sample: int = MAP_SAMPLE, diffusion: int = DIFFUSION_NEIGHBOURS,
                 diffusion_power: float = DIFFUSION_POWER, stacked: bool = False,
                 map_transform: beam.PTransform | None = None):
        super().__init__()
        self._staging, self._tracks_file, self._provenance, self._k = staging, tracks_file, provenance, k
        self._approximate, self._nprobe, self._target_recall = approximate, nprobe, target_recall
        self._map_sample, self._diffusion, self._diffusion_power = map_sample, diffusion, diffusion_power
        self._stacked = stacked  # the input is already ``(ids, vectors)`` batches (wavelist update's stored vectors)
        self._map = map_transform  # final batches -> map tables; default: a t-SNE (:class:`MapCoordinates`)
        self.report = None

    def _search(self, k: int, file: str = INDEX_FILE) -> beam.PTransform:
        if self._approximate:
            return IndexNeighbours(k, self._nprobe, index_dir=self._staging, target_recall=self._target_recall,
                                   file=file)
        return BlockNeighbours(k)

    def expand(self, vectors):
        staging, provenance = self._staging, self._provenance
        batches = vectors if self._stacked else vectors | "Vectors" >> StackVectors(VECTOR_BATCH)
        if self._diffusion:  # the vectors before it are kept: wavelist add diffuses new tracks against them
            _ = (batches | "UndiffusedTables" >> beam.Map(embedding_table)
                 | "WriteUndiffused" >> common.WriteTable(staging, TableFiles.UNDIFFUSED,
                                                          tables.with_metadata(tables.EMBEDDINGS, **provenance)))
            batches = batches | "Diffusion" >> Diffuse(self._diffusion_power,
                                                       self._search(self._diffusion, DIFFUSION_INDEX_FILE))
        _ = (batches | "EmbeddingTables" >> beam.Map(embedding_table)
             | "WriteEmbeddings" >> common.WriteTable(staging, TableFiles.EMBEDDINGS,
                                                      tables.with_metadata(tables.EMBEDDINGS, **provenance)))
        search = self._search(self._k)
        lists = batches | "Neighbours" >> search
        self.report = getattr(search, "report", None)
        _ = (lists | "NeighbourTables" >> beam.FlatMap(neighbour_tables, TRACKS_PER_ROW_GROUP)
             | "WriteNeighbours" >> common.WriteTable(staging, TableFiles.NEIGHBOURS,
                                                      tables.with_metadata(tables.NEIGHBOURS, **provenance)))
        _ = (batches | "Map" >> (self._map or MapCoordinates(self._map_sample))
             | "WriteMap" >> common.WriteTable(staging, TableFiles.MAP3D,
                                               tables.with_metadata(tables.MAP3D, **provenance)))
        _ = (batches | "Tracks" >> EmbeddedTracks(self._tracks_file)
             | "WriteTracks" >> common.WriteTable(staging, TableFiles.TRACKS, tables.TRACKS))
        return batches


class ModelOptions(PipelineOptions):
    """The model flags embed and add share (Beam parses every options class together: declared once)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--model", help="output folder of wavelist train (required)")
        parser.add_argument("--batch-size", "--batch_size", dest="batch_size", type=whole(1, 65_536), default=256,
                            help="tiles per model call")


OPTIONS = (EmbedOptions, ModelOptions)


def build_pipeline(pipeline, *, data: str, model_dir: str, staging: str, spec: AudioSpec, info: ModelInfo,
                   provenance: dict[str, Any], k: int, batch_size: int, approximate: bool = False,
                   nprobe: int | None = None, target_recall: float = 0.95, extra: JoinExtraVectors | None = None,
                   diffusion: int = DIFFUSION_NEIGHBOURS, diffusion_power: float = DIFFUSION_POWER):
    vectors = pipeline | "TrackVectors" >> TrackVectors(data, model_dir, spec, info, batch_size)
    if extra is not None:
        vectors = vectors | "ExtraVectors" >> extra
    tail = EmbedTail(staging=staging, tracks_file=files.join(data, DataFiles.TRACKS), provenance=provenance, k=k,
                     approximate=approximate, nprobe=nprobe, target_recall=target_recall, diffusion=diffusion,
                     diffusion_power=diffusion_power)
    _ = vectors | "Tail" >> tail
    write_tail_report(tail, staging)


def write_tail_report(tail: EmbedTail, staging: str) -> None:
    """Write an approximate :class:`EmbedTail`'s recall report into ``staging`` (read by :func:`finish_tail`)."""
    if tail.report is not None:
        _ = tail.report | "WriteReport" >> beam.Map(
            lambda report: files.write_text(posixpath.join(staging, NEIGHBOUR_REPORT), json.dumps(report)))


def finish_tail(staging: str, approximate: bool) -> dict[str, Any]:
    """After :class:`EmbedTail` ran into ``staging``: its neighbour report (approximate: the recall measured;
    exact: recall 1), with the staged report and index files deleted."""
    report_file = files.join(staging, NEIGHBOUR_REPORT)
    report = files.read_json(report_file) if approximate else {"mode": "exact", "recall@10": 1.0}
    for staged in (report_file, files.join(staging, INDEX_FILE), files.join(staging, DIFFUSION_INDEX_FILE)):
        if FileSystems.exists(staged):
            FileSystems.delete([staged])
    return report


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> dict[str, Any]:
    """Run the embed job; returns the summary it also writes to ``OUT/summary.json``."""
    options = common.parse_options(argv)
    args = options.view_as(EmbedOptions)
    model = options.view_as(ModelOptions)
    common.require_flags(options, "data", "model", "out")
    output = options.view_as(common.OutputOptions)
    files.require_complete(args.data, made_by="wavelist ingest")
    files.require_complete(model.model, made_by="wavelist train")
    spec = files.load_audio_spec(args.data, made_by="wavelist ingest")
    spec.require_same(files.load_audio_spec(model.model, made_by="wavelist train"),
                      what=f"the tiles in {args.data} (vs the model {model.model})")
    info = files.load_model_info(model.model)
    provenance = {"model_id": info.model_id, "audio_spec": spec.to_dict()}
    extra = None
    if args.extra_vectors:
        if not 0.0 < args.extra_weight < 1.0:
            raise UserError(f"--extra-weight {args.extra_weight}: give a share between 0 and 1")
        catalogue = files.read_parquet(files.join(args.data, DataFiles.TRACKS), ["track_id", "status"],
                                       made_by="wavelist ingest")
        ok = catalogue["status"].to_numpy(zero_copy_only=False) == "ok"
        column, dim = check_extra_vectors(args.extra_vectors, catalogue["track_id"].to_numpy()[ok])
        extra = JoinExtraVectors(args.extra_vectors, column, dim, args.extra_weight)
        provenance["extra_vectors"] = {"file": args.extra_vectors, "dim": dim, "weight": args.extra_weight}
    if args.diffusion < 0:
        raise UserError(f"--diffusion {args.diffusion}: give a number of neighbours, or 0 for none")
    power = DIFFUSION_POWER if args.diffusion_power is None else args.diffusion_power
    if args.diffusion:
        provenance["diffusion"] = {"neighbours": args.diffusion, "power": power}
    status = files.read_parquet(files.join(args.data, DataFiles.TRACKS), ["status"], made_by="wavelist ingest")
    accepted = int(np.sum(status["status"].to_numpy(zero_copy_only=False) == "ok"))  # the rows are read in the job
    approximate = args.neighbours == "approximate" or (args.neighbours == "auto" and accepted > EXACT_LIMIT)
    log.info("embed: %d tracks with model %s, %s neighbours", accepted, info.model_id,
             "approximate" if approximate else "exact")

    with files.staged_output(output.out, overwrite=output.overwrite, kind="embed",
                              inputs=[args.data, model.model, args.extra_vectors]) as staging:
        pipeline = test_pipeline or common.make_pipeline(options, argv)
        model_dir = model.model if files.is_remote(model.model) else str(Path(model.model).resolve())
        build_pipeline(pipeline, data=args.data, model_dir=model_dir, staging=staging,
                       spec=spec, info=info, provenance=provenance, k=args.k, batch_size=model.batch_size,
                       approximate=approximate, nprobe=args.nprobe, target_recall=args.target_recall,
                       extra=extra, diffusion=args.diffusion, diffusion_power=power)
        common.run_pipeline(pipeline)
        embedded = files.parquet_num_rows(files.join(staging, TableFiles.EMBEDDINGS))
        summary = {
            "model_id": info.model_id,
            "tracks_in_data": accepted,
            "tracks_embedded": embedded,
            "neighbour_rows": files.parquet_num_rows(files.join(staging, TableFiles.NEIGHBOURS)),
            "k": args.k,
            **{key: provenance[key] for key in ("extra_vectors", "diffusion") if key in provenance},
            "neighbours": finish_tail(staging, approximate),
        }
        files.write_text(files.join(staging, SUMMARY), json.dumps(summary, indent=2) + "\n")
    log.info("embed: %d tracks embedded -> %s", embedded, output.out)
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run()
