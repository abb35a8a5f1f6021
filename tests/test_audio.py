import numpy as np
import pytest

from core import audio
from schemas.audio import AudioSpec, DEFAULT_AUDIO_SPEC
from schemas.tables import summary_feature_names
from tests.conftest import tone, write_audio

pytestmark = pytest.mark.unit  # pure code: no pipeline, no training

SPEC = DEFAULT_AUDIO_SPEC


def test_stereo_44k_wav_decodes_to_mono_at_spec_rate(tmp_path):
    left, right = tone(440, 3.0, 44100), tone(440, 3.0, 44100, amplitude=0.25)
    path = write_audio(tmp_path / "a.wav", np.stack([left, right], axis=1), 44100)
    decoded = audio.decode(str(path), SPEC)
    assert decoded.dtype == np.float32
    assert abs(decoded.size - 3 * SPEC.sample_rate) <= 1
    assert np.abs(decoded).max() == pytest.approx(0.375, abs=0.02)  # mean of the two channels


def test_stereo_in_opposite_phase_decodes_to_one_channel_not_to_silence(tmp_path):
    left = tone(440, 3.0, 22050)
    path = write_audio(tmp_path / "anti-phase.wav", np.stack([left, -left], axis=1), 22050)
    decoded = audio.decode(str(path), SPEC)
    assert np.sqrt(np.mean(decoded**2)) == pytest.approx(np.sqrt(np.mean(left**2)), rel=0.01)
    assert audio.analyse(decoded, SPEC).tiles.size  # not rejected as silent


def test_mono_is_the_mean_of_the_channels_unless_they_cancel():
    frames = np.random.default_rng(0).normal(size=(1000, 2)).astype(np.float32)
    np.testing.assert_allclose(audio.to_mono(frames), frames.mean(axis=1), rtol=1e-5, atol=1e-6)
    nearly_opposite = np.stack([frames[:, 0], -0.95 * frames[:, 0]], axis=1)  # mean 32 dB under the left channel
    np.testing.assert_array_equal(audio.to_mono(nearly_opposite), frames[:, 0])
    assert audio.to_mono(frames[:, :1]).shape == (1000,)


def test_decoded_duration_is_capped(tmp_path):
    path = write_audio(tmp_path / "long.flac", tone(220, 20.0, 22050), 22050)
    decoded = audio.decode(str(path), AudioSpec(max_duration_s=5.0))
    assert decoded.size == 5 * 22050


def test_mp3_decodes(tmp_path):
    path = write_audio(tmp_path / "a.mp3", tone(330, 4.0, 22050), 22050, format="MP3")
    assert abs(audio.decode(str(path), SPEC).size - 4 * 22050) < 0.05 * 22050


@pytest.mark.parametrize("content", [b"", b"this is not audio at all" * 10])
def test_unreadable_file_is_a_decode_error(tmp_path, content):
    path = tmp_path / "bad.mp3"
    path.write_bytes(content)
    with pytest.raises(audio.AudioError) as error:
        audio.decode(str(path), SPEC)
    assert error.value.stage == "decode"


@pytest.mark.parametrize("freq_hz", [220.0, 1000.0, 4000.0])
def test_tone_peaks_in_its_mel_band(freq_hz):
    import librosa

    mel = audio.log_mel(audio.power_spectrogram(tone(freq_hz, 2.0, SPEC.sample_rate), SPEC), SPEC)
    centres = librosa.mel_frequencies(n_mels=SPEC.n_mels + 2, fmin=SPEC.fmin, fmax=SPEC.fmax)[1:-1]
    expected = int(np.argmin(np.abs(centres - freq_hz)))
    assert abs(int(mel.mean(axis=1).argmax()) - expected) <= 1


