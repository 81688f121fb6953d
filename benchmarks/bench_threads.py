"""Training-step time of ``train-autoencoder`` with 1 vs 2 torch threads on this machine.

Runs blocks of ``--steps`` autoencoder steps (the 32 px own-data architecture, batch 32) in one
process, alternating the thread count block by block (1, 2, 1, 2, ...) so that both see the same
background load, and records per block the wall and process CPU seconds per step and the load
average. Writes JSON.

Usage::

    python benchmarks/bench_threads.py --data datasets/digits/train \\
        --out benchmarks/results/recipe_threads.json
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

from img2tab._atomic import atomic_write_json
from img2tab.training.autoencoder import AutoencoderTrainConfig, AutoencoderTrainer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="training image folder")
    p.add_argument("--out", required=True, help="JSON output")
    p.add_argument("--steps", type=int, default=15, help="steps per block (default 15)")
    p.add_argument("--rounds", type=int, default=2, help="blocks per thread count (default 2)")
    p.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    args = p.parse_args(argv)
    counts = [int(t) for t in args.threads.split(",")]
    cfg = AutoencoderTrainConfig(size=32, channels=((4, 256), (8, 256), (16, 128), (32, 64)),
                                 batch=32, steps=10**6, adv_start=0, adv_every=4, adv_lambda=0.01,
                                 progress=False, sample_every=0, save_every=0, log_every=10**6)
    blocks = []
    with tempfile.TemporaryDirectory() as tmp:
        tr = AutoencoderTrainer(cfg, args.data, tmp)
        tr.train_step()  # warm-up
        for r in range(args.rounds):
            for t in counts:
                torch.set_num_threads(t)
                load0 = os.getloadavg()[0]
                w0, c0 = time.perf_counter(), time.process_time()
                for _ in range(args.steps):
                    tr.train_step()
                wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                blocks.append({"round": r, "threads": t, "steps": args.steps,
                               "wall_s_per_step": wall / args.steps,
                               "cpu_s_per_step": cpu / args.steps,
                               "loadavg_1min_before": load0})
                print(blocks[-1], file=sys.stderr)
    summary = {str(t): {"wall_s_per_step": float(np.mean([b["wall_s_per_step"] for b in blocks
                                                           if b["threads"] == t])),
                        "cpu_s_per_step": float(np.mean([b["cpu_s_per_step"] for b in blocks
                                                          if b["threads"] == t]))}
               for t in counts}
    atomic_write_json(args.out, {"cpu_count": os.cpu_count(), "torch": torch.__version__,
                                 "blocks": blocks, "summary": summary,
                                 "command": "python benchmarks/bench_threads.py "
                                            + " ".join(argv or sys.argv[1:])})
    print(summary, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
