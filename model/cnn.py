"""The conv encoder shared by the genre CNN and the contrastive model, and the genre CNN itself."""
from __future__ import annotations

import keras
import numpy as np

from schemas.audio import AudioSpec
from schemas.errors import UserError
from schemas.model_info import PART_DIM

EMBEDDING_LAYER = "embedding"


def build_encoder(spec: AudioSpec, normaliser: keras.layers.Normalization, name: str = "encoder",
                  pooling: str = "global", width: int = 1) -> keras.Model:
    """log-mel tile ``[n_mels, tile_frames]`` -> 64-d output of layer ``embedding``.

    ``normaliser`` is adapted beforehand on training tiles (per mel band mean and variance). Four conv
    blocks (3x3 conv, batch norm, ReLU, 2x2 max-pool; 16-32-64-128 filters, times ``width``), then ``pooling``:
    ``global`` averages over frequency and time; ``time`` averages over time only and keeps the frequency bands
    apart. ``pooling`` and ``width`` are variants screened by benchmarks/label_free_variants.py; the product
    trains the defaults.
    """
    inputs = keras.Input(shape=spec.tile_shape, name="log_mel")
    x = normaliser(inputs)
    x = keras.layers.Reshape((*spec.tile_shape, 1))(x)
    for filters in (16 * width, 32 * width, 64 * width, 128 * width):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        # momentum 0.9: the moving statistics settle within an epoch even on small catalogues; at
        # Keras' default 0.99 the early-stopped model kept half-initialised statistics and failed on
        # held-out artists (validation accuracy 0.3 vs 1.0 on the demo catalogue)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D(2)(x)
    if pooling == "time":
        x = keras.layers.Flatten()(keras.ops.mean(x, axis=2))  # [mel bands / 16, filters]
    else:
        x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.3)(x)
    embedding = keras.layers.Dense(PART_DIM, name=EMBEDDING_LAYER)(x)
    return keras.Model(inputs, embedding, name=name)


def build_genre_cnn(spec: AudioSpec, n_genres: int, normaliser: keras.layers.Normalization) -> keras.Model:
    """log-mel tile -> genre probabilities; its penultimate layer ``embedding`` is 64-d."""
    encoder = build_encoder(spec, normaliser)
    x = keras.layers.ReLU()(encoder.output)
    x = keras.layers.Dropout(0.3)(x)
    outputs = keras.layers.Dense(n_genres, activation="softmax", name="genre")(x)
    return keras.Model(encoder.input, outputs, name="genre_cnn")


def unit_embedder(inputs, embedding, centre: np.ndarray | None = None, name: str = "embedder") -> keras.Model:
    """``inputs`` -> L2-normalised ``embedding`` (minus ``centre``, the mean training embedding: without
    it every vector shares one large common direction and all cosine similarities crowd near 1)."""
    x = embedding
    if centre is not None:
        x = keras.layers.Normalization(mean=centre, variance=np.ones_like(centre), name="centre")(x)
    unit = keras.layers.UnitNormalization(name="unit_embedding")(x)
    return keras.Model(inputs, unit, name=name)


def embedder_of(model: keras.Model, centre: np.ndarray | None = None) -> keras.Model:
    """The exported embedding model of a CNN or encoder: tile -> unit vector from layer ``embedding``."""
    return unit_embedder(model.input, model.get_layer(EMBEDDING_LAYER).output, centre)


def embedding_outputs(model: keras.Model) -> keras.Model:
    """tile -> raw (uncentred, unnormalised) output of layer ``embedding``."""
    return keras.Model(model.input, model.get_layer(EMBEDDING_LAYER).output)


def copy_encoder_weights(source: keras.Model, target: keras.Model) -> int:
    """Copy the encoder layers (normaliser, conv blocks, ``embedding``) of ``source`` into ``target``,
    in order, up to and including ``embedding``; returns how many layers were copied."""

    def encoder_layers(model: keras.Model) -> list:
        layers = []
        for layer in model.layers:
            if isinstance(layer, keras.Model):  # an encoder nested as one layer
                layers += encoder_layers(layer)
            elif layer.weights:
                layers.append(layer)
            if layer.name == EMBEDDING_LAYER:
                break
        return layers

    pairs = list(zip(encoder_layers(source), encoder_layers(target)))
    if not pairs or pairs[-1][1].name != EMBEDDING_LAYER:
        raise UserError("the source model has no encoder ending in an 'embedding' layer to copy")
    for src, dst in pairs:
        if [w.shape for w in src.weights] != [w.shape for w in dst.weights]:
            raise UserError(f"cannot copy layer {src.name} into {dst.name}: shapes differ")
        dst.set_weights(src.get_weights())
        if isinstance(dst, keras.layers.Normalization):
            dst.finalize_state()  # a Normalization layer reads its statistics only from here
    return len(pairs)
