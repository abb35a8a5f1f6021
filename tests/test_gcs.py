"""gs:// paths through Beam's GCS filesystem against a local GCS emulator, and the Dataflow job graph."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs import add_tracks, ingest
from tests.conftest import IN_MEMORY, assert_same_neighbours
from schemas.tile_example import TILE_FILE_SUFFIX
from storage import files

BUCKET = "wavelist-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def gcs(catalogue):
    """A GCS emulator on 127.0.0.1 holding the session catalogue under gs://BUCKET/catalogue/."""
    from apache_beam.internal.gcp import auth
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("gcp-storage-emulator")), "start", "--host", "127.0.0.1",
         "--port", str(port), "--in-memory"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    old_host = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    # No Google credentials here: skip Beam's credential lookup (it retries for ~25 s), use anonymous access.
    saved = auth._Credentials._credentials_init, auth._Credentials._credentials
    auth._Credentials._credentials_init, auth._Credentials._credentials = True, None
    client = storage.Client(credentials=AnonymousCredentials(), project="test")
    bucket = client.create_bucket(BUCKET)
    for path in sorted(catalogue.rglob("*")):
        if path.is_file():
            bucket.blob(f"catalogue/{path.relative_to(catalogue)}").upload_from_filename(str(path))
    yield f"gs://{BUCKET}"
    auth._Credentials._credentials_init, auth._Credentials._credentials = saved
    if old_host is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = old_host
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(scope="module")
def gs_data(gcs):
    """The session catalogue ingested from gs:// to gs://BUCKET/data; (folder, summary)."""
    out = f"{gcs}/data"
    summary = ingest.run(["--fma-metadata", f"{gcs}/catalogue/fma_metadata", "--audio-dir",
                          f"{gcs}/catalogue/fma_small", "--out", out, *IN_MEMORY])
    return out, summary


def storage_bucket():
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(credentials=AnonymousCredentials(), project="test").bucket(BUCKET)


def test_ingest_reads_and_writes_gs_paths(gcs, gs_data, catalogue):
    out, summary = gs_data
    assert summary["inputs"] == summary["accepted"] == 32
    assert FileSystems.exists(f"{out}/{files.SUCCESS_MARKER}")
    tracks = files.read_parquet(f"{out}/tracks.parquet").to_pylist()
    assert {t["path"] for t in tracks} == {
        f"{gcs}/catalogue/{p.relative_to(catalogue)}" for p in (catalogue / "fma_small").rglob("*.mp3")}
    tiles = FileSystems.match([f"{out}/tiles/*{TILE_FILE_SUFFIX}"])[0].metadata_list
    assert tiles and not FileSystems.match([f"{gcs}/.data.partial-*"])[0].metadata_list
    with pytest.raises(files.OutputExists):
        ingest.run(["--fma-metadata", f"{gcs}/catalogue/fma_metadata", "--audio-dir",
                    f"{gcs}/catalogue/fma_small", "--out", out, *IN_MEMORY])


@pytest.fixture(scope="module")
def gs_tables(gcs, gs_data, pipeline_outputs):
    """The session model uploaded to gs://BUCKET/model, and embed run from gs:// DATA to gs://BUCKET/tables."""
    from beam_jobs import embed

    bucket = storage_bucket()
    model = pipeline_outputs["model"]
    for path in sorted(model.rglob("*")):
        if path.is_file():
            bucket.blob(f"model/{path.relative_to(model)}").upload_from_filename(str(path))
    return embed.run(["--data", gs_data[0], "--model", f"{gcs}/model", "--out", f"{gcs}/tables", "--k", "10",
                      *IN_MEMORY])


def test_embed_reads_and_writes_gs_paths(gcs, gs_tables, pipeline_outputs):
    """DATA, MODEL and TABLES all on gs://; the tables read back with google-cloud-storage match a local run."""
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    bucket = storage_bucket()
    summary = gs_tables
    assert summary["tracks_embedded"] == 32 and summary["neighbour_rows"] == 320
    names = {blob.name for blob in bucket.list_blobs(prefix="tables/")}
    tables = ("embeddings.parquet", "neighbours.parquet", "tracks.parquet", "map3d.parquet", "undiffused.parquet")
    shards = {n for n in names if n.split("/")[1] in tables}  # each table a folder of shards
    assert names - shards == {"tables/summary.json", f"tables/{files.SUCCESS_MARKER}"}
    assert {n.split("/")[1] for n in shards} == set(tables)
    assert all(n.split("/")[2].startswith("part-") and n.endswith(".parquet") for n in shards)
    assert not [b.name for b in bucket.list_blobs(prefix=".tables.partial-")]

    def remote(name):
        blobs = sorted(b.name for b in bucket.list_blobs(prefix=f"tables/{name}/"))
        return pa.concat_tables([pq.read_table(io.BytesIO(bucket.blob(b).download_as_bytes())) for b in blobs])

    def local(name):
        return pq.read_table(pipeline_outputs["tables"] / name)

    for name, key in (("embeddings.parquet", ["track_id"]), ("neighbours.parquet", ["track_id", "rank"])):
        got, want = remote(name).sort_by([(k, "ascending") for k in key]), local(name).sort_by(
            [(k, "ascending") for k in key])
        assert got.schema.metadata == want.schema.metadata
        assert got["track_id"].to_pylist() == want["track_id"].to_pylist()
    embeddings = {r["track_id"]: np.asarray(r["embedding"]) for r in local("embeddings.parquet").to_pylist()}
    by_rank = [("track_id", "ascending"), ("rank", "ascending")]
    assert_same_neighbours(remote("neighbours.parquet").sort_by(by_rank), local("neighbours.parquet").sort_by(by_rank),
                           embeddings)


