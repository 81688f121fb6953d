"""ACE on a ConceptCNN trained to detect glasses: is the glasses concept found, significant and localised?

Trains (or loads from the cache) a ConceptCNN on the concept world's glasses task (class = glasses,
all other factors independent), runs ACE on class 1 with each setting and reports, per kept cluster,
its TCAV score, p-value and the share of its member pixels that lie on the glasses mask
(:func:`img2tab.world.groundtruth.factor_masks`), plus the wall time of each step.

    python benchmarks/bench_ace.py --write ace.md
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from img2tab.explainers.ace import ACEConfig, ACEExplainer
from img2tab.networks.cnn import ConceptCNNConfig, load_or_train_concept_cnn
from img2tab.world import make_task
from img2tab.world.groundtruth import factor_masks

SETTINGS = {
    "official layer4, random images": dict(layer="layer4", random_source="images"),
    "layer4, random patches": dict(layer="layer4", random_source="patches"),
    "body, random images": dict(layer="body", random_source="images"),
    "body, random patches (ConceptCNN setting)": dict(layer="body", random_source="patches"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=1200)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--n-random", type=int, default=20, help="random sets (official 20)")
    ap.add_argument("--n-discovery", type=int, default=20, help="discovery images (official 40)")
    ap.add_argument(
        "--settings", default=None, help="comma-separated indices into the settings (default all)"
    )
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write", default=None, help="write the markdown section to this file")
    ap.add_argument("--json", default=None, help="write the raw results to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    train = make_task(args.n_train, seed=0, class_factor="glasses", spurious=None)
    test = make_task(300, seed=1, class_factor="glasses", spurious=None)
    cnn_cfg = ConceptCNNConfig(epochs=args.epochs, seed=0)
    model = load_or_train_concept_cnn(
        train.to_tensor(), train.y, cnn_cfg, cache_dir=args.cache_dir, progress=False
    )
    acc = float(((model.predict_logit(test.to_tensor()) > 0) == test.y).mean())
    cnn_s = time.perf_counter() - t0
    glasses = factor_masks(train.factors, train.images.shape[1], ["glasses"])["glasses"]
    names = list(SETTINGS)
    if args.settings:
        names = [names[int(i)] for i in args.settings.split(",")]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "## ACE on a glasses-detecting ConceptCNN",
        "",
        "Command: `python benchmarks/bench_ace.py "
        f"--n-random {args.n_random} --n-discovery {args.n_discovery}` ({args.threads} thread; "
        f"load average {load:.1f} on 2 cores at the start, shared machine).",
        "",
        f"ConceptCNN ({args.epochs} epochs on {args.n_train} images, train/load {cnn_s:.0f} s): "
        f"test accuracy {acc:.3f} on the glasses task. ACE on class 1 (glasses), "
        f"{args.n_discovery} discovery images, "
        f"{args.n_random} random sets, official SLIC / k-means / keeping rules / SGD CAVs / "
        "ttest_rel at 0.01. "
        "'on glasses' = share of the members' segment pixels on the glasses mask.",
        "",
        "| setting | clusters kept | significant | top concept: TCAV ± sd, p, on glasses | "
        "best on-glasses concept: TCAV, p, on glasses | wall s (CPU s) |",
        "|---|---|---|---|---|---|",
    ]
    raw = {}
    for name in names:
        cfg = ACEConfig.cpu(n_discovery=args.n_discovery, n_random=args.n_random, **SETTINGS[name])
        t1, c1 = time.perf_counter(), time.process_time()
        ace = ACEExplainer(model, cfg, target_classes=(1,), keep_insignificant=True, progress=False)
        ace.fit(train.to_tensor(), train.y)
        sec, cpu = time.perf_counter() - t1, time.process_time() - c1
        rows = []
        for d in ace.discovered_:
            m = d.member_masks
            on = float(((m & glasses[d.member_images]).sum((1, 2)) / m.sum((1, 2))).mean())
            rows.append(
                dict(
                    name=d.name,
                    tcav=d.tcav.mean,
                    sd=d.tcav.std,
                    p=d.tcav.p_value,
                    significant=d.significant,
                    on_glasses=on,
                    size=d.size,
                )
            )
        raw[name] = dict(
            rows=rows, seconds=sec, cpu_seconds=cpu, timings=ace.timings_, n_patches=ace.n_patches_[1]
        )
        sig = [r for r in rows if r["significant"]]
        fmt = lambda r: f"{r['tcav']:.2f} ± {r['sd']:.2f}, p {r['p']:.2g}, {r['on_glasses']:.2f}"  # noqa: E731
        top = fmt(rows[0]) if rows else "-"
        best = max(rows, key=lambda r: r["on_glasses"]) if rows else None
        lines.append(
            f"| {name} | {len(rows)} | {len(sig)} | {top} | {fmt(best) if best else '-'} "
            f"| {sec:.0f} ({cpu:.0f}) |"
        )
        print(lines[-1], flush=True)
    steps = raw[names[-1]]["timings"]
    lines += [
        "",
        f"Steps of the last setting ({raw[names[-1]]['n_patches']} patches): "
        + ", ".join(f"{k.split(': ')[-1]} {v:.0f} s" for k, v in steps.items() if ": " in k)
        + ".",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        with open(args.write, "w") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)


if __name__ == "__main__":
    main()
