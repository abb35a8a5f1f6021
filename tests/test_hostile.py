"""Hostile and careless input, each case through the ``wavelist`` command: nothing deleted, nothing read
outside the folders given, no single file stops a job, every mistake one line with exit code 2."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from core import audio
from schemas.audio import DEFAULT_AUDIO_SPEC
from schemas.tile_example import TILE_COMPRESSION
from storage import files
from tests.conftest import IN_MEMORY, table_file, tone, write_audio
from tests.records import tfrecord_payloads
from wavelist.cli import build_parser, main


def one_line_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def good_wav(path: Path, freq: float = 440.0) -> Path:
    noise = 0.05 * np.random.default_rng(int(freq)).standard_normal(22050 * 4)
    return write_audio(path, (tone(freq, 4.0, 22050, 0.3) + noise).astype(np.float32), 22050)


def ingest(argv: list[str]) -> int:
    return main(["ingest", *argv, *IN_MEMORY])


def read_rows(out: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    """(tracks by file name, rejects by file name) of an ingest output."""
    tracks = {Path(t["path"]).name: t for t in pq.read_table(out / "tracks.parquet").to_pylist()}
    rejects = {Path(r["path"]).name: r for r in pq.read_table(out / "rejects.parquet").to_pylist()}
    return tracks, rejects


# ---- 1. --overwrite never deletes what wavelist did not write ----

def test_overwrite_refuses_a_folder_that_holds_the_input(tmp_path, capsys):
    good_wav(tmp_path / "v" / "audio" / "good.wav")
    err = one_line_error(["ingest", "--audio-dir", str(tmp_path / "v" / "audio"), "--out", str(tmp_path / "v"),
                          "--overwrite", *IN_MEMORY], capsys)
    assert "an input of this run" in err
    assert (tmp_path / "v" / "audio" / "good.wav").is_file()


def test_overwrite_refuses_folders_wavelist_did_not_write(tmp_path, pipeline_outputs, capsys):
    good_wav(tmp_path / "audio" / "good.wav")
    mine = tmp_path / "my documents"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    err = one_line_error(["ingest", "--audio-dir", str(tmp_path / "audio"), "--out", str(mine), "--overwrite",
                          *IN_MEMORY], capsys)
    assert "not a complete wavelist output" in err and "--overwrite" not in err.split(";")[-1].replace(
        "wavelist replaces only its own outputs", "")
    assert (mine / "thesis.txt").read_text() == "years of work"
    # a wavelist output of another command
    model = tmp_path / "model"
    shutil.copytree(pipeline_outputs["model"], model)
    err = one_line_error(["ingest", "--audio-dir", str(tmp_path / "audio"), "--out", str(model), "--overwrite",
                          *IN_MEMORY], capsys)
    assert "is an output of wavelist train, not of wavelist ingest" in err
    assert sorted(os.listdir(model)) == sorted(os.listdir(pipeline_outputs["model"]))


def test_overwrite_refuses_an_output_holding_files_it_did_not_write(tmp_path, capsys):
    good_wav(tmp_path / "audio" / "good.wav")
    out = tmp_path / "data"
    assert ingest(["--audio-dir", str(tmp_path / "audio"), "--out", str(out)]) == 0
    marker = json.loads((out / files.SUCCESS_MARKER).read_text())
    assert marker["kind"] == "ingest" and "tracks.parquet" in marker["files"]
    (out / "my notes.txt").write_text("keep me")
    err = one_line_error(["ingest", "--audio-dir", str(tmp_path / "audio"), "--out", str(out), "--overwrite",
                          *IN_MEMORY], capsys)
    assert "wavelist did not write (e.g. my notes.txt)" in err
    (out / "my notes.txt").unlink()
    assert ingest(["--audio-dir", str(tmp_path / "audio"), "--out", str(out), "--overwrite"]) == 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # nothing moved aside is left


def test_an_empty_folder_may_become_an_output(tmp_path):
    good_wav(tmp_path / "audio" / "good.wav")
    (tmp_path / "empty").mkdir()
    assert ingest(["--audio-dir", str(tmp_path / "audio"), "--out", str(tmp_path / "empty")]) == 0
    assert (tmp_path / "empty" / "tracks.parquet").is_file()


# ---- 2. one bad file never stops a job; 5. one file is one track; 6. folders are literal ----

@pytest.fixture(scope="module")
def hostile_folder(tmp_path_factory):
    """A folder named like a glob, with a huge-valued float WAV, a file name that is not UTF-8, links (two
    to one file, one dangling, one looping) and a labels CSV listing a file twice and files outside."""
    base = tmp_path_factory.mktemp("hostile")
    root = base / "music [live]"
    good_wav(root / "good.wav", 440)
    good_wav(root / "sub" / "other.wav", 550)
    write_audio(root / "huge.wav", np.full(22050 * 4, 1e20, np.float32) * np.sign(tone(220, 4.0, 22050)), 22050,
                subtype="FLOAT")
    os.rename(good_wav(root / "latin.wav", 660), bytes(root) + b"/caf\xe9 latin-1.wav")  # not UTF-8
    (root / "link one.wav").symlink_to(root / "sub" / "other.wav")
    (root / "dangling.wav").symlink_to(root / "nowhere.wav")
    (root / "loop.wav").symlink_to(root / "loop.wav")
    (root / "folder loop").mkdir()
    (root / "folder loop" / "back").symlink_to(root)
    good_wav(base / "outside" / "secret.wav", 770)
    labels = base / "labels.csv"
    labels.write_text("path,genre,title\n./good.wav,Tone,First\nsub/../good.wav,Tone,Again\n"
                      "../outside/secret.wav,Tone,\n../../../../../../etc/passwd,Tone,\n"
                      f"{root / 'sub' / 'other.wav'},Other,Absolute inside\n", encoding="utf-8")
    out = base / "data"
    assert ingest(["--audio-dir", str(root), "--labels-csv", str(labels), "--out", str(out)]) == 0
    return root, out


def test_bad_files_are_rejects_and_the_job_completes(hostile_folder):
    _, out = hostile_folder
    tracks, rejects = read_rows(out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"] == summary["accepted"] + summary["rejected"]
    assert rejects["huge.wav"]["stage"] == "decode" and "out of range" in rejects["huge.wav"]["reason"]
    assert tracks["good.wav"]["status"] == "ok" and tracks["good.wav"]["title"] == "First"


def test_a_name_that_is_not_utf8_is_kept_and_shown_escaped(hostile_folder):
    _, out = hostile_folder
    tracks, _ = read_rows(out)
    assert tracks["caf\\xe9 latin-1.wav"]["status"] == "ok"
    assert tracks["caf\\xe9 latin-1.wav"]["title"] == "caf\\xe9 latin-1"


def test_labels_outside_the_folder_are_rejected_unread(hostile_folder):
    _, out = hostile_folder
    tracks, rejects = read_rows(out)
    for name in ("secret.wav", "passwd"):
        assert name not in tracks
        assert rejects[name]["stage"] == "catalogue" and rejects[name]["reason"].startswith("outside the audio folder")
    # the same reason whether or not the file exists: nothing tells what is there
    assert rejects["secret.wav"]["reason"] == rejects["passwd"]["reason"]
    assert tracks["other.wav"]["genre"] == "Other" and tracks["other.wav"]["title"] == "Absolute inside"


def test_a_file_listed_or_linked_twice_is_one_track(hostile_folder):
    root, out = hostile_folder
    tracks, rejects = read_rows(out)
    everything = pq.read_table(out / "tracks.parquet").to_pylist()
    assert sum(Path(t["path"]).name == "good.wav" for t in everything) == 1
    duplicates = [r for r in pq.read_table(out / "rejects.parquet").to_pylist() if r["reason"].startswith("duplicate")]
    assert len(duplicates) == 2  # sub/../good.wav (labels) and "link one.wav" (a link to sub/other.wav)
    assert {Path(r["path"]).name for r in duplicates} == {"good.wav", "link one.wav"}
    assert "other.wav" in tracks


def test_links_that_lead_nowhere_or_loop_are_rejects(hostile_folder):
    _, out = hostile_folder
    _, rejects = read_rows(out)
    assert rejects["dangling.wav"]["stage"] == "read" and "leads nowhere" in rejects["dangling.wav"]["reason"]
    assert rejects["loop.wav"]["stage"] == "read" and "cannot be followed" in rejects["loop.wav"]["reason"]


def test_a_folder_name_with_glob_characters_is_taken_literally(hostile_folder):
    root, out = hostile_folder
    tracks, _ = read_rows(out)
    assert all(t["path"].startswith(str(root)) for t in tracks.values())
    assert len([t for t in tracks.values() if t["status"] == "ok"]) == 3  # good, other, the latin-1 name


# ---- 7. typos are errors that name the flag meant ----

@pytest.mark.parametrize("argv, meant", [
    (["ingest", "--audio-dir", "a", "--label-csv", "x.csv", "--out", "o"], "--labels-csv"),
    (["embed", "--data", "d", "--modle", "m", "--out", "o"], "--model"),
    (["train", "--data", "d", "--out", "o", "--epoks", "3"], "--epochs"),
    (["radio", "--tables", "t", "--seed", "1", "--max-per-artst", "2"], "--max-per-artist"),
    (["journey", "--tables", "t", "--from", "1", "--too", "2"], "--to"),
    (["clusters", "--tables", "t", "--k", "3", "--formt", "json"], "--format"),
    (["app", "--tables", "t", "--adress", "0.0.0.0"], "--address"),
])
def test_a_misspelt_flag_names_the_closest_one(argv, meant, capsys):
    with pytest.raises(SystemExit) as stop:
        code = main(argv)
        raise SystemExit(code)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"did you mean {meant}?" in err, err


def test_fma_ingest_with_a_mistyped_audio_folder_stops_before_running(pipeline_outputs, tmp_path, capsys):
    wrong = tmp_path / "fma_smal"
    wrong.mkdir()
    err = one_line_error(["ingest", "--fma-metadata", str(pipeline_outputs["catalogue"] / "fma_metadata"),
                          "--audio-dir", str(wrong), "--out", str(tmp_path / "d"), *IN_MEMORY], capsys)
    assert f"--audio-dir {wrong} holds none of the 32 audio files" in err
    assert not (tmp_path / "d").exists()


# ---- 4. text from files leaves safely; 8. damaged tables are refused; 9. one line, capped counts ----

@pytest.fixture
def hostile_tables(pipeline_outputs, tmp_path):
    """A copy of the session's TABLES whose first tracks have hostile titles."""
    folder = tmp_path / "tables"
    shutil.copytree(pipeline_outputs["tables"], folder)
    tracks = pq.read_table(folder / "tracks.parquet")
    hostile = ["Song\nhttp://evil.example/track.mp3", "\x1b[2J\x1b]0;owned\x07Red \x1b[31mtitle",
               "</script><script>alert(1)</script>"]
    titles = [f"{hostile[i % 3]} {i}" for i in range(len(tracks))]
    tracks = tracks.set_column(tracks.schema.get_field_index("title"), "title", pa.array(titles))
    pq.write_table(tracks, table_file(folder / "tracks.parquet"))
    return folder, tracks["track_id"].to_pylist()[:3]


