"""PCA whitening of learned vectors, fitted on the catalogue without labels: the trainer whitens the tile
encoder's output, the features baseline the summary statistics."""
from __future__ import annotations

import numpy as np


def whitening_layer(vectors: np.ndarray, dims: int, name: str = "whitening"):
    """A Dense layer computing the PCA whitening of ``vectors``: ``(x - mean) @ components.T / sqrt(variance)``
    on the first ``dims`` principal components. Fitted on track vectors of the whole catalogue, no labels:
    equal variance in every direction keeps one dominant direction (loudness, recording quality) from
    deciding all cosine similarities. The layer is affine, so whitening each tile and averaging equals
    averaging and then whitening."""
    import keras
    from sklearn.decomposition import PCA

    fitted = min(dims, len(vectors) - 1, vectors.shape[1])
    pca = PCA(n_components=fitted, whiten=True, random_state=0).fit(vectors)
    kernel = np.zeros((vectors.shape[1], dims), np.float32)  # columns past the catalogue's rank stay zero
    kernel[:, :fitted] = pca.components_.T / np.sqrt(np.maximum(pca.explained_variance_, 1e-12))
    layer = keras.layers.Dense(dims, name=name)
    layer.build((None, vectors.shape[1]))
    layer.set_weights([kernel, (-pca.mean_ @ kernel).astype(np.float32)])
    return layer


def whitened(embedder, track_vectors: np.ndarray, dims: int):
    """``embedder`` followed by the whitening of ``track_vectors`` (its outputs averaged per track). The
    output is not normalised: the embed job averages a track's tile vectors and then normalises."""
    import keras

    return keras.Model(embedder.input, whitening_layer(track_vectors, dims)(embedder.output), name="embedder")
