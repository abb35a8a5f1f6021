import apache_beam as beam
import pytest
from apache_beam.utils import shared
import numpy as np
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs.embed import EmbedTracks
from beam_jobs.embed.testing import NearestNeighbours
from core.neighbours import l2_normalise, top_k_cosine, unstack_lists
from schemas.audio import AudioSpec
from schemas.tile_example import decode_tile, encode_tile
from storage import files
from tests.conftest import table_file


def test_nearest_neighbours_transform_equals_exact_top_k():
    rng = np.random.default_rng(3)
    ids = np.arange(100, 160, dtype=np.int64)
    vectors = l2_normalise(rng.standard_normal((60, 8)))
    want_ids, want_sims = top_k_cosine(vectors, ids, vectors, ids, 5)
    expected = [(int(t), want_ids[i].tolist()) for i, t in enumerate(ids)]
    with TestPipeline() as pipeline:
        lists = (pipeline | beam.Create(list(zip(ids.tolist(), vectors))) | NearestNeighbours(k=5, block_size=7)
                 | beam.FlatMap(unstack_lists))
        assert_that(lists | beam.MapTuple(lambda t, merged: (t, merged[0].tolist())), equal_to(expected))


def test_embed_tracks_gives_one_unit_vector_per_track(pipeline_outputs):
    spec = files.load_audio_spec(pipeline_outputs["data"])
    rng = np.random.default_rng(0)
    records = [encode_tile(track_id=t, tile_index=i, mel=rng.normal(-40, 10, spec.tile_shape))
               for t in (11, 12, 13) for i in range(3)]

    def check(pairs):
        assert sorted(track_id for track_id, _ in pairs) == [11, 12, 13]
        for _, vector in pairs:
            assert vector.shape == (64,) and abs(np.linalg.norm(vector) - 1) < 1e-5

    with TestPipeline() as pipeline:
        vectors = (pipeline | beam.Create(records)
                   | beam.Map(lambda r: (decode_tile(r, spec).track_id, (decode_tile(r, spec).tile_index, decode_tile(r, spec).mel)))
                   | EmbedTracks(str(pipeline_outputs["model"]), 4))
        assert_that(vectors, check)


def test_embed_progress_lines_carry_the_total(pipeline_outputs, capfd):
    import re

    spec = files.load_audio_spec(pipeline_outputs["data"])
    rng = np.random.default_rng(1)
    pairs = [(t, (i, rng.normal(-40, 10, spec.tile_shape).astype(np.float32))) for t in (11, 12, 13) for i in range(3)]
    with TestPipeline() as pipeline:
        _ = (pipeline | beam.Create(pairs)
             | EmbedTracks(str(pipeline_outputs["model"]), 4, total=9, workers=1, unit="tiles", every_s=0))
    lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith("embed worker")]
    counts = [tuple(map(int, re.search(r": (\d+) of (\d+) tiles", line).groups())) for line in lines]
    assert counts and {total for _, total in counts} == {9} and max(done for done, _ in counts) == 9, lines
    # the first batch gives no pace yet (the time before it was the model's loading), so no estimate
    assert not re.search(r"tiles/s|left", lines[0]), lines
    assert all(re.search(r", [\d.]+ tiles/s", line) for line in lines[1:]), lines
    assert any("left" in line for line in lines[1:-1]) or len(lines) <= 2, lines


def test_approximate_neighbours_find_most_exact_ones(tmp_path):
    from beam_jobs.embed.testing import ApproximateNeighbours
    from core.neighbours import recall_at

    rng = np.random.default_rng(4)
    centres = l2_normalise(rng.standard_normal((20, 16)))
    vectors = l2_normalise(np.repeat(centres, 40, axis=0) + 0.2 * rng.standard_normal((800, 16)))
    ids = np.arange(800, dtype=np.int64) + 10
    exact_ids, _ = top_k_cosine(vectors, ids, vectors, ids, 10)
    exact = dict(zip(ids.tolist(), exact_ids))

    def check(lists):
        lists = dict(lists)
        assert sorted(lists) == ids.tolist()
        assert all(t not in found[0] and len(found[0]) == 10 for t, found in lists.items())
        assert recall_at([lists[t][0] for t in ids.tolist()], [exact[t] for t in ids.tolist()]) > 0.9

    with TestPipeline() as pipeline:
        search = ApproximateNeighbours(k=10, nprobe=8, index_dir=str(tmp_path), batch_size=100)
        lists = pipeline | beam.Create(list(zip(ids.tolist(), vectors))) | search | beam.FlatMap(unstack_lists)
        assert_that(lists, check, label="lists")
        assert_that(search.report | beam.Map(lambda r: (r["mode"], r["recall@10"] > 0.9, r["recall_queries"])),
                    equal_to([("approximate", True, 800)]), label="report")


