"""The pure parts of ``wavelist duplicates`` (core.duplicates); the command itself: tests/test_update.py."""
from __future__ import annotations

import numpy as np
import pytest

from core import duplicates as dup

pytestmark = pytest.mark.unit
FPS = 22050 / 512


def melody(seed: int, seconds: float = 20.0) -> np.ndarray:
    """A log-mel ``[128, frames]`` of random notes (dB), as a track's sound."""
    rng = np.random.default_rng(seed)
    frames = int(seconds * FPS)
    mel = np.full((128, frames), -80.0)
    for start in range(0, frames, 10):
        band = rng.integers(10, 100)
        mel[band - 2:band + 3, start:start + 8] = -10.0 + rng.normal(0, 1, (5, min(8, frames - start)))
    return mel


def test_a_copy_with_silence_added_matches_and_another_song_does_not():
    original = melody(0)
    padded = np.concatenate([np.full((128, 50), -120.0), original + 0.3 * np.random.default_rng(1).normal(size=original.shape)], axis=1)
    other = melody(2)
    shift = int(dup.MAX_SHIFT_S * FPS)
    profile = [dup.sound_profile(m, FPS) for m in (original, padded, other)]
    assert profile[0].shape == profile[1].shape == (int(round(dup.EXCERPT_S * FPS)), 128)
    assert dup.residual(profile[0], profile[1], shift) < dup.MAX_RESIDUAL
    assert dup.residual(profile[0], profile[2], shift) > 0.5
    trimmed = dup.sound_profile(original[:, 30:], FPS)  # 0.7 s cut from the start: found by the alignment
    assert dup.residual(profile[0], trimmed, shift) < dup.MAX_RESIDUAL


def test_lengths_nominated_pairs_and_groups():
    assert dup.lengths_agree(180.0, 184.0) and dup.lengths_agree(None, 10.0)
    assert not dup.lengths_agree(180.0, 200.0)
    rows = np.array([[1, 2], [0, -1], [0, 1], [2, 0]])
    assert dup.nominated_pairs(rows, [100.0, 101.0, 300.0, 100.0], n=2) == {(0, 1), (0, 3)}
    found = dup.groups(6, identity_links=[(4, 5)], sound_links=[(0, 1, 0.002), (1, 3, 0.004)])
    assert [(g.rows, g.by_sound) for g in found] == [([0, 1, 3], True), ([4, 5], False)]


def test_find_duplicates_reads_each_file_once_and_skips_identical_audio():
    profiles = {0: dup.sound_profile(melody(0), FPS), 1: dup.sound_profile(melody(0) + 0.1, FPS),
                2: dup.sound_profile(melody(3), FPS), 3: None}
    read = []

    def profile_of(row):
        read.append(row)
        return profiles[row]

    rows = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])
    found, stats = dup.find_duplicates(["a", "b", "c", "c"], rows, [12.0] * 4, profile_of, int(dup.MAX_SHIFT_S * FPS))
    assert [(g.rows, g.by_sound) for g in found] == [([0, 1], True), ([2, 3], False)]
    assert sorted(read) == [0, 1, 2, 3] and stats == {"compared": 3, "unreadable": 1}
