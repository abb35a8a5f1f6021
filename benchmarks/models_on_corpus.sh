#!/bin/bash
# Train every model kind on an FMA-layout corpus and compare them with `wavelist evaluate` (issue 4).
# usage: benchmarks/models_on_corpus.sh CORPUS WORKDIR
set -euo pipefail
corpus=$1; work=$2
W="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/wavelist"
mkdir -p "$work" && cd "$work"
$W ingest --fma-metadata "$corpus/fma_metadata" --audio-dir "$corpus/audio" --out data --overwrite
for kind in features cnn autoencoder; do
  $W train --data data --out models/$kind --model $kind --verbose 0 --overwrite
done
$W train --data data --out models/contrastive --model contrastive --epochs 10 --verbose 2 --overwrite
$W train --data data --out models/cnn_pretrained --model cnn --init-from models/contrastive \
  --learning-rate 3e-4 --patience 10 --epochs 40 --verbose 2 --overwrite
$W evaluate --data data --models models/cnn models/cnn_pretrained models/features models/contrastive \
  models/autoencoder --out report
