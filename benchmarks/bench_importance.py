"""Which importance ranks class-relevant concepts first? (embedded default model, or ``--model``)

XGBoost on Ψ of the concept world's smile task; for each XGBoost importance type and for held-out
permutation importance (the comparable one across model families, as ``compare_classifiers`` uses
it), the mean W1 of the 20 top-ranked concepts (higher = the ranking puts class-relevant concepts
first), compared with the 20 highest-W1 concepts and the average concept. Also times the
permutation importance of ``compare_classifiers`` at the demo's sizes.

    python benchmarks/bench_importance.py            # 3,000 training images
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from _model import add_model_argument, load_model

from img2tab.tabular import (
    ConceptClassifier,
    held_out_permutation_importance,
    importance_vector,
    wasserstein_relevance,
)
from img2tab.world import make_task

TYPES = (None, "gain", "total_gain", "weight", "cover", "total_cover")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--seed", type=int, default=4000)
    p.add_argument("--candidates", type=int, nargs="+", default=[50, 100],
                   help="candidate counts of the restricted permutation importance")
    p.add_argument("--out", default=None, help="also write the rows as JSON here")
    add_model_argument(p)
    args = p.parse_args()
    inv, record = load_model(args.model)
    print(f"model {record['model']} sha256 {record['sha256']}")
    size = inv.generator.size
    task = make_task(args.n, seed=args.seed, size=size)
    test = make_task(args.n_test, seed=args.seed + 1, size=size)
    psi, _ = inv.encode_psi(task.to_tensor(), batch_size=128, with_w=False)
    psi_te, _ = inv.encode_psi(test.to_tensor(), batch_size=128, with_w=False)
    w1 = np.asarray(wasserstein_relevance(psi, task.y))
    clf = ConceptClassifier(random_state=0, params={"n_estimators": 150, "max_depth": 6}).fit(psi, task.y)
    rows = []
    for kind in TYPES:
        imp = importance_vector(clf, kind)
        rows.append((("None (feature_importances_, the paper's average gain)" if kind is None else kind),
                     imp, None))
    for m in args.candidates:
        native = importance_vector(clf, "total_gain")
        cand = np.unique(np.concatenate([np.argsort(-native, kind="stable")[:m],
                                         np.argsort(-w1, kind="stable")[:m]]))
        t = time.perf_counter()
        imp = held_out_permutation_importance(clf, psi_te, test.y, candidates=cand, n_repeats=3)
        rows.append((f"permutation, held out ({cand.size} candidates, 3 repeats)", imp,
                     time.perf_counter() - t))
    print()
    print(f"| importance | mean W1 of top {args.top} | concepts with non-zero importance | seconds |")
    print("|---|---:|---:|---:|")
    out = []
    for label, imp, sec in rows:
        top = np.argsort(-imp, kind="stable")[: args.top]
        secs = "" if sec is None else f"{sec:.1f}"
        print(f"| {label} | {w1[top].mean():.3f} | {int((imp != 0).sum())} | {secs} |")
        out.append({"importance": label, "w1_top": float(w1[top].mean()), "n_nonzero": int((imp != 0).sum()),
                    "seconds": sec})
    print(f"| (the {args.top} highest-W1 concepts) | {np.sort(w1)[-args.top:].mean():.3f} | | |")
    print(f"| (all concepts) | {w1.mean():.3f} | | |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({**record, "command": "python " + " ".join(sys.argv), "rows": out,
                       "w1_best": float(np.sort(w1)[-args.top:].mean()), "w1_all": float(w1.mean())},
                      f, indent=2)


if __name__ == "__main__":
    main()
