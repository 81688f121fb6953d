"""AttFind on the embedded default: CPU time of the budget and Ψ modes, and budget-vs-exact agreement.

Usage (from the repository root)::

    python benchmarks/bench_attfind.py timing --out benchmarks/attfind        # budget + Ψ fits, 100 images
    python benchmarks/bench_attfind.py agreement --out benchmarks/attfind     # exact tensor on a few images

``timing`` fits AttFind with ConceptCNN in the loop (budget mode) and with the XGBoost Ψ classifier
(exact mode) on 100 training images of the unbiased smile task (quick benchmark sizes) and writes
``timing.json`` (wall and process CPU seconds, load average, the tables). ``agreement`` computes the
exact effect tensor (all 1,440 conv styles) of ConceptCNN on ``--exact-images`` images (resumable:
``effects.npz``), the first-order screen on the same images, and reports how often the budget ranking
(exact effects on the top-M screened styles) has the same top-k as the exact ranking, over random
image subsets, in ``agreement.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch


def _context(seed: int):
    from img2tab.world.benchmark import make_context

    ctx = make_context("unbiased", seed=seed, quick=True, progress=False)
    _ = ctx.concept_cnn  # train or load from the cache before timing
    return ctx


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def timing(args: argparse.Namespace) -> dict:
    from img2tab.explainers.attfind import AttFindExplainer, format_table

    ctx = _context(args.seed)
    x = ctx.train.to_tensor()
    res: dict = {"threads": torch.get_num_threads(), "n_images": args.n_images, "cpu_count": os.cpu_count()}
    for name, kw in [
        ("attfind-cnn-budget", dict(classifier=ctx.concept_cnn, mode="budget", n_candidates=args.candidates)),
        ("attfind-psi-exact", dict(psi_classifier=ctx.psi_classifier, mode="exact")),
    ]:
        load0 = os.getloadavg()[0]
        ex = AttFindExplainer(ctx.inverter, max_images=args.n_images, random_state=args.seed,
                              progress=not args.no_progress, **kw)
        _, wall, cpu = _timed(lambda ex=ex: ex.fit(x, ctx.train.y))
        res[name] = {"wall_s": wall, "cpu_s": cpu, "load_before": load0, "load_after": os.getloadavg()[0],
                     "n_edits": int(ex.n_edits_), "mode": ex.mode_, "concepts": ex.concept_names(),
                     "table": format_table(ex.table())}
        print(name, f"wall {wall:.1f} s, cpu {cpu:.1f} s, load {load0:.1f}", ex.concept_names())
        print(format_table(ex.table()))
    return res


def agreement(args: argparse.Namespace) -> dict:
    from img2tab.explainers.attfind import (
        attfind,
        attfind_budget,
        explained_coordinates,
        first_order_effects,
        ranking_agreement,
        screen_candidates,
        style_effects,
    )

    ctx = _context(args.seed)
    inv, cnn = ctx.inverter, ctx.concept_cnn
    rng = np.random.default_rng(args.seed)
    idx = np.sort(rng.choice(len(ctx.train), size=args.exact_images, replace=False))
    with torch.no_grad():
        psi = inv.generator.psi(inv.encode(ctx.train.to_tensor()[torch.as_tensor(idx)])).float()
    coords = explained_coordinates(inv.layout)
    sub = psi[:, torch.as_tensor(coords)]
    smin, smax = sub.min(0).values, sub.max(0).values

    def lop(p):
        return cnn(inv.generator.synthesize(p).clamp(-1, 1))

    out = Path(args.out)
    (scr, base), w_s, c_s = _timed(lambda: first_order_effects(lop, psi, coords, smin, smax, progress=False))
    (exact, base2), w_e, c_e = _timed(lambda: style_effects(
        lop, psi, coords, smin, smax, batch_size=32, chunk_images=1, checkpoint=out / "effects.npz",
        progress=not args.no_progress))
    res: dict = {"exact_images": int(args.exact_images), "screen_wall_s": w_s, "screen_cpu_s": c_s,
                 "exact_wall_s": w_e, "exact_cpu_s": c_e, "n_styles": int(coords.size)}
    # style extents are over the explained latents; subsets reuse the full set's extents (the effects
    # are computed once), which is what a budget run on the same images sees too
    subsets = [np.arange(len(idx))] + [np.sort(rng.choice(len(idx), size=max(2, (2 * len(idx)) // 3),
                                                          replace=False)) for _ in range(args.subsets)]
    for m in args.m:
        stats = {k: [] for k in ("equal@1", "equal@3", "equal@5", "same_set@5", "overlap@5", "overlap@8")}
        for sset in subsets:
            ref = attfind(exact[sset], base2[sset]).ranking
            cand = screen_candidates(scr[sset], base2[sset], m)
            bud = attfind_budget(scr[sset], exact[sset][:, :, cand], cand, base2[sset]).ranking
            for k in (1, 3, 5):
                stats[f"equal@{k}"].append(ranking_agreement(ref, bud, k)["equal"])
            stats["same_set@5"].append(ranking_agreement(ref, bud, 5)["same_set"])
            stats["overlap@5"].append(ranking_agreement(ref, bud, 5)["overlap"])
            stats["overlap@8"].append(ranking_agreement(ref, bud, 8)["overlap"])
        res[f"M={m}"] = {k: float(np.mean(v)) for k, v in stats.items()} | {"n_subsets": len(subsets)}
        print(f"M={m}", res[f"M={m}"])
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("phase", choices=["timing", "agreement"])
    p.add_argument("--out", default="benchmarks/attfind")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-images", type=int, default=100)
    p.add_argument("--candidates", type=int, default=48)
    p.add_argument("--exact-images", type=int, default=12)
    p.add_argument("--subsets", type=int, default=20)
    p.add_argument("--m", type=int, nargs="+", default=[24, 48, 96])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = timing(args) if args.phase == "timing" else agreement(args)
    res["loadavg_end"] = os.getloadavg()
    tmp = out / f".{args.phase}.json.tmp"
    tmp.write_text(json.dumps(res, indent=2))
    os.replace(tmp, out / f"{args.phase}.json")


if __name__ == "__main__":
    main()
