"""The one reader of track lists: an M3U/M3U8 playlist, wavelist's JSON output (objects with ``track_id``) or
track ids or audio paths one a line (``#`` lines skipped), read in bounded memory (:mod:`storage.text_files`).
What a line names is decided by the caller's ``name_of`` (the command looks paths up on this machine, the server
only relative to its music folder); every entry must name a track, else one error names the file and line."""
from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any

import numpy as np

from playlists.tables import UnknownTrack
from schemas.errors import UserError
from storage.text_files import UserText


def track_ids(text: UserText, name_of: Callable[[str], int]) -> np.ndarray:
    """[shape=(n,)] int64: the track each entry of ``text`` names, in order. An entry ``name_of`` refuses
    (:class:`UnknownTrack` or another ``ValueError``), a line longer than ``text.limit`` characters or a JSON list
    that is not one of objects with a ``track_id`` raises that error class with ``source line N:`` in front."""
    found = array("q")

    def entry(number: int, name: str) -> None:
        try:
            found.append(name_of(name))
        except UnknownTrack as error:
            raise UnknownTrack(f"{text.source} line {number}: {error}") from None
        except (ValueError, OverflowError) as error:  # a UserError too
            raise UserError(f"{text.source} line {number}: {error}") from None

    if text.first() == "[":
        for number, row in text.json_items():
            if not isinstance(row, dict) or "track_id" not in row or isinstance(row["track_id"], (dict, list)):
                raise UserError(f"{text.source} line {number}: not an object with a track_id; a JSON track list is "
                                "wavelist's --format json output")
            entry(number, _id_text(row["track_id"]))
        return np.array(found, dtype=np.int64)

    def too_long(number: int) -> None:
        raise UserError(f"{text.source} line {number}: longer than {text.limit:,} characters; not a track list")

    for line in text.lines(too_long):
        line = line.strip()
        if line and not line.startswith("#"):
            entry(text.line, line)
    return np.array(found, dtype=np.int64)


def _id_text(value: Any) -> str:
    """A JSON ``track_id`` as the text a line would hold (``12`` for 12 and 12.0, not ``12.0``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)

