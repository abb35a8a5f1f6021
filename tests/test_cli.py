import json

import pytest

from wavelist.cli import main


def test_radio_json(pipeline_outputs, capsys):
    import pyarrow.parquet as pq

    seed = pq.read_table(pipeline_outputs["tables"] / "embeddings.parquet")["track_id"][0].as_py()
    assert main(["radio", "--tables", str(pipeline_outputs["tables"]), "--seed", str(seed), "-n", "4",
                 "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4 and seed not in [r["track_id"] for r in rows]


def test_journey_m3u_to_file(pipeline_outputs, tmp_path):
    import pyarrow.parquet as pq

    ids = pq.read_table(pipeline_outputs["tables"] / "embeddings.parquet")["track_id"].to_pylist()
    out = tmp_path / "j.m3u8"
    assert main(["journey", "--tables", str(pipeline_outputs["tables"]), "--from", str(ids[0]), "--to",
                 str(ids[1]), "-n", "5", "--format", "m3u", "--output", str(out)]) == 0
    assert out.read_text().startswith("#EXTM3U")


def test_unknown_seed_is_one_line_error_with_exit_2(pipeline_outputs, capsys):
    assert main(["radio", "--tables", str(pipeline_outputs["tables"]), "--seed", "999999999"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("wavelist radio: error: track 999999999 is not in") and "\n" not in err


def test_wrong_tables_folder_is_named(tmp_path, capsys):
    assert main(["radio", "--tables", str(tmp_path / "nope"), "--seed", "1"]) == 2
    assert "nope is not a folder" in capsys.readouterr().err


def test_map_writes_self_contained_html(pipeline_outputs, tmp_path):
    import pyarrow.parquet as pq

    seed = pq.read_table(pipeline_outputs["tables"] / "embeddings.parquet")["track_id"][0].as_py()
    out = tmp_path / "map.html"
    assert main(["map", "--tables", str(pipeline_outputs["tables"]), "--out", str(out), "--radio", str(seed),
                 "-n", "3"]) == 0
    html = out.read_text()
    assert "plotly" in html and "scatter3d" in html and "playlist" in html and "<script src=\"http" not in html


@pytest.mark.parametrize("command, own, foreign", [
    ("ingest", ["--fma-metadata", "--audio-dir", "--labels-csv", "--out", "--overwrite"], ["--on_success_matcher", "--data"]),
    ("embed", ["--data", "--model", "--k", "--neighbours", "--out"], ["--dry_run", "--audio-dir", "--tables"]),
    ("add", ["--audio-dir", "--tables", "--model", "--out"], ["--neighbours", "--fma-metadata"]),
    ("train", ["--data", "--epochs", "--no-genres", "--out"], ["--k", "--audio-dir"]),
    ("evaluate", ["--data", "--models", "--out"], ["--epochs"]),
    ("radio", ["--tables", "--seed", "--max-per-artist"], ["--via"]),
    ("serve", ["--tables", "--address", "--port"], ["--seed"]),
])
def test_each_command_help_lists_its_own_flags(command, own, foreign, capsys):
    try:
        code = main([command, "--help"])
    except SystemExit as stop:  # argparse's own --help
        code = stop.code
    assert code == 0
    out = capsys.readouterr().out
    assert f"wavelist {command}" in out and "python -m" not in out
    for flag in own:
        assert flag in out, (command, flag)
    for flag in foreign:
        assert f"{flag} " not in out and f"{flag}\n" not in out and f"{flag}," not in out, (command, flag)


@pytest.mark.parametrize("argv", [["train", "--data", "/nonexistent", "--out"]])
def test_job_errors_are_one_line(argv, capsys, tmp_path):
    assert main([*argv, str(tmp_path / "model")]) == 2  # a new --out: /tmp/x may exist on a shared machine
    assert "/nonexistent does not exist; give the output folder of wavelist ingest" in capsys.readouterr().err