def test_tiles_have_spec_shape_and_hop():
    spec = AudioSpec(tile_frames=16, tile_hop_frames=8)
    mel = np.arange(4 * 50, dtype=np.float32).reshape(4, 50)
    tiles = audio.tiles(mel, spec)
    assert tiles.shape == (1 + (50 - 16) // 8, 4, 16)
    np.testing.assert_array_equal(tiles[1], mel[:, 8:24])


def test_audio_shorter_than_a_tile_is_rejected():
    with pytest.raises(audio.AudioError, match="shorter than one tile"):
        audio.analyse(tone(440, 1.0, SPEC.sample_rate), SPEC)


def test_silence_is_rejected():
    with pytest.raises(audio.AudioError, match="silent") as error:
        audio.analyse(np.zeros(5 * SPEC.sample_rate, np.float32), SPEC)
    assert error.value.stage == "analyse"


def test_analysis_of_30s_clip():
    rng = np.random.default_rng(0)
    clip = tone(440, 30.0, SPEC.sample_rate) + 0.05 * rng.standard_normal(30 * SPEC.sample_rate).astype(np.float32)
    result = audio.analyse(clip, SPEC)
    assert result.tiles.shape == (10, SPEC.n_mels, SPEC.tile_frames)  # 1292 frames / 128
    assert result.features.shape == (len(summary_feature_names()),)
    assert np.all(np.isfinite(result.features))
    assert result.duration_s == pytest.approx(30.0)


def test_log_mel_equals_librosa_melspectrogram():
    import librosa

    rng = np.random.default_rng(1)
    power = audio.power_spectrogram(rng.standard_normal(3 * SPEC.sample_rate).astype(np.float32), SPEC)
    expected = librosa.power_to_db(
        librosa.feature.melspectrogram(S=power, sr=SPEC.sample_rate, n_fft=SPEC.n_fft, n_mels=SPEC.n_mels,
                                       fmin=SPEC.fmin, fmax=SPEC.fmax), ref=1.0, amin=SPEC.log_amin, top_db=None)
    np.testing.assert_allclose(audio.log_mel(power, SPEC), expected, atol=1e-3)


def test_summary_on_every_fourth_frame_tracks_the_full_statistics():
    rng = np.random.default_rng(2)
    clip = tone(660, 20.0, SPEC.sample_rate) + 0.1 * rng.standard_normal(20 * SPEC.sample_rate).astype(np.float32)
    power = audio.power_spectrogram(clip, SPEC)
    mel = audio.log_mel(power, SPEC)
    sampled = audio.summary_features(clip, power, mel, SPEC)
    full = audio.summary_features(clip, power, mel, AudioSpec(summary_frame_step=1))
    names = summary_feature_names()
    means = [i for i, n in enumerate(names) if "_mean_" in n]
    np.testing.assert_allclose(sampled[means], full[means], rtol=0.05, atol=0.05 * np.abs(full[means]).max())


# ---------------------------------------------------------------- the analysis budget (excerpts of long tracks)

def test_tracks_within_the_budget_are_read_whole():
    assert audio.excerpt_spans(30 * 44100, 44100, SPEC) == [(0, 30 * 44100)]  # a 30-s clip: 10 tiles <= 12
    assert audio.excerpt_spans(600 * 22050, 22050, AudioSpec(excerpts=0)) == [(0, 600 * 22050)]


@pytest.mark.parametrize("rate", [22050, 44100, 8000])
@pytest.mark.parametrize("excerpts", [1, 2, 4, 7])
def test_excerpts_are_spread_over_the_track_at_full_length(rate, excerpts):
    spec = AudioSpec(excerpts=excerpts)
    n = 240 * rate
    spans = audio.excerpt_spans(n, rate, spec)
    length = round(spec.excerpt_samples * rate / spec.sample_rate)
    assert len(spans) == excerpts
    assert all(stop - start == length and 0 <= start and stop <= n for start, stop in spans)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # in order, disjoint
    centres = [(start + stop) / 2 / n for start, stop in spans]
    np.testing.assert_allclose(centres, [(i + 0.5) / excerpts for i in range(excerpts)], atol=1e-4)


def test_an_excerpt_is_exactly_its_tiles():
    segment = tone(440, SPEC.excerpt_samples / SPEC.sample_rate, SPEC.sample_rate)
    assert audio.analyse(segment, SPEC).tiles.shape[0] == SPEC.excerpt_tiles


def sections(freqs: list[float], seconds_each: float, sr: int) -> np.ndarray:
    """A track of consecutive tones: section i at ``freqs[i]`` Hz."""
    return np.concatenate([tone(f, seconds_each, sr) for f in freqs])


@pytest.mark.parametrize("fmt, suffix", [("FLAC", "flac"), ("MP3", "mp3"), ("OGG", "ogg"), ("WAV", "wav")])
def test_long_track_is_analysed_from_excerpts_that_land_where_they_should(tmp_path, fmt, suffix):
    """Four sections of a 4-min track, one tone each: each of the four excerpts (centred at 1/8, 3/8, 5/8 and
    7/8) lies inside its own section, so each excerpt's tiles peak in that section's mel band; the seeking
    decoder reads the same samples as a whole decode cut at the same places."""
    import librosa

    freqs = [220.0, 660.0, 1760.0, 3520.0]
    path = write_audio(tmp_path / f"long.{suffix}", sections(freqs, 60.0, 44100), 44100, format=fmt)
    decoded = audio.decode_excerpts(str(path), SPEC)
    assert decoded.duration_s == pytest.approx(240.0, abs=0.1)
    assert [s.size for s in decoded.segments] == [SPEC.excerpt_samples] * SPEC.excerpts
    whole = audio.decode(str(path), SPEC)
    for segment, (start, stop) in zip(decoded.segments, audio.excerpt_spans(whole.size, SPEC.sample_rate, SPEC)):
        # soxr resamples each excerpt apart: the edges differ by its filter's length, the rest agrees
        middle = slice(1000, -1000)
        np.testing.assert_allclose(segment[middle], whole[start:stop][middle], atol=2e-3)
    analysis = audio.analyse_source(str(path), SPEC)
    assert analysis.tiles.shape == (SPEC.max_tiles, *SPEC.tile_shape)
    assert analysis.duration_s == pytest.approx(240.0, abs=0.1)
    centres = librosa.mel_frequencies(n_mels=SPEC.n_mels + 2, fmin=SPEC.fmin, fmax=SPEC.fmax)[1:-1]
    peaks = analysis.tiles.mean(axis=2).argmax(axis=1).reshape(SPEC.excerpts, SPEC.excerpt_tiles)
    for section, freq in enumerate(freqs):
        assert np.all(np.abs(peaks[section] - np.argmin(np.abs(centres - freq))) <= 1), (section, peaks)


def test_a_clip_within_the_budget_is_analysed_as_without_one(tmp_path):
    rng = np.random.default_rng(3)
    clip = tone(440, 30.0, 44100) + 0.05 * rng.standard_normal(30 * 44100).astype(np.float32)
    path = write_audio(tmp_path / "clip.flac", clip, 44100)
    budgeted, every_tile = audio.analyse_source(str(path), SPEC), audio.analyse_source(str(path), AudioSpec(excerpts=0))
    np.testing.assert_array_equal(budgeted.tiles, every_tile.tiles)
    np.testing.assert_array_equal(budgeted.features, every_tile.features)


def test_summary_statistics_span_every_excerpt():
    """The statistics of a track's excerpts are those of their frames together, not of one excerpt."""
    low, high = tone(220, 10.0, SPEC.sample_rate), tone(3520, 10.0, SPEC.sample_rate)
    both = audio.analyse_segments([low, high], SPEC, duration_s=200.0).features
    alone = [audio.analyse(x, SPEC).features for x in (low, high)]
    centroid = summary_feature_names().index("spectral_centroid_mean_00")
    assert alone[0][centroid] < both[centroid] < alone[1][centroid]
    assert both[centroid] == pytest.approx((alone[0][centroid] + alone[1][centroid]) / 2, rel=0.02)


@pytest.mark.filterwarnings("ignore:n_fft=2048 is too large")  # the 1,000-sample excerpt, on purpose
def test_an_excerpt_cut_short_gives_the_tiles_it_can():
    """A file whose header overstates its length: the last excerpts come back short or empty; the track keeps
    the tiles of the others instead of being rejected."""
    full = tone(440, SPEC.excerpt_samples / SPEC.sample_rate, SPEC.sample_rate)
    analysis = audio.analyse_segments([full, full, full[:1000], full[:0]], SPEC, duration_s=200.0)
    assert analysis.tiles.shape[0] == 2 * SPEC.excerpt_tiles
    with pytest.raises(audio.AudioError, match="shorter than one tile"):
        audio.analyse_segments([full[:1000]], SPEC, duration_s=200.0)
