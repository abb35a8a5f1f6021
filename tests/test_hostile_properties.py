"""Any text, any number, any bytes, through every command's flags and every reader of user files: a result, or
one line and exit code 2, never a traceback (hypothesis). The playlist commands run whole, in-process; the long
or endless ones (ingest, train, embed, add, evaluate, demo, serve, app, mpd) are checked where their flags are
parsed and validated, before anything runs; the readers (histories, labels CSVs, track lists, extra vectors) are
fed files of any bytes and of hostile rows."""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from schemas.errors import UserError
from wavelist.cli import build_parser, main

# CI runs a few fixed examples of each (seconds in all); WAVELIST_HOSTILE_EXAMPLES=500 explores at random
EXPLORE = int(os.environ.get("WAVELIST_HOSTILE_EXAMPLES", "0"))
SETTINGS = settings(max_examples=EXPLORE or 20, deadline=None, derandomize=not EXPLORE, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d \S+: ")  # our INFO lines ("wrote map.html"), not errors

# What a hostile user types: any text a command line can hold (no NUL; lone surrogates, as undecodable bytes in
# argv arrive), numbers of every spelling, and the usual suspects.
NUMBERS = (st.integers().map(str) | st.floats(allow_nan=True, allow_infinity=True).map(repr)
           | st.sampled_from(["", " ", "-1", "-0", "0", "1e400", "-1e400", "nan", "inf", "9" * 30, "9" * 5000,
                              "٣", "𝟙𝟘", "²", "1_000", "0x10", "+5", "--5", " 3 ", "1e-320"]))
TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40)
ARGV_TEXT = (NUMBERS | TEXT | st.binary(max_size=20).filter(lambda b: b"\x00" not in b).map(os.fsdecode)
             | st.sampled_from(["/", "..", "-", "--", "\x1b[2J", "a\nb", "/etc/passwd", "~", "*", "[", "{}"]))
# outputs land in the test's folder: an output flag gets a plain relative name, never a path elsewhere
SAFE_NAME = st.text(st.characters(whitelist_categories=("L", "N")), min_size=1, max_size=20)
OUTPUT_FLAGS = {"--out", "--output"}


@pytest.fixture(scope="module")
def tables_dir(tmp_path_factory) -> Path:
    from playlists.synthetic import write_synthetic_tables

    return write_synthetic_tables(tmp_path_factory.mktemp("hostile_properties"), 60, k=10)


def flags_of(command: str) -> list[str]:
    """Every flag of a ``wavelist`` subcommand (``mpd radio`` for mpd), from the parser itself."""
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    if command == "mpd":
        sub = sub._subparsers._group_actions[0].choices["radio"]
    return sorted(flag for flag in sub._option_string_actions if flag.startswith("--") and flag != "--help")


def assert_one_line(code: int, err: str) -> None:
    lines = [line for line in err.splitlines() if line.strip() and not LOG_LINE.match(line)]
    assert "Traceback" not in err, err
    assert code in (0, 2), (code, err)
    assert len(lines) <= 1 and (code == 0 or len(lines) == 1), err


def run_command(argv: list[str], capsys) -> int:
    try:
        code = main(argv)
    except SystemExit as stop:  # the flag parser's own errors
        code = stop.code
    assert_one_line(code, capsys.readouterr().err)
    return code


# ---- the playlist commands, whole, in-process ----

PLAYLIST_BASES = {
    "radio": ["--seed", "1001"], "like": ["--seeds", "1001", "1002"], "journey": ["--from", "1001", "--to", "1002"],
    "alchemy": ["--add", "1001"], "profile": ["--history", "HISTORY"], "clusters": ["--k", "3"],
    "map": ["--out", "map.html"], "projector": ["--out", "projector"],
}


@SETTINGS
@given(data=st.data())
def test_every_playlist_flag_takes_anything(tables_dir, tmp_path, monkeypatch, capsys, data):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "history.txt").write_text("1001\n1002\n")
    command = data.draw(st.sampled_from(sorted(PLAYLIST_BASES)), "command")
    flag = data.draw(st.sampled_from([f for f in flags_of(command) if f != "--tables"]), "flag")
    value = data.draw(SAFE_NAME if flag in OUTPUT_FLAGS else ARGV_TEXT, "value")
    base = [a.replace("HISTORY", str(tmp_path / "history.txt")) for a in PLAYLIST_BASES[command]]
    run_command([command, "--tables", str(tables_dir), *base, flag, value], capsys)


@SETTINGS
@given(command=st.sampled_from(["radio", "like", "journey", "alchemy"]), name=ARGV_TEXT)
def test_any_track_name_is_a_playlist_or_one_line(tables_dir, capsys, command, name):
    argv = {"radio": ["--seed", name], "like": ["--seeds", name], "journey": ["--from", name, "--to", "1002"],
            "alchemy": ["--add", name]}[command]
    run_command([command, "--tables", str(tables_dir), *argv, "-n", "3"], capsys)


