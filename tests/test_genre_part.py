"""The genre part: which labels it learns from, and that its Keras probe is scikit-learn's fitted probe."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model import genre_part


def write_tracks(folder, rows):
    pq.write_table(pa.Table.from_pylist(
        [{"track_id": i, "genre": g, "split": s, "status": st} for i, g, s, st in rows]), folder / "tracks.parquet")


def test_training_labels_use_accepted_tracks_outside_the_test_split_of_genres_with_enough_of_them(tmp_path):
    rows = [(i, "Rock", "train", "ok") for i in range(5)]
    rows += [(10 + i, "Jazz", "train", "ok") for i in range(4)]  # one short of the minimum
    rows += [(20 + i, "Pop", "train", "ok") for i in range(5)]
    rows += [(30, "Rock", "test", "ok"), (31, "Pop", "validation", "ok"), (32, "Rock", "train", "rejected"),
             (33, None, "train", "ok"), (34, "", "train", "ok"), (35, "Jazz", "test", "ok")]
    write_tracks(tmp_path, rows)
    labels, genres = genre_part.training_labels(tmp_path, min_tracks=5)
    assert genres == ["Pop", "Rock"]
    assert labels == {**{i: 1 for i in range(5)}, **{20 + i: 0 for i in range(5)}, 31: 0}
    assert genre_part.training_labels(tmp_path, min_tracks=4)[1] == ["Jazz", "Pop", "Rock"]


@pytest.mark.parametrize("n_genres", [2, 3])
def test_probe_layer_gives_the_probabilities_of_the_fitted_logistic_regression(n_genres):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((n_genres, 16)) * 2
    labels = np.repeat(np.arange(n_genres), 20)
    joined = centres[labels] + rng.standard_normal((len(labels), 16))
    joined = (joined / np.linalg.norm(joined, axis=1, keepdims=True)).astype(np.float32)
    model = genre_part.genre_part_embedder(joined, labels, [f"g{i}" for i in range(n_genres)])
    out = np.asarray(model(joined))
    expected = LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000).fit(joined, labels).predict_proba(joined)
    np.testing.assert_allclose(out[:, 16:], np.sqrt(expected / 3), atol=1e-5)  # Hellinger: sqrt(p), norm 1
    np.testing.assert_allclose(out[:, :16], joined * np.sqrt(2 / 3), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert (out[:, 16:].argmax(axis=1) == labels).mean() > 0.9


@pytest.mark.unit
def test_labels_the_audio_predicts_keep_the_genre_part_and_random_labels_lose_it():
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((4, 16)) * 2
    clean = np.repeat(np.arange(4), 30)
    track_ids = np.arange(1000, 1120)
    track_joined = centres[clean] + rng.standard_normal((len(clean), 16))
    tile_track_ids = np.repeat(track_ids, 3)  # three tiles a track, around its vector
    tile_joined = np.repeat(track_joined, 3, axis=0) + 0.3 * rng.standard_normal((len(tile_track_ids), 16))

    def worth(labels):
        return genre_part.reliability(tile_joined, tile_track_ids, track_ids, track_joined, labels)

    assert worth(clean) > 0.8
    assert worth(rng.permutation(clean)) < 0.3
    noisy = np.where(rng.random(len(clean)) < 0.5, rng.integers(0, 4, len(clean)), clean)  # many tags wrong
    assert 0.1 < worth(noisy) < worth(clean)


def test_the_genre_part_weighs_what_it_is_given():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    joined = rng.standard_normal((30, 8)).astype(np.float32)
    joined /= np.linalg.norm(joined, axis=1, keepdims=True)
    out = np.asarray(genre_part.genre_part_embedder(joined, labels, ["a", "b", "c"], weight=0.1)(joined))
    np.testing.assert_allclose(np.linalg.norm(out[:, 8:], axis=1) ** 2, 0.1, atol=1e-5)
    np.testing.assert_allclose(out[:, :8], joined * np.sqrt(0.9), atol=1e-6)


@pytest.mark.unit
def test_labels_worth_enough_keep_a_third_and_less_worth_weighs_less():
    assert genre_part.weight_for(0.67) == genre_part.weight_for(0.5) == pytest.approx(1 / 3)
    assert genre_part.weight_for(0.25) == pytest.approx(1 / 6)
    assert genre_part.weight_for(0.0) == genre_part.weight_for(-0.1) == 0.0
