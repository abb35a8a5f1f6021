import io
from collections import Counter

import pytest

from core.catalogue import CatalogueError, fma_audio_path, read_fma_tracks, stable_split

pytestmark = pytest.mark.unit  # pure code: no pipeline, no training

FMA_CSV = """,album,artist,artist,set,set,track,track
,title,id,name,split,subset,genre_top,title
track_id,,,,,,,
2,A,1,AWOL,training,small,Hip-Hop,Food
5,A,1,AWOL,validation,small,Hip-Hop,This World
140,B,54,Alec K. Redfearn,test,medium,Folk,Queen
141,B,54,Alec K. Redfearn,,large,,Ohio
"""


def test_fma_audio_path_uses_six_digits_and_three_digit_folder():
    assert fma_audio_path("fma_small", 2) == "fma_small/000/000002.mp3"
    assert fma_audio_path("gs://bucket/fma_small/", 123456) == "gs://bucket/fma_small/123/123456.mp3"


def test_reads_fma_two_row_header_and_subset():
    rows = read_fma_tracks(io.StringIO(FMA_CSV), audio_dir="audio", subset="small")
    assert [r["track_id"] for r in rows] == [2, 5]
    assert rows[0] == {"track_id": 2, "path": "audio/000/000002.mp3", "genre": "Hip-Hop", "artist_id": 1,
                       "artist": "AWOL", "title": "Food", "split": "train"}
    assert rows[1]["split"] == "validation"


def test_larger_subset_includes_smaller_and_hashes_missing_split():
    rows = read_fma_tracks(io.StringIO(FMA_CSV), audio_dir="audio", subset="large")
    assert [r["track_id"] for r in rows] == [2, 5, 140, 141]
    assert rows[3]["genre"] is None
    assert rows[3]["split"] == stable_split("artist:54")


def test_missing_genre_column_is_a_clear_error():
    csv = FMA_CSV.replace("genre_top", "genre_other")
    with pytest.raises(CatalogueError, match=r"\('track', 'genre_top'\)"):
        read_fma_tracks(io.StringIO(csv), audio_dir="audio")


def test_unknown_subset_is_refused():
    with pytest.raises(CatalogueError, match="unknown FMA subset"):
        read_fma_tracks(io.StringIO(FMA_CSV), audio_dir="audio", subset="tiny")


def test_stable_split_is_deterministic_and_near_80_10_10():
    counts = Counter(stable_split(f"track:{i}") for i in range(20000))
    assert stable_split("track:7") == stable_split("track:7")
    assert counts["train"] / 20000 == pytest.approx(0.8, abs=0.01)
    assert counts["validation"] / 20000 == pytest.approx(0.1, abs=0.01)