@SETTINGS
@given(value=ARGV_TEXT)
def test_any_tables_folder_is_one_line(capsys, value):
    assert run_command(["radio", "--tables", value, "--seed", "1"], capsys) == 2


# ---- the long and endless commands, where their flags are parsed and checked ----

def parse_beam_job(module_name: str, argv: list[str]) -> None:
    """What ``wavelist ingest/embed/add`` does with its flags before any file is read or any pipeline built."""
    import importlib

    from beam_jobs import common

    module = importlib.import_module(module_name)
    options = common.parse_options(argv)
    for options_class in (*module.OPTIONS, common.OutputOptions):
        vars(options.view_as(options_class))
    options.get_all_options()


BEAM_FLAGS = {"beam_jobs.ingest": ["--audio-dir", "--fma-metadata", "--audio-glob", "--labels-csv", "--subset",
                                   "--out", "--overwrite", "--direct_num_workers", "--direct_running_mode"],
              "beam_jobs.embed": ["--data", "--model", "--k", "--neighbours", "--nprobe", "--target-recall",
                                  "--diffusion", "--diffusion-power", "--extra-vectors", "--extra-weight",
                                  "--batch-size", "--direct_num_workers", "--runner"],
              "beam_jobs.add_tracks": ["--tables", "--model", "--audio-dir", "--batch-size", "--direct_num_workers"]}


@SETTINGS
@given(data=st.data())
def test_beam_job_flags_take_anything(data):
    module = data.draw(st.sampled_from(sorted(BEAM_FLAGS)), "job")
    flag = data.draw(st.sampled_from(BEAM_FLAGS[module]), "flag")
    value = data.draw(ARGV_TEXT, "value")
    argv = [flag, value] if data.draw(st.booleans(), "separate") else [f"{flag}={value}"]
    try:
        parse_beam_job(module, argv)
    except UserError as error:
        assert "\n" not in " ".join(str(error).split()) and str(error)


def parsed_or_one_line(parse, argv: list[str], capsys) -> None:
    try:
        parse(argv)
    except SystemExit as stop:
        assert stop.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
    except UserError as error:
        assert str(error)


@SETTINGS
@given(data=st.data())
def test_train_and_evaluate_flags_take_anything(capsys, data):
    from model import evaluate, train

    which = data.draw(st.sampled_from(["train", "evaluate"]), "command")
    parse, base = ((train.parse_args, ["--data", "d", "--out", "o"]) if which == "train" else
                   (evaluate.parse_args, ["--data", "d", "--models", "m", "--out", "o"]))
    flags = {"train": ["--model", "--epochs", "--budget-minutes", "--steps-per-epoch", "--batch-size",
                       "--tiles-in-memory-gb", "--patience", "--temperature", "--summary-view", "--min-genre-tracks",
                       "--genre-weight", "--learning-rate", "--seed", "--verbose", "--init-from"],
             "evaluate": ["--diffusion", "--models"]}[which]
    parsed_or_one_line(parse, [*base, data.draw(st.sampled_from(flags), "flag"), data.draw(ARGV_TEXT, "value")],
                       capsys)


@SETTINGS
@given(data=st.data())
def test_serve_app_mpd_demo_flags_take_anything(capsys, data):
    command = data.draw(st.sampled_from(["serve", "app", "mpd", "demo"]), "command")
    flag = data.draw(st.sampled_from(flags_of(command)), "flag")
    base = {"serve": ["serve", "--tables", "t"], "app": ["app", "--tables", "t"],
            "mpd": ["mpd", "radio", "--tables", "t", "--keep-going"], "demo": ["demo"]}[command]
    parsed_or_one_line(build_parser().parse_args, [*base, flag, data.draw(ARGV_TEXT, "value")], capsys)


@SETTINGS
@given(port=ARGV_TEXT)
def test_any_mpd_port_variable_is_a_port_or_one_line(monkeypatch, port):
    from wavelist.cli import mpd_port

    monkeypatch.setenv("MPD_PORT", port)
    try:
        assert 0 <= mpd_port(None) <= 65535
    except UserError as error:
        assert str(error).startswith("$MPD_PORT ") and "\n" not in str(error) and "\x1b" not in str(error)


# ---- the readers of user files ----

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)
LISTEN = st.fixed_dictionaries({"listened_at": JSON | st.integers(-2**70, 2**70),
                                "track_metadata": st.fixed_dictionaries(
                                    {"artist_name": JSON, "track_name": JSON},
                                    optional={"additional_info": JSON, "mbid_mapping": JSON})}) | JSON
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32", "latin-1", "cp1252"])


def encoded(text: str, encoding: str) -> bytes:
    return text.encode(encoding, errors="replace")


