#!/usr/bin/env bash
# The paper's test setting on the Composition-1k test composites: the whole image, longer side up to 1600
# (the older script's setting); the checkpoint's stage picks the encoder-decoder or the refined alpha.
# Scores against the ground truth when $DATA/test/alpha exists.
#
#   bash deploy.sh [more deploy.py flags]       e.g. bash deploy.sh --stage 1, bash deploy.sh --device cpu
#
# Environment: DATA (composite folder, as in train.sh; its test/ holds image/, trimap/, alpha/),
# CKPT (checkpoint), OUT (where mattes go, default results/<checkpoint folder>).
set -euo pipefail
cd "$(dirname "$0")"

DATA=${DATA:-data/comp1k}
CKPT=${CKPT:-runs/stage3/best.pth}
OUT=${OUT:-results/$(basename "$(dirname "$CKPT")")}
PYTHON=${PYTHON:-python}

alpha=()
[ -d "$DATA/test/alpha" ] && alpha=(--alpha_dir "$DATA/test/alpha")

exec "$PYTHON" deploy.py \
  --img_dir "$DATA/test/image" \
  --trimap_dir "$DATA/test/trimap" \
  ${alpha[@]+"${alpha[@]}"} \
  --resume "$CKPT" \
  --save_dir "$OUT" \
  --crop_or_resize whole \
  --max_size 1600 \
  "$@"
