#!/usr/bin/env bash
# Continues training the embedded default codec: one command, on a CPU or a GPU.
#   bash scripts/train_default.sh [--max-minutes 120] [--device cuda] [--set batch_size=64] ...
#   CORPUS=data/corpus_compact bash scripts/train_default.sh ...   # another corpus (default data/corpus)
# Builds the corpus if it is missing (scripts/build_corpus.py), resumes runs/default/checkpoint.pt if there is one,
# otherwise starts from the committed weights (codec/weights/default.safetensors; fresh optimiser state), and exports
# the result back to codec/weights/default.safetensors when it stops. The settings are the ones the committed weights
# were trained with (see codec/weights/MODEL_CARD.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
CORPUS=${CORPUS:-data/corpus}
[ -f "$CORPUS/manifest.csv" ] || $PY scripts/build_corpus.py --out data/corpus --compact data/corpus_compact
init=()
if [ ! -f runs/default/checkpoint.pt ] && [ -f codec/weights/default.safetensors ]; then
  init=(--init codec/weights/default.safetensors)
fi
exec $PY -m codec train "$CORPUS" --out runs/default "${init[@]}" \
  --set lr=0.0005 --set 'betas=[0.8,0.9]' --set valid_every=250 --set valid_clips=8 --set checkpoint_every=50 \
  --set adv_start_step=4000 --export codec/weights/default.safetensors "$@"