def history_files() -> st.SearchStrategy[bytes]:
    listens = st.lists(LISTEN.map(lambda v: json.dumps(v)), max_size=5).map("\n".join)
    listen_list = st.lists(LISTEN, max_size=4).map(json.dumps)
    cells = st.lists(NUMBERS | TEXT, min_size=0, max_size=6)
    header = st.sampled_from(["uts,artist,album,track", "artist,track,timestamp", "artist_name,track_name,date", ""])
    scrobbles = st.tuples(header, st.lists(cells, max_size=5)).map(
        lambda h: h[0] + "\n" + "\n".join(",".join(f'"{c}"' if i % 2 else c for i, c in enumerate(row))
                                          for row in h[1]))
    text = listens | listen_list | scrobbles | TEXT
    return st.tuples(text, ENCODINGS).map(lambda t: encoded(*t)) | st.binary(max_size=300)


@SETTINGS
@given(data=history_files())
def test_any_history_file_is_a_history_or_one_line(tables_dir, tmp_path, data):
    from playlists import load_tables
    from playlists.history import read_history

    path = tmp_path / "history"
    path.write_bytes(data)
    try:
        ids, said = read_history(load_tables(tables_dir), str(path))
    except UserError as error:
        assert str(path) in str(error)
        return
    assert ids.dtype == np.int64 and len(ids) and (said is None or "\n" not in said)


@SETTINGS
@given(data=st.tuples(st.lists(st.lists(NUMBERS | TEXT, max_size=5), max_size=4), ENCODINGS).map(
           lambda t: encoded("path,track_id,genre,track_number\n" + "\n".join(",".join(r) for r in t[0]), t[1]))
       | st.binary(max_size=300))
def test_any_labels_csv_is_labels_or_one_line(tmp_path, data):
    from core import catalogue as cat
    from storage import text_files

    path = tmp_path / "labels.csv"
    path.write_bytes(data)
    try:
        with text_files.open_text(path) as handle:
            labels = cat.read_labels(handle, source=str(path))
    except cat.CatalogueError as error:
        assert str(error).startswith(str(path)) and "\n" not in str(error)
        return
    assert all(path and "\x00" not in path for path, _ in labels)


@SETTINGS
@given(data=st.lists(ARGV_TEXT | NUMBERS, max_size=5).map("\n".join).map(lambda t: encoded(t, "utf-8"))
       | st.binary(max_size=300)
       | st.lists(JSON, max_size=3).map(json.dumps).map(str.encode))
def test_any_track_list_is_tracks_or_one_line(tables_dir, tmp_path, data):
    from playlists import load_tables
    from playlists.output import read_track_list
    from playlists.service import TrackFinder
    from storage.text_files import wrap_bytes

    tables = load_tables(tables_dir)
    path = tmp_path / "list.m3u8"
    path.write_bytes(data)
    for read in (lambda: read_track_list(tables, path),
                 lambda: TrackFinder(tables).parse_list(wrap_bytes(io.BytesIO(data)).read(), "the request body")):
        try:
            assert all(isinstance(i, int) for i in read())
        except UserError as error:
            assert " line " in str(error) or "JSON" in str(error), str(error)


VECTOR_VALUES = st.floats(allow_nan=True, allow_infinity=True, width=32)


@SETTINGS
@given(ids=st.lists(st.none() | st.integers(-2**63, 2**63 - 1) | st.sampled_from([1000, 1001, 1002]), max_size=6),
       vectors=st.lists(st.none() | st.lists(st.none() | VECTOR_VALUES, max_size=4), min_size=6, max_size=6),
       junk=st.none() | st.binary(max_size=200))
def test_any_extra_vectors_file_is_checked_before_the_job_or_one_line(tmp_path, ids, vectors, junk):
    from beam_jobs.embed.extra_vectors import check_extra_vectors

    path = tmp_path / "extra.parquet"
    if junk is not None:
        path.write_bytes(junk)
    else:
        pq.write_table(pa.table({"track_id": pa.array(ids, pa.int64()),
                                 "vector": pa.array(vectors[:len(ids)], pa.list_(pa.float32()))}), path)
    try:
        column, dim = check_extra_vectors(str(path), np.array([1000, 1001], np.int64))
    except UserError as error:
        assert str(error).startswith("--extra-vectors ") and "\n" not in str(error)
        return
    assert column == "vector" and dim >= 1 and {1000, 1001} <= set(ids)


@SETTINGS
@given(data=st.binary(max_size=400))
def test_any_bytes_decode_as_text(data):
    from storage.text_files import UserText, wrap_bytes

    text = UserText(wrap_bytes(io.BytesIO(data)), "x")
    text.first()
    assert all(isinstance(line, str) for line in text.lines(lambda number: None))


def test_csv_module_is_left_at_its_field_limit():
    """The readers rely on csv's default field limit (a field over it is a malformed row); nothing raises it."""
    assert csv.field_size_limit() == 131_072


def test_argparse_types_name_the_flag(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--tables", "t", "--threads=-1"])
    assert capsys.readouterr().err.strip() == ("wavelist serve: error: argument --threads: give a whole number from 1 "
                                               "to 1024, not -1")
    assert isinstance(build_parser().parse_args(["serve", "--tables", "t"]), argparse.Namespace)
