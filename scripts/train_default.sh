#!/usr/bin/env bash
# Reproduce the embedded default model (pretrained_models/default/) on a 2-core CPU:
# generator 64 px, encoder input 32 px, 8,000 steps.
#   bash scripts/train_default.sh            # train (resumes if runs/default64 exists), export, evaluate
# Training is resumable: rerun the same command after an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RUN=${RUN:-runs/default64}
OUT=${OUT:-pretrained_models/default/img2tab_world64_e4e.pt}

RESUME=()
if [ -d "$RUN/checkpoints" ]; then RESUME=(--resume); fi
"$PY" -m img2tab.cli train-autoencoder --data world:50000:0 --out "$RUN" --steps 8000 --batch 32 \
  --size 64 --input-size 32 --style-dim 128 --channels 4:256,8:256,16:128,32:64,64:32 --widths 32,48,64,128 \
  --units 1,2,2,1 --stem 32 --lr 2e-3 --lr-decay-start 0.6 --adv-lambda 0.01 --adv-start 4800 \
  --adv-every 4 --threads 2 --save-every 500 --sample-every 1000 --log-every 100 --no-progress \
  "${RESUME[@]}"

# export the EMA inverter in the official e4e layout, half precision (loads as float32)
"$PY" - "$RUN/inverter.pt" "$OUT" <<'PYEOF'
import sys
import torch
import img2tab
inv = img2tab.load_inverter(sys.argv[1])
img2tab.save_e4e(inv, sys.argv[2], opts={"dataset_type": "concept_world_64", "recipe": "scripts/train_default.sh"},
                 dtype=torch.float16)
print("wrote", sys.argv[2])
PYEOF

"$PY" -m img2tab.cli evaluate --model "$OUT" --out runs/default64_eval
