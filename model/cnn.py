"""The genre CNN of the original study: four conv blocks, a 64-d penultimate layer that is the embedding."""
from __future__ import annotations

import keras

from schemas.audio import AudioSpec
from schemas.tables import EMBEDDING_DIM

EMBEDDING_LAYER = "embedding"


def build_genre_cnn(spec: AudioSpec, n_genres: int, normaliser: keras.layers.Normalization) -> keras.Model:
    """log-mel tile ``[n_mels, tile_frames]`` -> genre probabilities; layer ``embedding`` is 64-d.

    ``normaliser`` is adapted beforehand on training tiles (per mel band mean and variance).
    """
    inputs = keras.Input(shape=spec.tile_shape, name="log_mel")
    x = normaliser(inputs)
    x = keras.layers.Reshape((*spec.tile_shape, 1))(x)
    for filters in (16, 32, 64, 128):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.3)(x)
    embedding = keras.layers.Dense(EMBEDDING_DIM, name=EMBEDDING_LAYER)(x)
    x = keras.layers.ReLU()(embedding)
    x = keras.layers.Dropout(0.3)(x)
    outputs = keras.layers.Dense(n_genres, activation="softmax", name="genre")(x)
    return keras.Model(inputs, outputs, name="genre_cnn")


def embedder_of(classifier: keras.Model) -> keras.Model:
    """The exported embedding model: tile -> L2-normalised output of layer ``embedding``."""
    embedding = classifier.get_layer(EMBEDDING_LAYER).output
    unit = keras.layers.UnitNormalization(name="unit_embedding")(embedding)
    return keras.Model(classifier.input, unit, name="embedder")
