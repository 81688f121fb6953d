"""``img2tab encode``: images -> Ψ dataset with an e4e inverter (sharded, resumable)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import numpy as np

from img2tab.errors import Img2TabInputError

from ._common import (
    add_cluster,
    add_overwrite,
    check_device,
    check_output,
    cluster_client,
    load_inverter_spec,
)

__all__ = ["register"]

logger = logging.getLogger(__name__)


def _cmd_encode(args: argparse.Namespace) -> int:
    from img2tab.encode import encode_to_dataset
    from img2tab.io import list_images
    from img2tab.labels import (
        read_celeba_attributes,
        read_celeba_partition,
        read_label_csv,
        split_code,
    )

    check_device(args.device)
    check_output(args.out, "dir", args.overwrite, what="--out")
    if args.batch_size < 1 or args.shard_size < 1:
        raise Img2TabInputError("--batch-size and --shard-size must be positive")
    sources: list[Any] = []
    for src in args.images:
        from pathlib import Path

        p = Path(src)
        sources.extend(list_images(p) if p.is_dir() else [p])
    table = None
    if args.labels and args.celeba_attr:
        raise Img2TabInputError("give either --labels (CSV) or --celeba-attr, not both")
    if args.labels:
        table = read_label_csv(args.labels, id_column=args.id_column)
    elif args.celeba_attr:
        table = read_celeba_attributes(args.celeba_attr)
    if args.partition:
        part = read_celeba_partition(args.partition)
        code = split_code(args.split)
        keep = part.lookup([str(s) for s in sources], "partition") == code
        sources = [s for s, k in zip(sources, keep) if k]
        if not sources:
            raise Img2TabInputError(f"no images of split {args.split!r} in {args.partition}")
    if (args.label_column or args.protected_column or args.labeled_only) and table is None:
        raise Img2TabInputError(
            "--label-column / --protected-column / --labeled-only need --labels or --celeba-attr")
    if table is not None and (args.label_column or args.protected_column or args.labeled_only):
        for column in (args.label_column, args.protected_column):
            if column:
                table.lookup([], column)  # fail fast on a bad column name
        has = table.has_rows([str(s) for s in sources])
        n_missing = int((~has).sum())
        label_file = args.labels or args.celeba_attr
        if args.labeled_only:
            if n_missing:
                logger.info("--labeled-only: encoding the %d labelled images; %d of %d have no row "
                            "in %s", len(sources) - n_missing, n_missing, len(sources), label_file)
            sources = [s for s, h in zip(sources, has) if h]
            if not sources:
                raise Img2TabInputError(f"none of the images has a row in {label_file}")
        elif n_missing:
            first = next(str(s) for s, h in zip(sources, has) if not h)
            raise Img2TabInputError(
                f"{n_missing} of {len(has)} image(s) have no row in {label_file}, e.g. {first!r}; "
                "add their rows, or pass --labeled-only to encode only the labelled images")

    def _getter(column: str | None):
        if column is None:
            return None
        return lambda ids: np.asarray(table.lookup(ids, column))

    inv = load_inverter_spec(args.model, args.device)
    common = dict(
        batch_size=args.batch_size,
        shard_size=args.shard_size,
        labels=_getter(args.label_column),
        protected=_getter(args.protected_column),
        skip_errors=args.skip_errors,
        crop="center" if args.center_crop else None,
        progress=not args.no_progress,
        meta={"label_column": args.label_column, "protected_column": args.protected_column},
        precision=args.precision,
    )
    with cluster_client(args) as client:
        if client is None:
            ds = encode_to_dataset(sources, inv, args.out, device=args.device, **common)
        else:
            from img2tab.distributed import encode_distributed

            ds = encode_distributed(sources, inv, args.out, client, **common)
    print(f"wrote {args.out}: {len(ds)} rows x {ds.n_features} features")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``encode`` subcommand."""
    p = subparsers.add_parser(
        "encode",
        help="encode images to a Ψ dataset with an e4e inverter",
        description="Encode images (files or folders) to StyleSpace Ψ with an e4e inverter and "
        "write a Ψ dataset directory. Work is saved in shards; rerunning the same command after "
        "an interruption resumes where it stopped.",
    )
    p.add_argument("images", nargs="+", help="image files and/or folders")
    p.add_argument("--model", default="default",
                   help="inverter checkpoint (e4e .pt or img2tab directory), or 'default' for the "
                   "embedded model")
    p.add_argument("--out", required=True, help="output Ψ dataset directory (e.g. train.psi)")
    p.add_argument("--batch-size", type=int, default=32, help="images per encoder call")
    p.add_argument("--shard-size", type=int, default=1024, help="images per resumable shard")
    p.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                   help="encoder arithmetic: float32 (exact) or bfloat16 autocast (Psi off by up to "
                   "~2e-2; measured 2.4x faster for the 1024 px encoder at --batch-size 8 on an "
                   "AVX-512 BF16 CPU, not faster at 32; see benchmarks/RESULTS.md)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    p.add_argument("--labels", help="CSV with a header; first column (or --id-column) = file name")
    p.add_argument("--id-column", help="CSV column holding the file names (default: the first)")
    p.add_argument("--celeba-attr", help="CelebA list_attr_celeba.txt")
    p.add_argument("--partition", help="CelebA list_eval_partition.txt (filters by --split)")
    p.add_argument("--split", default="train", help="train, val or test (with --partition)")
    p.add_argument("--label-column", help="column / attribute used as the label (e.g. Smiling)")
    p.add_argument("--labeled-only", action="store_true",
                   help="encode only the images that have a row in --labels / --celeba-attr "
                   "(otherwise images without a row are an error that counts them)")
    p.add_argument("--protected-column", help="column / attribute used as protected attribute")
    p.add_argument("--skip-errors", action="store_true", help="skip unreadable images")
    p.add_argument("--center-crop", action="store_true", help="centre-crop to square first")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_cluster(p)
    add_overwrite(p)
    p.set_defaults(func=_cmd_encode)
