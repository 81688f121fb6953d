"""Which XGBoost importance type ranks class-relevant concepts first? (embedded default model)

XGBoost on Ψ of the concept world's smile task; for each importance type, the mean W1 of the 20
top-ranked concepts (higher = the ranking puts class-relevant concepts first), compared with the
20 highest-W1 concepts and the average concept.

    python benchmarks/bench_importance.py            # 3,000 training images, ~1 min on 2 cores
"""

from __future__ import annotations

import argparse

import numpy as np

import img2tab
from img2tab.tabular import ConceptClassifier, importance_vector, wasserstein_relevance
from img2tab.world import make_task

TYPES = (None, "gain", "total_gain", "weight", "cover", "total_cover")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--seed", type=int, default=4000)
    args = p.parse_args()
    inv = img2tab.load_default()
    task = make_task(args.n, seed=args.seed, size=inv.generator.size)
    psi, _ = inv.encode_psi(task.to_tensor(), batch_size=128, with_w=False)
    w1 = np.asarray(wasserstein_relevance(psi, task.y))
    clf = ConceptClassifier(random_state=0, params={"n_estimators": 150, "max_depth": 6}).fit(psi, task.y)
    print(f"| importance_type | mean W1 of top {args.top} | concepts used |")
    print("|---|---:|---:|")
    for kind in TYPES:
        imp = importance_vector(clf, kind)
        top = np.argsort(-imp, kind="stable")[: args.top]
        label = "None (feature_importances_)" if kind is None else kind
        print(f"| {label} | {w1[top].mean():.3f} | {int((imp > 0).sum())} |")
    print(f"| (the {args.top} highest-W1 concepts) | {np.sort(w1)[-args.top:].mean():.3f} | |")
    print(f"| (all concepts) | {w1.mean():.3f} | |")


if __name__ == "__main__":
    main()
