"""Export for TensorFlow's Embedding Projector (TensorBoard's projector plugin or the standalone page)."""
from __future__ import annotations

import io
import json

import numpy as np

from playlists.tables import Tables
from playlists.text import for_terminal
from storage import files

METADATA_COLUMNS = ("track_id", "title", "artist", "genre")


def _cell(value: object) -> str:
    """A metadata cell: tabs and line breaks would split the row, so they become spaces; terminal escapes,
    control and bidirectional characters are left out (the file is data that people also print)."""
    return " ".join(for_terminal("" if value is None else value).split())


def write_projector(tables: Tables, out: str, name: str = "wavelist") -> str:
    """Write ``vectors.tsv`` (one tab-separated vector per line), ``metadata.tsv`` (a header line, then one
    line per track in the same order), ``projector_config.pbtxt`` (TensorBoard: ``--logdir OUT``) and
    ``projector_config.json`` (the standalone projector's config) into the folder ``out`` (local or remote)."""
    out = str(out)
    vectors = io.BytesIO()
    np.savetxt(vectors, tables.vectors, fmt="%.6f", delimiter="\t")
    files.write_bytes(files.join(out, "vectors.tsv"), vectors.getvalue())
    columns = [[str(int(i)) for i in tables.ids]] + [[_cell(v) for v in tables.column(c)] for c in METADATA_COLUMNS[1:]]
    lines = ["\t".join(METADATA_COLUMNS)] + ["\t".join(row) for row in zip(*columns)]
    files.write_text(files.join(out, "metadata.tsv"), "\n".join(lines) + "\n")
    files.write_text(files.join(out, "projector_config.pbtxt"), f'embeddings {{\n  tensor_name: "{name}"\n'
                     '  tensor_path: "vectors.tsv"\n  metadata_path: "metadata.tsv"\n}\n')
    config = {"embeddings": [{"tensorName": name, "tensorShape": list(tables.vectors.shape),
                              "tensorPath": "vectors.tsv", "metadataPath": "metadata.tsv"}]}
    files.write_text(files.join(out, "projector_config.json"), json.dumps(config, indent=2) + "\n")
    return out
