"""FALCON on ConceptCNN with the truth captioner and WorldCLIP: which words name the groups?

For each benchmark task (unbiased, biased), trains (or loads from the cache) the ConceptCNN on the
training split, runs FALCON with both captioners on that split and writes the word-level score
(share of the top words after the contrastive step that name the class factor ``smile`` and the
spurious factor ``background_hue``), the groups found, the top-1 group intervention on the test
split and the timings.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 python benchmarks/bench_falcon.py --quick --out benchmarks/falcon_quick.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from img2tab.explainers.falcon import falcon_for_context, falcon_word_report
from img2tab.networks.cnn import ConceptCNNConfig, load_or_train_concept_cnn
from img2tab.world.benchmark import BenchmarkSizes
from img2tab.world.groundtruth import TASKS, task_splits


def run_task(task: str, seed: int, quick: bool, cache_dir: str | None) -> dict:
    sz = BenchmarkSizes.for_mode(quick)  # the benchmark's sizes, so the ConceptCNN cache is shared
    n_train, n_test, epochs = sz.n_train, sz.n_test, sz.cnn_epochs
    train, test = task_splits(task, n_train, n_test, seed=1000 + seed)
    x_train, x_test = train.to_tensor(), test.to_tensor()
    cfg = ConceptCNNConfig(epochs=epochs, seed=seed)
    t0 = time.time()
    cnn = load_or_train_concept_cnn(x_train, train.y, cfg, cache_dir=cache_dir, progress=False)
    cnn_s = time.time() - t0
    acc = float(np.mean((cnn.predict_logit(x_test) > 0) == test.y))
    ctx = SimpleNamespace(concept_cnn=cnn, train=train, quick=quick, seed=seed)
    spurious = TASKS[task]["spurious"]
    out: dict = {
        "task": task,
        "seed": seed,
        "n_train": n_train,
        "cnn_test_accuracy": acc,
        "cnn_seconds": round(cnn_s, 1),
        "methods": {},
    }
    for captioner in ("truth", "worldclip"):
        t0 = time.time()
        exp = falcon_for_context(ctx, captioner).fit(x_train, train.y)
        fit_s = time.time() - t0
        rep = falcon_word_report(exp, "smile", spurious, k=5, top_words=3)
        n_iv = min(200, len(x_test))
        iv = exp.intervene(x_test[:n_iv], [0])
        rep.update(
            fit_seconds=round(fit_s, 1),
            n_groups=len(exp.concepts_),
            n_candidate_groups=len(exp.all_groups_),
            top1_flip_rate=float(iv.flipped.mean()),
            top1_mean_abs_dlogit=float(np.mean(np.abs(iv.logit_after - iv.logit_before))),
        )
        out["methods"][f"falcon-{captioner}"] = rep
        logging.info(
            "%s %s: class %.2f spurious %.2f (%.0f s)",
            task,
            captioner,
            rep["class_word_share"],
            rep["spurious_word_share"],
            fit_s,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tasks", nargs="+", default=["unbiased", "biased"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--out", default="benchmarks/falcon_quick.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rows = [run_task(t, args.seed, args.quick, args.cache_dir) for t in args.tasks]
    cmd = "OMP_NUM_THREADS=1 python benchmarks/bench_falcon.py " + " ".join(
        (["--quick"] if args.quick else [])
        + ["--tasks", *args.tasks, "--seed", str(args.seed), "--out", args.out]
    )
    payload = {"command": cmd, "note": "CPU seconds measured on a shared, loaded machine", "results": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    os.replace(tmp, out)
    for r in rows:
        for name, m in r["methods"].items():
            words = "; ".join(", ".join(g["words"][:3]) for g in m["groups"][:3])
            print(
                f"{r['task']:9s} {name:17s} groups {m['n_groups']:2d} lim {m['lim']:.1f} "
                f"class {m['class_word_share']:.2f} spurious {m['spurious_word_share']:.2f} "
                f"(before: {m['class_word_share_before']:.2f}/{m['spurious_word_share_before']:.2f}) "
                f"flip@1 {m['top1_flip_rate']:.2f} | {words}"
            )


if __name__ == "__main__":
    main()
