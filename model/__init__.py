"""TensorFlow/Keras models that map log-mel tiles to 64-d unit vectors, and their trainer."""
