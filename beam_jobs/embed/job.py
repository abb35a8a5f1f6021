"""The embed job: its flags, its pipeline (:func:`build_pipeline`: the stages in order) and :func:`run`."""
from __future__ import annotations

import json
import logging
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs import common
from beam_jobs.embed.extra_vectors import JoinExtraVectors, check_extra_vectors
from beam_jobs.embed.model_vectors import ModelOptions, TrackVectors
from beam_jobs.embed.tail import EmbedTail, finish_tail, write_tail_report
from core.neighbours import DIFFUSION_NEIGHBOURS, DIFFUSION_POWER
from schemas.audio import AudioSpec
from schemas.errors import UserError
from schemas.flags import real, whole
from schemas.layout import SUMMARY, DataFiles, TableFiles
from schemas.model_info import ModelInfo
from storage import files

log = logging.getLogger(__name__)


EXACT_LIMIT = 200_000  # see benchmarks/RESULTS.md: above this, exact all-pairs costs far more than the index


class EmbedOptions(PipelineOptions):
    """The flags of ``wavelist embed``."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--data", help="output folder of wavelist ingest (required)")
        parser.add_argument("--k", type=whole(1, 10_000), default=50, help="neighbours kept per track")
        parser.add_argument("--neighbours", choices=("auto", "exact", "approximate"), default="auto",
                            help=f"exact block top-k, or a faiss IVF index; auto: exact up to "
                            f"{EXACT_LIMIT:,} tracks")
        parser.add_argument("--nprobe", type=whole(1, 1_000_000), default=None,
                            help="approximate: inverted lists probed per query (default: the fewest that reach "
                            "--target-recall on 1,000 sampled tracks)")
        parser.add_argument("--target-recall", "--target_recall", dest="target_recall",
                            type=real(0.01, 1.0), default=0.95,
                            help="approximate: recall@10 against exact search that the automatic --nprobe must reach")
        parser.add_argument("--diffusion", type=whole(0, 10_000), default=DIFFUSION_NEIGHBOURS, metavar="M",
                            help="graph diffusion: each vector becomes the weighted mean of itself and its M "
                            f"nearest before the neighbour tables are made (default {DIFFUSION_NEIGHBOURS}; 0: off)")
        parser.add_argument("--diffusion-power", "--diffusion_power", dest="diffusion_power",
                            type=real(0.0, 100.0),
                            default=None, help="the diffusion's weight of a neighbour: its cosine to this power "
                            f"(default {DIFFUSION_POWER:g})")
        parser.add_argument("--extra-vectors", "--extra_vectors", dest="extra_vectors",
                            help="Parquet file or folder (track_id, vector) of an external embedding (e.g. "
                            "MusiCNN, CLAP, your own model) to join to every track's vector as one more part")
        parser.add_argument("--extra-weight", "--extra_weight", dest="extra_weight", type=real(0.0, 1.0), default=0.5,
                            help="the extra vectors' share of each cosine, between 0 and 1 (default 0.5)")


OPTIONS = (EmbedOptions, ModelOptions)


def build_pipeline(pipeline, *, data: str, model_dir: str, staging: str, spec: AudioSpec, info: ModelInfo,
                   provenance: dict[str, Any], k: int, batch_size: int, approximate: bool = False,
                   nprobe: int | None = None, target_recall: float = 0.95, extra: JoinExtraVectors | None = None,
                   diffusion: int = DIFFUSION_NEIGHBOURS, diffusion_power: float = DIFFUSION_POWER):
    vectors = pipeline | "TrackVectors" >> TrackVectors(data, model_dir, spec, info, batch_size)
    if extra is not None:
        vectors = vectors | "ExtraVectors" >> extra
    tail = EmbedTail(staging=staging, tracks_file=files.join(data, DataFiles.TRACKS), provenance=provenance, k=k,
                     approximate=approximate, nprobe=nprobe, target_recall=target_recall, diffusion=diffusion,
                     diffusion_power=diffusion_power)
    _ = vectors | "Tail" >> tail
    write_tail_report(tail, staging)


def run(argv: list[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> dict[str, Any]:
    """Run the embed job; returns the summary it also writes to ``OUT/summary.json``."""
    options = common.parse_options(argv)
    args = options.view_as(EmbedOptions)
    model = options.view_as(ModelOptions)
    common.require_flags(options, "data", "model", "out")
    output = options.view_as(common.OutputOptions)
    files.require_complete(args.data, made_by="wavelist ingest")
    files.require_complete(model.model, made_by="wavelist train")
    spec = files.load_audio_spec(args.data, made_by="wavelist ingest")
    spec.require_same(files.load_audio_spec(model.model, made_by="wavelist train"),
                      what=f"the tiles in {args.data} (vs the model {model.model})")
    info = files.load_model_info(model.model)
    provenance = {"model_id": info.model_id, "audio_spec": spec.to_dict()}
    extra = None
    if args.extra_vectors:
        if not 0.0 < args.extra_weight < 1.0:
            raise UserError(f"--extra-weight {args.extra_weight}: give a share between 0 and 1")
        catalogue = files.read_parquet(files.join(args.data, DataFiles.TRACKS), ["track_id", "status"],
                                       made_by="wavelist ingest")
        ok = catalogue["status"].to_numpy(zero_copy_only=False) == "ok"
        column, dim = check_extra_vectors(args.extra_vectors, catalogue["track_id"].to_numpy()[ok])
        extra = JoinExtraVectors(args.extra_vectors, column, dim, args.extra_weight)
        provenance["extra_vectors"] = {"file": args.extra_vectors, "dim": dim, "weight": args.extra_weight}
    if args.diffusion < 0:
        raise UserError(f"--diffusion {args.diffusion}: give a number of neighbours, or 0 for none")
    power = DIFFUSION_POWER if args.diffusion_power is None else args.diffusion_power
    if args.diffusion:
        provenance["diffusion"] = {"neighbours": args.diffusion, "power": power}
    status = files.read_parquet(files.join(args.data, DataFiles.TRACKS), ["status"], made_by="wavelist ingest")
    accepted = int(np.sum(status["status"].to_numpy(zero_copy_only=False) == "ok"))  # the rows are read in the job
    approximate = args.neighbours == "approximate" or (args.neighbours == "auto" and accepted > EXACT_LIMIT)
    log.info("embed: %d tracks with model %s, %s neighbours", accepted, info.model_id,
             "approximate" if approximate else "exact")

    with files.staged_output(output.out, overwrite=output.overwrite, kind="embed",
                              inputs=[args.data, model.model, args.extra_vectors]) as staging:
        pipeline = test_pipeline or common.make_pipeline(options, argv)
        build_pipeline(pipeline, data=args.data, model_dir=files.absolute(model.model), staging=staging,
                       spec=spec, info=info, provenance=provenance, k=args.k, batch_size=model.batch_size,
                       approximate=approximate, nprobe=args.nprobe, target_recall=args.target_recall,
                       extra=extra, diffusion=args.diffusion, diffusion_power=power)
        common.run_pipeline(pipeline)
        embedded = files.parquet_num_rows(files.join(staging, TableFiles.EMBEDDINGS))
        summary = {
            "model_id": info.model_id,
            "tracks_in_data": accepted,
            "tracks_embedded": embedded,
            "neighbour_rows": files.parquet_num_rows(files.join(staging, TableFiles.NEIGHBOURS)),
            "k": args.k,
            **{key: provenance[key] for key in ("extra_vectors", "diffusion") if key in provenance},
            "neighbours": finish_tail(staging, approximate),
        }
        files.write_text(files.join(staging, SUMMARY), json.dumps(summary, indent=2) + "\n")
    log.info("embed: %d tracks embedded -> %s", embedded, output.out)
    return summary