def test_embed_job_reports_approximate_recall(pipeline_outputs, tmp_path):
    from beam_jobs import embed
    from tests.conftest import IN_MEMORY

    summary = embed.run(["--data", str(pipeline_outputs["data"]), "--model", str(pipeline_outputs["model"]),
                         "--out", str(tmp_path / "t"), "--k", "5", "--neighbours", "approximate", *IN_MEMORY])
    assert summary["neighbours"]["mode"] == "approximate"
    assert 0.0 <= summary["neighbours"]["recall@10"] <= 1.0 and summary["neighbour_rows"] == 32 * 5
    assert not (tmp_path / "t" / "_neighbour_report.json").exists()


def test_automatic_nprobe_is_the_fewest_lists_reaching_the_target(tmp_path):
    from beam_jobs.embed.index import build_index_file, train_index, training_part
    from core.neighbours import assign_ivf

    def build(ids, vectors, path):
        """The job's build steps in one process: the sample, the centroids, each batch's lists, the fill."""
        batches = [(ids[:1000], vectors[:1000]), (ids[1000:], vectors[1000:])]
        serialised = train_index([training_part(batch, len(ids)) for batch in batches], len(ids))
        template = faiss.deserialize_index(np.frombuffer(serialised, np.uint8))
        parts = [(i, v, assign_ivf(template, v)) for i, v in batches]
        return build_index_file(parts, serialised, path, None, 0.9, 500)

    import faiss

    rng = np.random.default_rng(5)
    centres = l2_normalise(rng.standard_normal((30, 16)))
    clustered = l2_normalise(np.repeat(centres, 100, axis=0) + 0.15 * rng.standard_normal((3000, 16)))
    uniform = l2_normalise(rng.standard_normal((3000, 16)))
    ids = np.arange(3000, dtype=np.int64)
    reports = {name: build(ids, v.astype(np.float32), str(tmp_path / f"{name}.npz"))
               for name, v in (("clustered", clustered), ("uniform", uniform))}
    for report in reports.values():
        tried = report["tuning recall@10 by nprobe"]
        assert tried[report["nprobe"]] >= 0.9 and report["recall_queries"] == 500
        assert all(recall < 0.9 for probes, recall in tried.items() if probes < report["nprobe"])
        assert report["recall@10"] > 0.8  # measured on other tracks than the ones that chose nprobe
    assert reports["uniform"]["nprobe"] > reports["clustered"]["nprobe"]


def test_track_vectors_do_not_depend_on_batching_or_part_order(pipeline_outputs):
    from beam_jobs.embed.model_vectors import EmbedBatchFn, OrderedMean

    spec = files.load_audio_spec(pipeline_outputs["data"])
    mels = np.random.default_rng(1).normal(-40, 10, (7, *spec.tile_shape)).astype(np.float32)
    embed = EmbedBatchFn(str(pipeline_outputs["model"]), shared.Shared(), batch_size=8)
    embed.setup()
    whole = [v for _, (_, v) in embed.process([(5, (i, m)) for i, m in enumerate(mels)])]
    pieces = [v for start in (0, 3, 4) for _, (_, v) in embed.process(
        [(5, (i, mels[i])) for i in range(start, {0: 3, 3: 4, 4: 7}[start])])]
    assert all(np.array_equal(a, b) for a, b in zip(whole, pieces))  # bit for bit
    mean = OrderedMean()
    parts = list(enumerate(whole))
    one = mean.extract_output(mean.merge_accumulators([mean.add_input([], p) for p in parts]))
    other = mean.extract_output(mean.merge_accumulators([[p] for p in parts[::-1]]))
    assert np.array_equal(one, other)


