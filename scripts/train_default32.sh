#!/usr/bin/env bash
# The earlier 32 px default (shipped until the 64 px model replaced it): same recipe at 32 px,
# 10,000 steps.
#   bash scripts/train_default32.sh          # train (resumes if runs/default32 exists), export, evaluate
# Training is resumable: rerun the same command after an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RUN=${RUN:-runs/default32}
OUT=${OUT:-runs/default32/img2tab_world32_e4e.pt}

RESUME=()
if [ -d "$RUN/checkpoints" ]; then RESUME=(--resume); fi
"$PY" -m img2tab.cli train-autoencoder --data world:50000:0 --out "$RUN" --steps 10000 --batch 32 \
  --size 32 --style-dim 128 --channels 4:256,8:256,16:128,32:64 --widths 32,48,64,128 \
  --units 1,2,2,1 --stem 32 --lr 2e-3 --lr-decay-start 0.6 --adv-lambda 0.01 --adv-start 6000 \
  --adv-every 4 --threads 2 --save-every 500 --sample-every 1000 --log-every 100 --no-progress \
  "${RESUME[@]}"

# export the EMA inverter in the official e4e layout, half precision (loads as float32)
"$PY" - "$RUN/inverter.pt" "$OUT" <<'PYEOF'
import sys
import torch
import img2tab
inv = img2tab.load_inverter(sys.argv[1])
img2tab.save_e4e(inv, sys.argv[2], opts={"dataset_type": "concept_world_32", "recipe": "scripts/train_default.sh"},
                 dtype=torch.float16)
print("wrote", sys.argv[2])
PYEOF

"$PY" -m img2tab.cli evaluate --model "$OUT" --out runs/default32_eval
