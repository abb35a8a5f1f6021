"""Analysis speed and quality against the tools people use today: bliss and Essentia, same tracks, one run.

    python -m benchmarks.peers CORPUS --long LONG [--clips N] [--long-tracks N] [--model MODEL]
        [--work DIR] [--peers-venv DIR] [--tools bliss,essentia,essentia_lowlevel,wavelist,floor]
        [--train-flags "--epochs 2"]
    python -m benchmarks.peers CORPUS --make-long LONG     # once: 30-s clips concatenated to ~4-min tracks
    python -m benchmarks.peers CORPUS --score-only --work DIR   # score the clip vectors a cut run left in DIR

``--clips -1`` skips the 30-s clips (full-length tracks only).

CORPUS is in FMA layout (``fma_metadata/tracks.csv``, ``audio/XXX/XXXXXX.mp3``), e.g. what
``shared/build_music_corpus.py`` builds; LONG is a folder of full-length tracks (``--make-long`` writes one:
each source's clips in id order, 8 at a time, joined frame by frame without re-encoding: about 4 min each).

Each tool runs in its own process, one after the other, over the same files:
- ``bliss``: bliss-audio ``Song(path).analysis`` (23 features; bliss-rs may use several threads);
- ``essentia``: Essentia ``MusicExtractor()`` with its default profile;
- ``essentia_lowlevel``: Essentia's fastest comparable summary: ``MonoLoader`` at 22.05 kHz, then per frame
  (2048, hop 1024) ``Windowing`` + ``Spectrum`` + ``MFCC`` + ``Centroid`` + ``RollOff`` + ``Flatness`` +
  ``ZeroCrossingRate`` + ``RMS``, mean and standard deviation of each (bliss-sized, 36 numbers);
- ``wavelist``: ``wavelist ingest`` then ``wavelist embed`` with a trained model (``--model``, or one trained
  here once with ``--train-flags``: reported as a one-off), in-process runner so that every CPU second is
  this process's child's; start-up measured on a 4-track run and left out of the steady per-track cost, and
  embed's catalogue map (t-SNE, capped at MAP_SAMPLE tracks) measured apart as a one-off;
- ``floor``: the MP3 decoder alone (``soundfile.read``), the floor of benchmarks/ingest.py.
bliss and Essentia are installed into ``--peers-venv`` (default ``~/.cache/wavelist-peers``) by this script,
never into wavelist's environment.

CPU time (user + system of the process and its threads and children) is the primary figure: on a shared
machine wall time also counts other people's work. Tracks per second per core = tracks / CPU seconds.
Quality: each tool's vectors on the 30-s clips scored with ``shared/similarity_metrics.py`` (test split):
cosine on standardised features for every tool, and bliss also as it ranks, Euclidean on raw features.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PEER_PACKAGES = ["bliss-audio==0.2.0", "essentia==2.1b6.dev1389", "numpy"]
PEER_TOOLS = {"bliss", "essentia", "essentia_lowlevel"}
ALL_TOOLS = ["floor", "wavelist", "bliss", "essentia_lowlevel", "essentia"]
LIBRARY, DESKTOP_CORES, DATAFLOW_VCPUS = 100_000, 4, 200


# ---------------------------------------------------------------- workers (each runs in its own process)

def analyse_bliss():
    from bliss_audio import Song
    return lambda path: [float(v) for v in Song(path).analysis]


def analyse_essentia():
    import essentia
    import essentia.standard as es
    essentia.log.warningActive = False
    essentia.log.infoActive = False
    extractor = es.MusicExtractor()  # default profile
    keys: list[str] = []

    def run(path):
        pool, _frames = extractor(path)
        if not keys:  # the numeric summary descriptors of the first track fix the vector's layout
            for name in sorted(pool.descriptorNames()):
                if not name.startswith(("lowlevel.", "rhythm.", "tonal.")):
                    continue
                value = pool[name]
                if isinstance(value, (float, int)) or (hasattr(value, "ndim") and value.ndim == 1
                                                        and not name.endswith(("beats_position", "bpm_histogram"))):
                    keys.append(name)
        out = []
        for name in keys:
            value = pool[name]
            out.extend([float(value)] if isinstance(value, (float, int)) else [float(v) for v in value])
        return out
    return run


def analyse_essentia_lowlevel():
    import numpy as np
    import essentia
    import essentia.standard as es
    essentia.log.warningActive = False
    sr, size, hop = 22050, 2048, 1024
    window, spectrum = es.Windowing(type="hann"), es.Spectrum()
    mfcc = es.MFCC(sampleRate=sr, inputSize=size // 2 + 1, numberCoefficients=13)
    centroid, rolloff, flatness = es.Centroid(range=sr / 2), es.RollOff(sampleRate=sr), es.Flatness()
    zcr, rms = es.ZeroCrossingRate(), es.RMS()

    def run(path):
        audio = es.MonoLoader(filename=path, sampleRate=sr)()
        rows = []
        for frame in es.FrameGenerator(audio, frameSize=size, hopSize=hop, startFromZero=True):
            spec = spectrum(window(frame))
            _bands, coeffs = mfcc(spec)
            rows.append([*coeffs, centroid(spec), rolloff(spec), flatness(spec + 1e-12), zcr(frame), rms(frame)])
        rows = np.asarray(rows, np.float64)
        return [*rows.mean(0), *rows.std(0)]
    return run


def analyse_floor():
    import soundfile
    return lambda path: (soundfile.read(path), [])[1]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


def worker(tool: str, listing: Path, out: Path) -> None:
    """Analyse every file of ``listing``; write per-track CPU and wall seconds and the vectors."""
    import numpy as np
    started_cpu, started = cpu_seconds(), time.perf_counter()
    analyse = globals()[f"analyse_{tool}"]()
    startup = {"cpu": cpu_seconds() - started_cpu, "wall": time.perf_counter() - started}
    files = [line for line in listing.read_text().split("\n") if line]
    cpu, wall, vectors = [], [], []
    for path in files:
        c, w = cpu_seconds(), time.perf_counter()
        vectors.append(analyse(path))
        cpu.append(cpu_seconds() - c)
        wall.append(time.perf_counter() - w)
    np.savez(out.with_suffix(".npz"), X=np.asarray(vectors, np.float64).reshape(len(files), -1),
             paths=np.asarray(files))
    out.write_text(json.dumps({"startup": startup, "cpu": cpu, "wall": wall}))


# ---------------------------------------------------------------- the run

def ensure_peers_venv(venv: Path) -> Path | None:
    """The peers' own venv, created and filled once with pip; None (and why) if they cannot be installed."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import bliss_audio, essentia.standard"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES], capture_output=True, text=True)
    if done.returncode or subprocess.run(probe, capture_output=True).returncode:
        print(f"peers could not be installed into {venv}: {done.stderr.strip()[-400:]}")
        return None
    return python


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_child(argv: list[str], log: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one child process (its threads and waited-for children included)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    c, w = child_cpu(), time.perf_counter()
    with log.open("w") as handle:
        done = subprocess.run(argv, stdout=handle, stderr=subprocess.STDOUT, env=env)
    if done.returncode:
        sys.exit(f"{argv[:4]} failed (exit {done.returncode}); see {log}")
    return child_cpu() - c, time.perf_counter() - w


def run_peer(tool: str, python: str, files: list[Path], work: Path, label: str) -> dict:
    listing = work / f"{tool}-{label}.txt"
    listing.write_text("\n".join(str(p) for p in files))
    out = work / f"{tool}-{label}.json"
    cpu, wall = run_child([python, __file__, "--worker", tool, str(listing), str(out)], work / f"{tool}-{label}.log")
    report = json.loads(out.read_text())
    return {"tracks": len(files), "cpu_per_track": sum(report["cpu"]) / len(files),
            "wall_per_track": sum(report["wall"]) / len(files), "startup_cpu": cpu - sum(report["cpu"]),
            "startup_wall": wall - sum(report["wall"]), "vectors": out.with_suffix(".npz")}


def wavelist(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "wavelist.cli", *argv]


def link_folder(files: list[Path], folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i, path in enumerate(files):
        (folder / f"{i:06d}{path.suffix}").symlink_to(path.resolve())
    return folder


def run_wavelist(catalogue: list[str], model: Path, work: Path, label: str) -> tuple[float, float, float, float]:
    """Ingest + embed into work/label; (ingest CPU, ingest wall, embed CPU, embed wall)."""
    engine = ["--direct_running_mode", "in_memory", "--direct_num_workers", "1"]
    data, tables = work / f"{label}-data", work / f"{label}-tables"
    ci, wi = run_child(wavelist(["ingest", *catalogue, "--out", str(data), "--overwrite", *engine]),
                       work / f"{label}-ingest.log")
    ce, we = run_child(wavelist(["embed", "--data", str(data), "--model", str(model), "--out", str(tables),
                                 "--overwrite", "--k", "3", *engine]), work / f"{label}-embed.log")
    return ci, wi, ce, we


def map_cpu(tables: Path, work: Path) -> float:
    """CPU seconds of embed's catalogue map (core.neighbours.map_coordinates, a 3-D t-SNE of up to MAP_SAMPLE
    tracks) on ``tables``' vectors, in a child process: a per-catalogue cost, not a per-track one."""
    code = ("import sys, numpy as np, pyarrow.parquet as pq; from core.neighbours import map_coordinates; "
            "t = pq.read_table(sys.argv[1], columns=['embedding']); "
            "map_coordinates(np.stack(t['embedding'].to_numpy(zero_copy_only=False)).astype(np.float32))")
    from schemas.layout import TableFiles
    cpu, _ = run_child([sys.executable, "-c", code, str(tables / TableFiles.EMBEDDINGS)], work / "map.log")
    return cpu


def measure_wavelist(catalogue: list[str], n: int, few: list[Path], model: Path, work: Path, label: str) -> dict:
    """Steady per-track cost = (run of n tracks - run of len(few) tracks) / (n - len(few)); start-up beside."""
    small = run_wavelist(["--audio-dir", str(link_folder(few, work / f"{label}-few-audio"))], model, work,
                         f"{label}-few")
    full = run_wavelist(catalogue, model, work, label)
    # the map is a one-off per catalogue (capped at MAP_SAMPLE tracks): measured apart and taken out of embed
    maps = (map_cpu(work / f"{label}-few-tables", work), map_cpu(work / f"{label}-tables", work))
    small = (small[0], small[1], small[2] - maps[0], small[3])
    full = (full[0], full[1], full[2] - maps[1], full[3])
    per = [(f - s) / (n - len(few)) for f, s in zip(full, small)]
    startup = [s - len(few) * p for s, p in zip(small, per)]
    # wall: the whole n-track run over n, start-up included (a difference of two walls is noise when the
    # machine is shared: it came out negative once)
    return {"tracks": n, "cpu_per_track": per[0] + per[2], "wall_per_track": (full[1] + full[3]) / n,
            "ingest_cpu_per_track": per[0], "embed_cpu_per_track": per[2],
            "ingest_wall_per_track": per[1], "embed_wall_per_track": per[3],
            "startup_cpu": startup[0] + startup[2], "startup_wall": startup[1] + startup[3],
            "map_cpu_one_off": maps[1], "tables": work / f"{label}-tables", "data": work / f"{label}-data",
            "data_bytes_per_track": sum(f.stat().st_size for f in (work / f"{label}-data").rglob("*") if f.is_file()) / n}


def stage_shares(files: list[Path]) -> dict[str, float]:
    """ms per track of each ingest step, one process (benchmarks/ingest.py's breakdown)."""
    from benchmarks.ingest import stage_breakdown
    return stage_breakdown(files)


def make_long(corpus: Path, out: Path, per_track: int = 8) -> None:
    """Concatenate each source's clips, in id order, ``per_track`` at a time (MP3 frames copied)."""
    import csv
    with (corpus / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    by_source: dict[str, list[str]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row["clip_id"])
    (out / "audio").mkdir(parents=True, exist_ok=True)
    made = 0
    for source, ids in sorted(by_source.items()):
        for start in range(0, len(ids) - per_track + 1, per_track):
            group = ids[start:start + per_track]
            listing = out / f"{group[0]}.txt"
            listing.write_text("".join(f"file '{corpus / 'audio' / i[:3] / (i + '.mp3')}'\n" for i in group))
            subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0",
                            "-i", str(listing), "-c", "copy", str(out / "audio" / f"{group[0]}.mp3")], check=True)
            listing.unlink()
            made += 1
    print(f"{made} tracks of {per_track} x 30 s in {out / 'audio'}")


def similarity_metrics():
    spec = importlib.util.spec_from_file_location("similarity_metrics", SHARED / "similarity_metrics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def score(metrics, tracks, repeats, ids, X, euclidean: bool = False) -> dict:
    """The shared script's test-split figures; ``euclidean``: its metrics, ranked by Euclidean distance on
    the raw vectors instead of its cosine (its ``ranked_relevance`` fed the negated distances)."""
    import numpy as np
    import pandas as pd
    if not euclidean:
        return metrics.evaluate(ids, X, tracks, repeats)["test"]
    Xo = X[pd.Index(ids).get_indexer(tracks.index)]
    negated = -np.sqrt(((Xo[:, None, :] - Xo[None, :, :]) ** 2).sum(-1))
    original = metrics.ranked_relevance
    metrics.ranked_relevance = lambda S, relevant, excluded: original(negated, relevant, excluded)
    try:
        return metrics.evaluate(ids, X, tracks, repeats)["test"]
    finally:
        metrics.ranked_relevance = original


def quality_of(corpus: Path, clip_results: dict) -> dict:
    """Each tool's 30-s clip vectors scored by shared/similarity_metrics.py (test split)."""
    import numpy as np
    metrics = similarity_metrics()
    tracks = metrics.load_tracks(str(corpus / "fma_metadata" / "tracks.csv"))
    repeats = metrics.load_repeat_clips(str(SHARED / "dev_ab_repeats.txt"))
    quality: dict[str, dict] = {}
    for tool, r in clip_results.items():
        if tool == "floor":
            continue
        if tool == "wavelist":
            from schemas.layout import TableFiles
            ids, X = metrics.load_embeddings(str(r["tables"] / TableFiles.EMBEDDINGS))
            quality["wavelist"] = score(metrics, tracks, repeats, ids, X)
            continue
        with np.load(r["vectors"]) as z:
            X, paths = z["X"], z["paths"]
        ids = np.array([int(Path(p).stem) for p in paths])
        quality[f"{tool} (cosine, standardised)"] = score(metrics, tracks, repeats, ids, standardised(X))
        if tool == "bliss":
            quality["bliss (Euclidean, raw: how bliss ranks)"] = score(metrics, tracks, repeats, ids, X, euclidean=True)
    return quality


def print_quality(quality: dict) -> None:
    if quality:
        print("\n| tool | source P@10 | source MAP | same-track R@10 | same-track MRR | queries (source/track) |")
        print("|---|---|---|---|---|---|")
        for tool, q in quality.items():
            print(f"| {tool} | {q['source_p10']:.3f} | {q['source_map']:.3f} | {q['same_track_r10']:.3f} | "
                  f"{q['same_track_mrr']:.3f} | {q['n_source_q']}/{q['n_track_q']} |")


def standardised(X):
    import numpy as np
    return (X - X.mean(0)) / np.maximum(X.std(0), 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", type=Path, nargs="?")
    parser.add_argument("--long", type=Path, help="folder of full-length tracks (audio/**/*.mp3), e.g. the whole "
                        "songs of benchmarks/full_length_corpus.py (OUT/whole)")
    parser.add_argument("--make-long", type=Path, help="write LONG from CORPUS's clips and stop")
    parser.add_argument("--clips", type=int, default=0, help="30-s clips to use (default all; -1: none)")
    parser.add_argument("--long-tracks", type=int, default=6)
    parser.add_argument("--tools", default=",".join(ALL_TOOLS))
    parser.add_argument("--model", type=Path, help="trained wavelist model to reuse")
    parser.add_argument("--train-flags", default="", help="flags for the one-off wavelist train")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "wavelist-peers-work")
    parser.add_argument("--peers-venv", type=Path, default=Path.home() / ".cache" / "wavelist-peers")
    parser.add_argument("--out-json", type=Path)
    parser.add_argument("--score-only", action="store_true", help="score the vectors left in --work and stop")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker[0], Path(args.worker[1]), Path(args.worker[2]))
    if args.make_long:
        return make_long(args.corpus, args.make_long)
    import numpy as np
    if args.score_only:  # score the 30-s clip vectors a (possibly cut) run left in --work
        return print_quality(quality_of(args.corpus, {
            tool: {"vectors": args.work / f"{tool}-30.npz", "tables": args.work / "wavelist-30-tables"}
            for tool in ("wavelist", "bliss", "essentia_lowlevel", "essentia")
            if (args.work / f"{tool}-30.npz").exists() or (tool == "wavelist" and (args.work / "wavelist-30-tables").exists())}))
    tools = args.tools.split(",")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    clips = sorted((args.corpus / "audio").rglob("*.mp3"))
    clips = [] if args.clips < 0 else clips[: args.clips] if args.clips else clips
    long = sorted((args.long / "audio").rglob("*.mp3"))[: args.long_tracks] if args.long else []
    sets = {"30-s clips": clips, "full-length tracks": long}
    print(f"{len(clips)} clips from {args.corpus}, {len(long)} long tracks from {args.long}; "
          f"{os.cpu_count()} cores (shared: CPU time is the primary figure)", flush=True)
    for path in clips + long:  # OS page cache warm for every tool alike
        path.read_bytes()

    peers_python = ensure_peers_venv(args.peers_venv) if PEER_TOOLS & set(tools) else None
    results: dict = {"one_off": {}}
    if "wavelist" in tools:
        model = args.model
        if model is None:
            model = work / "model"
            meta = ["--fma-metadata", str(args.corpus / "fma_metadata"), "--audio-dir", str(args.corpus / "audio")]
            run_child(wavelist(["ingest", *meta, "--out", str(work / "train-data"), "--overwrite"]), work / "train-ingest.log")
            cpu, wall = run_child(wavelist(["train", "--data", str(work / "train-data"), "--out", str(model),
                                            "--overwrite", *shlex.split(args.train_flags)]), work / "train.log")
            results["one_off"]["train"] = {"cpu_s": cpu, "wall_s": wall, "flags": args.train_flags}
            print(f"one-off: wavelist train {args.train_flags}: {cpu:.0f} s CPU, {wall:.0f} s wall", flush=True)
    for label, files in sets.items():
        if not files:
            continue
        results[label] = {}
        for tool in [t for t in ALL_TOOLS if t in tools]:
            if tool in PEER_TOOLS and peers_python is None:
                continue
            print(f"{label}: {tool} ...", flush=True)
            if tool == "wavelist":
                few = files[:4]
                catalogue = (["--fma-metadata", str(args.corpus / "fma_metadata"), "--audio-dir",
                              str(args.corpus / "audio")] if label == "30-s clips" and not args.clips else
                             ["--audio-dir", str(link_folder(files, work / f"{label[:2]}-audio"))])
                r = measure_wavelist(catalogue, len(files), few, model, work, f"wavelist-{label[:2]}")
                r["stages_ms"] = stage_shares(files[:20]) if label == "30-s clips" else {}
                print(f"  ingest {r['ingest_cpu_per_track']:.3f} s + embed {r['embed_cpu_per_track']:.3f} s CPU/track; "
                      f"the catalogue map (t-SNE, one-off, left out): {r['map_cpu_one_off']:.1f} s CPU", flush=True)
            else:
                python = str(peers_python) if tool in PEER_TOOLS else sys.executable
                r = run_peer(tool, python, files, work, label[:2])
            results[label][tool] = r
            print(f"  {r['cpu_per_track']:.3f} s CPU/track, {r['wall_per_track']:.3f} s wall/track, "
                  f"{1 / r['cpu_per_track']:.2f} tracks/s/core; start-up {r['startup_cpu']:.1f} s CPU", flush=True)

    quality = quality_of(args.corpus, results.get("30-s clips", {})) if clips and not args.clips else {}

    # the table
    print("\n| tool | length | tracks | CPU s/track | wall s/track | tracks/s/core (CPU) | start-up CPU s |")
    print("|---|---|---|---|---|---|---|")
    for label in sets:
        for tool, r in results.get(label, {}).items():
            print(f"| {tool} | {label} | {r['tracks']} | {r['cpu_per_track']:.3f} | {r['wall_per_track']:.3f} | "
                  f"{1 / r['cpu_per_track']:.2f} | {r['startup_cpu']:.1f} |")
    for label in sets:
        w = results.get(label, {}).get("wavelist")
        if w:
            print(f"wavelist {label}: ingest {w['ingest_cpu_per_track']:.3f} s + embed {w['embed_cpu_per_track']:.3f} s "
                  f"CPU per track ({100 * w['ingest_cpu_per_track'] / w['cpu_per_track']:.0f} % ingest); DATA "
                  f"{w['data_bytes_per_track'] / 1e6:.2f} MB per track")
            for name, ms in w.get("stages_ms", {}).items():
                print(f"  ingest step {name:<40} {ms:7.1f} ms/track")
    print("\nratios (tracks/s/core, CPU):")
    for label in sets:
        r = results.get(label, {})
        if "wavelist" in r:
            for peer in ("bliss", "essentia", "essentia_lowlevel"):
                if peer in r:
                    print(f"  {label}: wavelist ingest+embed / {peer}: "
                          f"{r[peer]['cpu_per_track'] / r['wavelist']['cpu_per_track']:.1f}x")
            if "floor" in r:
                print(f"  {label}: wavelist ingest alone / decoder floor: "
                      f"{r['floor']['cpu_per_track'] / r['wavelist']['ingest_cpu_per_track']:.2f}")
    print_quality(quality)
    print(f"\nprojection, {LIBRARY:,} full-length tracks, CPU-bound, start-up excluded:")
    long_results = results.get("full-length tracks", {})
    for tool, r in long_results.items():
        hours = LIBRARY * r["cpu_per_track"] / 3600
        line = f"  {tool:<18} {hours / DESKTOP_CORES:8.1f} h on a {DESKTOP_CORES}-core desktop"
        if tool == "wavelist":
            line += f", {60 * hours / DATAFLOW_VCPUS:6.1f} min on Dataflow {DATAFLOW_VCPUS} vCPU (50 x 4)"
        print(line)
    if args.out_json:
        args.out_json.write_text(json.dumps({"results": results, "quality": quality}, default=str, indent=1))


if __name__ == "__main__":
    main()
