"""Does bfloat16 encoding change the conclusions? float32 against bfloat16 Ψ on the world.

Encodes the ``unbiased`` world task (class: smile) with the embedded default inverter twice,
with ``Inverter.encode_psi(precision="float32")`` and ``precision="bfloat16"``, and compares:

- seconds per image of each (best of ``--repeats``, same batches);
- Ψ: max and mean absolute difference, and the largest difference in units of the column's
  float32 standard deviation;
- W1 relevance (standardised): Spearman correlation over all columns and overlap of the top 10 /
  top 50 columns;
- XGBoost (``ConceptClassifier(random_state=0)``) fitted on each training Ψ: test accuracy on its
  own Ψ, and the float32 model applied to bfloat16 test Ψ (is bfloat16 Ψ a drop-in input?);
- and, as a control, the float32 default (channels-last from 8 images per batch) against float32
  NCHW batches (``channels_last=False``, the layout before 2026-12-01): Ψ, W1 and XGBoost
  probabilities.

Usage::

    python benchmarks/bench_precision_world.py --json benchmarks/results/precision_world.json
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from _results import report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32, help="images per encoder call")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from scipy.stats import spearmanr

    from img2tab.default import load_default
    from img2tab.tabular import ConceptClassifier, wasserstein_relevance
    from img2tab.world.groundtruth import task_splits

    torch.set_num_threads(args.threads)
    inv = load_default()
    train, test = task_splits("unbiased", args.n_train, args.n_test, seed=1000, size=int(inv.generator.size))
    x_tr, x_te = train.to_tensor(), test.to_tensor()
    res: dict = {"command": "python benchmarks/bench_precision_world.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
        "load_avg_start": os.getloadavg(), "n_features": inv.layout.total}
    psi: dict = {}
    for prec in ("float32", "bfloat16"):
        best = float("inf")
        for _ in range(args.repeats):
            t = time.perf_counter()
            tr, _ = inv.encode_psi(x_tr, batch_size=args.batch_size, with_w=False, precision=prec)
            best = min(best, (time.perf_counter() - t) / len(x_tr))
        te, _ = inv.encode_psi(x_te, batch_size=args.batch_size, with_w=False, precision=prec)
        psi[prec] = (tr, te)
        res[f"s_per_image_{prec}"] = best
    res["speedup_bfloat16"] = res["s_per_image_float32"] / res["s_per_image_bfloat16"]
    (f_tr, f_te), (b_tr, b_te) = psi["float32"], psi["bfloat16"]
    diff = np.abs(b_tr - f_tr)
    sd = f_tr.std(axis=0)
    res["psi_max_abs_diff"] = float(diff.max())
    res["psi_mean_abs_diff"] = float(diff.mean())
    res["psi_max_diff_in_column_sd"] = float((diff / np.where(sd > 0, sd, 1)).max())
    res["psi_mean_diff_in_column_sd"] = float((diff / np.where(sd > 0, sd, 1)).mean())
    w_f = wasserstein_relevance(f_tr, train.y)
    w_b = wasserstein_relevance(b_tr, train.y)
    res["w1_spearman"] = float(spearmanr(w_f, w_b).statistic)
    for k in (10, 50):
        top_f, top_b = set(np.argsort(-w_f)[:k]), set(np.argsort(-w_b)[:k])
        res[f"w1_top{k}_overlap"] = len(top_f & top_b) / k
    clf_f = ConceptClassifier(random_state=0).fit(f_tr, train.y)
    clf_b = ConceptClassifier(random_state=0).fit(b_tr, train.y)
    res["xgb_test_acc_float32"] = float((clf_f.predict(f_te) == test.y).mean())
    res["xgb_test_acc_bfloat16"] = float((clf_b.predict(b_te) == test.y).mean())
    res["xgb_float32_model_on_bfloat16_test_acc"] = float((clf_f.predict(b_te) == test.y).mean())
    n_tr, _ = inv.encode_psi(x_tr, batch_size=args.batch_size, with_w=False, channels_last=False)
    n_te, _ = inv.encode_psi(x_te, batch_size=args.batch_size, with_w=False, channels_last=False)
    res["nchw_vs_default_psi_max_abs_diff"] = float(max(np.abs(n_tr - f_tr).max(), np.abs(n_te - f_te).max()))
    w_n = wasserstein_relevance(n_tr, train.y)
    res["nchw_vs_default_w1_max_abs_diff"] = float(np.abs(w_n - w_f).max())
    res["nchw_vs_default_w1_top50_same_order"] = bool((np.argsort(-w_n)[:50] == np.argsort(-w_f)[:50]).all())
    clf_n = ConceptClassifier(random_state=0).fit(n_tr, train.y)
    res["nchw_vs_default_xgb_test_max_abs_dp"] = float(
        np.abs(clf_n.predict_proba(n_te) - clf_f.predict_proba(f_te)).max())
    res["load_avg_end"] = os.getloadavg()
    report(res, args.json)


if __name__ == "__main__":
    main()
