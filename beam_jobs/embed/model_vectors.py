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
from beam_jobs.embed.model_inputs import ModelInputs, model_input_count
from core import vectors as recipe
from core.progress import Progress
from schemas import vector_parts
from schemas.audio import AudioSpec
from schemas.flags import whole
from schemas.layout import ModelFiles
from schemas.model_info import ModelInfo
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


def join_parts(track_id: int, parts: dict[str, list[np.ndarray]], names: tuple[str, ...] = ()):
    """A track's vectors of the parts ``names`` -> :func:`core.vectors.join_parts` of them, in that order. A track
    without one of them (no tiles, or no summary row) is counted and left out."""
    if all(parts[name] for name in names):
        yield track_id, recipe.join_parts([parts[name][0] for name in names])
    else:
        Metrics.counter(common.METRICS_NAMESPACE, "tracks_missing_a_half").inc()


class TrackVectors(beam.PTransform):
    """The tracks of an ingest output folder -> ``(track_id, unit vector)``, as the model's vector parts say
    (:mod:`schemas.vector_parts`): each part that takes model inputs from its embedder (the mean of its tile
    vectors, or its summary statistics' vector), those parts joined per track, then each part that takes the
    joined vector (e.g. the genre part the joined vector predicts)."""

    def __init__(self, data: str, model_dir: str, spec: AudioSpec, info: ModelInfo, batch_size: int):
        super().__init__()
        self._data, self._model_dir, self._spec = data, model_dir, spec
        self._info, self._batch_size = info, batch_size

    def expand(self, pipeline):
        workers = common.local_workers(pipeline.pipeline)
        info = self._info
        inputs = vector_parts.input_parts(info.parts)
        counts = {p.name: model_input_count(self._data, p.takes) for p in inputs}
        log.info("embed: the model takes %s", " and ".join(f"{counts[p.name]:,} {p.unit}" for p in inputs))

        def embed(part: vector_parts.VectorPart, total: int):
            return EmbedTracks(self._model_dir, self._batch_size, info.embedder_file(part.name), total=total,
                               workers=workers, unit=part.unit)

        vectors = {p.name: (pipeline | f"{p.name.title()}Inputs" >> ModelInputs(self._data, self._spec, p.takes,
                                                                                 counts[p.name])
                            | f"Embed{p.name.title()}" >> embed(p, counts[p.name])) for p in inputs}
        if len(inputs) == 1:
            joined = vectors[inputs[0].name]
        else:
            joined = (vectors | "JoinHalves" >> beam.CoGroupByKey()
                      | "Concatenate" >> beam.FlatMapTuple(join_parts, tuple(p.name for p in inputs)))
        for part in vector_parts.joined_parts(info.parts):  # one input per track
            tracks = model_input_count(self._data, vector_parts.TRACK_INPUT)
            joined = (joined
                      | f"{part.name.title()}Input" >> beam.MapTuple(lambda track_id, vector: (track_id, (0, vector)))
                      | f"Embed{part.name.title()}" >> embed(part, tracks))
        return joined


class TrackVectorBatches(beam.PTransform):
    """:class:`TrackVectors` stacked as ``(ids, vectors)`` batches of up to
    :data:`~beam_jobs.embed.batches.VECTOR_BATCH` tracks (what ``wavelist add`` and ``update`` join to the stored vectors)."""

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
