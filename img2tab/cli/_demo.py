"""``img2tab demo`` (the main job) and ``img2tab evaluate`` (quality bars of an inverter)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from ._common import check_device, check_output, load_inverter_spec

__all__ = ["register"]

logger = logging.getLogger(__name__)


def _threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def _cmd_demo(args: argparse.Namespace) -> int:
    from img2tab.world.demo import DemoConfig, run_demo

    check_device(args.device)
    check_output(args.out, "dir", what="--out", existing_dir_ok=True)
    _threads(args.threads)
    cfg = DemoConfig()
    if args.quick:
        cfg = DemoConfig(n_train=600, n_test=300, n_spurious_train=600, n_spurious_test=300,
                         xgb_trees=60, n_explain=2, n_gallery=3)
    m = run_demo(args.out, load_inverter_spec(args.model, args.device), cfg,
                 progress=not args.no_progress)
    print(f"report written to {args.out}/report.md in {m['seconds']} s "
          f"(selected {m['selected_classifier']}, accuracy {m['accuracy']:.3f})")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from img2tab.world.evaluation import EvaluationConfig, run_evaluation

    check_device(args.device)
    check_output(args.out, "dir", what="--out", existing_dir_ok=True)
    _threads(args.threads)
    cfg = EvaluationConfig()
    if args.quick:
        cfg = EvaluationConfig(n_recon=200, n_train=1000, n_test=300, n_oracle=3000,
                               oracle_epochs=4, cnn_epochs=3, n_edit=50,
                               n_spurious_train=1000, n_spurious_test=300)
    m = run_evaluation(load_inverter_spec(args.model, args.device), args.out, cfg,
                       progress=not args.no_progress)
    from pathlib import Path

    print((Path(args.out) / "report.md").read_text())
    logger.info("evaluation took %.0f s", m["timings_s"]["total"])
    return 0


def register(subparsers: Any) -> None:
    """Add the ``demo`` and ``evaluate`` subcommands."""
    p = subparsers.add_parser(
        "demo",
        help="run the whole Img2Tab flow on the embedded default model and write a report",
        description="Render the concept world, encode Ψ, fit classifiers, rank concepts by "
        "importance and W1, choose the classifier by relevance, render concept galleries, run the "
        "fairness and spurious-concept debugging experiments, and write report.md + figures.",
    )
    p.add_argument("--out", default="demo_report", help="report folder")
    p.add_argument("--model", default="default",
                   help="inverter file, or 'default' for the embedded model")
    p.add_argument("--quick", action="store_true", help="smaller data (about 1 minute)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's own choice, one per core)")
    p.add_argument("--device", default="cpu", help="torch device of the networks (cpu, cuda:0 ...)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_cmd_demo)

    p = subparsers.add_parser(
        "evaluate",
        help="measure an inverter's quality bars on the concept world (model card)",
        description="Reconstruction PSNR/SSIM on held-out images, linear probes Ψ -> every factor, "
        "Img2Tab vs pixel-CNN accuracy, concept validity of the top-5 W1 concepts read by a factor "
        "oracle, and the spurious-concept debugging experiment. Writes metrics.json, report.md "
        "and figures.",
    )
    p.add_argument("--out", default="evaluation", help="output folder")
    p.add_argument("--model", default="default", help="inverter file, or 'default'")
    p.add_argument("--quick", action="store_true", help="smaller data")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu", help="torch device of the networks (cpu, cuda:0 ...)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_evaluate)
