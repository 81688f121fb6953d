"""scripts/export_small_sets.py: the fixed splits and the files it writes."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "export_small_sets.py"


def _module():
    spec = importlib.util.spec_from_file_location("export_small_sets", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_digits_and_lfw_export(tmp_path):
    mod = _module()
    assert mod.main(["--out", str(tmp_path), "--size", "16"]) == 0
    from sklearn.datasets import load_digits

    y = load_digits().target
    rows = _rows(tmp_path / "digits" / "labels.csv")
    assert len(rows) == 1797 and sum(r["split"] == "train" for r in rows) == 1437
    # stratified: every class keeps its share in the test split (±1 image)
    test = np.array([int(r["label"]) for r in rows if r["split"] == "test"])
    assert all(abs((test == c).sum() - 360 * (y == c).mean()) <= 1 for c in range(10))
    assert [int(r["label"]) for r in rows] == y.tolist()
    img = Image.open(tmp_path / "digits" / rows[0]["split"] / rows[0]["image"])
    assert img.size == (16, 16) and img.mode == "L"
    # digit 0 (row 0): the centre column of an 8x8 zero is background, the ring is ink
    arr = np.asarray(img)
    assert arr[8, 8] < arr[8, 3]
    lfw = _rows(tmp_path / "lfw" / "labels.csv")
    assert [int(r["label"]) for r in lfw] == [1] * 100 + [0] * 100
    assert sum(r["split"] == "test" for r in lfw) == 50
    assert sum(r["split"] == "test" and r["label"] == "1" for r in lfw) == 25
    # a second export writes the same split
    assert mod.main(["--out", str(tmp_path / "again"), "--size", "16", "--sets", "lfw"]) == 0
    assert _rows(tmp_path / "again" / "lfw" / "labels.csv") == lfw


def test_load_small_set_errors_and_arrays():
    import pytest

    from img2tab.errors import Img2TabInputError
    from img2tab.small_sets import load_small_set

    s = load_small_set("lfw", size=8)
    assert s.images.shape == (200, 8, 8) and s.images.dtype == np.uint8
    assert (s.split == "test").sum() == 50
    with pytest.raises(Img2TabInputError, match="unknown small set"):
        load_small_set("mnist")
    with pytest.raises(Img2TabInputError, match="size"):
        load_small_set("digits", size=4)