def _clustered(n: int, dim: int = 16, seed: int = 6):
    rng = np.random.default_rng(seed)
    centres = l2_normalise(rng.standard_normal((6, dim)))
    return l2_normalise(centres[np.arange(n) % 6] + 0.1 * rng.standard_normal((n, dim)))


def test_map_sample_does_not_depend_on_how_tracks_are_split():
    from core.neighbours import sample_rank, smallest_by_rank

    ids = np.random.default_rng(2).permutation(10_000)[:500].astype(np.int64)
    vectors = _clustered(500)
    whole = smallest_by_rank([(ids, vectors)], 50)
    parts = [(ids[i::3], vectors[i::3]) for i in range(3)]
    merged = smallest_by_rank([smallest_by_rank(parts[:2], 50), parts[2]], 50)
    assert np.array_equal(whole[0], merged[0]) and np.array_equal(whole[1], merged[1])
    assert np.all(np.diff(whole[0]) > 0)  # sorted by id
    assert set(whole[0]) == set(ids[np.argsort(sample_rank(ids))[:50]])


@pytest.mark.parametrize("method", ["auto", "umap"])  # auto: t-SNE of a sample this small
def test_map_transform_equals_the_one_process_map(method):
    """MapCoordinates (a layout of the sample on one worker, the rest placed batch by batch) gives the map that
    map_coordinates computes in one process."""
    import pyarrow as pa

    from beam_jobs.embed import MapCoordinates
    from beam_jobs.embed.batches import stack_batch
    from core.neighbours import map_coordinates

    ids = np.arange(300, dtype=np.int64) * 7 + 3
    vectors = _clustered(300)
    want = map_coordinates(vectors, ids, sample=60, method=method)

    def check(tables):
        table = pa.concat_tables(tables).sort_by("track_id")
        assert table["track_id"].to_pylist() == ids.tolist()
        got = np.stack([table[c].to_numpy() for c in "xyz"], axis=1)
        np.testing.assert_allclose(got, want, atol=1e-5)

    with TestPipeline() as pipeline:
        batches = [stack_batch(list(zip(ids[i:i + 40].tolist(), vectors[i:i + 40]))) for i in range(0, 300, 40)]
        assert_that(pipeline | beam.Create(batches) | MapCoordinates(sample=60, method=method), check)


def test_tracks_are_joined_by_key_without_rejected_or_unembedded_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from beam_jobs import embed
    from schemas import tables

    n = 250
    ids = np.arange(n, dtype=np.int64) + 40
    rows = [{"track_id": int(i), "path": f"{i}.mp3", "genre": "Rock", "artist_id": 1, "artist": "A", "title": f"t{i}",
             "split": "train", "duration_s": 30.0, "n_tiles": 3, "status": "rejected" if i % 10 == 0 else "ok"}
            for i in ids]
    pq.write_table(pa.Table.from_pylist(rows, schema=tables.TRACKS), tmp_path / "tracks.parquet")
    embedded = ids[ids % 7 != 0]  # some accepted tracks got no vector
    want = sorted(int(i) for i in embedded if i % 10 != 0)
    with TestPipeline() as pipeline:
        batches = pipeline | beam.Create([(embedded[i:i + 50], np.zeros((len(embedded[i:i + 50]), 2), np.float32))
                                          for i in range(0, len(embedded), 50)])
        joined = batches | embed.EmbeddedTracks(str(tmp_path / "tracks.parquet"), tracks_per_bucket=60)  # several
        assert_that(joined | beam.FlatMap(lambda t: t["track_id"].to_pylist()), equal_to(want))