def test_embed_add_extends_gs_tables(gcs, gs_tables, tmp_path):
    """embed --add with the old tables, the model, the new audio and the new tables all on gs://."""
    from beam_jobs import embed
    from tests.conftest import tone, write_audio

    bucket = storage_bucket()
    for i, freq in enumerate((330.0, 550.0)):
        path = write_audio(tmp_path / f"new {i}.wav", tone(freq, 7.0, 22050), 22050)
        bucket.blob(f"new/{path.name}").upload_from_filename(str(path))
    summary = add_tracks.run(["--audio-dir", f"{gcs}/new", "--tables", f"{gcs}/tables", "--model", f"{gcs}/model",
                         "--out", f"{gcs}/tables-added", *IN_MEMORY])
    assert summary["tracks_added"] == 2 and summary["tracks_embedded"] == gs_tables["tracks_embedded"] + 2
    neighbours = files.read_parquet(f"{gcs}/tables-added/neighbours.parquet")
    assert len(set(neighbours["track_id"].to_pylist())) == gs_tables["tracks_embedded"] + 2
    assert FileSystems.exists(f"{gcs}/tables-added/{files.SUCCESS_MARKER}")
    assert FileSystems.exists(f"{gcs}/tables/{files.SUCCESS_MARKER}")  # the old version stays as it was


def test_playlists_read_gs_tables_as_local_ones(gcs, gs_tables, pipeline_outputs):
    """load_tables on a gs:// TABLES folder: the same tracks, vectors and stored neighbours as the local run."""
    import numpy as np

    from playlists import load_tables, radio
    from playlists.tables import TablesError

    remote, local = load_tables(f"{gcs}/tables"), load_tables(pipeline_outputs["tables"])
    assert remote.folder == f"{gcs}/tables" and remote.model_id == local.model_id
    assert remote.ids.tolist() == local.ids.tolist()
    np.testing.assert_allclose(remote.vectors, local.vectors, atol=1e-5)
    assert remote.neighbour_rows.shape == local.neighbour_rows.shape == (32, 10)
    assert remote.column("title").tolist() == local.column("title").tolist()
    seed = int(remote.ids[0])
    assert len(radio(remote, seed, 5)) == 5
    with pytest.raises(TablesError, match=f"{gcs}/nowhere is not a folder"):
        load_tables(f"{gcs}/nowhere")
    storage_bucket().blob("broken/embeddings.parquet/part-00000-of-00001.parquet").upload_from_string(b"PAR1 no")
    with pytest.raises(TablesError, match=f"{gcs}/broken/embeddings.parquet/part-00000-of-00001.parquet is not a "
                                          "readable Parquet file"):
        load_tables(f"{gcs}/broken")


