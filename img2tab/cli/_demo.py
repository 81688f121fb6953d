"""``img2tab demo`` (the main job) and ``img2tab evaluate`` (quality bars of an inverter)."""

from __future__ import annotations

import argparse
import logging
import os
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


def _labels_for(args: argparse.Namespace, ids: list[str]) -> tuple[list | None, str]:
    """Labels of the loaded images from ``--labels`` / ``--label-column`` (None where missing)."""
    from img2tab.errors import Img2TabInputError
    from img2tab.labels import read_label_csv

    if not args.labels:
        if args.label_column:
            raise Img2TabInputError("--label-column needs --labels CSV")
        return None, ""
    table = read_label_csv(args.labels, id_column=args.id_column)
    column = args.label_column
    if column is None:
        if len(table.columns) != 1:
            raise Img2TabInputError(f"{args.labels} has columns {', '.join(table.columns)}; choose one "
                                    "with --label-column")
        column = next(iter(table.columns))
    if column not in table.columns:
        raise Img2TabInputError(f"label column {column!r} not found in {args.labels}; available: "
                                f"{', '.join(table.columns)}")
    index = {str(k): i for i, k in enumerate(table.ids)}
    values = table.columns[column]
    out: list = []
    for ident in ids:
        i = index.get(ident, index.get(os.path.basename(ident)))
        out.append(None if i is None else values[i].item())
    missing = sum(v is None for v in out)
    if missing == len(out):
        raise Img2TabInputError(f"none of the {len(out)} images has a row in {args.labels} (ids are "
                                f"file names, e.g. {os.path.basename(ids[0])!r})")
    if missing:
        logger.warning("%d of %d images have no row in %s; they count for reconstruction only",
                       missing, len(out), args.labels)
    return out, column


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from img2tab.world.evaluation import (
        NOT_WORLD_WARNING,
        EvaluationConfig,
        run_evaluation,
        trained_on_concept_world,
    )

    check_device(args.device)
    check_output(args.out, "dir", what="--out", existing_dir_ok=True)
    _threads(args.threads)
    inv = load_inverter_spec(args.model, args.device)
    world_model = trained_on_concept_world(inv)
    cfg = EvaluationConfig()
    if args.quick:
        cfg = EvaluationConfig(n_recon=200, n_train=1000, n_test=300, n_oracle=3000,
                               oracle_epochs=4, cnn_epochs=3, n_edit=50,
                               n_spurious_train=1000, n_spurious_test=300, n_edit_strength=8)
    if args.data is None:
        m = run_evaluation(inv, args.out, cfg, progress=not args.no_progress)
        print((Path(args.out) / "report.md").read_text())
        logger.info("evaluation took %.0f s", m["timings_s"]["total"])
        return 0

    from img2tab.image_evaluation import ImageEvaluationConfig, evaluate_images
    from img2tab.io import load_images

    images, report = load_images(args.data, size=inv.generator.size, skip_errors=True,
                                 return_report=True)
    ids = list(report.loaded)
    if args.max_images is not None and len(ids) > args.max_images:
        images, ids = images[: args.max_images], ids[: args.max_images]
    labels, column = _labels_for(args, ids)
    out = Path(args.out)
    if not world_model:
        note = ("Concept-world bars skipped: " + NOT_WORLD_WARNING.replace(
            "the bars below measure", "they would measure") + ".")
        logger.warning("concept-world bars skipped: the model was not trained on the concept world")
    elif args.skip_world:
        note = "Concept-world bars skipped (--skip-world)."
    else:
        run_evaluation(inv, out / "world", cfg, progress=not args.no_progress)
        note = ("Concept-world bars (the model was trained on the concept world): "
                "[world/report.md](world/report.md).")
    icfg = ImageEvaluationConfig(test_size=args.test_size, seed=args.seed, top_k=args.top_k,
                                 strength=args.strength, n_edit=args.n_edit,
                                 batch_size=args.batch_size)
    evaluate_images(inv, images, out, labels=labels, ids=[os.path.relpath(i, args.data)
                                                         if os.path.isdir(args.data) else i
                                                         for i in ids],
                    config=icfg, label_name=column or "label", progress=not args.no_progress,
                    world_note=note)
    print((out / "report.md").read_text())
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
        help="measure an inverter on your images (--data) or on the concept world (model card)",
        description="With --data FOLDER: reconstruction PSNR/SSIM on those images (worst listed), "
        "and with --labels a held-out linear probe of Ψ, XGBoost accuracy and the edit strength "
        "of the top-k W1 / importance concepts against random ones, plus figures. Without --data, "
        "or with it for a model trained on the concept world: the concept-world bars "
        "(reconstruction, probes of every factor, Img2Tab vs pixel CNN, concept validity, edit "
        "strength, spurious-concept debugging); for any other model they are skipped with a "
        "warning. Writes metrics.json, report.md and figures.",
    )
    p.add_argument("--data", default=None, metavar="FOLDER",
                   help="evaluate on these images (a folder or one image file)")
    p.add_argument("--labels", default=None, metavar="CSV",
                   help="CSV with a header; first column (or --id-column) = file name")
    p.add_argument("--label-column", default=None, metavar="COL",
                   help="label column of --labels (default: the only one)")
    p.add_argument("--id-column", default=None, help="column of --labels naming the images")
    p.add_argument("--max-images", type=int, default=None, help="use the first N images only")
    p.add_argument("--test-size", type=float, default=0.25,
                   help="held-out share of the labelled images (stratified split)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and random concepts")
    p.add_argument("--top-k", type=int, default=5, help="concepts per edit-strength group")
    p.add_argument("--strength", type=float, default=10.0,
                   help="edit size in sd of the training Ψ (see benchmarks/RESULTS.md, edit strength)")
    p.add_argument("--n-edit", type=int, default=16, help="held-out images edited per concept")
    p.add_argument("--batch-size", type=int, default=32, help="images per network call")
    p.add_argument("--skip-world", action="store_true",
                   help="with --data, skip the concept-world bars even for a world-trained model")
    p.add_argument("--out", default="evaluation", help="output folder")
    p.add_argument("--model", default="default", help="inverter file, or 'default'")
    p.add_argument("--quick", action="store_true", help="smaller concept-world data")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu", help="torch device of the networks (cpu, cuda:0 ...)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_evaluate)
