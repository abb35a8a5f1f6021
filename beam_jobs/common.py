"""What every wavelist Beam job shares: runner defaults, output publishing, file access."""
from __future__ import annotations

import logging
import os
import shutil
import uuid
from contextlib import contextmanager
from typing import Iterator
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


def make_pipeline(options: PipelineOptions) -> beam.Pipeline:
    """A pipeline on the runner the user chose, else Beam's local batch engine in multi-process mode.

    With no ``--runner``, jobs run on the FnApiRunner, the engine DirectRunner hands batch pipelines to,
    with one worker process per core. It is created directly because DirectRunner first tries to download
    the Prism runner's binary, which fails (or hangs) on machines without internet access.
    """
    standard = options.view_as(StandardOptions)
    if standard.runner is not None:
        return beam.Pipeline(options=options)
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    direct = options.view_as(DirectOptions)
    chosen = options.get_all_options(drop_default=True)
    if "direct_running_mode" not in chosen:
        direct.direct_running_mode = "multi_processing"
    if "direct_num_workers" not in chosen:
        direct.direct_num_workers = os.cpu_count() or 1
    return beam.Pipeline(runner=FnApiRunner(), options=options)


def is_remote(path: str) -> bool:
    return "://" in path


def read_bytes(path: str) -> bytes:
    """The whole file at ``path`` (local or any Beam filesystem such as gs://)."""
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        return handle.read()


def open_text(path: str):
    """A text handle on ``path`` (local or any Beam filesystem); raises FileNotFoundError naming it."""
    import io

    if not FileSystems.exists(path):
        raise FileNotFoundError(f"{path} does not exist")
    return io.TextIOWrapper(FileSystems.open(path, compression_type="uncompressed"), encoding="utf-8")


def staging_folder(out: str) -> str:
    """A fresh sibling of ``out`` to write into; :func:`publish` renames it to ``out`` when complete."""
    if is_remote(out):
        raise NotImplementedError(f"{out}: remote output folders are not supported yet; write locally")
    final = Path(out).resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{final.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    return str(staging)


def check_output(out: str, *, overwrite: bool) -> None:
    """Fail early, before any work, when ``out`` exists and may not be replaced."""
    if Path(out).exists() and not overwrite:
        raise OutputExists(f"{out} already exists; pass --overwrite to replace it")


def publish(staging: str, out: str, *, overwrite: bool) -> None:
    """Move the complete ``staging`` folder to ``out`` by renames; an old ``out`` goes only after that."""
    final = Path(out).resolve()
    old = None
    if final.exists():
        if not overwrite:
            shutil.rmtree(staging, ignore_errors=True)
            raise OutputExists(f"{out} already exists; pass --overwrite to replace it")
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
        shutil.rmtree(staging, ignore_errors=True)
        raise
    publish(staging, out, overwrite=overwrite)
