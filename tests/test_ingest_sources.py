"""The folder source: any audio files, an optional labels CSV, hash splits, duplicate ids."""
import io

import numpy as np
import pyarrow.parquet as pq
import pytest

from core import catalogue as cat
from beam_jobs import ingest
from core.identity import identity_track_id
from tests.conftest import IN_MEMORY, tone, write_audio


def test_track_ids_keep_fma_numbers_and_hash_other_names():
    assert cat.track_id_for("000/000123.mp3") == 123
    other = cat.track_id_for("Band/Song one.flac")
    assert other == cat.track_id_for("Band/Song one.flac") and 0 < other < 2**63
    assert other != cat.track_id_for("Band/Song two.flac")


def test_labels_csv_is_keyed_by_path_and_checked():
    labels = dict(cat.read_labels(io.StringIO("path,genre,artist,track_id\n./a/b.mp3,Rock,X,7\nc.ogg,,,\n")))
    empty = dict.fromkeys(cat.LABEL_COLUMNS)
    assert labels == {"a/b.mp3": {**empty, "track_id": 7, "genre": "Rock", "artist": "X"}, "c.ogg": empty}
    with pytest.raises(cat.CatalogueError, match="needs a 'path' column"):
        cat.read_labels(io.StringIO("file,genre\nx.mp3,Rock\n"))
    with pytest.raises(cat.CatalogueError, match="line 2: track_id 'seven' is not an integer"):
        cat.read_labels(io.StringIO("path,track_id\nx.mp3,seven\n"))


def test_labels_csv_takes_the_columns_tags_give():
    mbid = "0f6a1f4e-3b2a-4a8e-9b3c-1d2e3f4a5b6c"
    text = ("path,album,album_artist,track_number,musicbrainz_recording_id,musicbrainz_artist_id,"
            f"musicbrainz_album_id\na.flac,Roads,Night Drive,3,{mbid},{mbid[::-1]},{mbid.upper()}\n")
    (path, values), = cat.read_labels(io.StringIO(text))
    assert values == {**dict.fromkeys(cat.LABEL_COLUMNS), "album": "Roads", "album_artist": "Night Drive",
                      "track_number": 3, "musicbrainz_recording_id": mbid, "musicbrainz_artist_id": mbid[::-1],
                      "musicbrainz_album_id": mbid.upper()}
    (row,), _ = cat.folder_tracks(["/m/a.flac"], root="/m", labels=[(path, values)])
    assert (row["album"], row["track_number"], row["musicbrainz_album_id"]) == ("Roads", 3, mbid.upper())
    tagged = cat.with_tags(row, {"album": "Tag Album", "track_number": 9, "musicbrainz_recording_id": "x",
                                 "musicbrainz_artist_id": "y", "album_artist": "z"})
    assert {k: tagged[k] for k in cat.TAG_LABELS} == {k: row[k] for k in cat.TAG_LABELS}  # the CSV wins
    for bad in ("3/12", "0", "100000"):
        with pytest.raises(cat.CatalogueError, match="line 2: track_number"):
            cat.read_labels(io.StringIO(f"path,track_number\nx.mp3,{bad}\n"))


def test_folder_rows_split_by_artist_and_skip_other_files():
    paths = ["/m/a/1.mp3", "/m/a/2.mp3", "/m/cover.jpg", "/m/b/3.FLAC"]
    labels = {"a/1.mp3": {"artist": "Same"}, "a/2.mp3": {"artist": "Same"}}
    rows, rejects = cat.folder_tracks(paths, root="/m", labels=labels)
    assert rejects == []
    assert [r["path"] for r in rows] == ["/m/a/1.mp3", "/m/a/2.mp3", "/m/b/3.FLAC"]
    assert rows[0]["split"] == rows[1]["split"] == cat.split_for(1, None, "Same")
    assert rows[2]["track_id"] is None and rows[2]["split"] is None  # both from its audio's identity
    rows[2]["audio_identity"] = "mp3-frames:00"
    (third,) = cat.assign_ids(rows[2:])
    assert third["track_id"] == identity_track_id("mp3-frames:00") and third["split"] == cat.split_for(third["track_id"])


