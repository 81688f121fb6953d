"""Export two small real image sets as PNG folders + labels.csv, for the own-data recipe.

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
    python scripts/export_small_sets.py --sets digits --size 64 --out /tmp/sets
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import tempfile
from pathlib import Path

import numpy as np


def _write_png(img: np.ndarray, path: Path) -> None:
    """Write one uint8 [H, W] image atomically (temporary file in the same folder, then rename)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img, "L").save(buf, format="PNG")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp_", suffix=".png")
    with os.fdopen(fd, "wb") as fh:
        fh.write(buf.getvalue())
    os.replace(tmp, path)


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """``[N, h, w]`` floats in [0, 1] -> ``[N, size, size]`` uint8 (bicubic)."""
    from PIL import Image

    out = np.empty((len(images), size, size), np.uint8)
    for i, im in enumerate(images):
        pil = Image.fromarray(np.clip(im * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
        out[i] = np.asarray(pil.resize((size, size), Image.Resampling.BICUBIC))
    return out


def _export(name: str, images: np.ndarray, labels: np.ndarray, split: np.ndarray,
            out: Path) -> None:
    root = out / name
    for part in ("train", "test"):
        (root / part).mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (img, lab, part) in enumerate(zip(images, labels, split, strict=True)):
        stem = f"{name}_{i:04d}"
        _write_png(img, root / part / f"{stem}.png")
        rows.append((f"{stem}.png", int(lab), part))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image", "label", "split"])
    w.writerows(rows)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".tmp_", suffix=".csv")
    with os.fdopen(fd, "w") as fh:
        fh.write(buf.getvalue())
    os.replace(tmp, root / "labels.csv")
    n_train = int((split == "train").sum())
    print(f"{name}: {len(images)} images ({n_train} train, {len(images) - n_train} test) "
          f"-> {root}")


def _split(labels: np.ndarray, test_size: int) -> np.ndarray:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    _, test = train_test_split(idx, test_size=test_size, stratify=labels, random_state=0)
    split = np.full(len(labels), "train", dtype=object)
    split[test] = "test"
    return split


def export_digits(out: Path, size: int) -> None:
    """scikit-learn digits: 1,437 train / 360 test, labels 0-9."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = _resize(d.images / 16.0, size)
    _export("digits", images, d.target, _split(d.target, 360), out)


def export_lfw(out: Path, size: int) -> None:
    """skimage's LFW subset: 100 faces (label 1) then 100 non-faces (label 0); 150 / 50 split."""
    from skimage.data import lfw_subset

    x = lfw_subset()
    labels = np.r_[np.ones(100, int), np.zeros(100, int)]
    _export("lfw", _resize(x, size), labels, _split(labels, 50), out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="datasets", help="output folder (default: datasets)")
    p.add_argument("--size", type=int, default=32, help="image size in px (default: 32)")
    p.add_argument("--sets", default="digits,lfw", help="comma-separated: digits, lfw "
                   "(default: digits,lfw)")
    args = p.parse_args(argv)
    out = Path(args.out)
    for name in args.sets.split(","):
        {"digits": export_digits, "lfw": export_lfw}[name.strip()](out, args.size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
