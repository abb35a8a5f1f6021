"""Tags of an audio file (ID3, Vorbis comments, FLAC, MP4) read with mutagen. Pure code: no Beam, no TensorFlow.

Tags are optional: a file whose tags are missing or broken gives an empty dict, never an error.
"""
from __future__ import annotations

import logging
from typing import Any, BinaryIO

log = logging.getLogger(__name__)

# mutagen's "easy" key -> the catalogue column it fills (text columns; track_number is parsed below).
TEXT_TAGS = {
    "title": "title",
    "artist": "artist",
    "album": "album",
    "albumartist": "album_artist",
    "genre": "genre",
    "musicbrainz_trackid": "musicbrainz_recording_id",  # Picard's name for the recording id
    "musicbrainz_artistid": "musicbrainz_artist_id",
    "musicbrainz_albumid": "musicbrainz_album_id",
}
MAX_TAG_CHARS = 500  # a longer tag value is cut: a title is not a document


def read_tags(source: str | BinaryIO) -> dict[str, Any]:
    """The catalogue columns that ``source``'s tags fill (``title``, ``artist``, ``album``, ``album_artist``,
    ``genre``, ``track_number``, ``length_s``, MusicBrainz ids); only those present. Broken tags give {}."""
    import mutagen

    try:
        if not isinstance(source, str):
            source.seek(0)
        opened = mutagen.File(source, easy=True)
    except Exception as error:  # mutagen raises many types for broken headers; tags never reject audio
        log.info("tags of %s not read: %s", source if isinstance(source, str) else "stream", error)
        return {}
    finally:
        if not isinstance(source, str):
            source.seek(0)
    if opened is None:
        return {}
    found: dict[str, Any] = {}
    tags = opened.tags or {}
    for key, column in TEXT_TAGS.items():
        value = _first(tags, key)
        if value:
            found[column] = value[:MAX_TAG_CHARS]
    number = _track_number(_first(tags, "tracknumber"))
    if number is not None:
        found["track_number"] = number
    length = getattr(getattr(opened, "info", None), "length", None)
    if isinstance(length, (int, float)) and 0 < length < 1e7:
        found["length_s"] = float(length)
    return found


def _first(tags: Any, key: str) -> str | None:
    """The first non-empty value of ``key`` as stripped text, or None."""
    try:
        values = tags.get(key) if hasattr(tags, "get") else None
    except Exception:  # a malformed frame may raise on access
        return None
    if isinstance(values, (str, bytes)):
        values = [values]
    for value in values or ():
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        text = text.replace("\x00", "").strip()
        if text:
            return text
    return None


def _track_number(text: str | None) -> int | None:
    """``"3"`` or ``"3/12"`` -> 3; anything else -> None."""
    head = (text or "").split("/")[0].strip()
    return int(head) if head.isascii() and head.isdigit() and 0 < int(head) < 100_000 else None
