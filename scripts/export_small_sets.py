"""Export two small real image sets as PNG folders + labels.csv, for the own-data recipe.

A command-line wrapper of :func:`img2tab.small_sets.export_small_set`.

* ``digits``: scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), upscaled to
  ``--size`` px (bicubic; white ink on black), with a fixed stratified split of 1,437 train /
  360 test images (``train_test_split(test_size=360, stratify=y, random_state=0)``).
* ``lfw``: ``skimage.data.lfw_subset()`` (200 real 25x25 grayscale crops: the first 100 are
  faces, the last 100 non-faces), resized to ``--size`` px (bicubic), label ``face`` 1/0, with a
  stratified split of 150 train / 50 test.

Layout written under ``--out`` (default ``datasets/``, which is gitignored)::

    <out>/<name>/train/<id>.png      training images (the folder train-autoencoder reads)
    <out>/<name>/test/<id>.png       held-out images
    <out>/<name>/labels.csv          columns image,label,split (image = file name, no folder)

Usage::

    python scripts/export_small_sets.py                 # both sets, 32 px, into datasets/
    python scripts/export_small_sets.py --sets digits --size 64 --out datasets64
"""

from __future__ import annotations

import argparse
import logging

from img2tab.small_sets import SMALL_SETS, export_small_set


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="datasets", help="output folder (default: datasets)")
    p.add_argument("--size", type=int, default=32, help="image size in px (default: 32)")
    p.add_argument("--sets", default="digits,lfw", help="comma-separated: digits, lfw "
                   "(default: digits,lfw)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in args.sets.split(","):
        name = name.strip()
        if name not in SMALL_SETS:
            p.error(f"--sets: unknown set {name!r}; choose from {', '.join(SMALL_SETS)}")
        export_small_set(name, args.out, args.size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
