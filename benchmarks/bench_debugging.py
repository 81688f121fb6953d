"""Spurious-concept debugging across tasks of the concept world, with the embedded default model.

For each (class factor, nuisance factor, training size) the nuisance agrees with the class in 90 %
of the training images. Reported per task: accuracy before debugging, after the fixed default
flagging, after ``tune_spurious_exclusion``, and the ceiling (the same classifier trained on an
unbiased split of equal size), on the decorrelated test split (plus its worst group) and on an
in-distribution test split.

    python benchmarks/bench_debugging.py                 # the grid in RESULTS.md (~5 min, 2 cores)
    python benchmarks/bench_debugging.py --tasks smile:background_hue:4000 --out dbg.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import img2tab
from img2tab.world.evaluation import debug_summary, debugging_markdown, spurious_debugging

GRID = (
    "smile:background_hue:4000",
    "smile:background_hue:1000",
    "smile:glasses:4000",
    "eye_size:background_hue:4000",
    "eye_size:background_hue:1000",
    "eye_size:glasses:1000",
    "face_width:background_hue:4000",
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=list(GRID), help="class:nuisance:n_train entries")
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--seed", type=int, default=3000)
    p.add_argument("--out", default=None, help="also write the results as JSON here")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    inv = img2tab.load_default()
    results = []
    for i, task in enumerate(args.tasks):
        factor, nuisance, n = task.split(":")
        t = time.perf_counter()
        dbg = spurious_debugging(inv, inv.generator.size, int(n), args.n_test, 0.9, seed=args.seed + 10 * i,
                                 class_factor=factor, spurious=nuisance)
        results.append(debug_summary(dbg, inv.layout))
        print(f"{task}: {time.perf_counter() - t:.0f} s", flush=True)
    print("\n".join(debugging_markdown(results)))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
