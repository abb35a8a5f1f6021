import numpy as np

from model.train import track_level_predictions


def test_track_level_prediction_is_mean_of_tile_probabilities():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([0, 0, 1, 1])
    track_ids = np.array([7, 7, 3, 3])
    ids, truth, predicted = track_level_predictions(probabilities, labels, track_ids)
    assert ids.tolist() == [3, 7]
    assert truth.tolist() == [1, 0]
    assert predicted.tolist() == [1, 0]  # track 7: mean (0.55, 0.45); track 3: (0.45, 0.55)


def test_exported_embedder_is_centred_unit_embedding_and_survives_saving(tmp_path):
    import keras

    from model import cnn
    from schemas.audio import AudioSpec

    spec = AudioSpec(n_mels=16, tile_frames=16)
    rng = np.random.default_rng(0)
    normaliser = keras.layers.Normalization(axis=1)
    normaliser.adapt(rng.normal(2, 3, (10, 16, 16)).astype("float32"))
    classifier = cnn.build_genre_cnn(spec, 3, normaliser)
    tiles = rng.standard_normal((6, 16, 16)).astype("float32")
    raw = cnn.embedding_outputs(classifier)(tiles).numpy()
    centre = raw.mean(axis=0)
    expected = (raw - centre) / np.linalg.norm(raw - centre, axis=1, keepdims=True)
    embedder = cnn.embedder_of(classifier, centre)
    embedder.save(tmp_path / "e.keras")
    loaded = keras.saving.load_model(tmp_path / "e.keras", compile=False)
    np.testing.assert_allclose(loaded(tiles).numpy(), expected, atol=1e-5)
    assert loaded.output_shape == (None, 64)
