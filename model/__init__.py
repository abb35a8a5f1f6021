"""The trainer and what it exports (``wavelist train``: the genre CNN, the label-free contrastive encoder, the
autoencoder, or the summary statistics alone), each vector part's embedder (tiles, features, genres:
``schemas.model_info``), and ``wavelist evaluate``, which compares models. TensorFlow and Keras; no Beam."""