def test_neighbour_and_embedding_tables_from_blocks():
    from beam_jobs.embed.batches import embedding_table
    from beam_jobs.embed.tail import neighbour_tables

    block = (np.array([9, 4, 6]), np.array([[4, 6], [6, -1], [9, 4]]),
             np.array([[0.9, 0.5], [0.7, -np.inf], [0.8, 0.6]], np.float32))
    parts = list(neighbour_tables(block, tracks_per_table=2))
    assert [p.num_rows for p in parts] == [3, 2]  # tracks 4, 6 then 9; padding dropped
    rows = [r for p in parts for r in p.to_pylist()]
    assert [(r["track_id"], r["rank"], r["neighbour_id"]) for r in rows] == [
        (4, 1, 6), (6, 1, 9), (6, 2, 4), (9, 1, 4), (9, 2, 6)]
    table = embedding_table((np.array([5, 2]), np.array([[0.6, 0.8], [1.0, 0.0]], np.float32)))
    assert table.to_pylist() == [{"track_id": 2, "embedding": [1.0, 0.0]},
                                 {"track_id": 5, "embedding": [pytest.approx(0.6), pytest.approx(0.8)]}]


def test_the_embed_job_graph_holds_no_catalogue(tmp_path):
    """The job graphs of a 20-track and of a 20,000-track DATA folder are the same size (up to pickled names):
    the catalogue is read inside the job (Dataflow caps a job graph's size; 20,000 rows would add about 1 MB)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from beam_jobs import embed
    from schemas import tables
    from schemas.model_info import ModelInfo
    from schemas.tile_example import TILES_FOLDER

    sizes = {}
    for n in (20, 20_000):
        data = tmp_path / f"data{n:05d}"
        (data / TILES_FOLDER).mkdir(parents=True)
        rows = [{"track_id": i, "path": f"{i}.mp3", "genre": "Rock", "artist_id": 1, "artist": "A", "title": "t",
                 "split": "train", "duration_s": 30.0, "n_tiles": 3, "status": "ok"} for i in range(n)]
        pq.write_table(pa.Table.from_pylist(rows, schema=tables.TRACKS), data / "tracks.parquet")
        pipeline = beam.Pipeline()
        embed.build_pipeline(pipeline, data=str(data), model_dir=str(tmp_path / "model"), staging=str(tmp_path / "s"),
                             spec=AudioSpec(), info=ModelInfo(model_id="m", kind="cnn", parts=("tiles",), part_dims=(64,)),
                             provenance={"model_id": "m"}, k=5, batch_size=8)
        sizes[n] = len(pipeline.to_runner_api().SerializeToString())
    assert abs(sizes[20_000] - sizes[20]) < 2_000, sizes


def test_tensorflow_gets_one_thread_pool_per_process():
    import subprocess
    import sys

    code = ("from beam_jobs.embed.model_vectors import limit_tensorflow_threads as limit; import tensorflow as tf; "
            "print(limit(), limit(), tf.config.threading.get_intra_op_parallelism_threads(), "
            "tf.config.threading.get_inter_op_parallelism_threads())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.stdout.split() == ["True", "True", "1", "1"], result.stderr[-2000:]


def test_table_written_as_shards_reads_back_in_one_call(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from beam_jobs import common
    from schemas import tables

    schema = tables.with_metadata(tables.MAP3D, model_id="m")
    parts = [pa.table({"track_id": np.arange(i, i + 10, dtype=np.int64), "x": np.zeros(10, np.float32),
                       "y": np.ones(10, np.float32), "z": np.zeros(10, np.float32)}) for i in range(0, 50, 10)]
    with TestPipeline() as pipeline:
        _ = pipeline | beam.Create(parts) | common.WriteTable(str(tmp_path), "map3d.parquet", schema)
    shards = files.table_files(str(tmp_path / "map3d.parquet"))
    assert shards and all("/map3d.parquet/part-" in f for f in shards)
    assert files.parquet_num_rows(str(tmp_path / "map3d.parquet")) == 50
    table = files.read_parquet(str(tmp_path / "map3d.parquet"))
    assert sorted(table["track_id"].to_pylist()) == list(range(50))
    assert tables.read_metadata(pq.read_table(tmp_path / "map3d.parquet").schema)["model_id"] == "m"


def test_stored_neighbour_rows_become_lists_per_track():
    import pyarrow as pa

    from beam_jobs.embed.exact_neighbours import stored_lists

    table = pa.table({"track_id": [7, 3, 3, 7], "rank": [2, 2, 1, 1], "neighbour_id": [1, 9, 8, 2],
                      "similarity": pa.array([0.1, 0.2, 0.3, 0.4], pa.float32())})
    lists = {t: (i.tolist(), s.tolist()) for t, (i, s) in stored_lists(table)}
    assert lists == {3: ([8, 9], [pytest.approx(0.3), pytest.approx(0.2)]),
                     7: ([2, 1], [pytest.approx(0.4), pytest.approx(0.1)])}


def test_extra_vectors_join_each_track_as_one_more_weighted_part(pipeline_outputs, tmp_path):
    """``--extra-vectors``: the model's vector and the external one side by side, cosines mixed by the weight
    (checked against the model-only tables of the same run, before the diffusion, which comes after the join); a
    missing track or a bad file is one line."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from beam_jobs import embed
    from schemas.errors import UserError
    from tests.conftest import IN_MEMORY

    base = ["--data", str(pipeline_outputs["data"]), "--model", str(pipeline_outputs["model"]), "--k", "5", *IN_MEMORY]
    plain = pq.read_table(table_file(pipeline_outputs["tables"] / "undiffused.parquet")).to_pydict()
    ids = plain["track_id"]
    rng = np.random.default_rng(7)
    extra = rng.standard_normal((len(ids), 3)) * 5  # any scale: each row is made unit length
    extra_file = tmp_path / "extra.parquet"
    pq.write_table(pa.table({"track_id": ids + [10**9], "vector": [list(v) for v in extra] + [[1.0, 0, 0]]}),
                   extra_file)
    summary = embed.run([*base, "--out", str(tmp_path / "t"), "--extra-vectors", str(extra_file),
                         "--extra-weight", "0.25"])
    assert summary["extra_vectors"] == {"file": str(extra_file), "dim": 3, "weight": 0.25}
    joined = pq.read_table(table_file(tmp_path / "t" / "undiffused.parquet")).to_pydict()
    assert joined["track_id"] == ids
    model, got = np.array(plain["embedding"]), np.array(joined["embedding"])
    assert got.shape == (len(ids), model.shape[1] + 3)
    external = extra / np.linalg.norm(extra, axis=1, keepdims=True)
    np.testing.assert_allclose(got @ got.T, 0.75 * model @ model.T + 0.25 * external @ external.T, atol=1e-5)
    from beam_jobs import add_tracks
    with pytest.raises(UserError, match="cannot join them to new tracks yet"):
        add_tracks.run(["--audio-dir", str(tmp_path), "--tables", str(tmp_path / "t"), "--model",
                        str(pipeline_outputs["model"]), "--out", str(tmp_path / "added"), *IN_MEMORY])

    pq.write_table(pa.table({"track_id": ids[1:], "vector": [list(v) for v in extra[1:]]}), extra_file)
    with pytest.raises(UserError, match=f"0 vectors for track {ids[0]}"):
        embed.run([*base, "--out", str(tmp_path / "u"), "--extra-vectors", str(extra_file)])
    pq.write_table(pa.table({"track_id": ids, "wrong": ids}), extra_file)
    with pytest.raises(UserError, match="needs the columns track_id and one of vector or embedding"):
        embed.run([*base, "--out", str(tmp_path / "v"), "--extra-vectors", str(extra_file)])


