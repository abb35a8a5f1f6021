"""Playlists from the Parquet tables alone: no Beam, no TensorFlow."""
from playlists.tables import Tables, TablesError, UnknownTrack, load_tables
from playlists.radio import Entry, like, radio
from playlists.journey import journey, journey_via, smoothness

__all__ = ["Tables", "TablesError", "UnknownTrack", "load_tables", "Entry", "radio", "like", "journey",
           "journey_via", "smoothness"]
