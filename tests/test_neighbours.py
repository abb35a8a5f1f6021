import numpy as np
import pytest

from core.neighbours import l2_normalise, map_coordinates, top_k_cosine

pytestmark = pytest.mark.unit  # pure code: no pipeline, no training


def brute_force(vectors, ids, k):
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return ids[order], np.take_along_axis(sims, order, axis=1)


def test_top_k_matches_brute_force_and_excludes_self():
    rng = np.random.default_rng(0)
    vectors = l2_normalise(rng.standard_normal((200, 16)))
    ids = rng.permutation(10_000)[:200].astype(np.int64)
    got_ids, got_sims = top_k_cosine(vectors[:50], ids[:50], vectors, ids, 10)
    want_ids, want_sims = brute_force(vectors, ids, 10)
    np.testing.assert_array_equal(got_ids, want_ids[:50])
    np.testing.assert_allclose(got_sims, want_sims[:50], rtol=1e-5)
    assert not np.any(got_ids == ids[:50, None])
    assert np.all(np.diff(got_sims, axis=1) <= 0)


def test_k_larger_than_catalogue_returns_everyone_else():
    vectors = l2_normalise(np.eye(4) + 0.1)
    got_ids, _ = top_k_cosine(vectors, np.arange(4), vectors, np.arange(4), 50)
    assert got_ids.shape == (4, 3)
    assert all(sorted(row) == sorted(set(range(4)) - {i}) for i, row in enumerate(got_ids.tolist()))


def test_ties_break_by_smaller_id():
    vectors = l2_normalise(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]))
    got_ids, _ = top_k_cosine(vectors[:1], np.array([0]), vectors, np.array([0, 9, 3, 5]), 3)
    assert got_ids.tolist() == [[3, 5, 9]]


def test_zero_vector_cannot_be_normalised():
    with pytest.raises(ValueError, match="zero vector"):
        l2_normalise(np.zeros((1, 3)))


def test_map_keeps_clusters_apart():
    rng = np.random.default_rng(0)
    centres = l2_normalise(rng.standard_normal((8, 64)))
    vectors = l2_normalise(np.repeat(centres, 20, axis=0) + 0.05 * rng.standard_normal((160, 64)))
    coords = map_coordinates(vectors)
    assert coords.shape == (160, 3)
    # t-SNE keeps neighbourhoods, not distances: each point's 5 nearest map points share its cluster
    distances = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    nearest = np.argsort(distances, axis=1)[:, :5]
    cluster = np.repeat(np.arange(8), 20)
    assert np.mean(cluster[nearest] == cluster[:, None]) > 0.95
    assert map_coordinates(vectors[:3]).shape == (3, 3)


def test_merged_partial_lists_equal_top_k_of_the_whole():
    from core.neighbours import merge_top_k

    rng = np.random.default_rng(5)
    vectors = l2_normalise(rng.standard_normal((300, 8)))
    ids = np.arange(300, dtype=np.int64) * 7
    want_ids, want_sims = top_k_cosine(vectors[:1], ids[:1], vectors, ids, 10)
    parts = [top_k_cosine(vectors[:1], ids[:1], vectors[s:s + 40], ids[s:s + 40], 10) for s in range(0, 300, 40)]
    got_ids, got_sims = merge_top_k([(p_ids[0], p_sims[0]) for p_ids, p_sims in parts], 10)
    np.testing.assert_array_equal(got_ids, want_ids[0])
    np.testing.assert_allclose(got_sims, want_sims[0], rtol=1e-6)
    reversed_ids, _ = merge_top_k([(p_ids[0], p_sims[0]) for p_ids, p_sims in parts[::-1]], 10)
    np.testing.assert_array_equal(reversed_ids, got_ids)


def test_blocks_are_balanced():
    from collections import Counter

    from core.neighbours import block_of

    counts = Counter(block_of(i, 8) for i in range(0, 80_000, 10))  # ids with a common stride
    assert min(counts.values()) > 0.9 * 1000 and max(counts.values()) < 1.1 * 1000