def test_duplicate_ids_keep_the_first_and_reject_the_rest():
    rows = [{"track_id": 1, "path": "a"}, {"track_id": 2, "path": "b"}, {"track_id": 1, "path": "c"}]
    kept, rejects = cat.drop_duplicate_ids(rows)
    assert [r["path"] for r in kept] == ["a", "b"]
    assert rejects == [{"track_id": 1, "path": "c", "stage": "catalogue", "reason": "duplicate track id 1 (first at a)"}]


@pytest.fixture(scope="module")
def music_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("music")
    stereo = np.stack([tone(440, 5.0, 44100), tone(660, 5.0, 44100)], axis=1)
    write_audio(root / "rock" / "loud song.wav", stereo, 44100, subtype="PCM_24")
    write_audio(root / "rock" / "Ünïcode track.flac", tone(330, 4.0, 48000), 48000)
    write_audio(root / "calm" / "wave.ogg", tone(220, 4.0, 22050), 22050, format="OGG")
    write_audio(root / "000" / "000042.mp3", tone(550, 4.0, 22050), 22050, format="MP3")  # FMA's own layout
    write_audio(root / "calm" / "also 42.wav", tone(550, 4.0, 8000), 8000)
    (root / "notes.txt").write_text("not audio")
    labels = root / "labels.csv"
    labels.write_text("path,genre,artist\nrock/loud song.wav,Rock,A\nÜnïcode track.flac,Rock,A\n"
                      "calm/wave.ogg,Calm,B\ncalm/also 42.wav,Calm,B\n")
    return root


def test_folder_ingest_with_labels_and_mixed_formats(music_folder, tmp_path):
    out = tmp_path / "data"
    summary = ingest.run(["--audio-dir", str(music_folder), "--labels-csv", str(music_folder / "labels.csv"),
                          "--out", str(out), *IN_MEMORY])
    assert summary["inputs"] == 5 == summary["accepted"] + summary["rejected"]
    tracks = {t["path"].split("/")[-1]: t for t in pq.read_table(out / "tracks.parquet").to_pylist()}
    assert set(tracks) == {"loud song.wav", "Ünïcode track.flac", "wave.ogg", "000042.mp3", "also 42.wav"}
    assert all(t["status"] == "ok" for t in tracks.values())
    assert tracks["000042.mp3"]["track_id"] == 42  # FMA's layout keeps its number; the others: their audio's id
    assert tracks["wave.ogg"]["track_id"] == identity_track_id(tracks["wave.ogg"]["audio_identity"])
    assert tracks["wave.ogg"]["audio_identity"].startswith("ogg-packets:")
    assert tracks["loud song.wav"]["file_size"] == (music_folder / "rock" / "loud song.wav").stat().st_size
    assert tracks["loud song.wav"]["genre"] == tracks["Ünïcode track.flac"]["genre"] == "Rock"
    assert tracks["loud song.wav"]["split"] == tracks["Ünïcode track.flac"]["split"]  # same artist
    assert tracks["loud song.wav"]["duration_s"] == pytest.approx(5.0, abs=0.01)
    assert summary["accepted_per_genre"] == {"": 1, "Calm": 2, "Rock": 2}


def test_duplicate_id_from_labels_is_rejected_not_lost(music_folder, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("path,track_id\ncalm/also 42.wav,42\n")  # collides with 000042.mp3
    out = tmp_path / "data"
    summary = ingest.run(["--audio-dir", str(music_folder), "--labels-csv", str(labels), "--out", str(out),
                          *IN_MEMORY])
    assert summary["inputs"] == 5 and summary["accepted"] == 4
    rejects = pq.read_table(out / "rejects.parquet").to_pylist()
    assert [(r["stage"], r["path"].split("/")[-1]) for r in rejects] == [("catalogue", "also 42.wav")]
    assert summary["rejected_per_stage"] == {"catalogue": 1}


def test_glob_source_and_empty_folder(music_folder, tmp_path):
    summary = ingest.run(["--audio-glob", str(music_folder / "000" / "*.mp3"), "--out", str(tmp_path / "d"),
                          *IN_MEMORY])
    assert summary["inputs"] == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no audio track"):
        ingest.run(["--audio-dir", str(empty), "--out", str(tmp_path / "e"), *IN_MEMORY])
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        ingest.run(["--audio-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "e"), *IN_MEMORY])
