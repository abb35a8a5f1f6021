"""Beam job 2, embed: tiles -> model -> one unit vector per track -> neighbour tables and map.

    python -m beam_jobs.embed --data DATA --model MODEL --out TABLES [--k 50] [beam flags]
    python -m beam_jobs.embed --add NEW_AUDIO --tables TABLES --model MODEL --out NEW_TABLES

Writes ``TABLES/embeddings.parquet``, ``neighbours.parquet``, ``tracks.parquet``, ``map3d.parquet`` and
``summary.json``; the folder appears only when complete. Embeddings and neighbours carry the model id
and audio parameters in their Parquet metadata.
"""
from __future__ import annotations

import json
import logging
import posixpath
from pathlib import Path
from typing import Any, Iterable, Iterator

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.utils import shared

from beam_jobs import common
from beam_jobs.neighbours import (block_of, l2_normalise, map_coordinates, merge_block_top_k, merge_top_k,
                                  top_k_cosine, top_k_faiss)
from schemas import tables
from schemas.audio import AudioSpec
from schemas.tile_example import TILE_FILE_SUFFIX, TILES_FOLDER, decode_tile

log = logging.getLogger(__name__)
NEIGHBOUR_REPORT = "_neighbour_report.json"
EXACT_LIMIT = 200_000  # see benchmarks/RESULTS.md: above this, exact all-pairs costs far more than the index


class EmbedOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--data", help="output folder of wavelist ingest (required)")
        parser.add_argument("--model", help="output folder of wavelist train (required)")
        parser.add_argument("--k", type=int, default=50, help="neighbours kept per track")
        parser.add_argument("--neighbours", choices=("auto", "exact", "approximate"), default="auto",
                            help=f"exact block top-k, or a faiss IVF index; auto: exact up to "
                            f"{EXACT_LIMIT:,} tracks")
        parser.add_argument("--nprobe", type=int, default=32, help="approximate: inverted lists probed")
        parser.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=256,
                            help="tiles per model call")
        parser.add_argument("--add", metavar="NEW_AUDIO",
                            help="incremental: a folder of new audio to add to the tables of --tables")
        parser.add_argument("--tables", metavar="EXISTING", help="incremental: the TABLES to extend")


class EmbedBatchFn(beam.DoFn):
    """A batch of ``(track_id, model input)`` -> ``(track_id, vector)``; the model loads once per process."""

    def __init__(self, model_dir: str, model_handle: shared.Shared):
        self._model_dir = model_dir
        self._model_handle = model_handle
        self._inputs = Metrics.counter(common.METRICS_NAMESPACE, "embed_model_inputs")

    def setup(self) -> None:
        from model.train import load_embedder

        class _Holder:  # Shared needs a weak-referenceable object
            def __init__(self, model):
                self.model = model

        self._model = self._model_handle.acquire(
            lambda: _Holder(load_embedder(common.local_folder(self._model_dir)))).model

    def process(self, batch: list[tuple[int, np.ndarray]]) -> Iterator[tuple[int, np.ndarray]]:
        track_ids = [track_id for track_id, _ in batch]
        vectors = np.asarray(self._model(np.stack([x for _, x in batch]), training=False))
        self._inputs.inc(len(batch))
        yield from zip(track_ids, vectors)


class EmbedTracks(beam.PTransform):
    """``(track_id, model input)`` -> ``(track_id, unit vector)``: the mean of the vectors of a track's
    inputs (its tiles, or its one row of summary features), normalised."""

    def __init__(self, model_dir: str, batch_size: int):
        super().__init__()
        self._model_dir = model_dir
        self._batch_size = batch_size

    def expand(self, inputs):
        return (
            inputs
            | "Batch" >> beam.BatchElements(min_batch_size=min(16, self._batch_size),
                                            max_batch_size=self._batch_size)
            | "Model" >> beam.ParDo(EmbedBatchFn(self._model_dir, shared.Shared()))
            | "MeanPerTrack" >> beam.CombinePerKey(beam.combiners.MeanCombineFn())
            | "Normalise" >> beam.MapTuple(lambda track_id, v: (track_id, l2_normalise(v[None])[0]))
        )


