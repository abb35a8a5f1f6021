"""``wavelist duplicates --tables T``: the tracks that are one recording in several files, as groups with their
paths (:mod:`core.duplicates`: by audio identity, then nominated by the vectors and confirmed by the sound)."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from typing import Any

import numpy as np

from core import duplicates as dup
from playlists.text import for_terminal
from schemas.audio import DEFAULT_AUDIO_SPEC

log = logging.getLogger(__name__)
SPEC = dataclasses.replace(DEFAULT_AUDIO_SPEC, max_duration_s=dup.LEADING_SILENCE_S + dup.EXCERPT_S + dup.MAX_SHIFT_S)


def profile_of_file(path: str | None) -> np.ndarray | None:
    """The :func:`core.duplicates.sound_profile` of the audio file ``path``; None when it cannot be read."""
    from core import audio

    if not path or "://" in path or not os.path.isfile(path):
        return None
    try:
        mel = audio.log_mel(audio.power_spectrogram(audio.decode(path, SPEC), SPEC), SPEC)
    except Exception as error:  # noqa: BLE001 - a file that will not decode is reported as unreadable
        log.info("%s: not compared (%s)", path, error)
        return None
    return dup.sound_profile(mel, SPEC.sample_rate / SPEC.hop_length)


def find(tables) -> tuple[list[dup.Group], dict[str, int]]:
    """The duplicate groups of loaded :class:`~playlists.tables.Tables` and what finding them took."""
    paths = tables.column("path")
    lengths = [length if length is not None else duration
               for length, duration in zip(tables.column("length_s"), tables.column("duration_s"))]
    return dup.find_duplicates(list(tables.column("audio_identity")), tables.neighbour_rows, lengths,
                               lambda row: profile_of_file(paths[row]),
                               int(round(dup.MAX_SHIFT_S * SPEC.sample_rate / SPEC.hop_length)))


def report(tables, found: list[dup.Group], stats: dict[str, int], fmt: str = "table") -> str:
    """The groups as text (paths and titles made safe for a terminal) or JSON."""
    def track(row: int) -> dict[str, Any]:
        return {"track_id": int(tables.ids[row]), "artist": tables.column("artist")[row],
                "title": tables.column("title")[row], "path": tables.column("path")[row]}

    if fmt == "json":
        return json.dumps([{"how": "same sound" if g.by_sound else "same audio",
                            "residual": round(max(g.residuals), 4) if g.residuals else 0.0,
                            "tracks": [track(r) for r in g.rows]} for g in found], indent=2, ensure_ascii=False)
    lines = [f"{len(found)} group{'s' if len(found) != 1 else ''} of tracks that are one recording, among "
             f"{len(tables)} tracks ({stats['compared']} pairs compared by their sound"
             + (f"; {stats['unreadable']} files could not be read" if stats["unreadable"] else "") + ")"]
    for number, group in enumerate(found, start=1):
        how = (f"same sound (residual up to {max(group.residuals):.3f})" if group.by_sound
               else "same audio (identical audio data)")
        lines.append(f"{number}. {how}")
        for row in group.rows:
            t = track(row)
            lines.append(f"   {t['track_id']:>20}  {for_terminal(t['artist'] or '?')} - {for_terminal(t['title'] or '?')}"
                         f"  {for_terminal(t['path'])}")
    return "\n".join(lines)


def main(tables_dir: str, fmt: str = "table") -> None:
    from playlists import load_tables

    tables = load_tables(tables_dir)
    found, stats = find(tables)
    if stats["unreadable"]:
        print(f"warning: {stats['unreadable']} audio files could not be read here; their tracks were compared by "
              "audio identity only", file=sys.stderr)
    print(report(tables, found, stats, fmt))
