"""Bad audio through the real ingest job, and bad requests through the ``wavelist`` command."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beam_jobs import ingest
from schemas import tables
from schemas.audio import DEFAULT_AUDIO_SPEC, AudioSpec
from storage import files
from tests.conftest import IN_MEMORY, table_file, tone, write_audio
from tests.records import tiles_by_split
from wavelist.cli import main

SPEC = DEFAULT_AUDIO_SPEC
OK, REJECTED = "ok", "rejected"


def noisy_tone(freq_hz: float, seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    audio = tone(freq_hz, seconds, sr, 0.3) + 0.05 * np.random.default_rng(0).standard_normal(int(seconds * sr))
    return np.stack([audio] * channels, axis=1).astype(np.float32) if channels > 1 else audio.astype(np.float32)


@pytest.fixture(scope="module")
def bad_matrix(tmp_path_factory):
    """A folder with one file of every kind a large catalogue holds, ingested once.

    Returns (summary, {file name: track row or None}, {file name: reject row or None}, expected outcomes).
    """
    root = tmp_path_factory.mktemp("bad audio")
    (root / "zero bytes.mp3").write_bytes(b"")
    (root / "a text file.mp3").write_text("this is not audio\n" * 50)
    mp3 = write_audio(root / "truncated.mp3", noisy_tone(440, 6.0, 22050), 22050, format="MP3")
    mp3.write_bytes(mp3.read_bytes()[: mp3.stat().st_size // 3])
    write_audio(root / "silence.wav", np.zeros(22050 * 5, np.float32), 22050)
    write_audio(root / "one second.wav", noisy_tone(440, 1.0, 22050), 22050)
    write_audio(root / "twenty minutes.wav", noisy_tone(220, 20 * 60, 8000), 8000)
    write_audio(root / "mono 8k.wav", noisy_tone(330, 4.0, 8000), 8000)
    write_audio(root / "hi-res 96k 24-bit.wav", noisy_tone(550, 4.0, 96000, channels=2), 96000, subtype="PCM_24")
    write_audio(root / "lossless.flac", noisy_tone(660, 4.0, 44100), 44100)
    write_audio(root / "vorbis.ogg", noisy_tone(770, 4.0, 44100), 44100, format="OGG")
    write_audio(root / "Ünïcode Çafé" / "Sigur Rós – Hoppípolla.mp3", noisy_tone(880, 4.0, 44100), 44100,
                format="MP3")
    write_audio(root / "zz same id.wav", noisy_tone(990, 4.0, 22050), 22050)
    labels = root / "labels.csv"
    labels.write_text("path,track_id,genre\nmono 8k.wav,77,Tone\nzz same id.wav,77,Tone\n"
                      "gone/listed but missing.mp3,,Tone\n", encoding="utf-8")
    expected = {
        "zero bytes.mp3": (REJECTED, "decode"), "a text file.mp3": (REJECTED, "decode"),
        "truncated.mp3": None,  # libsndfile may decode what is there, or refuse it: either is fine
        "silence.wav": (REJECTED, "analyse"), "one second.wav": (REJECTED, "tile"),
        "twenty minutes.wav": (OK, None), "mono 8k.wav": (OK, None), "hi-res 96k 24-bit.wav": (OK, None),
        "lossless.flac": (OK, None), "vorbis.ogg": (OK, None), "Sigur Rós – Hoppípolla.mp3": (OK, None),
        "zz same id.wav": (REJECTED, "catalogue"), "listed but missing.mp3": (REJECTED, "read"),
    }
    out = tmp_path_factory.mktemp("bad out") / "data"
    summary = ingest.run(["--audio-dir", str(root), "--labels-csv", str(labels), "--out", str(out), *IN_MEMORY])
    tracks = {Path(t["path"]).name: t for t in pq.read_table(out / "tracks.parquet").to_pylist()}
    rejects = {Path(r["path"]).name: r for r in pq.read_table(out / "rejects.parquet").to_pylist()}
    return out, summary, tracks, rejects, expected


def test_every_bad_input_is_processed_or_rejected_with_stage_and_reason(bad_matrix):
    _, summary, tracks, rejects, expected = bad_matrix
    for name, want in expected.items():
        ok = name in tracks and tracks[name]["status"] == OK
        rejected = name in rejects
        assert ok != rejected, f"{name}: accepted {ok}, rejected {rejected}"
        if rejected:
            assert rejects[name]["reason"], name
        if want is not None:
            status, stage = want
            assert (OK if ok else REJECTED) == status, (name, rejects.get(name))
            assert stage is None or rejects[name]["stage"] == stage, (name, rejects[name])
    assert rejects["listed but missing.mp3"]["reason"] == "file not found"
    assert "duplicate track id 77" in rejects["zz same id.wav"]["reason"]


def test_summary_counts_add_up(bad_matrix):
    out, summary, tracks, rejects, expected = bad_matrix
    assert summary["inputs"] == len(expected) == summary["accepted"] + summary["rejected"]
    assert summary["accepted"] == sum(t["status"] == OK for t in tracks.values())
    assert summary["rejected"] == len(rejects)
    assert sum(summary["rejected_per_stage"].values()) == summary["rejected"]
    assert sum(summary["accepted_per_split"].values()) == summary["accepted"]
    assert json.loads((out / "summary.json").read_text()) == summary
    # every tile of every accepted track is in the TFRecords, and no other
    tiles = [t for split in tiles_by_split(out, SPEC).values() for t in split]
    assert len(tiles) == summary["tiles"] == sum(t["n_tiles"] for t in tracks.values() if t["status"] == OK)
    assert {t[0] for t in tiles} == {t["track_id"] for t in tracks.values() if t["status"] == OK}


def test_accepted_odd_formats_keep_their_length(bad_matrix):
    _, _, tracks, _, _ = bad_matrix
    assert tracks["twenty minutes.wav"]["duration_s"] == pytest.approx(SPEC.max_duration_s, abs=0.01)
    # analysed from the budget's excerpts, spread over the first max_duration_s seconds
    assert tracks["twenty minutes.wav"]["n_tiles"] == SPEC.max_tiles
    for name in ("mono 8k.wav", "hi-res 96k 24-bit.wav", "lossless.flac", "vorbis.ogg"):
        assert tracks[name]["duration_s"] == pytest.approx(4.0, abs=0.02), name
    assert "Ünïcode Çafé/Sigur Rós" in tracks["Sigur Rós – Hoppípolla.mp3"]["path"]


def test_fma_track_listed_without_file_and_duplicate_id(tmp_path):
    audio = tmp_path / "fma_small"
    write_audio(audio / "000" / "000002.mp3", noisy_tone(440, 4.0, 22050), 22050, format="MP3")
    metadata = tmp_path / "fma_metadata"
    metadata.mkdir()
    (metadata / "tracks.csv").write_text(
        ",artist,set,set,track\n,id,split,subset,genre_top\ntrack_id,,,,\n"
        "2,1,training,small,Rock\n3,1,training,small,Rock\n2,9,test,small,Folk\n")
    out = tmp_path / "data"
    summary = ingest.run(["--fma-metadata", str(metadata), "--audio-dir", str(audio), "--out", str(out), *IN_MEMORY])
    assert (summary["inputs"], summary["accepted"], summary["rejected"]) == (3, 1, 2)
    assert summary["rejected_per_stage"] == {"catalogue": 1, "read": 1}
    rejects = sorted((r["track_id"], r["stage"]) for r in pq.read_table(out / "rejects.parquet").to_pylist())
    assert rejects == [(2, "catalogue"), (3, "read")]


def test_summary_refuses_counts_that_do_not_add_up(tmp_path):
    track = {"track_id": 1, "path": "a.mp3", "genre": None, "artist_id": None, "artist": None, "title": "a",
             "split": "train", "duration_s": 4.0, "n_tiles": 1, "status": "ok"}
    pq.write_table(pa.Table.from_pylist([track], schema=tables.TRACKS), tmp_path / "tracks.parquet")
    pq.write_table(pa.Table.from_pylist([], schema=tables.REJECTS), tmp_path / "rejects.parquet")
    assert ingest.summarise(str(tmp_path), 1)["accepted"] == 1
    with pytest.raises(RuntimeError, match="ingest lost tracks: 2 in, 1 accepted"):
        ingest.summarise(str(tmp_path), 2)


# ---- bad requests: one line naming the thing and what to do, exit code 2, no traceback ----

def one_line_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture
def copies(pipeline_outputs, tmp_path):
    """Writable copies of the session's DATA and TABLES."""
    data, tables_copy = tmp_path / "data", tmp_path / "tables"
    shutil.copytree(pipeline_outputs["data"], data)
    shutil.copytree(pipeline_outputs["tables"], tables_copy)
    return {"data": data, "tables": tables_copy, "model": pipeline_outputs["model"]}


