"""The ``wavelist`` command: one entry point, a subcommand per stage.

Heavy libraries (Beam, TensorFlow, librosa) are imported only by the subcommand that needs them, so the
playlist commands start fast.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from schemas.errors import UserError
from schemas.flags import (PORT, VERBOSE_ENV, FlagParser, one_line_message, real, shown, unknown_flags_message,
                           whole)

JOBS = {"ingest": "beam_jobs.ingest", "train": "model.train", "embed": "beam_jobs.embed",
        "add": "beam_jobs.add_tracks", "update": "beam_jobs.update", "evaluate": "model.evaluate"}
log = logging.getLogger("wavelist")


def for_terminal(text: object) -> str:
    """``text`` safe to print (:func:`playlists.text.for_terminal`), imported when first needed: the playlist
    package's import is not on every command's start-up path."""
    from playlists.text import for_terminal as safe

    return safe(text)


class TerminalFormatter(logging.Formatter):
    """Log lines whose message cannot carry terminal escapes, control or bidirectional characters: messages
    name files, tags and MPD's answers, which are data."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = for_terminal(record.message)
        return super().formatMessage(record)


# wavelist's own loggers (each module logs under its package's name); every other logger is a library's
OWN_LOGGERS = ("wavelist", "schemas", "storage", "core", "beam_jobs", "model", "playlists")
# libraries that set a level of their own, or log where Python's logging never sees it, are named as well
NOISY_LIBRARIES = ("apache_beam", "absl", "tensorflow", "h5py", "numba", "httpx", "mpd")  # mpd: python-mpd2


