"""Tags: ID3, Vorbis, FLAC and MP4 tags read by ingest's workers; a labels CSV wins; broken tags never reject."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from beam_jobs import ingest
from core import catalogue as cat
from core.tags import read_tags
from tests.conftest import IN_MEMORY, tag, tone, write_audio

RECORDING = "0f6a1f4e-3b2a-4a8e-9b3c-1d2e3f4a5b6c"


@pytest.fixture(scope="module")
def tagged_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tagged")
    common = {"artist": "Night Drive", "album": "Roads", "albumartist": "Night Drive", "genre": "Synthwave"}
    tag(write_audio(root / "a" / "01.flac", tone(330, 3.0, 22050), 22050), title="First Light",
        tracknumber="1/9", musicbrainz_trackid=RECORDING, **common)
    tag(write_audio(root / "a" / "02.ogg", tone(440, 3.0, 22050), 22050, format="OGG"), title="Second <b>",
        tracknumber="2", **common)
    tag(write_audio(root / "b" / "x.mp3", tone(550, 3.0, 22050), 22050, format="MP3"), title="Mp3 Song",
        artist="Other One")
    write_audio(root / "b" / "plain name.wav", tone(660, 3.0, 22050), 22050)  # no tags at all
    broken = write_audio(root / "b" / "broken.wav", tone(770, 3.0, 22050), 22050)
    with broken.open("ab") as handle:  # an "id3 " chunk whose ID3 header is garbage
        junk = b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f" + b"\xff" * 30
        handle.write(b"id3 " + len(junk).to_bytes(4, "little") + junk)
    if shutil.which("ffmpeg"):
        m4a = root / "b" / "tune.m4a"
        subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=880:duration=3",
                        "-c:a", "aac", str(m4a)], check=True)
        tag(m4a, title="Mp4 Tune", artist="Cupertino", tracknumber="4")
    (root / "labels.csv").write_text("path,title,album,track_number,musicbrainz_recording_id\n"
                                     f"b/x.mp3,Label Wins,Label Album,7,{RECORDING}\na/02.ogg,,Other Roads,,\n")
    return root


def test_read_tags_of_each_format(tagged_folder):
    flac = read_tags(str(tagged_folder / "a" / "01.flac"))
    assert flac == {"title": "First Light", "artist": "Night Drive", "album": "Roads",
                    "album_artist": "Night Drive", "genre": "Synthwave", "track_number": 1,
                    "musicbrainz_recording_id": RECORDING, "length_s": pytest.approx(3.0, abs=0.01)}
    assert read_tags(str(tagged_folder / "a" / "02.ogg"))["track_number"] == 2
    assert read_tags(str(tagged_folder / "b" / "x.mp3"))["artist"] == "Other One"
    with (tagged_folder / "a" / "01.flac").open("rb") as handle:  # a stream, as a remote file is read
        assert read_tags(handle)["title"] == "First Light"
    assert set(read_tags(str(tagged_folder / "b" / "plain name.wav"))) <= {"length_s"}
    assert set(read_tags(str(tagged_folder / "b" / "broken.wav"))) <= {"length_s"}
    assert read_tags(str(tagged_folder / "nowhere.flac")) == {}
    if (tagged_folder / "b" / "tune.m4a").exists():
        assert read_tags(str(tagged_folder / "b" / "tune.m4a"))["title"] == "Mp4 Tune"


def test_row_values_win_over_tags_and_artists_get_stable_ids():
    row = {"track_id": 1, "path": "/m/song.flac", "title": None, "artist": None, "artist_id": None, "genre": "Rock"}
    merged = cat.with_tags(row, {"title": "T", "artist": "Night  Drive", "genre": "Pop", "album": "A"})
    assert (merged["title"], merged["genre"], merged["album"]) == ("T", "Rock", "A")
    assert merged["artist_id"] == cat.artist_id_for("night drive") == cat.with_tags(row, {"artist": "NIGHT DRIVE"})[
        "artist_id"]
    assert cat.with_tags(row, {})["title"] == "song" and cat.with_tags(row, {})["artist_id"] is None
    assert cat.with_tags({**row, "title": "Label"}, {"title": "T"})["title"] == "Label"


def test_folder_ingest_reads_tags_labels_win_broken_tags_accepted(tagged_folder, tmp_path):
    out = tmp_path / "data"
    summary = ingest.run(["--audio-dir", str(tagged_folder), "--labels-csv", str(tagged_folder / "labels.csv"),
                          "--out", str(out), *IN_MEMORY])
    assert summary["rejected"] == 0, pq.read_table(out / "rejects.parquet").to_pylist()
    tracks = {Path(t["path"]).name: t for t in pq.read_table(out / "tracks.parquet").to_pylist()}
    first = tracks["01.flac"]
    assert (first["title"], first["artist"], first["album"], first["album_artist"], first["genre"],
            first["track_number"], first["musicbrainz_recording_id"]) == (
        "First Light", "Night Drive", "Roads", "Night Drive", "Synthwave", 1, RECORDING)
    assert first["length_s"] == pytest.approx(3.0, abs=0.01)
    assert first["artist_id"] == tracks["02.ogg"]["artist_id"] == cat.artist_id_for("Night Drive")
    assert tracks["02.ogg"]["title"] == "Second <b>" and tracks["02.ogg"]["album"] == "Other Roads"  # CSV wins
    assert tracks["02.ogg"]["track_number"] == 2 and tracks["02.ogg"]["album_artist"] == "Night Drive"  # tags
    assert tracks["x.mp3"]["title"] == "Label Wins" and tracks["x.mp3"]["artist"] == "Other One"
    assert (tracks["x.mp3"]["album"], tracks["x.mp3"]["track_number"],
            tracks["x.mp3"]["musicbrainz_recording_id"]) == ("Label Album", 7, RECORDING)
    assert tracks["plain name.wav"]["title"] == "plain name" and tracks["plain name.wav"]["artist_id"] is None
    assert tracks["broken.wav"]["status"] == "ok" and tracks["broken.wav"]["title"] == "broken"
    assert summary["accepted_per_genre"]["Synthwave"] == 2
