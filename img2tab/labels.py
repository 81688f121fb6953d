"""Label files: generic CSV and CelebA's ``list_attr_celeba.txt`` / ``list_eval_partition.txt``."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import Img2TabInputError

__all__ = [
    "CelebAAttributes",
    "LabelTable",
    "read_celeba_attributes",
    "read_celeba_partition",
    "read_label_csv",
]

_CELEBA_SPLITS = {"train": 0, "val": 1, "valid": 1, "test": 2}


@dataclass(frozen=True)
class LabelTable:
    """Per-image values keyed by image id (file name).

    Attributes:
        ids: ``(N,)`` image ids as written in the file.
        columns: column name -> ``(N,)`` values.
    """

    ids: np.ndarray
    columns: dict[str, np.ndarray]

    def _index(self) -> dict[str, int]:
        return {str(k): i for i, k in enumerate(self.ids)}

    def has_rows(self, ids: list[str] | np.ndarray) -> np.ndarray:
        """``(len(ids),)`` bool: which ids have a row (matched as :meth:`lookup` matches them)."""
        index = self._index()
        return np.asarray([str(i) in index or os.path.basename(str(i)) in index for i in ids],
                          dtype=bool).reshape(-1)

    def lookup(self, ids: list[str] | np.ndarray, column: str) -> np.ndarray:
        """Values of ``column`` for ``ids`` (matched by exact id, then by file name).

        Raises:
            Img2TabInputError: for an unknown column or ids missing from the table.
        """
        if column not in self.columns:
            raise Img2TabInputError(
                f"label column {column!r} not found; available: {', '.join(self.columns)}"
            )
        index = self._index()
        rows = []
        missing = []
        for ident in ids:
            i = index.get(str(ident), index.get(os.path.basename(str(ident))))
            if i is None:
                missing.append(str(ident))
            rows.append(-1 if i is None else i)
        if missing:
            raise Img2TabInputError(
                f"{len(missing)} of {len(rows)} image(s) have no row in the label file, e.g. "
                f"{missing[0]!r}"
            )
        return self.columns[column][np.asarray(rows, dtype=np.int64)]


@dataclass(frozen=True)
class CelebAAttributes(LabelTable):
    """CelebA attributes as 0/1 integers (the file's -1 becomes 0)."""


def _read_lines(path: str | os.PathLike) -> list[str]:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"label file not found: {p}")
    return [ln for ln in p.read_text().splitlines() if ln.strip()]


def read_label_csv(
    path: str | os.PathLike, id_column: str | None = None
) -> LabelTable:
    """Read a CSV with a header; ``id_column`` (default: the first column) names the images.

    Numeric columns become numbers, other columns stay strings.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"label file not found: {p}")
    with p.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise Img2TabInputError(f"{p} has no data rows (a header line and one row per image)")
    names = list(rows[0].keys())
    id_column = id_column or names[0]
    if id_column not in names:
        raise Img2TabInputError(f"{p} has no column {id_column!r}; columns: {', '.join(names)}")
    cols: dict[str, np.ndarray] = {}
    for name in names:
        if name == id_column:
            continue
        raw = [r[name] for r in rows]
        try:
            arr = np.asarray([float(v) for v in raw])
            if np.all(arr == np.round(arr)):
                arr = arr.astype(np.int64)
        except ValueError:
            arr = np.asarray(raw)
        cols[name] = arr
    return LabelTable(np.asarray([r[id_column] for r in rows]), cols)


def read_celeba_attributes(path: str | os.PathLike) -> CelebAAttributes:
    """Parse ``list_attr_celeba.txt``: a count line, a header of 40 names, then
    ``<file> <±1 x 40>`` rows. Values are returned as 0/1."""
    lines = _read_lines(path)
    if len(lines) < 3:
        raise Img2TabInputError(f"{path} is too short for list_attr_celeba.txt format")
    try:
        count = int(lines[0].split()[0])
    except ValueError:
        raise Img2TabInputError(
            f"{path}: first line should be the number of images, got {lines[0][:40]!r}"
        ) from None
    names = lines[1].split()
    rows = [ln.split() for ln in lines[2:]]
    bad = [i for i, r in enumerate(rows) if len(r) != len(names) + 1]
    if bad:
        raise Img2TabInputError(
            f"{path}: line {bad[0] + 3} has {len(rows[bad[0]]) - 1} values, expected {len(names)}"
        )
    if count != len(rows):
        raise Img2TabInputError(f"{path}: header says {count} images but {len(rows)} rows follow")
    values = np.asarray([[int(v) for v in r[1:]] for r in rows], dtype=np.int64)
    if not np.isin(values, (-1, 1)).all():
        raise Img2TabInputError(f"{path}: attribute values must be -1 or 1")
    ids = np.asarray([r[0] for r in rows])
    return CelebAAttributes(ids, {n: (values[:, j] > 0).astype(np.int64)
                                  for j, n in enumerate(names)})


def read_celeba_partition(path: str | os.PathLike) -> LabelTable:
    """Parse ``list_eval_partition.txt`` (``<file> <0|1|2>``; 0 train, 1 val, 2 test) into a
    table with column ``"partition"``."""
    rows = [ln.split() for ln in _read_lines(path)]
    if any(len(r) != 2 or r[1] not in ("0", "1", "2") for r in rows):
        raise Img2TabInputError(f"{path}: expected lines '<file> <0|1|2>'")
    return LabelTable(np.asarray([r[0] for r in rows]),
                      {"partition": np.asarray([int(r[1]) for r in rows], dtype=np.int64)})


def split_code(name: str) -> int:
    """CelebA partition code of ``"train"``, ``"val"`` or ``"test"``."""
    try:
        return _CELEBA_SPLITS[name]
    except KeyError:
        raise Img2TabInputError(f"unknown split {name!r}; use train, val or test") from None
