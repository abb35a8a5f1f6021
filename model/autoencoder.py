"""The conv autoencoder the original study tried: 128 x 32 log-mel crops, a 256-d latent.

Its latent is its embedding; the export reduces it to 64-d with a PCA fitted on training latents and
averages the four 32-frame crops of a tile, so it maps a tile to a 64-d unit vector like every kind.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from schemas.audio import AudioSpec
from schemas.model_info import PART_DIM

CROP_FRAMES = 32
LATENT_DIM = 256


def build_autoencoder(spec: AudioSpec, normaliser: keras.layers.Normalization) -> tuple[keras.Model, keras.Model]:
    """``(autoencoder: crop -> normalised crop reconstruction, encoder: crop -> 256-d latent)``."""
    crop = keras.Input(shape=(spec.n_mels, CROP_FRAMES), name="log_mel_crop")
    x = keras.layers.Reshape((spec.n_mels, CROP_FRAMES, 1))(normaliser(crop))
    target = x
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(x)
    shape = tuple(x.shape[1:])
    latent = keras.layers.Dense(LATENT_DIM, name="latent")(keras.layers.Flatten()(x))
    encoder = keras.Model(crop, latent, name="ae_encoder")
    y = keras.layers.Dense(int(np.prod(shape)), activation="relu")(latent)
    y = keras.layers.Reshape(shape)(y)
    for filters in (32, 16):
        y = keras.layers.Conv2DTranspose(filters, 3, strides=2, padding="same", activation="relu")(y)
    y = keras.layers.Conv2DTranspose(1, 3, strides=2, padding="same")(y)
    reconstruction_error = keras.ops.mean(keras.ops.square(y - target), axis=(1, 2, 3))
    return keras.Model(crop, reconstruction_error, name="autoencoder"), encoder


def reconstruction_loss(_, error):
    """The model already outputs its per-crop reconstruction error; the target is a placeholder."""
    return error


def random_crops(mel: tf.Tensor) -> tf.Tensor:
    start = tf.random.uniform([], 0, mel.shape[1] - CROP_FRAMES + 1, dtype=tf.int32)
    return mel[:, start:start + CROP_FRAMES]


def tile_embedder(spec: AudioSpec, encoder: keras.Model, mean: np.ndarray, components: np.ndarray) -> keras.Model:
    """tile -> mean latent of its ``tile_frames // 32`` crops -> PCA to 64 -> unit vector."""
    n_crops = spec.tile_frames // CROP_FRAMES
    tile = keras.Input(shape=spec.tile_shape, name="log_mel")
    crops = keras.layers.Reshape((spec.n_mels, n_crops, CROP_FRAMES))(tile[:, :, : n_crops * CROP_FRAMES])
    crops = keras.layers.Permute((2, 1, 3))(crops)  # [n_crops, n_mels, 32]
    latents = keras.layers.TimeDistributed(encoder)(crops)
    latent = keras.layers.GlobalAveragePooling1D()(latents)
    centred = keras.layers.Normalization(mean=mean, variance=np.ones_like(mean), name="pca_centre")(latent)
    projection = keras.layers.Dense(PART_DIM, use_bias=False, name="pca")
    reduced = projection(centred)
    projection.set_weights([components])
    unit = keras.layers.UnitNormalization(name="unit_embedding")(reduced)
    return keras.Model(tile, unit, name="embedder")
