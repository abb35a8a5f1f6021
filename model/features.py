"""The baseline that needs no network: librosa summary statistics, standardised, PCA to 64 dims."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from schemas.layout import DataFiles
from schemas.model_info import PART_DIM
from schemas.tables import summary_feature_names
from storage import files


def load_features(data_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(track_ids [n], features [n, 200] float32)`` from ``DATA/features.parquet``."""
    table = files.read_parquet(files.join(data_dir, DataFiles.FEATURES), made_by="wavelist ingest")
    names = summary_feature_names()
    return table["track_id"].to_numpy(), np.stack([table[n].to_numpy() for n in names], axis=1).astype(np.float32)


def mean_and_scale(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-column mean and standard deviation (+ 1e-6) that standardise ``values`` ``[n, d]``."""
    return values.mean(axis=0), values.std(axis=0) + 1e-6


def standardised_by_track(feature_ids: np.ndarray, values: np.ndarray, track_ids: np.ndarray) -> np.ndarray:
    """The summary statistics of ``track_ids`` ``[n]``, in that order, standardised over ``values`` (every track's):
    ``[n, d]`` float32; a track without a row gets zeros (the catalogue's mean)."""
    mean, scale = mean_and_scale(values)
    standardised = (values - mean) / scale
    row_of = {int(t): i for i, t in enumerate(feature_ids)}
    out = np.zeros((len(track_ids), values.shape[1]), np.float32)
    for i, track in enumerate(track_ids):
        if int(track) in row_of:
            out[i] = standardised[row_of[int(track)]]
    return out


def pca_components(values: np.ndarray, dims: int = PART_DIM) -> tuple[np.ndarray, np.ndarray]:
    """``(mean [d], kernel [d, 64])`` of a PCA of ``values``; columns past the rank are zero."""
    from sklearn.decomposition import PCA

    n = min(dims, values.shape[0], values.shape[1])
    pca = PCA(n_components=n, random_state=0).fit(values)
    kernel = np.zeros((values.shape[1], dims), np.float32)
    kernel[:, :n] = pca.components_.T
    return pca.mean_.astype(np.float32), kernel


def features_embedder(features: np.ndarray) -> keras.Model:
    """track features -> standardised -> PCA to 64 -> unit vector, fitted on ``features``."""
    mean, std = mean_and_scale(features)
    standardised = (features - mean) / std
    pca_mean, kernel = pca_components(standardised)
    inputs = keras.Input(shape=(features.shape[1],), name="features")
    x = keras.layers.Normalization(mean=mean, variance=std**2, name="standardise")(inputs)
    x = keras.layers.Normalization(mean=pca_mean, variance=np.ones_like(pca_mean), name="pca_centre")(x)
    projection = keras.layers.Dense(PART_DIM, use_bias=False, name="pca")
    x = projection(x)
    projection.set_weights([kernel])
    return keras.Model(inputs, keras.layers.UnitNormalization(name="unit_embedding")(x), name="embedder")


def whitened_features_embedder(features: np.ndarray, dims: int) -> keras.Model:
    """track features -> standardised -> PCA whitening to ``dims`` -> unit vector, fitted on ``features``
    (every track of the catalogue; no labels). The half of a ``tiles+features`` model that the summary
    statistics give."""
    from model.whitening import whitening_layer

    mean, std = mean_and_scale(features)
    inputs = keras.Input(shape=(features.shape[1],), name="features")
    x = keras.layers.Normalization(mean=mean, variance=std**2, name="standardise")(inputs)
    x = whitening_layer((features - mean) / std, dims)(x)
    return keras.Model(inputs, keras.layers.UnitNormalization(name="unit_embedding")(x), name="features_embedder")
