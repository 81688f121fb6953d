"""Ψ datasets as zarr stores that Dask reads natively.

Layout of ``name.zarr/`` (zarr format 2, uncompressed: Ψ values are close to incompressible)::

    psi         (N, D) float32, chunks (chunk_rows, chunk_cols)
    labels      (N,)   optional
    protected   (N,)   optional
    ids         (N,)   optional, unicode
    .zattrs     {"format": "img2tab.psi.zarr", "layout": ..., "label_names": ..., "meta": ...}

Chunks are two-dimensional so that both readers stay cheap: a W1 task reads one column block
over all rows, an XGBoost partition one row block over all columns. Conversions stream row
blocks, so neither direction holds the matrix in one process; the store is written into a
temporary sibling folder and renamed into place (:func:`img2tab._atomic.atomic_dir`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from img2tab._atomic import atomic_dir
from img2tab._json import jsonable
from img2tab.errors import Img2TabInputError
from img2tab.networks.layout import StyleSpaceLayout
from img2tab.tabular import PsiDataset

from ._client import require_dask

__all__ = ["FORMAT", "DaskPsi", "dataset_as_dask", "open_zarr", "save_zarr", "zarr_to_dataset"]

logger = logging.getLogger(__name__)

FORMAT = "img2tab.psi.zarr"
_SMALL = ("labels", "protected", "ids")


@dataclass(frozen=True)
class DaskPsi:
    """A Ψ dataset whose matrix is a lazy ``dask.array`` (the small arrays are numpy).

    Attributes:
        psi: ``(N, D)`` float32 dask array.
        labels, protected, ids: ``(N,)`` numpy arrays or None.
        layout: StyleSpace layout or None.
        label_names: class names or None.
        meta: free metadata.
        source: the store it was opened from.
    """

    psi: Any
    labels: np.ndarray | None = None
    protected: np.ndarray | None = None
    ids: np.ndarray | None = None
    layout: StyleSpaceLayout | None = None
    label_names: tuple[str, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    source: str | None = None

    def __len__(self) -> int:
        return int(self.psi.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.psi.shape[1])


def _is_store(path: Path) -> bool:
    import json

    try:
        return json.loads((path / ".zattrs").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def save_zarr(dataset: PsiDataset | str | os.PathLike, path: str | os.PathLike, *,
              chunk_rows: int = 16384, chunk_cols: int = 256, overwrite: bool = True,
              progress: bool = False) -> Path:
    """Write a Ψ dataset (or the dataset folder at ``dataset``) as a zarr store at ``path``.

    Rows are copied ``chunk_rows`` at a time from the (memory-mapped) dataset.

    Args:
        dataset: a :class:`PsiDataset` or the path of one.
        path: target store folder (convention ``name.zarr``).
        chunk_rows: rows per chunk.
        chunk_cols: columns per chunk.
        overwrite: replace an existing img2tab zarr store at ``path``.
        progress: show a progress bar.

    Returns:
        The store path.
    """
    require_dask()
    import zarr
    from tqdm.auto import tqdm

    ds = dataset if isinstance(dataset, PsiDataset) else PsiDataset.load(dataset)
    if chunk_rows < 1 or chunk_cols < 1:
        raise Img2TabInputError(f"chunk_rows and chunk_cols must be positive, got {chunk_rows}, {chunk_cols}")
    n, d = ds.psi.shape
    target = Path(path)
    with atomic_dir(target, overwrite=overwrite, replaceable=_is_store) as tmp:
        g = zarr.open_group(os.fspath(tmp), mode="w", zarr_format=2)
        arr = g.create_array("psi", shape=(n, d), chunks=(min(chunk_rows, max(n, 1)), min(chunk_cols, d)),
                             dtype="float32", compressors=None, fill_value=0.0)
        step = max(1, min(chunk_rows, n))
        for r0 in tqdm(range(0, n, step), desc="zarr", unit="block", disable=not progress):
            arr[r0:r0 + step] = np.asarray(ds.psi[r0:r0 + step], dtype=np.float32)
        for name in _SMALL:
            value = getattr(ds, name)
            if value is not None:
                g.create_array(name, data=np.asarray(value))
        g.attrs.update(jsonable({
            "format": FORMAT,
            "layout": None if ds.layout is None else ds.layout.to_dict(),
            "label_names": None if ds.label_names is None else list(ds.label_names),
            "meta": ds.meta,
        }))
    logger.info("wrote %d x %d Ψ to %s", n, d, target)
    return target


def open_zarr(path: str | os.PathLike) -> DaskPsi:
    """Open a store written by :func:`save_zarr` (or by :func:`encode_distributed`) lazily."""
    require_dask()
    import dask.array as da
    import zarr

    root = Path(path)
    if not _is_store(root):
        raise Img2TabInputError(f"{root} is not an img2tab zarr Ψ store (no {FORMAT!r} in .zattrs)")
    g = zarr.open_group(os.fspath(root), mode="r", zarr_format=2)
    attrs = dict(g.attrs)
    small = {name: (np.asarray(g[name][:]) if name in g else None) for name in _SMALL}
    layout = attrs.get("layout")
    names = attrs.get("label_names")
    return DaskPsi(
        psi=da.from_zarr(g["psi"]),
        layout=None if layout is None else StyleSpaceLayout.from_dict(layout),
        label_names=None if names is None else tuple(names),
        meta=dict(attrs.get("meta") or {}),
        source=os.fspath(root),
        **small,
    )


def zarr_to_dataset(path: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = True) -> PsiDataset:
    """Convert a zarr store back into a :class:`PsiDataset` folder, streaming row blocks.

    Ψ goes through a temporary memory-mapped ``.npy`` next to ``out`` (so, briefly, twice its
    size on disk), never through one process's memory.
    """
    src = open_zarr(path)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n, d = src.psi.shape
    rows = int(src.psi.chunks[0][0]) if n else 1
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        mm = np.lib.format.open_memmap(Path(tmp) / "psi.npy", mode="w+", dtype=np.float32, shape=(n, d))
        for r0 in range(0, n, rows):
            mm[r0:r0 + rows] = src.psi[r0:r0 + rows].compute(scheduler="sync")
        mm.flush()
        ds = PsiDataset(mm, src.labels, src.protected, src.ids, layout=src.layout,
                        label_names=src.label_names, meta=src.meta)
        ds.save(out, overwrite=overwrite)
        del ds, mm
    return PsiDataset.load(out)


def _read_block(path: str, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """Runs on a worker: one block of a dataset's ``psi.npy``, memory-mapped, copied out."""
    return np.array(np.load(path, mmap_mode="r")[r0:r1, c0:c1])


