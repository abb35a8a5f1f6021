"""Tracks that are one recording in several files (``wavelist duplicates``). Pure code: no Beam, no TensorFlow.

Files with the same audio identity (:mod:`core.identity`: a byte copy, a retagged copy, a FLAC and a WAV of the
same samples) are one recording without any audio being read. Other copies (a re-encode at another bit rate or
format, a copy with silence trimmed or added) differ in their bytes. Their vectors are close, but a vector sums
up a whole track's sound, so two songs of one artist can be as close: on the test suite's model, re-encodes and
padded copies lay at cosine distances of 0.0005 to 0.07 from their original, different songs from 0.002
(docs/update.md). So the vectors only nominate: each track's :data:`NOMINATED` nearest stored neighbours whose
lengths agree (:func:`lengths_agree`) are compared by their sound (:func:`sound_profile`: the log-mel of the first
:data:`EXCERPT_S` seconds after any leading silence, floored :data:`FLOOR_DB` below its peak, where codecs drop
what they mask), aligned frame by frame within ±:data:`MAX_SHIFT_S` s (:func:`residual`): one recording leaves
less than :data:`MAX_RESIDUAL` of the profiles' variance unexplained (re-encodes, a lossy one at the lowest
quality, and copies with silence added or trimmed: at most 0.004; different songs of one artist and album, and
the demo's nearly alike synthetic techno tracks of two artists: from 0.03; docs/update.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

NOMINATED = 10  # nearest neighbours of a track compared with it by sound
EXCERPT_S = 15.0  # seconds of each track compared, after its leading silence
LEADING_SILENCE_S = 30.0  # at most this much leading silence is skipped
MAX_SHIFT_S = 2.0  # the excerpts are aligned within this many seconds, frame by frame
FLOOR_DB = 40.0  # the profile floors this many dB below its peak: what a lossy codec masks and drops
MAX_RESIDUAL = 0.01  # 1 - the best correlation of two profiles of one recording
LENGTH_SLACK_S, LENGTH_SLACK = 5.0, 0.05  # lengths of one recording agree within 5 s plus 5 %
PROFILE_CACHE = 1024  # profiles kept at once (each about 160 KB)


def lengths_agree(a: float | None, b: float | None) -> bool:
    """Whether two files' lengths (s) could be one recording with some silence trimmed or added (unknown: yes)."""
    if a is None or b is None or not np.isfinite(a) or not np.isfinite(b):
        return True
    return abs(a - b) <= LENGTH_SLACK_S + LENGTH_SLACK * max(a, b)


def sound_profile(mel_db: np.ndarray, frames_per_second: float) -> np.ndarray:
    """A track's log-mel ``[shape=(n_mels, n_frames)]`` (dB) -> its profile ``[shape=(frames, n_mels)]`` (float16):
    the first :data:`EXCERPT_S` seconds after its leading silence, floored :data:`FLOOR_DB` below the peak."""
    floor = float(mel_db.max()) - FLOOR_DB
    mel = np.maximum(mel_db, floor)
    sounding = np.flatnonzero(mel.max(axis=0) > floor + 1e-3)
    start = int(sounding[0]) if len(sounding) else 0
    return np.ascontiguousarray(mel[:, start:start + int(round(EXCERPT_S * frames_per_second))].T, dtype=np.float16)


