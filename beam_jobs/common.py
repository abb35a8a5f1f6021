"""What every wavelist Beam job shares: runner defaults, output publishing, file access."""
from __future__ import annotations

import io
import logging
import os
import posixpath
import shutil
import uuid
from contextlib import contextmanager
from typing import Iterable, Iterator
from pathlib import Path

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

METRICS_NAMESPACE = "wavelist"
log = logging.getLogger(__name__)


class OutputOptions(PipelineOptions):
    """Flags every job shares; declared once because Beam parses all options classes together."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--out", help="output folder of the job")
        parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")


def require_flags(options: PipelineOptions, *names: str) -> None:
    """Raise ``ValueError`` naming each flag in ``names`` that was not given."""
    values = options.get_all_options()
    missing = [f"--{name.replace('_', '-')}" for name in names if values.get(name) in (None, "")]
    if missing:
        raise ValueError(f"missing required flag{'s' if len(missing) > 1 else ''} {' '.join(missing)}")


class OutputExists(FileExistsError):
    """An output folder exists and ``--overwrite`` was not given."""


def require_remote_paths(options: PipelineOptions, paths: dict[str, str | None]) -> None:
    """On a remote runner (Dataflow), every path the workers touch must be remote (gs://)."""
    runner = str(options.view_as(StandardOptions).runner or "")
    if "Dataflow" not in runner:
        return
    local = [f"{flag} {path}" for flag, path in paths.items() if path and not is_remote(path)]
    if local:
        raise ValueError(f"{runner} workers cannot reach local paths: {', '.join(local)}; use gs:// paths")


def make_pipeline(options: PipelineOptions, argv: list[str] | None) -> beam.Pipeline:
    """A pipeline on the runner the user chose, else Beam's local batch engine in multi-process mode.

    With no ``--runner``, jobs run on the FnApiRunner, the engine DirectRunner hands batch pipelines to,
    with one worker process per core unless ``--direct_running_mode`` / ``--direct_num_workers`` say
    otherwise. It is created directly because DirectRunner first tries to download the Prism runner's
    binary, which fails (or hangs) on machines without internet access.
    """
    if options.view_as(StandardOptions).runner is not None:
        return beam.Pipeline(options=options)
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    given = " ".join(argv or [])
    direct = options.view_as(DirectOptions)
    if "--direct_running_mode" not in given:
        direct.direct_running_mode = "multi_processing"
    if "--direct_num_workers" not in given:
        direct.direct_num_workers = os.cpu_count() or 1
    return beam.Pipeline(runner=FnApiRunner(), options=options)


class DryRun(Exception):
    """Raised inside a staged output when a Dataflow dry run built the job graph and submitted nothing."""


SUCCESS_MARKER = "_SUCCESS"


def is_remote(path: str) -> bool:
    return "://" in path


def join(folder: str, *names: str) -> str:
    """Path join that keeps gs:// URLs intact."""
    return posixpath.join(folder, *names) if is_remote(folder) else os.path.join(folder, *names)


def read_bytes(path: str) -> bytes:
    """The whole file at ``path`` (local or any Beam filesystem such as gs://)."""
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        return handle.read()


def write_text(path: str, text: str) -> str:
    with FileSystems.create(path, compression_type="uncompressed") as handle:
        handle.write(text.encode("utf-8"))
    return path


def write_lines(path: str, lines: Iterable[str]) -> str:
    return write_text(path, "".join(line + "\n" for line in lines))


def write_parquet(pcoll, folder: str, name: str, schema, label: str):
    """Write ``pcoll`` (dict rows) as the single file ``folder/name`` with ``schema``."""
    return pcoll | label >> beam.io.WriteToParquet(
        posixpath.join(folder, name), schema, num_shards=1, shard_name_template=""
    )


def read_parquet(path: str):
    """A pyarrow Table from a local or remote Parquet file."""
    import pyarrow.parquet as pq

    if not is_remote(path):
        return pq.read_table(path)
    return pq.read_table(io.BytesIO(read_bytes(path)))


def open_text(path: str):
    """A text handle on ``path`` (local or any Beam filesystem); raises FileNotFoundError naming it."""
    if not FileSystems.exists(path):
        raise FileNotFoundError(f"{path} does not exist")
    return io.TextIOWrapper(FileSystems.open(path, compression_type="uncompressed"), encoding="utf-8")


def _exists(out: str) -> bool:
    if not is_remote(out):
        return Path(out).exists()
    return bool(FileSystems.match([out.rstrip("/") + "/**"])[0].metadata_list)


def remove(folder: str) -> None:
    if is_remote(folder):
        FileSystems.delete([folder.rstrip("/") + "/"])
    else:
        shutil.rmtree(folder, ignore_errors=True)


def staging_folder(out: str) -> str:
    """A fresh sibling of ``out`` to write into; :func:`publish` moves it to ``out`` when complete."""
    suffix = f".partial-{uuid.uuid4().hex[:8]}"
    if is_remote(out):
        parent, name = posixpath.split(out.rstrip("/"))
        return posixpath.join(parent, f".{name}{suffix}")
    final = Path(out).resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{final.name}{suffix}"
    staging.mkdir()
    return str(staging)


def check_output(out: str, *, overwrite: bool) -> None:
    """Fail early, before any work, when ``out`` exists and may not be replaced."""
    if _exists(out) and not overwrite:
        raise OutputExists(f"{out} already exists; pass --overwrite to replace it")


def publish(staging: str, out: str, *, overwrite: bool) -> None:
    """Move the complete ``staging`` folder to ``out``.

    Local: one atomic rename; an old ``out`` is moved aside first and deleted after. Remote (gs://,
    where there are no folders to rename): the old ``out`` is deleted, each object is renamed, and the
    ``_SUCCESS`` marker is written last, so a reader that checks for it never sees a partial folder.
    """
    if _exists(out) and not overwrite:
        remove(staging)
        raise OutputExists(f"{out} already exists; pass --overwrite to replace it")
    if is_remote(out):
        if _exists(out):
            remove(out)
        sources = [m.path for m in FileSystems.match([staging.rstrip("/") + "/**"])[0].metadata_list]
        FileSystems.rename(sources, [out.rstrip("/") + s[len(staging.rstrip("/")):] for s in sources])
        write_text(join(out, SUCCESS_MARKER), "")
        log.info("published %s", out)
        return
    write_text(join(staging, SUCCESS_MARKER), "")
    final = Path(out).resolve()
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        final.rename(old)
    Path(staging).rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    log.info("published %s", final)


@contextmanager
def staged_output(out: str, *, overwrite: bool) -> Iterator[str]:
    """Yield a staging folder; publish it as ``out`` if the block succeeds, delete it if it fails."""
    check_output(out, overwrite=overwrite)
    staging = staging_folder(out)
    try:
        yield staging
    except BaseException:
        remove(staging)
        raise
    publish(staging, out, overwrite=overwrite)
