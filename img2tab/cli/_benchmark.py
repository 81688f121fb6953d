"""``img2tab benchmark``: score every registered concept explainer against the concept world's truth."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from ._common import load_inverter_spec

__all__ = ["register"]

logger = logging.getLogger(__name__)


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers, got {text!r}") from None


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from img2tab.world.benchmark import HEADLINE, default_explainers, run

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.list:
        print("\n".join(default_explainers(args.quick)))
        return 0
    seeds = _ints(args.seeds) if args.seeds else ((0,) if args.quick else (0, 1, 2))
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    tasks = [t.strip() for t in args.tasks.split(",")]
    res = run(methods, tasks=tasks, seeds=seeds, quick=args.quick, out=args.out,
              inverter=load_inverter_spec(args.model, "cpu"), cache_dir=args.cache_dir,
              progress=not args.no_progress)
    for task in tasks:
        print(f"task {task}")
        for m, per_task in res["summary"].items():
            row = per_task.get(task, {})
            print(f"  {m:22s} " + " ".join(f"{k}={row.get(k, float('nan')):.3f}" for k in HEADLINE))
    print(f"report written to {args.out}/report.md in {res['wall_seconds']:.0f} s")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``benchmark`` subcommand."""
    p = subparsers.add_parser(
        "benchmark",
        help="score every concept explainer against the concept world's ground truth",
        description="Fit every registered explainer (Img2Tab W1 / importance, random and oracle "
        "concepts, and the peer methods) on the unbiased and biased smile tasks, over several seeds, "
        "and score concept-factor alignment, reliance agreement, localisation and counterfactual "
        "faithfulness against exact re-renders. Writes report.md, results.json and figures.",
    )
    p.add_argument("--out", default="benchmark_report", help="output folder")
    p.add_argument("--quick", action="store_true", help="one seed, small splits (CI, about 2 minutes)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2; quick: 0)")
    p.add_argument("--tasks", default="unbiased,biased",
                   help="comma-separated tasks: unbiased, biased, biased-glasses")
    p.add_argument("--methods", default=None, help="comma-separated explainer names (default: all)")
    p.add_argument("--list", action="store_true", help="list the registered explainers and exit")
    p.add_argument("--model", default="default",
                   help="inverter file, or 'default' for the embedded model")
    p.add_argument("--cache-dir", default=None,
                   help="cache of trained ConceptCNNs and factor oracles "
                   "(default: $IMG2TAB_CACHE, else ~/.cache/img2tab)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's own choice, one per core)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_cmd_benchmark)
