"""gs:// paths through Beam's GCS filesystem against a local GCS emulator, and the Dataflow job graph."""
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

from beam_jobs import common, ingest
from tests.conftest import IN_MEMORY

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


def test_ingest_reads_and_writes_gs_paths(gcs, catalogue):
    out = f"{gcs}/data"
    summary = ingest.run(["--fma-metadata", f"{gcs}/catalogue/fma_metadata", "--audio-dir",
                          f"{gcs}/catalogue/fma_small", "--out", out, *IN_MEMORY])
    assert summary["inputs"] == summary["accepted"] == 32
    assert FileSystems.exists(f"{out}/{common.SUCCESS_MARKER}")
    tracks = common.read_parquet(f"{out}/tracks.parquet").to_pylist()
    assert {t["path"] for t in tracks} == {
        f"{gcs}/catalogue/{p.relative_to(catalogue)}" for p in (catalogue / "fma_small").rglob("*.mp3")}
    tiles = FileSystems.match([f"{out}/tiles/*.tfrecord.gz"])[0].metadata_list
    assert tiles and not FileSystems.match([f"{gcs}/.data.partial-*"])[0].metadata_list
    with pytest.raises(common.OutputExists):
        ingest.run(["--fma-metadata", f"{gcs}/catalogue/fma_metadata", "--audio-dir",
                    f"{gcs}/catalogue/fma_small", "--out", out, *IN_MEMORY])


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
