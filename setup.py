"""wavelist: installs the packages and the ``wavelist`` command; Dataflow workers get the code through
``--setup_file ./setup.py``."""
from pathlib import Path

import setuptools

# What the Beam jobs and the trainer need: all a Dataflow worker installs (through --setup_file).
REQUIREMENTS = [
    "apache-beam[gcp]==2.77.0",
    "librosa==0.11.0",
    "numpy==2.4.6",
    "tensorflow-cpu==2.21.0",
    "keras==3.15.1",
    "protobuf==6.33.6",
    "scikit-learn==1.9.1",
    "pyarrow==25.0.1",
    "soundfile==0.14.0",
    "soxr==1.1.0",
    "pandas==3.1.1",
    "faiss-cpu==1.15.1",
    "threadpoolctl==3.8.0",
    "umap-learn==0.5.12",  # the map's layout above 5,000 tracks (core.neighbours.umap_coordinates)
    "pynndescent==0.7.0",
    "mutagen==1.48.1",  # tags, read by ingest's workers
    "google-crc32c==1.9.0",  # the tile shards' record checksums (storage.files.read_records)
]
# What only a person's machine needs: the map, the app, the server, evaluation plots, the demo, TensorBoard.
EXTRAS = {
    "map": ["plotly==7.1.0"],
    "app": ["streamlit==1.67.0", "plotly==7.1.0"],
    "serve": ["starlette==1.10.0", "uvicorn==0.54.0"],
    "evaluate": ["matplotlib==3.11.2"],
    "demo": ["tqdm==4.70.1"],
    "mpd": ["python-mpd2==3.1.1"],
    "subsonic": ["httpx==0.28.1"],  # wavelist subsonic: playlists into a Subsonic server
    "train": ["tensorboard==2.21.0"],
    "test": ["pytest==9.2.0", "hypothesis==6.170.17", "httpx==0.28.1", "duckdb==2.0.1", "tfrecord==1.14.6",
             "google-cloud-storage==3.17.1", "gcp-storage-emulator==2026.7.19",
             # the OpenSubsonic client and the spec's schemas for wavelist serve; a Subsonic server for wavelist subsonic
             "py-opensonic==10.4.1", "jsonschema==4.26.0", "referencing==0.37.0", "supysonic==0.7.9", "waitress==3.0.2",
             "psutil==7.2.2"],  # psutil: benchmarks/library.py
}
EXTRAS["all"] = sorted({pin for name, pins in EXTRAS.items() if name != "test" for pin in pins})

setuptools.setup(
    name="wavelist",
    version="0.1.0",
    description="Playlists built from the sound of the music itself",
    long_description=Path(__file__).with_name("README.md").read_text() if Path("README.md").exists() else "",
    packages=setuptools.find_packages(include=["schemas*", "storage*", "core*", "beam_jobs*", "model*", "playlists*", "wavelist*"]),
    python_requires=">=3.11",
    install_requires=REQUIREMENTS,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["wavelist=wavelist.cli:main"]},
)