def test_diffusion_transform_equals_the_one_process_diffusion():
    """:class:`Diffuse` over exact blocks, its catalogue cut into several buckets, gives
    :func:`core.neighbours.diffuse` of the whole catalogue at once."""
    from beam_jobs import embed
    from core.neighbours import diffuse

    rng = np.random.default_rng(5)
    centres = l2_normalise(rng.standard_normal((5, 12)))
    vectors = l2_normalise(np.repeat(centres, 50, axis=0) + 0.4 * rng.standard_normal((250, 12)))
    ids = rng.permutation(10_000)[:250].astype(np.int64)
    rows, sims = top_k_cosine(vectors, np.arange(250), vectors, np.arange(250), 6)
    want = dict(zip(ids.tolist(), diffuse(vectors, rows, sims, power=3.0)))

    def check(batches):
        got = {int(t): v for batch_ids, batch_vectors in batches for t, v in zip(batch_ids, batch_vectors)}
        assert sorted(got) == sorted(want)
        for track_id, vector in got.items():
            np.testing.assert_allclose(vector, want[track_id], atol=1e-5)

    with TestPipeline() as pipeline:
        batches = (pipeline | beam.Create([(ids[i:i + 40], vectors[i:i + 40]) for i in range(0, 250, 40)])
                   | embed.Diffuse(3.0, embed.BlockNeighbours(6, block_size=60), tracks_per_bucket=70))  # 4 buckets
        assert_that(batches, check)