def test_titles_cannot_add_playlist_lines_or_terminal_escapes(hostile_tables, capsys):
    folder, ids = hostile_tables
    assert main(["like", "--tables", str(folder), "--seeds", *map(str, ids), "-n", "5", "--format", "m3u"]) == 0
    m3u = capsys.readouterr().out.strip().splitlines()
    assert m3u[0] == "#EXTM3U" and len(m3u) == 1 + 2 * 5
    assert all(line.startswith("#EXTINF:") for line in m3u[1::2])
    assert not any(line.startswith("http://evil") for line in m3u)
    assert main(["like", "--tables", str(folder), "--seeds", *map(str, ids), "-n", "5"]) == 0
    table = capsys.readouterr().out
    assert "\x1b" not in table and "\x07" not in table and len(table.strip().splitlines()) == 6
    assert "Red title" in table and "owned" not in table


def test_titles_are_html_escaped_on_the_map(hostile_tables, tmp_path):
    folder, ids = hostile_tables
    assert main(["map", "--tables", str(folder), "--out", str(tmp_path / "map.html"), "--radio", str(ids[2])]) == 0
    page = (tmp_path / "map.html").read_text()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


def damage(path: Path, at: float = 0.5) -> None:
    """Flip 64 bytes in the middle of ``path`` (its data pages), keeping its size and footer."""
    data = bytearray(path.read_bytes())
    start = int(len(data) * at)
    data[start:start + 64] = bytes(b ^ 0xFF for b in data[start:start + 64])
    path.write_bytes(bytes(data))