def test_train_reads_data_and_writes_the_model_on_gs(gcs, gs_data):
    """wavelist train from a gs:// DATA to a gs:// MODEL, published like every output (marker last); wavelist
    evaluate reads both from gs:// and writes its report there."""
    from model import evaluate, train
    from schemas.model_info import ModelInfo

    out = f"{gcs}/trained"
    metrics = train.run(["--data", gs_data[0], "--out", out, "--model", "features", "--verbose", "0"])
    assert metrics["kind"] == "features"
    marker = json.loads(files.read_bytes(f"{out}/{files.SUCCESS_MARKER}"))
    assert marker["kind"] == "train" and {"embedder.keras", "model_info.json", "audio_spec.json"} <= set(marker["files"])
    info = ModelInfo.from_json(files.read_bytes(f"{out}/model_info.json"))
    assert info.kind == "features" and info.model_id.startswith("features-")
    assert not files.stale_staging(out)
    [report] = evaluate.run(["--data", gs_data[0], "--models", out, "--out", f"{gcs}/report"])
    assert report["model"] == out and report["model_id"] == info.model_id and report["neighbours"]["queries"] > 0
    assert sorted(files.listing(f"{gcs}/report")) == ["evaluation.json", "evaluation.md", "trained-map2d.png"]
    [written] = json.loads(files.read_bytes(f"{gcs}/report/evaluation.json"))
    assert written["model_id"] == info.model_id and written["neighbours"] == report["neighbours"]
    assert files.read_bytes(f"{gcs}/report/evaluation.md").decode().splitlines()[2].startswith("| trained | features |")
    png = files.read_bytes(f"{gcs}/report/trained-map2d.png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000


def test_synthetic_tables_clusters_projector_and_map_on_gs(gcs):
    """Parquet tables written to gs:// and read back; clusters, projector, map and a playlist --output written
    to gs:// by the command, each output published whole."""
    import io

    import numpy as np

    from playlists import load_tables
    from playlists.synthetic import write_synthetic_tables
    from wavelist.cli import main

    folder = write_synthetic_tables(f"{gcs}/synthetic", 60, n_styles=3, k=5)
    tables = load_tables(folder)
    assert folder == f"{gcs}/synthetic" and len(tables) == 60 and tables.neighbour_rows.shape == (60, 5)
    assert main(["clusters", "--tables", folder, "--k", "3", "--out", f"{gcs}/clusters"]) == 0
    written = files.listing(f"{gcs}/clusters")
    assert files.SUCCESS_MARKER in written and len([n for n in written if n.endswith(".m3u8")]) == 3
    clustered = files.read_parquet(f"{gcs}/clusters/clusters.parquet")
    assert sorted(clustered["track_id"].to_pylist()) == sorted(tables.ids.tolist())
    assert main(["projector", "--tables", folder, "--out", f"{gcs}/projector"]) == 0
    vectors = np.loadtxt(io.BytesIO(files.read_bytes(f"{gcs}/projector/vectors.tsv")), delimiter="\t")
    np.testing.assert_allclose(vectors, tables.vectors, atol=1e-6)
    assert files.read_marker(f"{gcs}/projector")["kind"] == "projector"
    assert main(["map", "--tables", folder, "--out", f"{gcs}/map.html", "--radio", "1000"]) == 0
    assert b"plotly" in files.read_bytes(f"{gcs}/map.html")
    assert main(["radio", "--tables", folder, "--seed", "1000", "-n", "4", "--format", "json", "--output",
                 f"{gcs}/radio.json"]) == 0
    assert len(json.loads(files.read_bytes(f"{gcs}/radio.json"))) == 4


def test_incomplete_gs_output_is_refused_and_named(gcs, gs_data, pipeline_outputs):
    """An output folder without its _SUCCESS marker (as an interrupted publish leaves it) is not read."""
    from beam_jobs import embed

    bucket = storage_bucket()
    for name in ("tracks.parquet", "audio_spec.json"):
        bucket.blob(f"half/{name}").upload_from_string(bucket.blob(f"data/{name}").download_as_bytes())
    with pytest.raises(ValueError, match=f"{gcs}/half has no _SUCCESS marker"):
        embed.run(["--data", f"{gcs}/half", "--model", str(pipeline_outputs["model"]), "--out", f"{gcs}/t2",
                   *IN_MEMORY])
    with pytest.raises(files.OutputExists, match="is not a complete wavelist output .no _SUCCESS marker"):
        files.check_output(f"{gcs}/half", overwrite=True, kind="ingest")
    bucket.blob(".half.partial-0123abcd/tiles/x").upload_from_string(b"x")
    assert files.stale_staging(f"{gcs}/half") == [f"{gcs}/.half.partial-0123abcd"]


def test_gs_publish_replaces_the_old_output_and_writes_the_marker_last(gcs):
    out = f"{gcs}/republished"
    for round_ in ("first", "second"):
        with files.staged_output(out, overwrite=True, kind="test") as staging:
            files.write_text(files.join(staging, f"{round_}.txt"), round_)
            assert not FileSystems.exists(files.join(out, f"{round_}.txt"))
    names = sorted(m.path for m in FileSystems.match([f"{out}/**"])[0].metadata_list)
    assert names == [f"{out}/{files.SUCCESS_MARKER}", f"{out}/second.txt"]


def test_dataflow_job_graph_builds_without_submitting(gcs):
    flags = ["--fma-metadata", f"{gcs}/catalogue/fma_metadata", "--audio-dir", f"{gcs}/catalogue/fma_small",
             "--out", f"{gcs}/dataflow-out", "--runner", "DataflowRunner", "--dry_run=True",
             "--project", "wavelist-test", "--region", "us-central1", "--temp_location", f"{gcs}/tmp",
             "--setup_file", str(Path(__file__).resolve().parents[1] / "setup.py")]
    pipeline = beam.Pipeline(options=PipelineOptions(flags))
    assert ingest.run(flags, test_pipeline=pipeline) == {"dry_run": True, "inputs": 32}
    labels = {t.unique_name for t in pipeline.to_runner_api().components.transforms.values()}
    for stage in ("AnalyseTracks", "WriteTiles", "WriteTracks", "WriteFeatures", "WriteRejects"):
        assert stage in labels
    assert not FileSystems.match([f"{gcs}/dataflow-out/**"])[0].metadata_list


def test_dataflow_refuses_local_paths(tmp_path):
    flags = ["--audio-dir", str(tmp_path), "--out", str(tmp_path / "o"), "--runner", "DataflowRunner"]
    with pytest.raises(ValueError, match="cannot reach local paths: --out .*--audio-dir"):
        ingest.run(flags)