def residual(a: np.ndarray, b: np.ndarray, max_shift: int) -> float:
    """1 - the highest correlation of the profiles ``a`` and ``b`` over the shifts of up to ``max_shift`` frames
    that overlap at least half the shorter one: 0 for one recording, near 1 for unrelated sounds."""
    best = -1.0
    a, b = a.astype(np.float32), b.astype(np.float32)
    shortest = min(len(a), len(b))
    for shift in range(-max_shift, max_shift + 1):
        x, y = (a[shift:], b) if shift >= 0 else (a, b[-shift:])
        overlap = min(len(x), len(y))
        if overlap < max(1, shortest // 2):
            continue
        x = x[:overlap].ravel() - x[:overlap].mean()
        y = y[:overlap].ravel() - y[:overlap].mean()
        norm = float(np.sqrt((x @ x) * (y @ y)))
        best = max(best, float(x @ y) / norm if norm > 0 else float(np.array_equal(x, y)))
    return 1.0 - best


def nominated_pairs(neighbour_rows: np.ndarray, lengths: list[float | None], n: int = NOMINATED) -> set[tuple[int, int]]:
    """Row pairs ``(i, j)``, ``i < j``, where ``j`` is among ``i``'s first ``n`` stored neighbours (rows of the
    neighbour table; -1 is padding) or the other way round, and their lengths agree."""
    pairs = set()
    for i, row in enumerate(np.asarray(neighbour_rows)[:, :n]):
        for j in row.tolist():
            if j >= 0 and j != i and lengths_agree(lengths[i], lengths[j]):
                pairs.add((min(i, j), max(i, j)))
    return pairs


@dataclass
class Group:
    """Rows of tracks that are one recording; ``by_sound``: at least one of its links needed the sound."""

    rows: list[int]
    by_sound: bool = False
    residuals: list[float] = field(default_factory=list)


def groups(n: int, identity_links: Iterable[tuple[int, int]], sound_links: Iterable[tuple[int, int, float]]
           ) -> list[Group]:
    """The connected groups (two rows or more) of ``n`` rows linked by their identity or their sound, each
    sorted, in order of their first row."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    sound: dict[int, list[float]] = {}
    links = [(i, j, None) for i, j in identity_links] + list(sound_links)
    for i, j, _ in links:
        parent[root(i)] = root(j)
    for i, j, value in links:
        if value is not None:
            sound.setdefault(root(i), []).append(value)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(root(i), []).append(i)
    found = [Group(rows, r in sound, sorted(sound.get(r, []))) for r, rows in members.items() if len(rows) > 1]
    return sorted(found, key=lambda g: g.rows[0])


def find_duplicates(identities: list[str | None], neighbour_rows: np.ndarray, lengths: list[float | None],
                    profile_of: Callable[[int], np.ndarray | None], max_shift: int) -> tuple[list[Group], dict[str, int]]:
    """The groups of rows that are one recording, and what it took (``compared`` pairs, ``unreadable`` files).

    ``identities`` and ``lengths`` per row, ``neighbour_rows`` the stored neighbours' rows, ``profile_of(row)``
    the :func:`sound_profile` of a row's file (None when it cannot be read; pairs are taken in row order and the
    last :data:`PROFILE_CACHE` profiles kept, so most files are decoded once),
    ``max_shift`` :data:`MAX_SHIFT_S` in profile frames."""
    by_identity: dict[str, list[int]] = {}
    for row, identity in enumerate(identities):
        if identity:
            by_identity.setdefault(identity, []).append(row)
    identity_links = [(rows[0], other) for rows in by_identity.values() for other in rows[1:]]
    same = {frozenset(pair) for pair in identity_links}
    from collections import OrderedDict

    profiles: OrderedDict[int, np.ndarray | None] = OrderedDict()  # the most recently used, at most PROFILE_CACHE
    unreadable: set[int] = set()

    def profile(row: int) -> np.ndarray | None:
        if row in profiles:
            profiles.move_to_end(row)
            return profiles[row]
        found = profiles[row] = profile_of(row)
        if found is None:
            unreadable.add(row)
        if len(profiles) > PROFILE_CACHE:
            profiles.popitem(last=False)
        return found

    sound_links, compared = [], 0
    for i, j in sorted(nominated_pairs(neighbour_rows, lengths)):
        if frozenset((i, j)) in same or (identities[i] and identities[i] == identities[j]):
            continue
        a, b = profile(i), profile(j)
        if a is None or b is None or not len(a) or not len(b):
            continue
        compared += 1
        value = residual(a, b, max_shift)
        if value < MAX_RESIDUAL:
            sound_links.append((i, j, value))
    return groups(len(identities), identity_links, sound_links), {"compared": compared, "unreadable": len(unreadable)}
