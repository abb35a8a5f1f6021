"""Stage 1, the model's vectors: an ingest output's tiles and summary features -> ``(track_id, unit vector)``
through the model's embedder files, as its vector parts say (:class:`TrackVectors`)."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Iterator

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.utils import shared

from beam_jobs import common
from beam_jobs.embed.batches import VECTOR_BATCH, StackVectors
from beam_jobs.embed.model_inputs import model_input_count, read_model_inputs
from core import vectors as recipe
from core.progress import Progress
from schemas.audio import AudioSpec
from schemas.flags import whole
from schemas.layout import ModelFiles
from schemas.model_info import FEATURES, GENRES, TILES, ModelInfo
from storage import files

log = logging.getLogger(__name__)


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


class TrackVectorBatches(beam.PTransform):
    """:class:`TrackVectors` stacked as ``(ids, vectors)`` batches of up to :data:`~beam_jobs.embed.batches.VECTOR_BATCH`
    tracks (what ``wavelist add`` and ``update`` join to the stored vectors)."""

    def __init__(self, data: str, model_dir: str, spec: AudioSpec, info: ModelInfo, batch_size: int):
        super().__init__()
        self._vectors = TrackVectors(data, model_dir, spec, info, batch_size)

    def expand(self, pipeline):
        return pipeline | "Vectors" >> self._vectors | "Batches" >> StackVectors(VECTOR_BATCH)


class ModelOptions(PipelineOptions):
    """The model flags embed and add share (Beam parses every options class together: declared once)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--model", help="output folder of wavelist train (required)")
        parser.add_argument("--batch-size", "--batch_size", dest="batch_size", type=whole(1, 65_536), default=256,
                            help="tiles per model call")