def test_damaged_neighbour_tables_are_refused_and_named(pipeline_outputs, tmp_path, capsys):
    folder = tmp_path / "tables"
    shutil.copytree(pipeline_outputs["tables"], folder)
    seed = str(pq.read_table(folder / "embeddings.parquet")["track_id"][0])
    neighbours = table_file(folder / "neighbours.parquet")
    damage(neighbours, 0.3)
    err = one_line_error(["radio", "--tables", str(folder), "--seed", seed], capsys)
    assert str(neighbours) in err
    # a table without page checksums whose similarities are no cosines
    table = pq.read_table(pipeline_outputs["tables"] / "neighbours.parquet")
    similarity = table["similarity"].to_numpy().copy()
    similarity[7] = 7.5e22
    pq.write_table(table.set_column(3, "similarity", pa.array(similarity, pa.float32())), neighbours)
    err = one_line_error(["radio", "--tables", str(folder), "--seed", seed], capsys)
    assert f"{folder / 'neighbours.parquet'} is damaged: row 7" in err and "similarity outside [-1, 1]" in err
    neighbours.write_bytes(b"")
    err = one_line_error(["radio", "--tables", str(folder), "--seed", seed], capsys)
    assert f"{neighbours} is not a readable Parquet file" in err


def test_damaged_vectors_and_row_counts_are_refused(pipeline_outputs, tmp_path, capsys):
    folder = tmp_path / "tables"
    shutil.copytree(pipeline_outputs["tables"], folder)
    embeddings = pq.read_table(folder / "embeddings.parquet")
    vectors = np.array(embeddings["embedding"].to_pylist(), np.float32)
    vectors[3, 0] = np.nan
    broken = embeddings.set_column(1, "embedding", pa.array(vectors.tolist(), embeddings.schema.field(1).type))
    pq.write_table(broken, table_file(folder / "embeddings.parquet"))
    err = one_line_error(["radio", "--tables", str(folder), "--seed", "2"], capsys)
    assert "embeddings.parquet is damaged" in err and "not finite" in err
    pq.write_table(embeddings.slice(0, 10), table_file(folder / "embeddings.parquet"))
    err = one_line_error(["radio", "--tables", str(folder), "--seed", "2"], capsys)
    assert "holds 10 tracks but" in err and "summary.json records" in err


