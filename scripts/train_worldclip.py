"""Train WorldCLIP (img2tab.explainers.image_text) and write its weights, config and held-out metrics.

Usage (from the repository root; 26.5 minutes measured on one CPU thread of a loaded, shared machine):

    OMP_NUM_THREADS=1 python scripts/train_worldclip.py --out pretrained_models/worldclip \
        --steps 900 --input-size 40
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import torch

from img2tab.explainers.image_text import WorldCLIPConfig, evaluate_worldclip, train_worldclip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="pretrained_models/worldclip")
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--n-pool", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--input-size", type=int, default=40)
    parser.add_argument("--eval-n", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = WorldCLIPConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        n_pool=args.n_pool,
        seed=args.seed,
        input_size=args.input_size,
    )
    t0 = time.time()
    model = train_worldclip(cfg, checkpoint_dir=args.out, progress=False)
    train_s = time.time() - t0
    metrics = evaluate_worldclip(model, n=args.eval_n)
    metrics["train_seconds"] = round(train_s, 1)
    metrics["logit_scale"] = model.logit_scale
    metrics["command"] = (
        f"OMP_NUM_THREADS=1 python scripts/train_worldclip.py --out {args.out} --steps {args.steps} "
        f"--batch-size {args.batch_size} --n-pool {args.n_pool} --seed {args.seed} --eval-n {args.eval_n} "
        f"--input-size {args.input_size}"
    )
    model.save(args.out, {"steps_done": args.steps, "metrics": metrics})
    out = Path(args.out) / "metrics.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(metrics, indent=1) + "\n")
    os.replace(tmp, out)
    logging.info("done: %s", json.dumps(metrics))


if __name__ == "__main__":
    main()
