#!/usr/bin/env bash
# The whole pipeline on generated data, 9 to 18 minutes on 2 CPU cores with bf16 units, 26 to 40 in fp32 without
# (a GPU is used when present):
# synthesize a dataset, composite it, train stages 1, 2 and 3 from scratch, deploy on the test split, then
# print the metrics next to the trivial baseline and draw results/demo.png.
#
# DEMO_SCALE=4 DEMO_LR=2e-4 bash demo.sh is the README's long recipe (about 35 minutes on 2 cores): four times
# the steps on four times the foregrounds (validation stopped improving after about 15 epochs of the demo's 64),
# with a lower peak learning rate for stage 1 (at 3e-4 the long run's loss jumped at step 900 and stayed up).
# No VGG-16 weights can be downloaded here, so the network starts from He init with the skip variant, which
# learned faster from scratch (README, "Training from scratch").
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python}
SCALE=${DEMO_SCALE:-1}
LR=${DEMO_LR:-3e-4}  # stage 1's peak learning rate
DATA=${DEMO_DATA:-data/demo}
RUNS=${DEMO_RUNS:-runs/demo}
OUT=${DEMO_OUT:-results/demo}
# 160-pixel crops (crops of 160/240/320 resized to 160) keep a CPU step well under half a second.
# Each stage warms its learning rate up and ends it on a half cosine (README, "Training from scratch").
TRAIN=(--imgDir "$DATA/train" --size_h 160 --size_w 160 --crop_h 160,240,320 --init he --skip --cosine
       --val_fraction 0.1 --val_per_fg 1 --workers 1 --print_freq 100 --test_freq 2)

start=$SECONDS
echo "== 1/5 synthesize a matting dataset into $DATA/source"
"$PYTHON" tools/synthesize.py --out "$DATA/source" --seed 0 --num_train_fg $((64 * SCALE))

echo "== 2/5 composite it (the Composition-1k rule)"
"$PYTHON" tools/composite.py --fg_dir "$DATA/source/train/fg" --alpha_dir "$DATA/source/train/alpha" \
  --bg_dir "$DATA/source/train/bg" --fg_names "$DATA/source/train/fg_names.txt" \
  --bg_names "$DATA/source/train/bg_names.txt" --num_bg 4 --out_dir "$DATA/train"
"$PYTHON" tools/composite.py --fg_dir "$DATA/source/test/fg" --alpha_dir "$DATA/source/test/alpha" \
  --bg_dir "$DATA/source/test/bg" --fg_names "$DATA/source/test/fg_names.txt" \
  --bg_names "$DATA/source/test/bg_names.txt" --num_bg 2 --trimap_dir "$DATA/source/test/trimap" \
  --out_dir "$DATA/test"

echo "== 3/5 train stage 1, then 2, then 3"
"$PYTHON" train.py --stage 1 "${TRAIN[@]}" --lr "$LR" --warmup 200 --max_iters $((2000 * SCALE)) \
  --saveDir "$RUNS/stage1"
"$PYTHON" train.py --stage 2 "${TRAIN[@]}" --lr 3e-4 --warmup 50 --max_iters $((200 * SCALE)) \
  --pretrain "$RUNS/stage1/best.pth" --saveDir "$RUNS/stage2"
"$PYTHON" train.py --stage 3 "${TRAIN[@]}" --lr 1e-4 --warmup 50 --max_iters $((300 * SCALE)) \
  --pretrain "$RUNS/stage2/best.pth" --saveDir "$RUNS/stage3"
for stage in 1 2 3; do
  "$PYTHON" -c "import sys, torch; print(f'stage {sys.argv[1]}: best validation SAD', round(torch.load(sys.argv[2],
    weights_only=True)['best_sad'], 2))" $stage "$RUNS/stage$stage/best.pth"
done

echo "== 4/5 deploy the best stage-3 checkpoint on the test split (whole image)"
"$PYTHON" deploy.py --imgDir "$DATA/test/image" --trimapDir "$DATA/test/trimap" \
  --resume "$RUNS/stage3/best.pth" --saveDir "$OUT"

echo "== 5/5 score against the ground truth, next to the trivial baseline"
"$PYTHON" tools/report.py --pred_dir "$OUT" --img_dir "$DATA/test/image" --trimap_dir "$DATA/test/trimap" \
  --alpha_dir "$DATA/test/alpha" --picture "$OUT.png"
echo "demo finished in $((SECONDS - start)) s"
