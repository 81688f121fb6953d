#!/usr/bin/env bash
# Reproduce the embedded default model (pretrained_models/default/) on a 2-core CPU:
# generator 64 px, encoder input 32 px, 8,000 steps.
#   bash scripts/train_default.sh            # train (resumes if runs/default64 exists), export, evaluate
#   SIZE=32 bash scripts/train_default.sh    # the earlier 32 px default: 10,000 steps, written to runs/
# Training is resumable: rerun the same command after an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SIZE=${SIZE:-64}
case "$SIZE" in
  64) ARCH=(--steps 8000 --size 64 --input-size 32 --channels 4:256,8:256,16:128,32:64,64:32 --adv-start 4800)
      DEFAULT_OUT=pretrained_models/default/img2tab_world64_e4e.pt ;;
  32) ARCH=(--steps 10000 --size 32 --channels 4:256,8:256,16:128,32:64 --adv-start 6000)
      DEFAULT_OUT=runs/default32/img2tab_world32_e4e.pt ;;
  *) echo "SIZE must be 64 or 32, got $SIZE" >&2; exit 2 ;;
esac
RUN=${RUN:-runs/default$SIZE}
OUT=${OUT:-$DEFAULT_OUT}

RESUME=()
if [ -d "$RUN/checkpoints" ]; then RESUME=(--resume); fi
"$PY" -m img2tab.cli train-autoencoder --data world:50000:0 --out "$RUN" --batch 32 "${ARCH[@]}" \
  --style-dim 128 --widths 32,48,64,128 --units 1,2,2,1 --stem 32 --lr 2e-3 --lr-decay-start 0.6 \
  --adv-lambda 0.01 --adv-every 4 --threads 2 --save-every 500 --sample-every 1000 --log-every 100 \
  --no-progress "${RESUME[@]}"

# export the EMA inverter in the official e4e layout, half precision (loads as float32)
"$PY" - "$RUN/inverter.pt" "$OUT" "$SIZE" <<'PYEOF'
import sys
import torch
import img2tab
inv = img2tab.load_inverter(sys.argv[1])
img2tab.save_e4e(inv, sys.argv[2], opts={"dataset_type": f"concept_world_{sys.argv[3]}",
                                         "recipe": "scripts/train_default.sh"}, dtype=torch.float16)
print("wrote", sys.argv[2])
PYEOF

"$PY" -m img2tab.cli evaluate --model "$OUT" --out "runs/default${SIZE}_eval"
