"""Interleaved timing of two versions of ``wasserstein_relevance`` (e.g. before / after a change).

Both run in the same process on the same data (``bench_wasserstein.make_data``), alternating,
``--repeats`` times each; the scipy per-column loop runs once for the speed-up. Use it when the
machine is shared: alternation exposes both versions to the same load.

Usage::

    python benchmarks/bench_w1_versions.py --old path/to/old_wasserstein.py --json out.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_wasserstein import make_data, scipy_loop  # noqa: E402

from img2tab.tabular._dataset import standardize  # noqa: E402
from img2tab.tabular._wasserstein import wasserstein_relevance  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", type=Path, required=True, help="a copy of the old _wasserstein.py")
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--d", type=int, default=9088)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    spec = importlib.util.spec_from_file_location("w1_old", args.old)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    x, y = make_data(args.n, args.d)
    res: dict = {"n": args.n, "d": args.d, "load_before": os.getloadavg(),
                 "command": "python benchmarks/bench_w1_versions.py " + " ".join(argv or sys.argv[1:])}
    for std in (True, False):
        key = "standardised" if std else "raw"
        times: dict = {"old": [], "new": []}
        for _ in range(args.repeats):
            for name, fn in (("old", old.wasserstein_relevance), ("new", wasserstein_relevance)):
                t0 = time.perf_counter()
                out = fn(x, y, standardize=std)
                times[name].append(time.perf_counter() - t0)
                res[f"{key}_{name}_result"] = out
        ref, t_scipy = scipy_loop(standardize(x)[0] if std else x, y)
        res[key] = {
            "scipy_loop_s": t_scipy,
            "old_best_s": min(times["old"]), "new_best_s": min(times["new"]),
            "old_median_s": float(np.median(times["old"])), "new_median_s": float(np.median(times["new"])),
            "speedup_old_best": t_scipy / min(times["old"]), "speedup_new_best": t_scipy / min(times["new"]),
            "max_abs_diff_new_vs_scipy": float(np.max(np.abs(res[f"{key}_new_result"] - ref))),
            "max_abs_diff_new_vs_old": float(np.max(np.abs(res[f"{key}_new_result"]
                                                            - res[f"{key}_old_result"]))),
        }
        del res[f"{key}_new_result"], res[f"{key}_old_result"]
        print(key, json.dumps(res[key]))  # noqa: T201 - a benchmark script reports on stdout
    res["load_after"] = os.getloadavg()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