def test_map_of_a_large_catalogue_places_the_rest_beside_their_neighbours():
    rng = np.random.default_rng(1)
    centres = l2_normalise(rng.standard_normal((6, 32)))
    cluster = np.repeat(np.arange(6), 60)
    vectors = l2_normalise(centres[cluster] + 0.05 * rng.standard_normal((360, 32)))
    coords = map_coordinates(vectors, sample=120)  # t-SNE of 120, the other 240 placed
    distances = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    nearest = np.argsort(distances, axis=1)[:, :5]
    assert np.mean(cluster[nearest] == cluster[:, None]) > 0.95


def test_block_merge_equals_row_by_row_merge():
    from core.neighbours import merge_block_top_k, merge_top_k

    rng = np.random.default_rng(8)
    parts = [(rng.integers(0, 1000, (6, 4)), rng.random((6, 4)).astype(np.float32)) for _ in range(3)]
    ids, sims = merge_block_top_k(parts, 5)
    for row in range(6):
        want_ids, want_sims = merge_top_k([(i[row], s[row]) for i, s in parts], 5)
        np.testing.assert_array_equal(ids[row], want_ids)
        np.testing.assert_allclose(sims[row], want_sims)


def test_faiss_top_k_matches_numpy_top_k():
    from core.neighbours import top_k_faiss

    rng = np.random.default_rng(9)
    vectors = l2_normalise(rng.standard_normal((500, 16)))
    ids = rng.permutation(100_000)[:500].astype(np.int64)
    for queries in (slice(0, 50), slice(450, 500)):
        want = top_k_cosine(vectors[queries], ids[queries], vectors, ids, 10)
        got = top_k_faiss(vectors[queries], ids[queries], vectors, ids, 10)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1], atol=1e-5)
    small = top_k_faiss(vectors[:3], ids[:3], vectors[:3], ids[:3], 10)
    assert small[0].shape == (3, 2) and not np.any(small[0] == ids[:3, None])


def test_ivf_search_excludes_self_and_pads_missing():
    from core.neighbours import build_ivf_index, search_ivf

    rng = np.random.default_rng(3)
    vectors = l2_normalise(rng.standard_normal((400, 8)))
    ids = np.arange(400, dtype=np.int64) + 1000
    index = build_ivf_index(vectors)
    found, sims = search_ivf(index, ids, vectors[:20], ids[:20], 10, nprobe=index.nlist)  # all lists: exact
    want, _ = top_k_cosine(vectors[:20], ids[:20], vectors, ids, 10)
    np.testing.assert_array_equal(found, want)
    few, few_sims = search_ivf(index, ids, vectors[:2], ids[:2], 500, nprobe=index.nlist)
    assert (few[:, -1] == -1).all() and np.isneginf(few_sims[:, -1]).all()


def test_block_of_an_array_equals_block_of_each_id():
    from core.neighbours import block_of

    ids = np.array([0, 7, 123_456_789, 2**62 + 7, 10**15], np.int64)
    assert block_of(ids, 5).tolist() == [block_of(int(i), 5) for i in ids]
    assert all(0 <= block_of(int(i), 5) < 5 for i in ids)


def test_stacked_lists_unstack_to_the_same_lists():
    from core.neighbours import stack_lists, unstack_lists

    lists = [(5, (np.array([1, 2, 3]), np.array([0.9, 0.8, 0.7], np.float32))), (9, (np.array([4]), np.array([0.5], np.float32)))]
    track_ids, ids, sims = stack_lists(lists)
    assert ids.shape == (2, 3) and ids[1].tolist() == [4, -1, -1] and np.isneginf(sims[1, 1:]).all()
    back = list(unstack_lists((track_ids, ids, sims)))
    assert [(t, i.tolist(), s.tolist()) for t, (i, s) in back] == [(t, i.tolist(), s.tolist()) for t, (i, s) in lists]