def dataset_as_dask(path: str | os.PathLike, *, chunk_rows: int = 16384, chunk_cols: int = 256) -> DaskPsi:
    """A :class:`PsiDataset` folder as a :class:`DaskPsi`, without converting it.

    Every block task memory-maps ``psi.npy`` on its worker and copies out its rows and columns
    (the folder must be visible to the workers); nothing but the path travels in the graph.
    """
    require_dask()
    import dask
    import dask.array as da

    ds = PsiDataset.load(path)
    n, d = ds.psi.shape
    if chunk_rows < 1 or chunk_cols < 1:
        raise Img2TabInputError(f"chunk_rows and chunk_cols must be positive, got {chunk_rows}, {chunk_cols}")
    npy = os.fspath(Path(path) / "psi.npy")
    read = dask.delayed(_read_block, pure=True)
    grid = [
        [da.from_delayed(read(npy, r0, min(n, r0 + chunk_rows), c0, min(d, c0 + chunk_cols)),
                         shape=(min(n, r0 + chunk_rows) - r0, min(d, c0 + chunk_cols) - c0), dtype=np.float32)
         for c0 in range(0, d, chunk_cols)]
        for r0 in range(0, max(n, 1), chunk_rows)
    ]
    return DaskPsi(psi=da.block(grid), labels=ds.labels, protected=ds.protected, ids=ds.ids, layout=ds.layout,
                   label_names=ds.label_names, meta=ds.meta, source=os.fspath(path))
