import apache_beam as beam
from apache_beam.utils import shared
import numpy as np
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_jobs.embed import EmbedTracks, NearestNeighbours
from core.neighbours import l2_normalise, top_k_cosine, unstack_lists
from schemas.audio import AudioSpec
from schemas.tile_example import decode_tile, encode_tile


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
    spec = AudioSpec.load(pipeline_outputs["data"])
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


def test_approximate_neighbours_find_most_exact_ones(tmp_path):
    from beam_jobs.embed import ApproximateNeighbours
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
    from beam_jobs.embed import build_index_file

    rng = np.random.default_rng(5)
    centres = l2_normalise(rng.standard_normal((30, 16)))
    clustered = l2_normalise(np.repeat(centres, 100, axis=0) + 0.15 * rng.standard_normal((3000, 16)))
    uniform = l2_normalise(rng.standard_normal((3000, 16)))
    ids = np.arange(3000, dtype=np.int64)
    reports = {name: build_index_file([(ids, v.astype(np.float32))], str(tmp_path / f"{name}.npz"), None, 0.9, 500)
               for name, v in (("clustered", clustered), ("uniform", uniform))}
    for report in reports.values():
        tried = report["tuning recall@10 by nprobe"]
        assert tried[report["nprobe"]] >= 0.9 and report["recall_queries"] == 500
        assert all(recall < 0.9 for probes, recall in tried.items() if probes < report["nprobe"])
        assert report["recall@10"] > 0.8  # measured on other tracks than the ones that chose nprobe
    assert reports["uniform"]["nprobe"] > reports["clustered"]["nprobe"]


def test_track_vectors_do_not_depend_on_batching_or_part_order(pipeline_outputs):
    from beam_jobs.embed import EmbedBatchFn, OrderedMean

    spec = AudioSpec.load(pipeline_outputs["data"])
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
