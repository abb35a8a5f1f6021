"""wavelist: playlists from the sound of the music itself."""

__version__ = "0.1.0"
