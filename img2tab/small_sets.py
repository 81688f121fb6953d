"""Two small real image sets for trying the own-data path, exported as PNG folders.

* ``digits``: scikit-learn's 8×8 handwritten digits (1,797 images, 10 classes, shipped inside
  scikit-learn), upscaled to ``size`` px (bicubic; white ink on black), with a fixed stratified
  split of 1,437 train / 360 test images (``train_test_split(test_size=360, stratify=y,
  random_state=0)``).
* ``lfw``: ``skimage.data.lfw_subset()`` (200 real 25×25 grayscale crops, shipped inside
  scikit-image: the first 100 are faces, the last 100 non-faces), resized to ``size`` px
  (bicubic), label ``face`` 1/0, stratified split of 150 train / 50 test.

:func:`export_small_set` writes::

    <out>/<name>/train/<name>_<i>.png    training images (the folder train-autoencoder reads)
    <out>/<name>/test/<name>_<i>.png     held-out images
    <out>/<name>/labels.csv              columns image,label,split (image = file name)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._atomic import atomic_write_text
from .errors import Img2TabInputError
from .io import save_image_folder

__all__ = ["SMALL_SETS", "SmallSet", "export_small_set", "load_small_set"]

logger = logging.getLogger(__name__)

SMALL_SETS = ("digits", "lfw")


@dataclass(frozen=True)
class SmallSet:
    """One small set in memory.

    Attributes:
        name: ``"digits"`` or ``"lfw"``.
        images: uint8 ``[N, size, size]`` grayscale images.
        labels: int64 ``[N]`` labels.
        split: ``[N]`` ``"train"`` / ``"test"``.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    split: np.ndarray


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """``[N, h, w]`` floats in [0, 1] -> ``[N, size, size]`` uint8 (bicubic)."""
    from PIL import Image

    out = np.empty((len(images), size, size), np.uint8)
    for i, im in enumerate(images):
        pil = Image.fromarray(np.clip(im * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
        out[i] = np.asarray(pil.resize((size, size), Image.Resampling.BICUBIC))
    return out


def _split(labels: np.ndarray, test_size: int) -> np.ndarray:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    _, test = train_test_split(idx, test_size=test_size, stratify=labels, random_state=0)
    split = np.full(len(labels), "train", dtype=object)
    split[test] = "test"
    return split.astype(str)


def load_small_set(name: str, size: int = 32) -> SmallSet:
    """Load ``"digits"`` or ``"lfw"`` (see the module docstring) at ``size`` px."""
    if not isinstance(size, int) or size < 8:
        raise Img2TabInputError(f"size must be an int >= 8, got {size!r}")
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        labels = d.target.astype(np.int64)
        return SmallSet(name, _resize(d.images / 16.0, size), labels, _split(labels, 360))
    if name == "lfw":
        try:
            from skimage.data import lfw_subset
        except ImportError as exc:  # pragma: no cover - scikit-image is in the peers/dev extras
            raise Img2TabInputError("the lfw set needs scikit-image: pip install scikit-image") from exc
        labels = np.r_[np.ones(100, np.int64), np.zeros(100, np.int64)]
        return SmallSet(name, _resize(lfw_subset(), size), labels, _split(labels, 50))
    raise Img2TabInputError(f"unknown small set {name!r}; choose one of {', '.join(SMALL_SETS)}")


def export_small_set(name: str, out: str | os.PathLike[str], size: int = 32) -> Path:
    """Write ``out/name/{train,test}/*.png`` and ``out/name/labels.csv``; returns ``out/name``."""
    s = load_small_set(name, size)
    root = Path(out) / name
    stems = np.array([f"{name}_{i:04d}" for i in range(len(s.images))])
    for part in ("train", "test"):
        m = s.split == part
        save_image_folder(s.images[m], root / part, names=stems[m].tolist())
    rows = "".join(f"{st}.png,{int(y)},{p}\n" for st, y, p in zip(stems, s.labels, s.split, strict=True))
    atomic_write_text(root / "labels.csv", "image,label,split\n" + rows)
    n_train = int((s.split == "train").sum())
    logger.info("%s: %d images (%d train, %d test) -> %s", name, len(s.images), n_train,
                len(s.images) - n_train, root)
    return root