def test_counts_and_ids_out_of_range_are_one_line(pipeline_outputs, capsys):
    tables = str(pipeline_outputs["tables"])
    seed = str(pq.read_table(Path(tables) / "embeddings.parquet")["track_id"][0])
    err = one_line_error(["radio", "--tables", tables, "--seed", str(2**70)], capsys)
    assert "64-bit integers" in err
    err = one_line_error(["radio", "--tables", tables, "--seed", seed, "--max-per-artist", "0"], capsys)
    assert "--max-per-artist must be 1 or more" in err
    assert main(["like", "--tables", tables, "--seeds", seed, "-n", "1000000000", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) < 32  # capped at the catalogue (the seed left out)


def test_output_files_never_land_inside_the_tables(pipeline_outputs, capsys):
    tables = pipeline_outputs["tables"]
    shard = table_file(tables / "tracks.parquet")
    before = shard.read_bytes()
    err = one_line_error(["radio", "--tables", str(tables), "--seed", "2", "--output", str(shard)], capsys)
    assert "inside the tables folder" in err
    assert shard.read_bytes() == before


def test_add_with_only_bad_files_is_one_line(pipeline_outputs, tmp_path, capsys):
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "broken.mp3").write_bytes(b"not audio at all" * 100)
    err = one_line_error(["add", "--audio-dir", str(tmp_path / "new"), "--tables", str(pipeline_outputs["tables"]),
                          "--model", str(pipeline_outputs["model"]), "--out", str(tmp_path / "t"), *IN_MEMORY], capsys)
    assert "none of its 1 audio files could be added" in err and "decode" in err
    assert not (tmp_path / "t").exists()


def test_a_truncated_tile_shard_is_named(pipeline_outputs, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(pipeline_outputs["data"], data)
    shard = max((data / "tiles").iterdir(), key=lambda p: p.stat().st_size)
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2 + 7])  # mid-record
    err = one_line_error(["embed", "--data", str(data), "--model", str(pipeline_outputs["model"]),
                          "--out", str(tmp_path / "t"), *IN_MEMORY], capsys)
    assert f"{shard} is a damaged tile shard" in err and "rerun wavelist ingest" in err


