"""How the streaming fit's quantile cuts compare with XGBoost's own sketch on the same rows.

For Gaussian columns (continuous), the same rounded to 0.01 (ties) and small integers, at several
row counts: the number of cut values per column where ``QuantileDMatrix(x)`` (XGBoost's sketch)
and ``cut_reference(block_summary(x))`` (the streaming fit's exact pruning) differ.

Usage::

    python benchmarks/check_cuts.py --json benchmarks/results/cut_agreement.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import xgboost

from img2tab.distributed._stream import block_summary, cut_reference


def _cuts(m: xgboost.QuantileDMatrix, d: int) -> list[np.ndarray]:
    ptr, v = m.get_quantile_cut()
    return [np.asarray(v[ptr[j]:ptr[j + 1]]) for j in range(d)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[800, 3000, 20000])
    p.add_argument("--max-bin", type=int, default=256)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    out = []
    for n in args.rows:
        cols = {"continuous": rng.normal(size=(n, 4)).astype(np.float32),
                "rounded_0.01": np.round(rng.normal(size=(n, 4)), 2).astype(np.float32),
                "integers_0_4": rng.integers(0, 5, (n, 4)).astype(np.float32)}
        for kind, x in cols.items():
            ref = _cuts(xgboost.QuantileDMatrix(x, max_bin=args.max_bin, nthread=1), x.shape[1])
            ours = _cuts(cut_reference(block_summary(x, None, args.max_bin), args.max_bin), x.shape[1])
            diff = [int(np.sum(a != b)) if a.size == b.size else -1 for a, b in zip(ref, ours, strict=True)]
            out.append({"rows": n, "kind": kind, "n_cuts": [int(a.size) for a in ref],
                        "cuts_differing_per_column": diff})
            print(n, kind, [int(a.size) for a in ref], diff)  # noqa: T201 - a script's report
    if args.json:
        args.json.write_text(json.dumps({"max_bin": args.max_bin, "xgboost": xgboost.__version__,
                                         "results": out}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
