"""storage.files on local paths: the one Parquet reader and AudioSpec loader, their errors, and no Beam import.
(The same calls on gs:// run against a GCS emulator in tests/test_gcs.py.)"""
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas import tables
from schemas.errors import UserError
from storage import files

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]


def test_local_tables_and_outputs_need_no_beam(tmp_path):
    """Playlists on a local TABLES folder and a local staged output import neither Beam nor TensorFlow."""
    code = """
import sys
from pathlib import Path
from playlists import load_tables
from playlists.synthetic import write_synthetic_tables
from storage import files

root = Path(sys.argv[1])
assert len(load_tables(write_synthetic_tables(root / "tables", 50))) == 50
with files.staged_output(str(root / "out"), overwrite=False, kind="test") as staging:
    files.write_text(files.join(staging, "a.txt"), "a")
assert files.read_marker(str(root / "out"))["files"] == ["a.txt"]
print(sorted(m for m in ("apache_beam", "tensorflow") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_table_of_shards_reads_as_one_even_under_a_glob_like_folder_name(tmp_path):
    folder = tmp_path / "music [live]" / "map3d.parquet"
    folder.mkdir(parents=True)
    for shard in range(2):
        pq.write_table(pa.table({"track_id": [shard]}), folder / f"part-0000{shard}-of-00002.parquet")
    assert [Path(f).name for f in files.table_files(folder)] == ["part-00000-of-00002.parquet",
                                                                 "part-00001-of-00002.parquet"]
    assert files.read_parquet(folder)["track_id"].to_pylist() == [0, 1]
    assert files.parquet_num_rows(folder) == 2


def test_parquet_problems_name_the_file_and_the_command_to_rerun(tmp_path):
    with pytest.raises(files.UnreadableTable, match=f"{tmp_path}/t.parquet is missing; rerun wavelist ingest"):
        files.read_parquet(tmp_path / "t.parquet", made_by="wavelist ingest")
    wrong = tmp_path / "map3d.parquet"
    pq.write_table(pa.table({"track_id": ["not an integer"], "x": [0.0], "y": [0.0], "z": [0.0]}), wrong)
    with pytest.raises(files.UnreadableTable, match=f"{wrong} does not match its schema"):
        files.read_parquet(wrong, schema=tables.MAP3D, made_by="wavelist embed")
    wrong.write_bytes(b"PAR1 not really")
    with pytest.raises(files.UnreadableTable, match=f"{wrong} is not a readable Parquet file .*rerun wavelist embed"):
        files.read_parquet(wrong, made_by="wavelist embed")


def test_audio_spec_with_an_unknown_parameter_names_its_file(tmp_path):
    (tmp_path / "audio_spec.json").write_text(json.dumps({"n_mels": 64, "bogus": 1}))
    with pytest.raises(UserError, match=f"{tmp_path}/audio_spec.json: unknown audio parameters .'bogus'.; rerun"):
        files.load_audio_spec(tmp_path)


@pytest.mark.parametrize("compression", ["uncompressed", "gzip"])
def test_tfrecords_written_by_beam_read_back_checked(tmp_path, compression):
    """files.read_records reads what Beam's TFRecord sink writes, and refuses a flipped byte or a cut record."""
    import apache_beam as beam

    records = [b"one", b"", bytes(range(256)) * 4]
    path = tmp_path / "r.tfrecord"
    with beam.Pipeline() as pipeline:
        _ = (pipeline | beam.Create(records) | beam.io.WriteToTFRecord(
            str(path), compression_type=compression, shard_name_template="", num_shards=1))
    assert sorted(files.read_records(str(path), compression)) == sorted(records)
    raw = bytearray(gzip.decompress(path.read_bytes()) if compression == "gzip" else path.read_bytes())
    raw[-10] ^= 1  # inside the last payload
    flipped, cut = tmp_path / "flipped", tmp_path / "cut"
    flipped.write_bytes(bytes(raw))
    cut.write_bytes(bytes(raw[:-700]))
    with pytest.raises(ValueError, match="fails its CRC"):
        list(files.read_records(str(flipped)))
    with pytest.raises(ValueError, match="cut"):
        list(files.read_records(str(cut)))


def test_a_scheme_no_filesystem_reads_is_one_line_naming_the_path(tmp_path, capsys):
    from wavelist.cli import main

    for call in (lambda: files.exists("x://bucket/a"), lambda: files.write_text("x://bucket/a", "a"),
                 lambda: files.read_parquet("x://bucket/a"), lambda: files.is_folder("x://bucket/a")):
        with pytest.raises(UserError, match="^x://bucket/a: no filesystem here reads x:// paths"):
            call()
    assert main(["radio", "--tables", "x://bucket/t", "--seed", "1"]) == 2
    assert capsys.readouterr().err == ("wavelist radio: error: x://bucket/t: no filesystem here reads x:// paths; "
                                       "give a local path or gs://\n")


def test_write_parquet_passes_its_options_and_reads_back(tmp_path):
    table = pa.table({"track_id": list(range(10))})
    path = files.write_parquet(tmp_path / "new" / "t.parquet", table, row_group_size=4)
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    assert files.read_parquet(path).equals(table)