def test_a_tile_shard_cut_at_a_record_boundary_is_found(pipeline_outputs, tmp_path, capsys):
    # uncompressed shards have no trailer: cut after a whole record, a shard reads as a shorter valid one
    data = tmp_path / "data"
    shutil.copytree(pipeline_outputs["data"], data)
    shard = max((data / "tiles").iterdir(), key=lambda p: p.stat().st_size)
    first = tfrecord_payloads(shard)[0]
    assert TILE_COMPRESSION == "uncompressed"
    shard.write_bytes(shard.read_bytes()[: 12 + len(first) + 4])
    err = one_line_error(["embed", "--data", str(data), "--model", str(pipeline_outputs["model"]),
                          "--out", str(tmp_path / "t"), *IN_MEMORY], capsys)
    assert "tiles where tracks.parquet counts" in err and "rerun wavelist ingest" in err


def test_a_model_keras_refuses_to_load_is_one_line(pipeline_outputs, tmp_path, capsys):
    import keras

    model = tmp_path / "model"
    shutil.copytree(pipeline_outputs["model"], model)
    original = keras.saving.load_model(model / "embedder.keras", compile=False)
    inputs = keras.Input(original.input_shape[1:])
    unsafe = keras.Model(inputs, keras.layers.Lambda(lambda x: original(x) * 1.0)(inputs))
    unsafe.save(model / "embedder.keras")
    err = one_line_error(["embed", "--data", str(pipeline_outputs["data"]), "--model", str(model),
                          "--out", str(tmp_path / "t"), *IN_MEMORY], capsys)
    assert "embedder.keras: Keras cannot load this model" in err


# ---- 10. the app listens on this machine only unless told otherwise ----

def test_the_app_binds_to_loopback_by_default():
    from wavelist.cli import app_command_line

    args = build_parser().parse_args(["app", "--tables", "t"])
    assert args.address == "127.0.0.1"
    line = app_command_line(args)
    assert line[line.index("--server.address") + 1] == "127.0.0.1"
    exposed = app_command_line(build_parser().parse_args(["app", "--tables", "t", "--address", "0.0.0.0"]))
    assert exposed[exposed.index("--server.address") + 1] == "0.0.0.0"


# ---- 2. the decoder and the analysis on anything: each input accepted or rejected, never a crash ----

ANYTHING = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def accepted_or_rejected(data: bytes) -> str:
    import io

    try:
        analysis = audio.analyse_source(io.BytesIO(data), DEFAULT_AUDIO_SPEC)
    except audio.AudioError as error:
        assert error.stage in ("decode", "analyse", "tile") and error.reason
        return "rejected"
    assert np.isfinite(analysis.tiles).all() and np.isfinite(analysis.features).all()
    return "accepted"


@ANYTHING
@given(st.binary(max_size=8192))
def test_random_bytes(data):
    accepted_or_rejected(data)


@ANYTHING
@given(channels=st.integers(0, 70000), rate=st.integers(0, 2**32 - 1), bits=st.integers(0, 70000),
       tag=st.sampled_from([1, 3, 6, 7, 0xFFFE, 0, 0x55]), declared=st.integers(0, 2**32 - 1),
       payload=st.binary(max_size=4096))
def test_random_wav_headers(channels, rate, bits, tag, declared, payload):
    import struct

    block = max(1, channels * max(bits, 8) // 8) % 65536
    fmt = struct.pack("<HHIIHH", tag, channels % 65536, rate, (rate * block) % 2**32, block, bits % 65536)
    data = (b"RIFF" + struct.pack("<I", (36 + len(payload)) % 2**32) + b"WAVEfmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", declared) + payload)
    accepted_or_rejected(data)


@ANYTHING
@given(values=st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), min_size=1, max_size=16),
       subtype=st.sampled_from(["FLOAT", "DOUBLE", "PCM_16"]))
def test_extreme_sample_values(values, subtype):
    import io

    import soundfile

    samples = np.resize(np.array(values, np.float64), 22050 * 4)  # long enough for tiles
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, 22050, subtype=subtype, format="WAV")
    accepted_or_rejected(buffer.getvalue())


# ---- round two (issue 29): 3. histories, 4. labels CSVs, track lists, extra vectors; 8. flags, one line ----

