#!/usr/bin/env bash
# Train DIM on composites made by tools/composite.py: stage 1 from VGG-16 weights, stage 2 from the
# best stage-1 checkpoint, stage 3 from the best stage-2 checkpoint.
#
#   bash train.sh [all|0|1|2|3] [more train.py flags]
#
# Environment: DATA (composite folder, default data/comp1k), VGG (tools/chg_model.py output),
# RUNS (where stage folders go), NGPU (processes for torchrun; 1 runs plain python).
set -euo pipefail
cd "$(dirname "$0")"

WHICH=${1:-all}
[ $# -gt 0 ] && shift
DATA=${DATA:-data/comp1k}
VGG=${VGG:-pretrained/vgg16_dim.pth}
RUNS=${RUNS:-runs}
NGPU=${NGPU:-1}
PYTHON=${PYTHON:-python}

if [ "$NGPU" -gt 1 ]; then
  launch=(torchrun --standalone --nproc_per_node="$NGPU" train.py)
else
  launch=("$PYTHON" train.py)
fi

run_stage() {  # stage, starting weights, extra flags
  local stage=$1 start=$2
  shift 2
  echo "== stage $stage from $start"
  "${launch[@]}" --stage "$stage" --imgDir "$DATA/train" --pretrain "$start" \
    --saveDir "$RUNS/stage$stage" "$@"
}

case "$WHICH" in
  0|1) run_stage "$WHICH" "$VGG" "$@" ;;
  2) run_stage 2 "$RUNS/stage1/best.pth" "$@" ;;
  3) run_stage 3 "$RUNS/stage2/best.pth" "$@" ;;
  all)
    run_stage 1 "$VGG" "$@"
    run_stage 2 "$RUNS/stage1/best.pth" "$@"
    run_stage 3 "$RUNS/stage2/best.pth" "$@"
    ;;
  *) echo "usage: bash train.sh [all|0|1|2|3] [train.py flags]" >&2; exit 2 ;;
esac