def test_embed_diffuses_by_default_and_keeps_the_vectors_before(pipeline_outputs, tmp_path):
    """The default tables hold the vectors diffused over their 5 nearest, and beside them the vectors before
    the diffusion (what ``wavelist add`` diffuses new tracks against), which ``--diffusion 0`` writes alone."""
    import pyarrow.parquet as pq

    from beam_jobs import embed
    from core.neighbours import DIFFUSION_NEIGHBOURS, diffuse_exact
    from tests.conftest import IN_MEMORY

    default = pipeline_outputs["tables"]
    assert files.read_json(default / "summary.json")["diffusion"] == {"neighbours": DIFFUSION_NEIGHBOURS, "power": 3.0}
    summary = embed.run(["--data", str(pipeline_outputs["data"]), "--model", str(pipeline_outputs["model"]),
                         "--out", str(tmp_path / "t"), "--k", "5", "--diffusion", "0", *IN_MEMORY])
    assert "diffusion" not in summary and not (tmp_path / "t" / "undiffused.parquet").exists()
    plain = pq.read_table(table_file(tmp_path / "t" / "embeddings.parquet")).to_pydict()
    before = pq.read_table(table_file(default / "undiffused.parquet")).to_pydict()
    got = pq.read_table(table_file(default / "embeddings.parquet")).to_pydict()
    assert got["track_id"] == plain["track_id"] == before["track_id"]
    vectors = np.array(plain["embedding"], np.float32)
    np.testing.assert_allclose(np.array(before["embedding"]), vectors, atol=1e-6)
    np.testing.assert_allclose(np.array(got["embedding"]), diffuse_exact(vectors, DIFFUSION_NEIGHBOURS), atol=1e-5)
    assert not np.allclose(np.array(got["embedding"]), vectors, atol=1e-3)  # the diffusion moved them

def test_map_placement_through_the_sample_index_equals_the_one_process_map(monkeypatch):
    """Above PLACEMENT_INDEX_ABOVE sampled tracks the placement searches an IVF index of the sample, built once
    and shared with the workers; the job's map still equals map_coordinates', and the indexed search finds
    nearly every exact nearest sampled track."""
    import pyarrow as pa

    import core.neighbours as neighbours
    from beam_jobs.embed import MapCoordinates
    from beam_jobs.embed.batches import stack_batch

    monkeypatch.setattr(neighbours, "PLACEMENT_INDEX_ABOVE", 500)
    ids = np.arange(1_500, dtype=np.int64) * 7 + 3
    vectors = _clustered(1_500).astype(np.float32)
    sample_ids, sample_vectors = neighbours.smallest_by_rank([(ids, vectors)], 1_000)
    index = neighbours.placement_index(sample_vectors)
    assert index is not None and index.nlist > neighbours.PLACEMENT_NPROBE  # some lists are not searched
    indexed = neighbours.nearest_rows(vectors, sample_vectors, index=index)
    exact = neighbours.nearest_rows(vectors, sample_vectors)
    assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(indexed, exact)]) > 0.9
    want = neighbours.map_coordinates(vectors, ids, sample=1_000, method="umap")

    def check(tables):
        table = pa.concat_tables(tables).sort_by("track_id")
        got = np.stack([table[c].to_numpy() for c in "xyz"], axis=1)
        np.testing.assert_allclose(got, want, atol=1e-5)

    with TestPipeline() as pipeline:
        batches = [stack_batch(list(zip(ids[i:i + 400].tolist(), vectors[i:i + 400]))) for i in range(0, 1_500, 400)]
        assert_that(pipeline | beam.Create(batches) | MapCoordinates(sample=1_000, method="umap"), check)