@pytest.fixture(scope="module")
def accented_tables(tmp_path_factory) -> Path:
    """Synthetic tables whose track 1005 is Björk's "Jóga", so that a history in any encoding can match it."""
    from playlists.synthetic import write_synthetic_tables

    folder = write_synthetic_tables(tmp_path_factory.mktemp("accented"), 60, k=10)
    tracks = pq.read_table(folder / "tracks.parquet")
    for column, value in (("artist", "Björk"), ("title", "Jóga")):
        values = [value if i == 1005 else v for i, v in zip(tracks["track_id"].to_pylist(), tracks[column].to_pylist())]
        tracks = tracks.set_column(tracks.schema.get_field_index(column), column, pa.array(values, pa.string()))
    pq.write_table(tracks, folder / "tracks.parquet")
    return folder


def exit_and_err(argv: list[str], capsys) -> tuple[int, str]:
    """The exit code of ``wavelist argv`` and its stderr, which is never more than one line (log lines aside);
    its stdout is kept in ``exit_and_err.out``."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    exit_and_err.out = captured.out
    err = captured.err.strip()
    lines = [line for line in err.splitlines() if not line[:2].isdigit()]  # our HH:MM:SS log lines aside
    assert "Traceback" not in err and len(lines) <= 1, err
    return code, " ".join(lines)


def listen(artist: str, title: str, at: object = 1_700_000_000) -> str:
    return json.dumps({"listened_at": at, "track_metadata": {"artist_name": artist, "track_name": title}})


JOGA = listen("Björk", "Jóga")
HISTORIES = {  # name: (bytes, what stderr says)
    "a malformed JSON line": ((JOGA + "\n{not json\n").encode(), "skipped 1 malformed row (first: line 2: not JSON"),
    "listened_at 10^400": ((JOGA + '\n{"listened_at": 1' + "0" * 400 + ', "track_metadata": {}}\n').encode(),
                           "line 2: listened_at is not a Unix time"),
    "deeply nested JSON": ((JOGA + "\n" + '{"a": ' * 100_000 + "\n").encode(), "line 2: not usable JSON"),
    "a Latin-1 CSV": ("artist,track\nBjörk,Jóga\n".encode("latin-1"), "matched 1 of 1 plays"),
    "a UTF-16 CSV": ("artist,track\nBjörk,Jóga\n".encode("utf-16"), "matched 1 of 1 plays"),
    "a uts that is no number": ("uts,artist,track\n²,X,Y\nabc,X,Y\n1700000000,Björk,Jóga\n".encode(),
                                "skipped 2 malformed rows (first: line 2: uts '²' is not a time"),
    "a CSV field over 128 KiB": (('artist,track\n"' + "x" * 140_000 + '",y\nBjörk,Jóga\n').encode(),
                                 "line 2: not CSV (field larger than field limit (131072)"),
    "a UTF-8 CSV with a BOM": ("\ufeffartist,track\nBjörk,Jóga\n".encode(), "matched 1 of 1 plays"),
}


@pytest.mark.parametrize("name", sorted(HISTORIES))
def test_a_history_of_any_shape_gives_a_playlist_and_says_what_it_skipped(accented_tables, tmp_path, capsys, name):
    data, said = HISTORIES[name]
    (tmp_path / "history").write_bytes(data)
    code, err = exit_and_err(["profile", "--tables", str(accented_tables), "--history", str(tmp_path / "history"),
                              "-n", "3", "--format", "json"], capsys)
    assert code == 0 and err.startswith("matched 1 of ") and said in err, err
    assert 1005 not in [row["track_id"] for row in json.loads(exit_and_err.out)]  # the play, left out


@pytest.mark.parametrize("data, said", [
    (b"{x\n{y\n", "history line 1: not JSON"),
    (('{"a": ' * 100_000).encode(), "history line 1: not usable JSON (nested too deeply"),
    (b"[" * 5_000, "history line 1: not usable JSON (nested too deeply)"),
    (b'[{"track_metadata": {}}, {"track', "history line 1: not JSON (Unterminated string"),
    (b'[{"track_metadata": {}}\n', "history line 2: the JSON list does not end"),
    (b"#EXTM3U\n" + b"x" * (1 << 21) + b"\n", "history line 2: longer than 1,048,576 characters"),
    ("1005\nJóga.mp3\n".encode("utf-16"), "history line 2: 'Jóga.mp3' is neither a track id nor an audio path"),
    (b"", "history names no plays and no tracks"),
])
def test_a_history_with_nothing_usable_is_one_line_naming_the_line(accented_tables, tmp_path, capsys, data, said):
    (tmp_path / "history").write_bytes(data)
    code, err = exit_and_err(["profile", "--tables", str(accented_tables), "--history", str(tmp_path / "history")],
                             capsys)
    assert code == 2 and said in err, err


def test_a_large_history_is_read_in_bounded_memory(accented_tables, tmp_path):
    """8 MB of listens are read one line at a time: the reader's peak allocation stays far below the file's size
    (a 50 MB file peaked at 1.26 GB when it was read whole; see the README)."""
    import tracemalloc

    from playlists import load_tables
    from playlists.history import read_history

    tables = load_tables(accented_tables)
    line = listen("Björk", "Jóga") + "\n" + listen("Nobody", "Nothing " + "x" * 200) + "\n"
    (tmp_path / "big.jsonl").write_text(line * (8_000_000 // len(line)), encoding="utf-8")
    tracemalloc.start()
    try:
        ids, said = read_history(tables, str(tmp_path / "big.jsonl"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert said.startswith(f"matched {len(ids)} of {2 * len(ids)} plays") and len(ids) > 15_000
    assert peak < 1_500_000, peak  # the matched ids (8 bytes each) and a few lines, not 8 MB of text


def test_a_labels_cell_over_128_kib_is_one_line_naming_file_and_line(tmp_path, capsys):
    good_wav(tmp_path / "audio" / "good.wav")
    labels = tmp_path / "labels.csv"
    labels.write_text('path,genre,comment\ngood.wav,Tone,"' + "x" * 140_000 + '"\n', encoding="utf-8")
    err = one_line_error(["ingest", "--audio-dir", str(tmp_path / "audio"), "--labels-csv", str(labels),
                          "--out", str(tmp_path / "data"), *IN_MEMORY], capsys)
    assert f"{labels} line 2: not CSV (field larger than field limit (131072)" in err
    assert not (tmp_path / "data").exists()


def test_a_labels_csv_with_a_bom_or_in_latin_1_is_read(tmp_path):
    good_wav(tmp_path / "audio" / "good.wav")
    for name, data in (("bom", "\ufeffpath,genre\ngood.wav,Volksmusik für\n".encode("utf-8")),
                       ("latin", "path,genre\ngood.wav,Volksmusik für\n".encode("latin-1"))):
        (tmp_path / f"{name}.csv").write_bytes(data)
        assert ingest(["--audio-dir", str(tmp_path / "audio"), "--labels-csv", str(tmp_path / f"{name}.csv"),
                       "--out", str(tmp_path / name)]) == 0
        tracks, _ = read_rows(tmp_path / name)
        assert tracks["good.wav"]["genre"] == "Volksmusik für"


def test_a_bad_extra_vectors_file_is_one_line_before_the_job_starts(pipeline_outputs, tmp_path, capsys):
    ids = pq.read_table(table_file(pipeline_outputs["tables"] / "embeddings.parquet"))["track_id"].to_pylist()
    vectors = [[1.0, 2.0, 3.0] for _ in ids]
    vectors[3] = [float("nan"), 1.0, 1.0]
    extra = tmp_path / "extra.parquet"
    pq.write_table(pa.table({"track_id": ids, "vector": vectors}), extra)
    err = one_line_error(["embed", "--data", str(pipeline_outputs["data"]), "--model", str(pipeline_outputs["model"]),
                          "--out", str(tmp_path / "t"), "--extra-vectors", str(extra), *IN_MEMORY], capsys)
    # the launching process's check names the row: no pipeline (and no worker traceback) ever ran
    assert err.endswith(f"--extra-vectors {extra} row 4 (track {ids[3]}): the vector is not 3 finite numbers, "
                        "not all zero")
    assert list(tmp_path.iterdir()) == [extra]  # no staging folder either


def test_beam_flags_take_their_value_as_the_next_argument_or_say_one_line(pipeline_outputs, tmp_path, capsys):
    from beam_jobs import add_tracks, common  # noqa: F401 (add's flags are known once its module is imported)

    argv = ["--tables", str(tmp_path / "none"), "--direct_num_workers", "1", "--direct_running_mode", "in_memory"]
    assert common.runner_flags(common.parse_options(argv), argv) == ["--direct_running_mode=in_memory",
                                                                    "--direct_num_workers=1"]
    base = ["add", "--audio-dir", str(tmp_path), "--tables", str(tmp_path / "no tables"), "--model",
            str(pipeline_outputs["model"]), "--out", str(tmp_path / "t")]
    code, err = exit_and_err([*base, "--direct_num_workers", "1"], capsys)  # accepted: the next check speaks
    assert code == 2 and "no tables" in err and "usage" not in err
    for bad, said in ((["--direct_num_workers"], "argument --direct_num_workers: expected one argument"),
                      (["--direct_num_workers", "many"], "invalid int value: 'many'"),
                      (["--direct_num_workers=-1"], "give a number of worker processes from 1 to 1024"),
                      (["--k", "nan"], "argument --k: nan is not a whole number")):
        command = "embed" if bad[0] == "--k" else "add"
        code, err = exit_and_err([command, *base[1:], *bad], capsys)
        assert code == 2 and said in err, err


@pytest.mark.parametrize("argv, said", [
    (["serve", "--tables", "T", "--threads=-1"], "argument --threads: give a whole number from 1 to 1024, not -1"),
    (["serve", "--tables", "T", "--watch-seconds", "inf"], "argument --watch-seconds: inf is not a finite number"),
    (["app", "--tables", "T", "--port", "http"], "argument --port: http is not a whole number from 0 to 65535"),
    (["clusters", "--tables", "T", "--k", "3", "--seed", "-1"], "argument --seed: give a whole number from 0 to"),
    (["radio", "--tables", "T", "--seed", "9" * 5000], "is not a track id: track ids are 64-bit integers"),
    (["radio", "--tables", "T", "--seed", "1005", "--variety", "nan"], "argument --variety: nan is not a finite"),
    (["journey", "--tables", "T", "--from", "1005", "--to", "1006", "-n", "9" * 25], None),
    (["radio", "--tables", "T", "--seed", "\x1b[2J"], "no track id, title, artist or album '\\x1b[2J'"),
])
def test_odd_numbers_and_seeds_are_a_result_or_one_line(accented_tables, capsys, argv, said):
    code, err = exit_and_err([a.replace("T", str(accented_tables)) if a == "T" else a for a in argv], capsys)
    assert (code, said is None or said in err) == (0 if said is None else 2, True), err
    assert "\x1b" not in err


@pytest.mark.parametrize("seed", ["", " ", "-1", "--5", "nan", "٣", "𝟙𝟘𝟘𝟘", "/etc/passwd", "../x", "1e3",
                                  "Jóga"])
def test_any_seed_spelling_is_a_radio_or_one_line(accented_tables, capsys, seed):
    code, err = exit_and_err(["radio", "--tables", str(accented_tables), f"--seed={seed}", "-n", "3", "--format",
                              "json"], capsys)
    if seed in ("Jóga", "𝟙𝟘𝟘𝟘"):  # a title; track 1000 in any script's decimal digits
        assert code == 0 and len(json.loads(exit_and_err.out)) == 3
    else:
        assert code == 2 and err.startswith("wavelist radio: error: "), err


def test_a_port_variable_that_is_no_port_is_one_line(accented_tables, monkeypatch, capsys):
    monkeypatch.setenv("MPD_PORT", "abc")
    assert exit_and_err(["radio", "--tables", str(accented_tables), "--seed", "1005"], capsys)[0] == 0  # unused here
    code, err = exit_and_err(["mpd", "radio", "--tables", str(accented_tables)], capsys)
    assert code == 2 and err == ("wavelist mpd: error: $MPD_PORT abc is not a port number (0 to 65535); set it to "
                                 "MPD's port or give --port")


def test_a_playlist_file_in_any_encoding_is_read_and_a_bad_line_named(accented_tables, tmp_path, capsys):
    (tmp_path / "p.m3u8").write_bytes("\ufeff#EXTM3U\n#EXTINF:1,Björk - Jóga\n1005\n1006\n".encode("utf-8"))
    (tmp_path / "q.m3u8").write_bytes("#EXTM3U\n1005\n/música/nowhere.mp3\n".encode("latin-1"))
    assert main(["map", "--tables", str(accented_tables), "--playlist", str(tmp_path / "p.m3u8"),
                 "--out", str(tmp_path / "map.html")]) == 0
    code, err = exit_and_err(["map", "--tables", str(accented_tables), "--playlist", str(tmp_path / "q.m3u8"),
                              "--out", str(tmp_path / "map2.html")], capsys)
    assert code == 2 and f"{tmp_path / 'q.m3u8'} line 3: '/música/nowhere.mp3' is neither" in err, err
