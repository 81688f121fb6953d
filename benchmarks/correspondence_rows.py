"""Benchmark rows of the correspondence classifiers on the benchmark's own contexts: accuracy on the
decorrelated test split beside ConceptCNN's (and XGBoost-Ψ's), CPU seconds, and one pass of the
protocol (concept scores, evidence, top-3 intervention) on ``n_eval`` test images.

    PYTHONPATH=. python benchmarks/correspondence_rows.py --quick --out runs/correspondence_rows.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from img2tab.explainers._correspondence_eval import correspondence_explainers
from img2tab.world.benchmark import make_context


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tasks", nargs="+", default=["unbiased", "biased"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", nargs="+", default=None)
    ap.add_argument("--out", default="runs/correspondence_rows.json")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    factories = correspondence_explainers(args.quick)
    methods = args.methods or list(factories)
    rows = []
    for task in args.tasks:
        ctx = make_context(task, args.seed, quick=args.quick, progress=False)
        x_tr, x_te, y_te = ctx.train.to_tensor(), ctx.test.to_tensor(), ctx.test.y
        t0 = time.process_time()
        cnn = ctx.concept_cnn
        cnn_acc = float(np.mean((cnn.predict_logit(x_te) > 0).astype(int) == y_te))
        rows.append({"task": task, "method": "concept-cnn", "accuracy": cnn_acc,
                     "cpu_s": time.process_time() - t0})
        xgb_acc = float(np.mean(ctx.psi_classifier.predict(ctx.psi_test) == y_te))
        rows.append({"task": task, "method": "xgboost-psi", "accuracy": xgb_acc, "cpu_s": None})
        n_eval = ctx.sizes.n_eval
        for name in methods:
            t0 = time.process_time()
            exp = factories[name](ctx).fit(x_tr, ctx.train.y)
            t_fit = time.process_time() - t0
            pred = exp.predict(x_te)
            t_pred = time.process_time() - t0 - t_fit
            acc = float(np.mean(pred == y_te))
            t1 = time.process_time()
            xe = x_te[:n_eval]
            scores = exp.concept_scores(xe)
            ev = exp.evidence(xe)
            iv = exp.intervene(xe, range(min(3, len(exp.concepts_))))
            t_proto = time.process_time() - t1
            row = {"task": task, "method": name, "accuracy": acc, "cpu_s": t_fit + t_pred,
                   "fit_cpu_s": t_fit, "predict_cpu_s": t_pred, "protocol_cpu_s": t_proto,
                   "n_test": len(y_te), "n_eval": n_eval, "concepts": len(exp.concepts_),
                   "score_shape": list(scores.shape),
                   "top3_flip_rate": float(np.mean(iv.flipped)),
                   "evidence": ev is not None}
            if ev is not None:
                from img2tab.world.groundtruth import factor_masks

                masks = factor_masks({k: v[:n_eval] for k, v in ctx.test.factors.items()}, x_te.shape[-1],
                                     factors_to_mask=[ctx.test.class_factor])
                cls_mask = masks[ctx.test.class_factor]
                row["evidence_in_class_mask"] = float((ev * cls_mask).sum() / max(ev.sum(), 1e-12))
                row["class_mask_area"] = float(cls_mask.mean())
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out.parent, delete=False, suffix=".tmp") as f:
        json.dump({"quick": args.quick, "seed": args.seed, "rows": rows}, f, indent=2)
    os.replace(f.name, out)
    print("| task | method | accuracy | CPU s (fit + predict) |")
    print("|---|---|---|---|")
    for r in rows:
        cpu = "" if r["cpu_s"] is None else f"{r['cpu_s']:.1f}"
        print(f"| {r['task']} | {r['method']} | {r['accuracy']:.3f} | {cpu} |")


if __name__ == "__main__":
    main()
