"""``wavelist demo``: generate the synthetic catalogue and run every stage on it, end to end."""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

log = logging.getLogger("wavelist.demo")


def _catalogue(out: Path, args: argparse.Namespace) -> Path:
    """Generate the catalogue unless one made with the same parameters is already there."""
    from wavelist import demo_catalogue

    folder = out / "catalogue"
    marker = folder / "demo_parameters.json"
    wanted = {"seed": args.seed, "artists_per_style": args.artists_per_style,
              "tracks_per_artist": args.tracks_per_artist, "seconds": args.seconds}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        log.info("demo catalogue already in %s", folder)
        return folder
    demo_catalogue.generate(folder, **wanted)
    marker.write_text(json.dumps(wanted) + "\n")
    return folder


def playlists_text(tables, seed: int, trip: list) -> str:
    """The demo's radio of ``seed`` and its journey ``trip`` as ``wavelist radio`` / ``journey`` print them (the
    same column names), with the journey's smoothness."""
    from playlists import radio, smoothness
    from playlists.output import SCORE_NAMES, render

    def genre(track_id: int) -> str | None:
        return tables.track(track_id).get("genre")

    end = trip[-1].track_id
    return "\n".join([
        f"\nRadio for track {seed} ({genre(seed)}):",
        render(tables, radio(tables, seed, 10), "table", SCORE_NAMES["radio"]),
        f"\nJourney from {seed} ({genre(seed)}) to {end} ({genre(end)}):",
        render(tables, trip, "table", SCORE_NAMES["journey"]),
        "smoothness: " + ", ".join(f"{k} {v:.3f}" for k, v in smoothness(tables, trip).items())])


def run_demo(args: argparse.Namespace) -> dict:
    """Catalogue -> ingest -> train -> embed -> map, then print a radio and a journey."""
    from beam_jobs.common import quiet_native_stderr
    from playlists import journey, load_tables
    from playlists.mapview import write_map

    with quiet_native_stderr():  # TensorFlow's notices, printed on import before any log level applies
        import keras  # noqa: F401  (imported here, quietly, rather than later by the trainer)

        from beam_jobs import embed, ingest
        from model import train
    from playlists.radio import radio_genre_agreement

    out = Path(args.out).resolve()
    started = time.monotonic()
    catalogue = _catalogue(out, args)
    data, model_dir, tables_dir = out / "data", out / "model", out / "tables"
    log.info("1/4 ingest: Beam, multi-process DirectRunner engine")
    ingest.run(["--fma-metadata", str(catalogue / "fma_metadata"), "--audio-dir", str(catalogue / "fma_small"),
                "--out", str(data), "--overwrite"])
    log.info("2/4 train: genre CNN with tf.data")
    metrics = train.run(["--data", str(data), "--out", str(model_dir), "--model", "cnn", "--epochs", str(args.epochs),
                         "--seed", str(args.seed), "--overwrite"])
    log.info("3/4 embed: Beam, track vectors, neighbours, map")
    embed.run(["--data", str(data), "--model", str(model_dir), "--out", str(tables_dir), "--overwrite"])

    log.info("4/4 playlists")
    tables = load_tables(tables_dir)
    seed = int(tables.ids[0])
    far_end = int(tables.ids[int((tables.vectors @ tables.vector(seed)).argmin())])
    trip = journey(tables, seed, far_end, 10)
    map_path = write_map(tables, out / "map.html", [e.track_id for e in trip], title="wavelist demo")
    agreement = radio_genre_agreement(tables, 10)
    elapsed = time.monotonic() - started

    print(f"\nwavelist demo finished in {elapsed / 60:.1f} min")
    for name, path in [("catalogue", catalogue), ("data", data), ("model", model_dir), ("tables", tables_dir),
                       ("map", map_path)]:
        print(f"  {name:<9} {path}")
    print(f"  genre CNN test accuracy: {metrics['test'].get('accuracy', float('nan')):.3f} "
          f"on {metrics['test'].get('tracks', 0)} tracks")
    print(f"  radio style agreement: {agreement:.3f} of the 10 nearest tracks share the seed's style "
          f"(chance about {1 / max(1, len({t.get('genre') for t in tables.tracks.values()})):.3f})")
    print(playlists_text(tables, seed, trip))
    print(f"\nTry: wavelist radio --tables {tables_dir} --seed {seed} -n 20")
    return {"agreement": agreement, "metrics": metrics, "elapsed_s": elapsed}
