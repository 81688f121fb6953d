"""Does a trained inverter explain? Edit strength of its top W1 concepts on a binary task.

For a run folder of ``img2tab train-autoencoder`` (its ``inverter.pt``) and a labelled image set
written by ``scripts/export_small_sets.py`` (``<data>/train``, ``<data>/test``, ``labels.csv``
with columns image,label,split):

1. PSNR / SSIM of the reconstruction of every test image;
2. Ψ of the train and test images of two classes; XGBoost on the train Ψ (test accuracy);
3. W1 of every concept on the train Ψ; the top-5 W1 concepts, the top-5 among non-toRGB
   channels, and 5 random concepts of each kind as the control (:func:`img2tab.edit_strength.
   concept_groups`);
4. :func:`img2tab.edit_strength.measure_edit_strength` on the test images of the two classes,
   at each ``--edit`` (scale kind and strength; the scale is computed on the train Ψ);
5. optionally an edit grid (``--grid PNG``): one test image, its top-5 W1 concepts edited.

Usage::

    python benchmarks/bench_recipe.py --run runs/screen/A_baseline --data datasets/digits \\
        --classes 3,8 --out benchmarks/results/recipe_A_baseline.json
    python benchmarks/bench_recipe.py table [--edit sd:3] benchmarks/results/recipe_*.json
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import img2tab
from img2tab.edit_strength import class_directions, concept_groups, measure_edit_strength, psi_scale
from img2tab.edits import edit_psi, render_psi
from img2tab.metrics import psnr, ssim
from img2tab.tabular import ConceptClassifier
from img2tab.tabular._wasserstein import wasserstein_relevance


def _images(data: Path, split: str, classes: list[int] | None) -> tuple[torch.Tensor, np.ndarray]:
    """uint8 [N, 3, S, S] images of one split (optionally only ``classes``) and their labels."""
    from PIL import Image

    with open(data / "labels.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == split]
    if classes is not None:
        rows = [r for r in rows if int(r["label"]) in classes]
    arr = np.stack([np.asarray(Image.open(data / split / r["image"]).convert("RGB"))
                    for r in rows])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous(), np.array(
        [int(r["label"]) for r in rows])


def _run_info(run: Path) -> dict[str, Any]:
    """Steps, trainer time (log.jsonl) and wall / CPU seconds (``<run>.log`` from /usr/bin/time)."""
    info: dict[str, Any] = {}
    log = run / "log.jsonl"
    if log.exists():
        last = json.loads(log.read_text().strip().splitlines()[-1])
        info.update(steps=last.get("step"), train_time_s=last.get("time"))
    cfg = run / "config.json"
    if cfg.exists():
        info["config"] = json.loads(cfg.read_text())
    timing = run.with_suffix(".log")
    if timing.exists():
        m = re.search(r"wall=([\d.]+) user=([\d.]+) sys=([\d.]+)", timing.read_text())
        if m:
            info.update(wall_s=float(m[1]), cpu_s=float(m[2]) + float(m[3]))
    cmd = run.with_suffix(".sh")
    if cmd.exists():
        info["command"] = cmd.read_text().strip()
    return info


def table(paths: list[str], edit: str = "sd:3") -> str:
    """Markdown table of several result JSONs: one row per run, at one edit setting."""
    head = ("| run | steps | wall min | CPU min | PSNR dB | acc | top-5 W1 abs dp round trip | "
            "direct (Ψ) | random abs dp | top-5 W1 abs dx | random abs dx | "
            "top-5 W1 no toRGB abs dp | pixels > 2/255 (top-5) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for path in paths:
        r = json.loads(Path(path).read_text())
        info, es = r["run_info"], r["edit_strength"][edit]["summary"]
        w, rnd, nr = es["w1_all"], es["random_all"], es["w1_no_torgb"]
        wall = info.get("wall_s") or info.get("train_time_s")
        cpu = info.get("cpu_s")
        lines.append(
            f"| {Path(r['run']).name} | {info.get('steps')} | {wall / 60:.1f} | "
            f"{(cpu / 60) if cpu else float('nan'):.1f} | {r['psnr_mean']:.1f} | "
            f"{r['xgboost_test_accuracy']:.3f} | {w['mean_abs_dp']:.3f} | {w['mean_abs_dp_psi']:.3f} | "
            f"{rnd['mean_abs_dp']:.3f} | {w['mean_abs_dx']:.4f} | {rnd['mean_abs_dx']:.4f} | "
            f"{nr['mean_abs_dp']:.3f} | {w['frac_changed']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "table":  # bench_recipe.py table [--edit sd:3] A.json B.json ...
        edit = "sd:3"
        rest = argv[1:]
        if rest[:1] == ["--edit"]:
            edit, rest = rest[1], rest[2:]
        print(table(rest, edit))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="train-autoencoder run folder (inverter.pt)")
    p.add_argument("--model", default=None, help="inverter file (default: <run>/inverter.pt)")
    p.add_argument("--data", required=True, help="folder written by export_small_sets.py")
    p.add_argument("--classes", default="3,8", help="two labels: class 0, class 1 (default 3,8)")
    p.add_argument("--edit", action="append", default=None,
                   help="scale:strength, repeatable (default: sd:3, sd:10 and range:1)")
    p.add_argument("--n-random", type=int, default=5, help="random control concepts (default 5)")
    p.add_argument("--out", required=True, help="JSON output")
    p.add_argument("--grid", default=None, help="edit-grid PNG for one test image (optional)")
    p.add_argument("--grid-strength", type=float, default=3.0, help="grid edits ±k sd (3)")
    p.add_argument("--threads", type=int, default=1, help="torch / XGBoost threads (1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    run, data = Path(args.run), Path(args.data)
    classes = [int(c) for c in args.classes.split(",")]
    if len(classes) != 2:
        raise SystemExit(f"--classes needs two labels, got {args.classes!r}")
    edits = args.edit or ["sd:3", "sd:10", "range:1"]
    inv = img2tab.load_inverter(args.model or run / "inverter.pt").eval()
    layout = inv.generator.layout

    # 1. reconstruction of every test image
    x_all, _ = _images(data, "test", None)
    with torch.no_grad():
        xf = x_all.float() / 127.5 - 1
        rec = torch.cat([inv.reconstruct(xf[i:i + 64]).clamp(-1, 1) for i in range(0, len(xf), 64)])
    rec_psnr = psnr(rec, xf).numpy()
    rec_ssim = float(ssim(rec, xf).mean())

    # 2. the binary task
    x_tr, y_tr = _images(data, "train", classes)
    x_te, y_te = _images(data, "test", classes)
    y_tr, y_te = (y_tr == classes[1]).astype(int), (y_te == classes[1]).astype(int)
    psi_tr, _ = inv.encode_psi(x_tr, batch_size=64, with_w=False)
    psi_te, _ = inv.encode_psi(x_te, batch_size=64, with_w=False)
    clf = ConceptClassifier(model="xgboost", params={"n_jobs": args.threads}, random_state=0)
    clf.fit(psi_tr, y_tr)
    acc = float((clf.predict(psi_te) == y_te).mean())

    # 3. concept groups
    w1 = np.asarray(wasserstein_relevance(psi_tr, y_tr, n_jobs=1))
    no_rgb = np.flatnonzero(~layout.torgb_mask)
    groups = {}
    for tag, cand in (("all", None), ("no_torgb", no_rgb)):
        g = concept_groups(w1, clf.feature_importances_, top_k=5, n_random=args.n_random, seed=0,
                           candidates=cand)
        groups.update({f"{k}_{tag}": v for k, v in g.items()})
    directions = class_directions(psi_tr, y_tr)

    # 4. edit strength
    results = {}
    for spec in edits:
        kind, strength = spec.split(":")
        unit = psi_scale(psi_tr, kind)
        es = measure_edit_strength(inv, x_te, clf, groups, scale=unit, strength=float(strength),
                                   psi=psi_te, directions=directions, progress=False)
        res = es.to_dict()
        res["scale"] = kind
        results[spec] = res
        print(f"== {spec}\n{es.markdown()}", file=sys.stderr)

    out = {
        "run": str(run), "data": str(data), "classes": classes,
        "run_info": _run_info(run),
        "n_train": int(len(y_tr)), "n_test": int(len(y_te)), "n_test_all": int(len(x_all)),
        "psnr_mean": float(rec_psnr.mean()), "psnr_min": float(rec_psnr.min()),
        "ssim_mean": rec_ssim, "xgboost_test_accuracy": acc,
        "psi_dim": int(psi_tr.shape[1]), "torgb_channels": int(layout.torgb_mask.sum()),
        "top_w1": [{"concept": int(k), "label": layout.label(int(k)), "w1": float(w1[k])}
                   for k in np.argsort(-w1)[:10]],
        "edit_strength": results,
        "bench_seconds": None,
    }

    # 5. edit grid
    if args.grid:
        from img2tab.gallery import plot_edit_grid

        j = int(np.flatnonzero(y_te == 0)[0])
        top = groups["w1_no_torgb"]
        ks = [-2 * args.grid_strength, -args.grid_strength, args.grid_strength,
              2 * args.grid_strength]
        unit = torch.from_numpy(psi_scale(psi_tr, "sd"))
        psi_j = torch.from_numpy(psi_te[j:j + 1])
        with torch.no_grad():
            ed = edit_psi(psi_j, top, ks, unit)[0]  # [n_concepts, n_strengths, D]
            imgs = render_psi(inv.generator, ed.reshape(-1, ed.shape[-1])).clamp(-1, 1)
            src = render_psi(inv.generator, psi_j).clamp(-1, 1)
            rt, _ = inv.encode_psi(imgs, with_w=False)
            rt0, _ = inv.encode_psi(src, with_w=False)
        pe = clf.predict_proba(rt)[:, 1].reshape(len(top), len(ks))
        labels = [f"{layout.label(k)} W1 {w1[k]:.2f}" for k in top]
        fig = plot_edit_grid(src[0], imgs.reshape(len(top), len(ks), *imgs.shape[1:]), labels, ks,
                             proba_source=float(clf.predict_proba(rt0)[0, 1]), proba_edits=pe,
                             class_name=f"p({classes[1]})")
        fig.savefig(args.grid, dpi=110)
        out["grid"] = {"png": args.grid, "test_index": j, "concepts": top, "strengths": ks}
    out["bench_seconds"] = round(time.perf_counter() - t0, 1)

    from img2tab._atomic import atomic_write_json

    atomic_write_json(args.out, out)
    print(f"wrote {args.out} ({out['bench_seconds']} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