def read_model_inputs(pipeline, data: str, spec: AudioSpec, input_kind: str):
    """``(track_id, array)`` pairs the model takes: every log-mel tile, or each track's summary features."""
    if input_kind == "features":
        names = tables.summary_feature_names()
        return (
            pipeline
            | "ReadFeatures" >> beam.io.ReadFromParquet(posixpath.join(data, "features.parquet"))
            | "FeatureVector" >> beam.Map(
                lambda row: (row["track_id"], np.array([row[n] for n in names], np.float32)))
        )
    return (
        pipeline
        | "ReadTiles" >> beam.io.ReadFromTFRecord(posixpath.join(data, TILES_FOLDER, f"*{TILE_FILE_SUFFIX}"),
                                                  compression_type=CompressionTypes.GZIP)
        | "DecodeTiles" >> beam.Map(lambda record: decode_tile(record, spec))
        | "TrackAndMel" >> beam.Map(lambda tile: (tile.track_id, tile.mel))
    )


def stack_catalogue(pairs: Iterable[tuple[int, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """``(ids [n], vectors [n, d])`` sorted by id."""
    pairs = sorted(pairs, key=lambda pair: pair[0])
    return np.array([i for i, _ in pairs], np.int64), np.stack([v for _, v in pairs]).astype(np.float32)


class MergeTopK(beam.CombineFn):
    """Partial ``(ids, similarities)`` lists of one track -> its top k; the accumulator never holds more."""

    def __init__(self, k: int):
        self._k = k

    def create_accumulator(self):
        return np.zeros(0, np.int64), np.zeros(0, np.float32)

    def add_input(self, accumulator, partial):
        return merge_top_k([accumulator, partial], self._k)

    def merge_accumulators(self, accumulators):
        return merge_top_k(list(accumulators), self._k)

    def extract_output(self, accumulator):
        return accumulator


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


def per_track(block: int, merged) -> Any:
    query_ids, ids, sims = merged
    for track_id, row_ids, row_sims in zip(query_ids.tolist(), ids, sims):
        yield track_id, (row_ids, row_sims)


TRACKS_PER_ROW_GROUP = 1000


def write_neighbour_table(lists: list[tuple[int, tuple[np.ndarray, np.ndarray]]], path: str, schema) -> int:
    """Write neighbour lists as one Parquet file sorted by (track_id, rank), with row groups of
    ``TRACKS_PER_ROW_GROUP`` tracks so that a reader filtering on one track reads one small group.
    Returns the number of rows. (One worker writes the file: the lists are compact arrays, about
    12 bytes per neighbour, so ten million rows are about 120 MB.)"""
    import pyarrow as pa
    import pyarrow.parquet as pq

    lists = sorted(lists, key=lambda item: item[0])
    counts = [len(ids) for _, (ids, _) in lists]
    table = pa.table({
        "track_id": np.repeat(np.array([t for t, _ in lists], np.int64), counts),
        "rank": np.concatenate([np.arange(1, c + 1, dtype=np.int32) for c in counts]) if lists else np.zeros(0, np.int32),
        "neighbour_id": np.concatenate([ids for _, (ids, _) in lists]).astype(np.int64) if lists else np.zeros(0, np.int64),
        "similarity": np.concatenate([sims for _, (_, sims) in lists]).astype(np.float32) if lists else np.zeros(0, np.float32),
    }, schema=schema)
    k = max(counts) if counts else 1
    with FileSystems.create(path, compression_type="uncompressed") as handle:
        pq.write_table(table, handle, row_group_size=max(1, TRACKS_PER_ROW_GROUP * k))
    return table.num_rows


def auto_block_size(n: int) -> int:
    """About 64 sqrt(n), at least 4,096: blocks grow with the catalogue so that the data sent to the block
    pairs (each block goes to 2 n_blocks pairs) grows as n^1.5 rather than n^2; two blocks of a
    million-track catalogue still take only 16 MB."""
    return max(4096, int(64 * np.sqrt(n)))


class NearestNeighbours(beam.PTransform):
    """``(track_id, unit vector)`` -> ``(track_id, (neighbour ids, similarities))``: exact cosine top-k,
    block against block.

    The catalogue is cut into blocks of ``block_size`` tracks (default :func:`auto_block_size`) by a hash
    of the id; every pair of blocks meets once on some worker, which computes the top k of the query block
    among the candidate block (``faiss.knn``); a CombinePerKey merges the partial lists of each query block, a whole block
    at a time. No worker holds more than two blocks; the work is n_blocks^2 independent pairs.
    """

    def __init__(self, k: int, block_size: int | None = None):
        super().__init__()
        self._k = k
        self._block_size = block_size

    def expand(self, vectors):
        k, size = self._k, self._block_size
        n_blocks = (vectors | "Count" >> beam.combiners.Count.Globally()
                    | "Blocks" >> beam.Map(lambda n: max(1, -(-n // (size or auto_block_size(n))))))
        return (
            vectors
            | "KeyByBlock" >> beam.Map(lambda kv, n: (block_of(kv[0], n), kv), beam.pvalue.AsSingleton(n_blocks))
            | "GroupBlocks" >> beam.GroupByKey()
            | "StackBlocks" >> beam.MapTuple(lambda block, pairs: (block, *stack_catalogue(pairs)))
            | "ToBlockPairs" >> beam.FlatMap(lambda b, n: block_pairs(*b, n), beam.pvalue.AsSingleton(n_blocks))
            | "MeetBlocks" >> beam.GroupByKey()
            | "PartialTopK" >> beam.FlatMap(partial_top_k, k)
            | "MergeTopK" >> beam.CombinePerKey(MergeBlockTopK(k))
            | "PerTrack" >> beam.FlatMapTuple(per_track)
        )


class IvfIndex:
    """The approximate index and what the job reports of it; built once, shared with workers as a side input."""

    def __init__(self, pairs, k: int, nprobe: int, recall_queries: int = 1000):
        from beam_jobs.neighbours import build_ivf_index, recall_at, search_ivf

        self.ids, vectors = stack_catalogue(pairs)
        self.index = build_ivf_index(vectors)
        sample = np.random.default_rng(0).permutation(len(self.ids))[:recall_queries]
        exact_ids, _ = top_k_cosine(vectors[sample], self.ids[sample], vectors, self.ids, 10)
        approximate, _ = search_ivf(self.index, self.ids, vectors[sample], self.ids[sample], 10, nprobe)
        self.report = {"mode": "approximate", "index": "faiss IVFFlat, inner product",
                       "lists": int(self.index.nlist), "nprobe": nprobe, "recall_queries": int(len(sample)),
                       "recall@10": recall_at(approximate, exact_ids, 10)}

    def __getstate__(self):
        import faiss

        return {"ids": self.ids, "index": faiss.serialize_index(self.index), "report": self.report}

    def __setstate__(self, state):
        import faiss

        self.ids, self.report = state["ids"], state["report"]
        self.index = faiss.deserialize_index(state["index"])


class ApproximateNeighbours(beam.PTransform):
    """``(track_id, unit vector)`` -> ``(track_id, (ids, similarities))`` from a faiss IVF index built once
    over the whole catalogue and shared with the workers as a side input; query batches probe ``nprobe``
    lists. Its recall@10 against exact search, on up to 1,000 sampled queries, goes to ``report``."""

    def __init__(self, k: int, nprobe: int, batch_size: int = 1024):
        super().__init__()
        self._k, self._nprobe, self._batch_size = k, nprobe, batch_size

    def expand(self, vectors):
        k, nprobe = self._k, self._nprobe
        index = (vectors | "Catalogue" >> beam.combiners.ToList()
                 | "BuildIndex" >> beam.Map(lambda pairs: IvfIndex(pairs, k, nprobe)))
        self.report = index | "Report" >> beam.Map(lambda built: built.report)

        def search(batch, built):
            import faiss

            from beam_jobs.neighbours import search_ivf

            faiss.omp_set_num_threads(1)  # one worker per core already
            query_ids = np.array([i for i, _ in batch], np.int64)
            found_ids, found_sims = search_ivf(built.index, built.ids, np.stack([v for _, v in batch]), query_ids,
                                               k, nprobe)
            for track_id, ids_row, sims_row in zip(query_ids.tolist(), found_ids, found_sims):
                keep = ids_row >= 0  # the index may find fewer than k
                yield track_id, (ids_row[keep], sims_row[keep])

        return (vectors
                | "QueryBatches" >> beam.BatchElements(min_batch_size=64, max_batch_size=self._batch_size)
                | "Search" >> beam.FlatMap(search, beam.pvalue.AsSingleton(index)))


class MapCoordinates(beam.PTransform):
    """``(track_id, unit vector)`` -> map rows (3-D t-SNE of the whole catalogue, on one worker)."""

    def expand(self, vectors):
        def rows(pairs):
            ids, matrix = stack_catalogue(pairs)
            for track_id, (x, y, z) in zip(ids, map_coordinates(matrix)):
                yield {"track_id": int(track_id), "x": float(x), "y": float(y), "z": float(z)}

        return vectors | "All" >> beam.combiners.ToList() | "TSNE" >> beam.FlatMap(rows)


def build_pipeline(pipeline, *, data: str, model_dir: str, staging: str, spec: AudioSpec, input_kind: str,
                   provenance: dict[str, Any], accepted: list[dict[str, Any]], k: int, batch_size: int,
                   approximate: bool = False, nprobe: int = 32):
    inputs = read_model_inputs(pipeline, data, spec, input_kind)
    vectors = inputs | "EmbedTracks" >> EmbedTracks(model_dir, batch_size)
    common.write_parquet(
        vectors | "EmbeddingRows" >> beam.MapTuple(lambda i, v: {"track_id": int(i), "embedding": v.tolist()}),
        staging, "embeddings.parquet", tables.with_metadata(tables.EMBEDDINGS, **provenance), "WriteEmbeddings",
    )
    if approximate:
        search = ApproximateNeighbours(k, nprobe)
        lists = vectors | "Neighbours" >> search
        _ = search.report | "WriteReport" >> beam.Map(
            lambda report: common.write_text(posixpath.join(staging, NEIGHBOUR_REPORT), json.dumps(report)))
    else:
        lists = vectors | "Neighbours" >> NearestNeighbours(k)
    _ = (
        lists
        | "AllLists" >> beam.combiners.ToList()
        | "WriteNeighbours" >> beam.Map(write_neighbour_table, posixpath.join(staging, "neighbours.parquet"),
                                        tables.with_metadata(tables.NEIGHBOURS, **provenance))
    )
    common.write_parquet(vectors | "Map" >> MapCoordinates(), staging, "map3d.parquet",
                tables.with_metadata(tables.MAP3D, **provenance), "WriteMap")
    embedded_ids = vectors | "Ids" >> beam.Keys()
    tracks = (
        pipeline
        | "Accepted" >> beam.Create(accepted)
        | "KeepEmbedded" >> beam.Filter(lambda row, ids: row["track_id"] in set(ids),
                                        beam.pvalue.AsList(embedded_ids))
    )
    common.write_parquet(tracks, staging, "tracks.parquet", tables.TRACKS, "WriteTracks")


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> dict[str, Any]:
    """Run the embed job; returns the summary it also writes to ``OUT/summary.json``."""
    options = PipelineOptions(argv)
    args = options.view_as(EmbedOptions)
    if args.add:
        from beam_jobs import add_tracks

        return add_tracks.run(argv, test_pipeline)
    common.require_flags(options, "data", "model", "out")
    output = options.view_as(common.OutputOptions)
    common.require_complete(args.data, made_by="wavelist ingest")
    common.require_complete(args.model, made_by="wavelist train")
    spec = common.load_audio_spec(args.data, made_by="wavelist ingest")
    spec.require_same(common.load_audio_spec(args.model, made_by="wavelist train"),
                      what=f"the tiles in {args.data} (vs the model {args.model})")
    info = common.read_json(common.join(args.model, "model_info.json"), made_by="wavelist train")
    provenance = {"model_id": info["model_id"], "audio_spec": spec.to_dict()}
    accepted = [row for row in common.read_parquet(common.join(args.data, "tracks.parquet"),
                                                   made_by="wavelist ingest").to_pylist()
                if row["status"] == "ok"]
    approximate = args.neighbours == "approximate" or (args.neighbours == "auto" and len(accepted) > EXACT_LIMIT)
    log.info("embed: %d tracks with model %s, %s neighbours", len(accepted), info["model_id"],
             "approximate" if approximate else "exact")

    with common.staged_output(output.out, overwrite=output.overwrite) as staging:
        pipeline = test_pipeline or common.make_pipeline(options, argv)
        model_dir = args.model if common.is_remote(args.model) else str(Path(args.model).resolve())
        build_pipeline(pipeline, data=args.data, model_dir=model_dir, staging=staging,
                       spec=spec, input_kind=info.get("input", "tiles"), provenance=provenance,
                       accepted=accepted, k=args.k, batch_size=args.batch_size, approximate=approximate,
                       nprobe=args.nprobe)
        pipeline.run().wait_until_finish()
        embedded = common.parquet_num_rows(common.join(staging, "embeddings.parquet"))
        report_file = common.join(staging, NEIGHBOUR_REPORT)
        summary = {
            "model_id": info["model_id"],
            "tracks_in_data": len(accepted),
            "tracks_embedded": embedded,
            "neighbour_rows": common.parquet_num_rows(common.join(staging, "neighbours.parquet")),
            "k": args.k,
            "neighbours": (common.read_json(report_file) if approximate
                           else {"mode": "exact", "recall@10": 1.0}),
        }
        if FileSystems.exists(report_file):
            FileSystems.delete([report_file])
        common.write_text(common.join(staging, "summary.json"), json.dumps(summary, indent=2) + "\n")
    log.info("embed: %d tracks embedded -> %s", embedded, output.out)
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run()