def _quiet_libraries(verbose: bool = False) -> None:
    """Our progress lines at INFO; every library's at WARNING, so their chatter says nothing to a user (``-v``:
    theirs at INFO too). Once for every command: a library not named here is quiet as well."""
    import warnings

    handler = logging.StreamHandler()
    handler.setFormatter(TerminalFormatter("%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    for own in OWN_LOGGERS:
        logging.getLogger(own).setLevel(logging.INFO)
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
        logging.getLogger().setLevel(logging.INFO)
        for noisy in NOISY_LIBRARIES:
            logging.getLogger(noisy).setLevel(logging.NOTSET)
        return
    logging.getLogger().setLevel(logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for noisy in NOISY_LIBRARIES:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Beam's local workers warn that no semi-persistent directory exists; it matters only on Dataflow
    logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)
    # Keras warns when an epoch ends with the dataset, which is how a tf.data epoch is meant to end
    warnings.filterwarnings("ignore", message=".*shuffle=True.*was passed", category=UserWarning)
    warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)


BEAM_JOBS = ("ingest", "embed", "add", "update")
SEED_MAX = 2**32 - 1  # what numpy and scikit-learn take as a random seed
TENSORFLOW_JOBS = ("train", "evaluate")  # in this process; embed's workers import Keras quietly themselves
JOB_HELP = {"ingest": "Beam: audio -> log-mel tiles (TFRecord), summary features and track tables",
            "train": "TensorFlow: train a model on DATA and export its embedders",
            "embed": "Beam: DATA through a model -> track vectors, neighbours, map (TABLES)",
            "add": "Beam: add new audio to existing TABLES without recomputing them",
            "update": "Beam: bring TABLES in step with their music folder (added, removed, moved, retagged files)",
            "evaluate": "compare models on the same DATA"}


def _run_job(name: str, argv: list[str]) -> None:
    """Run a stage; Beam jobs parse their flags with Beam, so their --help is assembled here."""
    import importlib

    from beam_jobs.common import quiet_native_stderr

    with quiet_native_stderr():  # TensorFlow prints its notices on import, before any log level applies
        module = importlib.import_module(JOBS[name])
        if name in TENSORFLOW_JOBS and not ("-h" in argv or "--help" in argv):
            import keras  # noqa: F401  (imported here, quietly, rather than later by the job)
    if name in BEAM_JOBS and ("-h" in argv or "--help" in argv):
        from beam_jobs.common import OutputOptions

        print(module.__doc__)
        parser = FlagParser(prog=f"wavelist {name}", add_help=False)
        for options in module.OPTIONS:
            options._add_argparse_args(parser)
        OutputOptions._add_argparse_args(parser)
        parser.print_help()
        print("\nAny Apache Beam pipeline flag (--runner, --project, --region, --temp_location, "
              "--setup_file, --direct_num_workers, ...) is passed to Beam.")
        return
    module.run(argv)


TRACK = "track id, title, or words of its title / artist / album that name one track"
HISTORY_FILE = ("a ListenBrainz export (JSON lines), a Last.fm-style scrobble CSV (matched by MusicBrainz id, else "
                "artist and title), or an M3U, wavelist's JSON, or track ids or audio paths one a line")


def add_kind_flags(parser: argparse.ArgumentParser, kind: str, playing: str | None = None) -> None:
    """The flags of the playlist ``kind``, from its declaration (:data:`playlists.kinds.KINDS`); ``playing``
    names what fills a missing selected track (radio's --seed, journey's --from), which is then optional.
    Numbers are checked against the declared limits by ``make_playlist``, which names the flag."""
    from playlists import kinds

    for p in kinds.find(kind).params:
        fills = playing is not None and p.selected and p.type == kinds.TRACK
        if p.file:
            parser.add_argument(p.option, dest=p.name, required=p.required, metavar="FILE",
                                help=f"{p.help}: {HISTORY_FILE}")
        elif p.type == kinds.TRACK:
            parser.add_argument(p.option, dest=p.name, required=p.required and not fills, metavar="TRACK",
                                help=f"{p.help} ({TRACK})" + (f"; default: {playing}" if fills else ""))
        elif p.type == kinds.TRACKS:
            parser.add_argument(p.option, dest=p.name, nargs="+", required=p.required, default=[], metavar="TRACK",
                                help=f"{p.help} (each a {TRACK})")
        elif p.type is bool:
            parser.add_argument(p.option, dest=p.name, action="store_true", help=p.help)
        else:
            parser.add_argument(p.option, dest=p.name, type=whole() if p.type is int else real(), default=p.default,
                                help=p.help + ("" if p.default is None else f" (default {p.default:g})"))


def playlist_options(args: argparse.Namespace, kind: str) -> dict:
    """``make_playlist``'s arguments from the flags of ``wavelist KIND`` (all but the files, read later)."""
    from playlists import kinds

    return {p.name: getattr(args, p.name) for p in kinds.find(kind).params if not p.file}


def build_parser() -> argparse.ArgumentParser:
    from playlists.kinds import KINDS, VARIETY, VARIETY_MAX
    from playlists.output import FORMATS

    parser = FlagParser(prog="wavelist", description="Playlists from the sound of the music.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show the libraries' own messages too (TensorFlow, absl, Beam)")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="generate the demo catalogue and run every stage on it")
    demo.add_argument("--out", default="demo_out", help="folder for catalogue/, data/, model/, tables/, map.html")
    demo.add_argument("--seed", type=whole(0, SEED_MAX), default=0)
    demo.add_argument("--artists-per-style", type=whole(1, 1000), default=10)
    demo.add_argument("--tracks-per-artist", type=whole(1, 1000), default=2)
    demo.add_argument("--seconds", type=real(3.0, 600.0), default=30.0)
    demo.add_argument("--epochs", type=whole(1, 10_000), default=12,
                      help="genre CNN epochs (the demo styles are learnt in a few; early stopping may end sooner)")

    for job, what in JOB_HELP.items():
        sub.add_parser(job, help=f"{what} (--help for its flags)", add_help=False)

    for kind in KINDS:  # one subcommand per playlist kind, its flags from the kind's declaration
        parser_ = sub.add_parser(kind.name, help=kind.help)
        parser_.add_argument("--tables", required=True, help="TABLES folder written by wavelist embed")
        add_kind_flags(parser_, kind.name)
        parser_.add_argument("--format", choices=FORMATS, default="table")
        parser_.add_argument("--output", help="write the playlist to this file instead of printing it")
        parser_.add_argument("--relative-to", metavar="DIR",
                             help="M3U8: audio paths relative to this folder (where the playlist will be kept); "
                                  "default: absolute paths")
    clusters = sub.add_parser("clusters", help="cut the catalogue into K sound-coherent playlists (k-means)")
    clusters.add_argument("--tables", required=True)
    clusters.add_argument("--k", type=whole(1), required=True, help="number of playlists")
    clusters.add_argument("--out", help="write clusters.parquet and one M3U8 per playlist into this folder "
                                        "(new or empty; an earlier clusters --out with --overwrite)")
    clusters.add_argument("--overwrite", action="store_true", help="replace an earlier clusters --out, whole")
    clusters.add_argument("--format", choices=("table", "json"), default="table")
    clusters.add_argument("--seed", type=whole(0, SEED_MAX), default=0, help="k-means' random seed")

    duplicates = sub.add_parser("duplicates", help="tracks that are one recording in several files (copies, "
                                                   "re-encodes, copies with silence trimmed or added)")
    duplicates.add_argument("--tables", required=True, help="TABLES folder written by wavelist embed or update")
    duplicates.add_argument("--format", choices=("table", "json"), default="table")

    mapper = sub.add_parser("map", help="write the interactive 3-D catalogue map as HTML")
    mapper.add_argument("--tables", required=True)
    mapper.add_argument("--out", default="map.html")
    mapper.add_argument("--radio", metavar="SEED", help="draw this seed's radio on the map")
    mapper.add_argument("--journey", nargs="+", metavar="TRACK", help="draw a journey through these tracks (2 or more)")
    mapper.add_argument("--playlist", metavar="FILE", help="draw this playlist (M3U8, JSON output, or ids one a line)")
    mapper.add_argument("-n", type=whole(1), default=12, help="length of the drawn playlist")

    projector = sub.add_parser("projector", help="export vectors.tsv, metadata.tsv and a config for "
                                                 "TensorFlow's Embedding Projector")
    projector.add_argument("--tables", required=True)
    projector.add_argument("--out", default="projector",
                           help="folder to write (new or empty; an earlier projector --out with --overwrite)")
    projector.add_argument("--overwrite", action="store_true", help="replace an earlier projector --out, whole")

    app = sub.add_parser("app", help="the Streamlit app: search, map, play, radio, journey, M3U download")
    app.add_argument("--tables", required=True)
    app.add_argument("--address", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1: this machine only). Another address lets "
                          "anyone who reaches it browse the catalogue and play its audio: there is no login")
    app.add_argument("--port", type=PORT, default=8501)

    player = sub.add_parser("mpd", help="queue a radio or a journey in MPD, from the song it plays")
    player_sub = player.add_subparsers(dest="mpd_command", required=True)
    mpd_radio = player_sub.add_parser("radio", help="queue the radio of the song MPD plays (or --seed)")
    mpd_journey = player_sub.add_parser("journey", help="queue a journey from the song MPD plays (or --seed) "
                                                        "to --to")
    mpd_journey.add_argument("--to", required=True, help=f"last track ({TRACK})")
    mpd_radio.add_argument("--keep-going", action="store_true",
                           help="keep running: queue more whenever fewer than --low songs are left (Ctrl-C stops)")
    mpd_radio.add_argument("--low", type=whole(0), default=5, help="with --keep-going: songs left that trigger more")
    mpd_radio.add_argument("--exclude-artist", action="store_true", help="leave out the seed's artist")
    mpd_radio.add_argument("--variety", type=real(0.0, VARIETY_MAX), default=0.0, help=VARIETY.help)
    for parser_ in (mpd_radio, mpd_journey):
        parser_.add_argument("--tables", required=True, help="TABLES folder written by wavelist embed")
        parser_.add_argument("--music-dir", help="MPD's music_directory as this machine sees it (default: the "
                                                 "folder holding every catalogue path)")
        parser_.add_argument("--host", default=os.environ.get("MPD_HOST", "localhost"),
                             help="MPD's address (default $MPD_HOST or localhost)")
        parser_.add_argument("--port", type=PORT, help="MPD's port (default $MPD_PORT or 6600)")
        parser_.add_argument("--seed", help=f"start from this track instead of the song MPD plays ({TRACK})")
        parser_.add_argument("-n", type=whole(1), default=20, help="how many tracks to queue")
        parser_.add_argument("--max-per-artist", type=int, help="at most this many tracks of one artist")

    subsonic = sub.add_parser("subsonic", help="put a radio, journey or like playlist into a Subsonic server "
                                               "(Navidrome, gonic, Airsonic, Ampache, supysonic)")
    subsonic_sub = subsonic.add_subparsers(dest="subsonic_command", required=True)
    playing = "the song --user plays now"
    for kind, what in (("radio", "the radio of the song the user plays (or --seed)"),
                       ("journey", "a journey from the song the user plays (or --from) to --to"),
                       ("like", "a blend of --seeds")):
        parser_ = subsonic_sub.add_parser(kind, help=what)
        parser_.add_argument("--tables", required=True, help="TABLES folder written by wavelist embed")
        parser_.add_argument("--server", required=True, metavar="URL",
                             help="the server's base address as its apps take it, e.g. http://localhost:4533")
        parser_.add_argument("--user", required=True, help="the server's user whose playlist it is")
        parser_.add_argument("--password-file", metavar="FILE",
                             help="a file whose first line is the password (default: $WAVELIST_SUBSONIC_PASSWORD)")
        parser_.add_argument("--playlist", required=True, metavar="NAME",
                             help="the user's playlist to write: created, or its songs replaced if the user owns one "
                                  "of that name")
        parser_.add_argument("--music-dir", help="the folder the server scans, as this machine sees it (default: "
                                                 "the folder holding every catalogue path)")
        add_kind_flags(parser_, kind, playing)

    serve = sub.add_parser("serve", help="the tables as a JSON HTTP API (radio, journey, ..., OpenSubsonic "
                                         "sonicSimilarity); GET /openapi.json describes it")
    serve.add_argument("--tables", required=True, help="TABLES folder written by wavelist embed")
    serve.add_argument("--address", default="127.0.0.1", help="address to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, default=8000)  # checked by serve, with its address
    serve.add_argument("--music-folder", help="the folder that track paths in requests are relative to "
                                              "(default: the folder holding every catalogue path)")
    serve.add_argument("--watch-seconds", type=real(0.0, 86_400.0), default=2.0,
                       help="look for a newly published TABLES folder this often (0: only POST /reload)")
    serve.add_argument("--threads", type=whole(1, 1024),
                       help="worker threads answering queries (default: one per core)")
    return parser


def _emit(text: str, output: str | None) -> None:
    if output:
        from storage import files

        files.write_text(output, text + "\n")
        log.info("wrote %s", output)
    else:
        print(text)


def _playlist_command(args: argparse.Namespace) -> None:
    from playlists import load_tables
    from playlists.history import read_history
    from playlists.kinds import find
    from playlists.output import missing_audio, playlist_rows, render
    from playlists.service import make_playlist
    from storage import files

    kind = find(args.command)
    read = [p.name for p in kind.params if p.file]  # files naming tracks, read once the tables are loaded
    options = playlist_options(args, kind.name)
    kind.check(options)  # before any file is read
    files.check_output_file(args.output, inputs=[args.tables, *(getattr(args, name) for name in read)])
    tables = load_tables(args.tables)
    for name in read:
        options[name], said = read_history(tables, getattr(args, name))
        if said:
            print(for_terminal(said), file=sys.stderr)
    playlist = make_playlist(tables, kind.name, **options)
    if playlist.smoothness is not None:
        print("smoothness: " + ", ".join(f"{k} {v:.3f}" for k, v in playlist.smoothness.items()), file=sys.stderr)
    if args.format == "m3u":
        missing = missing_audio(playlist_rows(tables, playlist.entries))
        if missing:
            print(f"warning: {len(missing)} audio files do not exist here, e.g. {for_terminal(missing[0])}",
                  file=sys.stderr)
    _emit(render(tables, playlist.entries, args.format, kind.score, args.relative_to), args.output)


def _map_command(args: argparse.Namespace) -> None:
    from playlists import journey_via, load_tables, radio
    from playlists.mapview import track_name, write_map
    from playlists.output import read_track_list
    from storage import files

    files.check_output_file(args.out, inputs=[args.tables, args.playlist], flag="--out")
    tables = load_tables(args.tables)
    playlist, title, path = None, "the catalogue by sound", True
    if args.radio is not None:
        seed = tables.resolve(args.radio)
        playlist = [seed] + [e.track_id for e in radio(tables, seed, args.n)]
        title, path = f"radio of {track_name(tables, seed)}", False
    elif args.journey:
        if len(args.journey) < 2:
            raise UserError("--journey needs at least two tracks")
        stops = [tables.resolve(s) for s in args.journey]
        playlist = [e.track_id for e in journey_via(tables, stops, args.n)]
        title = "journey: " + " → ".join(track_name(tables, s) for s in stops)
    elif args.playlist:
        playlist = read_track_list(tables, args.playlist)
        title = f"playlist {Path(args.playlist).name}"
    print(write_map(tables, args.out, playlist, title, path))


def _clusters_command(args: argparse.Namespace) -> None:
    import json

    from playlists import load_tables
    from playlists.discover import clusters, write_clusters
    from playlists.text import for_json
    from storage import files

    if args.out:
        files.check_output(args.out, overwrite=args.overwrite, kind="clusters", inputs=[args.tables])
    tables = load_tables(args.tables)
    found, silhouette = clusters(tables, args.k, seed=args.seed)
    if args.out:
        with files.staged_output(args.out, overwrite=args.overwrite, kind="clusters", inputs=[args.tables]) as staging:
            write_clusters(tables, found, staging)
        log.info("wrote %s", args.out)
    summary = [{"cluster": c.number, "name": c.name, "tracks": len(c.entries), "genre_share": round(c.genre_share, 3),
                "coherence": round(c.coherence, 3), "central_track": c.central_track} for c in found]
    if args.format == "json":
        print(for_json(json.dumps({"silhouette": round(silhouette, 4), "clusters": summary}, indent=2,
                                  ensure_ascii=False)))
        return
    print(f"silhouette (cosine): {silhouette:.3f}")
    print(f"{'cluster':>7}  {'tracks':>6}  {'coherence':>9}  {'genre share':>11}  name")
    for row in summary:
        print(f"{row['cluster']:>7}  {row['tracks']:>6}  {row['coherence']:>9.3f}  {row['genre_share']:>11.3f}  "
              f"{for_terminal(row['name'])}")


def _projector_command(args: argparse.Namespace) -> None:
    from playlists import load_tables
    from playlists.projector import write_projector
    from storage import files

    files.check_output(args.out, overwrite=args.overwrite, kind="projector", inputs=[args.tables])
    tables = load_tables(args.tables)
    with files.staged_output(args.out, overwrite=args.overwrite, kind="projector", inputs=[args.tables]) as staging:
        write_projector(tables, staging)
    out = args.out
    print(f"{out}: vectors.tsv, metadata.tsv, projector_config.pbtxt (tensorboard --logdir {out}), "
          "projector_config.json (load vectors.tsv and metadata.tsv in the standalone Embedding Projector)")


def app_command_line(args: argparse.Namespace) -> list[str]:
    """The Streamlit command that serves the app on ``args.address`` and ``args.port``."""
    app = Path(__file__).with_name("app_server.py")  # app.py and the audio route its player plays from
    return [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true",
            "--server.address", args.address, "--server.port", str(args.port),
            "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal"]  # no Deploy button


def _app_command(args: argparse.Namespace) -> int:
    """Run the Streamlit app on ``args.tables`` until interrupted (this process becomes the Streamlit server)."""
    from playlists import load_tables

    load_tables(args.tables)  # a bad folder is a one-line error here, not a page of Streamlit output
    if args.address not in ("127.0.0.1", "localhost", "::1"):
        log.warning("the app listens on %s: anyone who reaches it can browse the catalogue and play its audio "
                    "(there is no login)", args.address)
    env = {**os.environ, "WAVELIST_TABLES": str(Path(args.tables).resolve())}
    sys.stdout.flush()
    os.execve(sys.executable, app_command_line(args), env)  # signals reach Streamlit itself; no child left behind
    return 0


def mpd_port(given: int | None) -> int:
    """``--port``, else ``$MPD_PORT``, else 6600; a ``$MPD_PORT`` that is no port is a one-line error."""
    if given is not None:
        return given
    text = os.environ.get("MPD_PORT", "").strip() or "6600"
    try:
        return PORT(text)
    except argparse.ArgumentTypeError:
        raise UserError(f"$MPD_PORT {shown(text)} is not a port number (0 to 65535); set it to MPD's port or give "
                        "--port") from None


def _mpd_command(args: argparse.Namespace) -> None:
    from playlists import load_tables
    from playlists.service import TrackFinder
    from wavelist import player

    args.port = mpd_port(args.port)
    tables = load_tables(args.tables)
    client = player.connect(args.host, args.port)
    options = {"max_per_artist": args.max_per_artist}
    if args.mpd_command == "radio":
        options.update(exclude_artist=args.exclude_artist, variety=args.variety)
    try:
        session = player.Session(client, tables, TrackFinder(tables, args.music_dir), options)
        if args.mpd_command == "radio":
            queued = player.radio(session, args.seed, args.n)
        else:
            queued = player.journey(session, args.seed, args.to, args.n, args.max_per_artist)
        print(f"queued {len(queued)} tracks in MPD at {args.host}:{args.port}")
        if args.mpd_command == "radio" and args.keep_going:
            log.info("keeping the radio going (Ctrl-C stops)")
            player.keep_going(session, args.n, args.low)
    except player.MPD_ERRORS as error:
        raise player.PlayerError(f"MPD at {args.host}:{args.port}: {error}") from None
    finally:
        client.disconnect()


def _subsonic_command(args: argparse.Namespace) -> None:
    from playlists import load_tables
    from wavelist import subsonic

    password = subsonic.read_password(args.password_file)
    tables = load_tables(args.tables)
    with subsonic.Client(args.server, args.user, password) as client:
        print(subsonic.push(client, tables, args.subsonic_command, playlist_options(args, args.subsonic_command),
                            args.playlist, args.music_dir))


def main(argv: list[str] | None = None) -> int:
    from playlists.kinds import KINDS

    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    known, rest = parser.parse_known_args(argv)
    _quiet_libraries(known.verbose)
    try:
        if known.command in JOBS:
            _run_job(known.command, rest)
        elif rest:
            command = parser._subparsers._group_actions[0].choices[known.command]
            command.error(unknown_flags_message(rest, command.known_flags()))
        elif known.command == "demo":
            from wavelist.demo import run_demo

            run_demo(known)
        elif known.command in {kind.name for kind in KINDS}:
            _playlist_command(known)
        elif known.command == "clusters":
            _clusters_command(known)
        elif known.command == "duplicates":
            from wavelist.duplicates import main as duplicates_main

            duplicates_main(known.tables, known.format)
        elif known.command == "map":
            _map_command(known)
        elif known.command == "projector":
            _projector_command(known)
        elif known.command == "mpd":
            _mpd_command(known)
        elif known.command == "subsonic":
            _subsonic_command(known)
        elif known.command == "app":
            return _app_command(known)
        elif known.command == "serve":
            from wavelist.serve import serve

            serve(known.tables, address=known.address, port=known.port, music_folder=known.music_folder,
                  watch_seconds=known.watch_seconds, threads=known.threads)
    except KeyboardInterrupt:
        print("wavelist: interrupted", file=sys.stderr)
        return 130
    except (UserError, OSError) as error:  # a mistake the user can fix, or a file the system refused
        if known.debug:
            raise
        print(f"wavelist {known.command}: error: {one_line_message(for_terminal(error))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