def test_neighbour_table_from_padded_blocks_is_sorted_and_ranked(tmp_path):
    import pyarrow.parquet as pq

    from tests.records import write_neighbour_table
    from schemas import tables

    blocks = [(np.array([30, 10]), np.array([[10, -1], [30, 20]]), np.array([[0.5, -np.inf], [0.5, 0.4]], np.float32)),
              (np.array([20]), np.array([[10]]), np.array([[0.4]], np.float32))]
    rows = write_neighbour_table(blocks, str(tmp_path / "n.parquet"), tables.NEIGHBOURS)
    table = pq.read_table(tmp_path / "n.parquet").to_pylist()
    assert rows == 4
    assert [(r["track_id"], r["rank"], r["neighbour_id"]) for r in table] == [(10, 1, 30), (10, 2, 20), (20, 1, 10), (30, 1, 10)]


def test_diffusion_is_the_weighted_unit_mean_of_a_track_and_its_neighbours():
    from core.neighbours import diffuse

    vectors = l2_normalise(np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]]))
    rows = np.array([[1, 2], [0, 2], [1, 0], [-1, -1]])  # the last track has no neighbour
    sims = np.einsum("nd,nmd->nm", vectors, vectors[np.maximum(rows, 0)])
    got = diffuse(vectors, rows, np.where(rows >= 0, sims, -np.inf), power=2.0)
    want = vectors[0] + 0.8**2 * vectors[1] + 0.0 * vectors[2]
    np.testing.assert_allclose(got[0], want / np.linalg.norm(want), atol=1e-6)
    np.testing.assert_allclose(got[3], vectors[3], atol=1e-6)  # alone: unchanged
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


def test_diffusion_pulls_a_cluster_together_and_leaves_it_apart_from_others():
    from core.neighbours import diffuse

    rng = np.random.default_rng(2)
    centres = l2_normalise(rng.standard_normal((4, 16)))
    vectors = l2_normalise(np.repeat(centres, 25, axis=0) + 0.5 * rng.standard_normal((100, 16)))
    ids = np.arange(100)
    rows, sims = top_k_cosine(vectors, ids, vectors, ids, 5)
    after = diffuse(vectors, rows, sims, power=3.0)
    same = np.repeat(np.arange(4), 25)
    within = same[:, None] == same[None, :]
    np.fill_diagonal(within, False)
    spread = lambda v: (v @ v.T)[within].mean() - (v @ v.T)[~within & ~np.eye(100, dtype=bool)].mean()
    assert spread(after) > spread(vectors) + 0.03


