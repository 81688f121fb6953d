"""Correspondence classifiers (kNN, EMD-Corr, CHM-Corr mutual-NN / oracle) vs ConceptCNN, in
distribution and under a world shift (a factor range unseen in training).

    PYTHONPATH=. python benchmarks/correspondence_shift.py --out runs/correspondence_shift.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from img2tab.explainers._correspondence_eval import world_shift_experiment
from img2tab.explainers.correspondence import (
    CHMCorrClassifier,
    EMDCorrClassifier,
    FaceGeometry,
    KNNClassifier,
)


def make_classifiers(cnn, train, tests):
    geo = FaceGeometry().register(train.images, train.factors)
    for t in tests:
        geo.register(t.images, t.factors)
    return {
        "knn": KNNClassifier(cnn.pooled, maps=cnn.features),
        "emd-corr": EMDCorrClassifier(cnn),
        "chm-corr-mnn": CHMCorrClassifier(cnn, matcher="mutual-nn"),
        "chm-corr-oracle": CHMCorrClassifier(cnn, matcher="oracle", geometry=geo),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-test", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--factor", default="hair_color")
    ap.add_argument("--train-values", type=float, nargs="+", default=[0, 1])
    ap.add_argument("--shift-values", type=float, nargs="+", default=[2, 3])
    ap.add_argument("--out", default="runs/correspondence_shift.json")
    ap.add_argument("--figures", default=None, help="folder for explanation figures")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    t0 = time.time()
    res = world_shift_experiment(make_classifiers, n_train=args.n_train, n_test=args.n_test, seed=args.seed,
                                 factor=args.factor, train_values=args.train_values,
                                 shift_values=args.shift_values, figures_dir=args.figures)
    res["wall_s"] = time.time() - t0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out.parent, delete=False, suffix=".tmp") as f:
        json.dump(res, f, indent=2)
    os.replace(f.name, out)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
