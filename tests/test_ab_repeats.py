import numpy as np
import pytest

from benchmarks.ab_repeats import RATE, THRESHOLD, best_match

pytestmark = pytest.mark.unit  # pure code: no pipeline, no training


def test_a_looped_excerpt_is_found_at_its_lag():
    music = np.random.default_rng(0).normal(size=40 * RATE).astype(np.float32)
    a, b = music[: 30 * RATE], 0.5 * music[8 * RATE: 38 * RATE]  # b starts 8 s later in the same audio
    correlation, lag, overlap = best_match(a, b)
    assert correlation == pytest.approx(1.0, abs=1e-4)
    assert (lag, overlap) == (8.0, 22.0)


def test_different_audio_and_short_overlaps_are_not_repeats():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=30 * RATE), rng.normal(size=30 * RATE)
    assert best_match(a, b)[0] < THRESHOLD
    music = rng.normal(size=50 * RATE)
    correlation, _, overlap = best_match(music[: 30 * RATE], music[25 * RATE: 50 * RATE])  # 5 s shared only
    assert overlap >= 10.0 and correlation < THRESHOLD
