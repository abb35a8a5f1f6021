"""Pure code under the jobs, the trainer and the playlists: no Beam, no TensorFlow."""
