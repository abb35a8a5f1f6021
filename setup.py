"""wavelist: installs the packages and the ``wavelist`` command; Dataflow workers get the code through
``--setup_file ./setup.py``."""
from pathlib import Path

import setuptools

REQUIREMENTS = [
    "apache-beam[gcp]==2.77.0",
    "librosa==0.11.0",
    "numpy==2.4.6",
    "tensorflow-cpu==2.21.0",
    "tensorboard==2.21.0",
    "keras==3.15.1",
    "protobuf==6.33.6",
    "tfrecord==1.14.6",
    "scikit-learn==1.9.1",
    "google-cloud-storage==3.17.1",
    "pyarrow==25.0.1",
    "soundfile==0.14.0",
    "soxr==1.1.0",
    "pandas==3.1.1",
    "plotly==7.1.0",
    "tqdm==4.70.1",
    "faiss-cpu==1.15.1",
    "matplotlib==3.11.2",
    "streamlit==1.67.0",
    "threadpoolctl==3.8.0",
    "starlette==1.10.0",
    "uvicorn==0.54.0",
]

setuptools.setup(
    name="wavelist",
    version="0.1.0",
    description="Playlists built from the sound of the music itself",
    long_description=Path(__file__).with_name("README.md").read_text() if Path("README.md").exists() else "",
    packages=setuptools.find_packages(include=["core*", "beam_jobs*", "model*", "schemas*", "playlists*", "wavelist*"]),
    python_requires=">=3.11",
    install_requires=REQUIREMENTS,
    extras_require={"test": ["pytest==9.2.0", "hypothesis==6.170.17", "httpx==0.28.1", "duckdb==2.0.1"]},
    entry_points={"console_scripts": ["wavelist=wavelist.cli:main"]},
)