def _clusters(n_clusters: int, per: int, dim: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = l2_normalise(rng.standard_normal((n_clusters, dim)))
    cluster = np.repeat(np.arange(n_clusters), per)
    return l2_normalise(centres[cluster] + 0.05 * rng.standard_normal((len(cluster), dim))), cluster


def test_umap_map_is_deterministic_three_dimensional_and_keeps_clusters_apart():
    from core.neighbours import knn_graph, umap_coordinates

    vectors, cluster = _clusters(6, 50)
    coords = umap_coordinates(vectors, seed=3)
    assert coords.shape == (300, 3) and coords.dtype == np.float32 and np.isfinite(coords).all()
    np.testing.assert_array_equal(umap_coordinates(vectors, seed=3), coords)  # same seed, same map
    assert not np.allclose(umap_coordinates(vectors, seed=4), coords)
    # the stored neighbour table (more columns than UMAP uses) gives the same map as the graph found here
    np.testing.assert_array_equal(umap_coordinates(vectors, seed=3, knn=knn_graph(vectors, 30)), coords)
    distances = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    nearest = np.argsort(distances, axis=1)[:, :5]
    assert np.mean(cluster[nearest] == cluster[:, None]) > 0.95
    # readable: a cloud in all three axes, each cluster small beside the gaps between clusters
    spread = coords.std(axis=0)
    assert spread.min() > 0.1 * spread.max()
    centres = np.stack([coords[cluster == c].mean(axis=0) for c in range(6)])
    within = np.mean([np.linalg.norm(coords[cluster == c] - centres[c], axis=1).mean() for c in range(6)])
    between = np.linalg.norm(centres[:, None] - centres[None], axis=-1)[np.triu_indices(6, 1)].min()
    assert between > 2 * within


def test_umap_map_of_a_few_tracks_and_a_placed_catalogue():
    from core.neighbours import umap_coordinates

    vectors, cluster = _clusters(4, 30, seed=2)
    assert umap_coordinates(vectors[:3]).shape == (3, 3)  # too few for a layout: principal components
    assert np.isfinite(umap_coordinates(vectors[:12])).all()
    coords = map_coordinates(vectors, sample=60, method="umap")  # UMAP of 60, the other 60 placed
    distances = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    nearest = np.argsort(distances, axis=1)[:, :5]
    assert np.mean(cluster[nearest] == cluster[:, None]) > 0.95
    with pytest.raises(ValueError, match="map method 'pca'"):
        map_coordinates(vectors, method="pca")


def test_auto_map_is_tsne_of_a_small_sample_and_umap_of_a_large_one(monkeypatch):
    import core.neighbours
    from core.neighbours import sample_layout, tsne_coordinates, umap_coordinates

    vectors, _ = _clusters(4, 15, seed=4)
    np.testing.assert_array_equal(sample_layout(vectors), tsne_coordinates(vectors))
    monkeypatch.setattr(core.neighbours, "TSNE_UP_TO", 59)  # 60 tracks are now "large"
    np.testing.assert_array_equal(sample_layout(vectors), umap_coordinates(vectors))


def test_umap_is_imported_without_tensorflow():
    import subprocess
    import sys

    code = ("import sys; from core.neighbours import umap_module; umap_module(); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow'; import umap; print(umap.UMAP.__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "UMAP" and done.stderr == ""


def test_ivf_filled_in_parts_equals_one_fill():
    """The job's way (sample picked per batch by the id's hash, lists found per batch, one fill) gives the
    index built in one process: the same centroids, the same lists, the same answers."""
    import faiss

    from core.neighbours import IVF_TRAINING_PER_LIST, assign_ivf, build_ivf_index, fill_ivf, ivf_lists, \
        ivf_training_rows, search_ivf, train_ivf

    rng = np.random.default_rng(4)
    vectors = l2_normalise(rng.standard_normal((20_000, 8))).astype(np.float32)
    ids = np.arange(20_000, dtype=np.int64)
    whole = build_ivf_index(vectors)
    parts = [slice(0, 7_000), slice(7_000, 12_345), slice(12_345, None)]
    sample = np.concatenate([vectors[p][ivf_training_rows(ids[p], len(ids))] for p in parts])
    assert len(sample) == 20_000  # 512 lists: fewer than 64 tracks a list, so all of them train
    million = np.arange(1_000_000, dtype=np.int64) * 7 + 3
    chosen = ivf_training_rows(million, len(million))
    assert abs(chosen.sum() / (IVF_TRAINING_PER_LIST * ivf_lists(len(million))) - 1) < 0.02  # about 64 a list
    assert np.array_equal(np.concatenate([ivf_training_rows(million[p], len(million)) for p in parts]), chosen)
    trained = train_ivf(sample, len(ids))
    template = faiss.serialize_index(trained)
    lists = [assign_ivf(faiss.deserialize_index(template), vectors[p]) for p in parts]  # as on each worker
    filled = fill_ivf(trained, vectors, np.concatenate(lists))
    assert filled.ntotal == whole.ntotal == 20_000 and filled.nlist == ivf_lists(20_000)
    got, _ = search_ivf(filled, ids, vectors[:50], ids[:50], 10, nprobe=4)
    want, _ = search_ivf(whole, ids, vectors[:50], ids[:50], 10, nprobe=4)
    np.testing.assert_array_equal(got, want)
