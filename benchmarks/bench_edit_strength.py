"""Edit strength of the top concepts on the concept world (embedded default model, or ``--model``).

Fits Img2Tab (XGBoost on Ψ) to a binary world task, takes the top-k W1 concepts, the top-k
total-gain concepts and k random concepts (the control), and measures
:func:`img2tab.measure_edit_strength` on held-out images at each strength, in units of the
training Ψ's standard deviation ("sd") and of its 1-99 % range ("range"). Writes one JSON.

    python benchmarks/bench_edit_strength.py --out benchmarks/results/edit_strength_world.json
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from _model import add_model_argument, load_model

import img2tab
from img2tab._atomic import atomic_write_json
from img2tab.edit_strength import class_directions, concept_groups, measure_edit_strength, psi_scale
from img2tab.world import make_task


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="smile", help="class factor of the world task")
    p.add_argument("--n", type=int, default=1000, help="training images")
    p.add_argument("--n-test", type=int, default=40, help="images edited")
    p.add_argument("--top", type=int, default=5, help="concepts per group")
    p.add_argument("--strengths", type=float, nargs="+", default=[3.0, 10.0])
    p.add_argument("--scales", nargs="+", default=["sd", "range"], choices=["sd", "range"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    add_model_argument(p)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    inv, record = load_model(args.model)
    size = inv.generator.size
    train = make_task(args.n, seed=args.seed, size=size, class_factor=args.task)
    test = make_task(args.n_test, seed=args.seed + 1, size=size, class_factor=args.task)
    psi_tr, _ = inv.encode_psi(train.to_tensor(), batch_size=64, with_w=False)
    model = img2tab.Img2Tab(inv, progress=False).fit(psi_tr, train.y)
    imp = np.asarray(model.classifier_.importance("total_gain"))
    groups = concept_groups(np.asarray(model.w1_), imp, top_k=args.top, n_random=args.top, seed=args.seed)
    directions = class_directions(psi_tr, train.y)
    psi_te, _ = inv.encode_psi(test.to_tensor(), batch_size=64, with_w=False)
    acc = float((model.classifier_.predict(psi_te) == test.y).mean())
    runs = []
    for kind in args.scales:
        unit = psi_scale(psi_tr, kind)
        for lam in args.strengths:
            res = measure_edit_strength(inv, test.to_tensor(), model.classifier_, groups, scale=unit,
                                        strength=lam, psi=psi_te, directions=directions, progress=False)
            d = res.to_dict()
            d["scale"] = kind
            runs.append(d)
            print(f"--- {kind} x {lam:g}\n{res.markdown()}", flush=True)
    out = {**record, "task": args.task, "n_train": args.n, "n_test": args.n_test,
           "test_accuracy": acc, "groups": groups, "runs": runs,
           "seconds": round(time.perf_counter() - t0, 1), "threads": args.threads,
           "command": "python benchmarks/bench_edit_strength.py " + " ".join(sys.argv[1:])}
    atomic_write_json(args.out, out)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