def test_unknown_track_id(pipeline_outputs, capsys):
    err = one_line_error(["journey", "--tables", str(pipeline_outputs["tables"]), "--from", "123456789",
                          "--to", "1"], capsys)
    assert "track 123456789 is not in" in err


def test_empty_or_wrong_folder(pipeline_outputs, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    err = one_line_error(["ingest", "--audio-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "d")], capsys)
    assert err == f"wavelist ingest: error: {tmp_path / 'empty'} holds no audio track to ingest"
    err = one_line_error(["ingest", "--audio-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")], capsys)
    assert "nowhere is not a folder" in err
    err = one_line_error(["embed", "--data", str(tmp_path / "empty"), "--model", str(pipeline_outputs["model"]),
                          "--out", str(tmp_path / "t")], capsys)
    assert f"{tmp_path / 'empty'} has no _SUCCESS marker" in err and "rerun wavelist ingest" in err
    # the model folder given as DATA: a complete output, but of the wrong stage
    err = one_line_error(["embed", "--data", str(pipeline_outputs["model"]), "--model", str(pipeline_outputs["model"]),
                          "--out", str(tmp_path / "t")], capsys)
    assert f"{pipeline_outputs['model']} is an output of wavelist train, not of wavelist ingest" in err
    err = one_line_error(["radio", "--tables", str(pipeline_outputs["data"]), "--seed", "1"], capsys)
    assert "embeddings.parquet is missing" in err
    assert not (tmp_path / "t").exists() and not (tmp_path / "d").exists()


def test_interrupted_data_folder_is_refused(copies, tmp_path, capsys):
    (copies["data"] / "_SUCCESS").unlink()
    err = one_line_error(["embed", "--data", str(copies["data"]), "--model", str(copies["model"]),
                          "--out", str(tmp_path / "t")], capsys)
    assert "no _SUCCESS marker: it is not a complete output of wavelist ingest" in err


def test_tables_of_two_models_are_refused(copies, capsys):
    path = table_file(copies["tables"] / "neighbours.parquet")
    table = pq.read_table(path)
    metadata = tables.read_metadata(table.schema)
    pq.write_table(table.replace_schema_metadata(
        tables.with_metadata(tables.NEIGHBOURS, model_id="cnn-0000other", audio_spec=metadata["audio_spec"]).metadata),
        path)
    err = one_line_error(["radio", "--tables", str(copies["tables"]), "--seed", "2"], capsys)
    assert "mixes two models" in err and "cnn-0000other" in err and "rerun wavelist embed" in err


def test_tiles_of_other_audio_parameters_are_refused(pipeline_outputs, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(pipeline_outputs["model"], model)
    files.save_audio_spec(model, AudioSpec(n_mels=96, hop_length=256))
    err = one_line_error(["embed", "--data", str(pipeline_outputs["data"]), "--model", str(model),
                          "--out", str(tmp_path / "t")], capsys)
    assert "other audio parameters (hop_length: 512 vs 256, n_mels: 128 vs 96)" in err
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("flags", [["--excerpts", "-1"], ["--excerpt-tiles", "0"]])
def test_an_impossible_budget_is_one_line(tmp_path, capsys, flags):
    (tmp_path / "music").mkdir()
    err = one_line_error(["ingest", "--audio-dir", str(tmp_path / "music"), "--out", str(tmp_path / "data"), *flags],
                         capsys)
    assert "--excerpts must be 0 or more and --excerpt-tiles 1 or more" in err
    assert not (tmp_path / "data").exists()


def test_corrupted_parquet_is_named(copies, tmp_path, capsys):
    tracks = copies["data"] / "tracks.parquet"
    tracks.write_bytes(tracks.read_bytes()[:200])
    err = one_line_error(["embed", "--data", str(copies["data"]), "--model", str(copies["model"]),
                          "--out", str(tmp_path / "t")], capsys)
    assert f"{tracks} is not a readable Parquet file" in err and "rerun wavelist ingest" in err
    embeddings = table_file(copies["tables"] / "embeddings.parquet")
    embeddings.write_bytes(b"PAR1" + bytes(100) + b"PAR1")
    err = one_line_error(["radio", "--tables", str(copies["tables"]), "--seed", "2"], capsys)
    assert f"{embeddings} is not a readable Parquet file" in err


def test_a_real_process_exits_non_zero_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "wavelist.cli", "embed", "--data", str(tmp_path / "nowhere"),
                             "--model", str(tmp_path), "--out", str(tmp_path / "t")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"wavelist embed: error: {tmp_path / 'nowhere'} does not exist; give the output folder of wavelist ingest")
    assert "Traceback" not in result.stderr
