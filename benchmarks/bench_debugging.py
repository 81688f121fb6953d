"""Spurious-concept debugging with controls, across tasks and seeds of the concept world.

For each (class factor, nuisance factor, training size) and seed the nuisance agrees with the
class in 90 % of the training images. Variants (see ``img2tab.world.evaluation.spurious_debugging``):
tuned exclusion without a budget, tuned exclusion with at most 10 % of the concepts excluded,
LEACE erasure of the nuisance (one subspace, every concept kept), each against a random control
of the same size (5 draws), and the ceiling (trained on an unbiased split of equal size). With
``--curve`` the gain-versus-budget curve (flagged vs random order) of each run is measured too.

    python benchmarks/bench_debugging.py --seeds 0 1 2 --curve --curve-seeds 0 --out runs/bench_debugging.json
    python benchmarks/bench_debugging.py --tasks smile:background_hue:4000 --classifier xgboost
    python benchmarks/bench_debugging.py --merge runs/a.json runs/b.json   # tables of several runs

The classifier is logistic regression on z-scored Ψ (``--classifier logreg``, the default: ~1 s per
fit) or XGBoost (``--classifier xgboost``: 100 trees of depth 6, minutes per fit on a loaded
2-core machine). The output JSON records the model file and its sha256, the command and the
classifier.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
from _model import add_model_argument, load_model

from img2tab.tabular import ConceptClassifier
from img2tab.world.evaluation import debug_summary, debugging_markdown, spurious_debugging

TASKS = ("smile:background_hue:4000", "eye_size:glasses:1000")
BUDGETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


def classifier(name: str) -> ConceptClassifier:
    if name == "logreg":
        return ConceptClassifier("logreg", params={"C": 0.05, "max_iter": 500}, random_state=0)
    if name == "xgboost":
        return ConceptClassifier(random_state=0, device="cpu")
    raise SystemExit(f"unknown --classifier {name!r}: logreg or xgboost")


def _ms(values: list[float]) -> str:
    a = np.asarray(values, dtype=np.float64)
    return f"{a.mean():.3f} ± {a.std(ddof=1):.3f}" if a.size > 1 else f"{a.mean():.3f}"


def seed_table(results: list[dict]) -> list[str]:
    """Mean ± sd over seeds per task: decorrelated accuracy of every variant, its controls, counts."""
    lines = [
        "| task (n train) | seeds | before | ceiling | tuned: excluded of D / acc [random] | "
        "budget ≤ 10 %: excluded / acc [random] | LEACE: rank / acc [random] | "
        "share of the ceiling gain: tuned / budget / LEACE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_task: dict[str, list[dict]] = {}
    for r in results:
        by_task.setdefault(f"{r['class_factor']} / {r['spurious_factor']} ({r['n_train']})", []).append(r)
    for task, rs in by_task.items():
        def col(key: str, rs: list[dict] = rs) -> list[float]:
            return [r[key]["decorrelated"] for r in rs]

        def ctl(name: str, rs: list[dict] = rs) -> str:
            vals = [r["controls"][name]["mean"]["decorrelated"] for r in rs if name in r["controls"]]
            return f"[{_ms(vals)}]" if vals else "[n/a]"

        def share(key: str, rs: list[dict] = rs) -> str:
            s = [(r[key]["decorrelated"] - r["before"]["decorrelated"]) / r["ceiling_gain_decorrelated"]
                 for r in rs if r["ceiling_gain_decorrelated"] > 0]
            return f"{100 * np.mean(s):.0f} %" if s else "n/a"

        d = rs[0]["n_features"]
        n_ex = "/".join(str(r["n_excluded"]) for r in rs)
        n_bud = "/".join(str(r["n_excluded_budget"]) for r in rs)
        lines.append(
            f"| {task} | {len(rs)} | {_ms(col('before'))} | {_ms(col('ceiling'))} | {n_ex} of {d} / "
            f"{_ms(col('after'))} {ctl('after')} | {n_bud} / {_ms(col('budget'))} {ctl('budget')} | "
            f"{rs[0]['erased_rank']} / {_ms(col('erase'))} {ctl('erase')} | {share('after')} / "
            f"{share('budget')} / {share('erase')} |")
    return lines


def curve_table(results: list[dict]) -> list[str]:
    """Gain versus budget per task, mean over seeds: flagged order against random order."""
    lines = []
    by_task: dict[str, list[dict]] = {}
    for r in results:
        if r.get("curve"):
            key = f"{r['class_factor']} / {r['spurious_factor']} ({r['n_train']})"
            by_task.setdefault(key, []).append(r)
    for task, rs in by_task.items():
        lines += ["", f"Gain versus budget, {task}: decorrelated-test accuracy minus 'before', mean over "
                  f"{len(rs)} seed(s); random order: mean of the draws ± their sd (averaged over seeds)", "",
                  "| excluded | flagged order | random order |", "|---:|---:|---:|"]
        budgets = sorted({row["n_excluded"] for r in rs for row in r["curve"] if row["n_excluded"] > 0})
        for b in budgets:
            fl, ra, sd = [], [], []
            for r in rs:
                row = next((x for x in r["curve"] if x["n_excluded"] == b), None)
                if row is None:
                    continue
                base = r["curve"][0]["flagged"]["accuracy"]
                fl.append(100 * (row["flagged"]["accuracy"] - base))
                ra.append(100 * (row["random_mean"]["accuracy"] - base))
                sd.append(100 * row["random_sd"]["accuracy"])
            if fl:
                lines.append(f"| {b} | {np.mean(fl):+.1f} points | {np.mean(ra):+.1f} ± {np.mean(sd):.1f} "
                             "points |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), help="class:nuisance:n_train entries")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--base-seed", type=int, default=3000)
    p.add_argument("--classifier", default="logreg", choices=("logreg", "xgboost"))
    p.add_argument("--n-random", type=int, default=5)
    p.add_argument("--curve", action="store_true", help="also measure the gain-versus-budget curve")
    p.add_argument("--curve-seeds", type=int, nargs="+", default=None,
                   help="measure the curve for these seeds only (default: every seed)")
    p.add_argument("--out", default=None,
                   help="write results + markdown as JSON here (rewritten after each run)")
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="print the tables of earlier --out files together (no new runs)")
    add_model_argument(p)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.merge:
        runs = [json.loads(Path(f).read_text()) for f in args.merge]
        for f, r in zip(args.merge, runs):
            print(f"{f}: {r['command']} (model {r['model']} sha256 {r['sha256']}, {r['classifier']})")
        results = [x for r in runs for x in r["results"]]
        print("\n".join(seed_table(results) + curve_table(results)))
        return
    inv, record = load_model(args.model)
    meta = {**record, "command": "python " + " ".join(sys.argv), "classifier": args.classifier}
    print(f"model {record['model']} sha256 {record['sha256']}; classifier {args.classifier}", flush=True)
    results = []
    for ti, task in enumerate(args.tasks):
        factor, nuisance, n = task.split(":")
        for seed in args.seeds:
            t = time.perf_counter()
            dbg = spurious_debugging(inv, inv.generator.size, int(n), args.n_test, 0.9,
                                     seed=args.base_seed + 100 * ti + 10 * seed,
                                     classifier=classifier(args.classifier),
                                     class_factor=factor, spurious=nuisance, n_random=args.n_random,
                                     curve_budgets=BUDGETS if args.curve and (
                                         args.curve_seeds is None or seed in args.curve_seeds) else None)
            res = debug_summary(dbg, inv.layout)
            res["seed"] = seed
            res["seconds"] = round(time.perf_counter() - t, 1)
            results.append(res)
            print(f"{task} seed {seed}: {res['seconds']:.0f} s; before {res['before']['decorrelated']:.3f}, "
                  f"tuned {res['after']['decorrelated']:.3f} ({res['n_excluded']}), budget "
                  f"{res['budget']['decorrelated']:.3f} ({res['n_excluded_budget']}), LEACE "
                  f"{res['erase']['decorrelated']:.3f}, ceiling {res['ceiling']['decorrelated']:.3f}",
                  flush=True)
            md = seed_table(results) + curve_table(results)
            if args.out:
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                tmp = Path(str(args.out) + ".tmp")
                tmp.write_text(json.dumps({**meta, "results": results, "markdown": md}, indent=2))
                tmp.replace(args.out)
    print()
    print("\n".join(seed_table(results) + curve_table(results)))
    print()
    print("\n".join(debugging_markdown(results)))


if __name__ == "__main__":
    main()
