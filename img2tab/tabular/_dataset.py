"""Ψ tables: validation, standardisation, an on-disk dataset format and official-file importers.

A :class:`PsiDataset` is the tabular view of an image collection: one StyleSpace vector Ψ per
image (``psi``, ``(N, D) float32``), optional labels, protected attribute and ids, plus the
:class:`~img2tab.networks.layout.StyleSpaceLayout` that maps a column back to a generator layer
and channel.

On disk a dataset is a directory (by convention ``name.psi/``)::

    name.psi/
        psi.npy         (N, D) float32, loaded with np.load(mmap_mode="r")
        labels.npy      (N,)   optional
        protected.npy   (N,)   optional
        ids.npy         (N,)   optional, unicode strings
        meta.json       format version, N, D, dtype, layout, label names, file sizes/sha256

:meth:`PsiDataset.save` writes everything into a temporary sibling directory, fsyncs it, then
swaps it in with renames, so a crash never leaves a half-written dataset under the target name.
``meta.json`` is written last and :meth:`PsiDataset.load` refuses a directory without it or
whose arrays do not match it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from img2tab._atomic import atomic_dir
from img2tab._json import jsonable, read_json
from img2tab.errors import Img2TabInputError
from img2tab.networks.layout import StyleSpaceLayout

from ._validation import check_labels, check_psi

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "PsiDataset",
    "Standardizer",
    "check_labels",
    "check_psi",
    "default_layout",
    "load_official_psi",
    "standardize",
]

logger = logging.getLogger(__name__)

FORMAT_NAME = "img2tab.psi"
FORMAT_VERSION = 1

_ARRAY_FILES = ("psi", "labels", "protected", "ids")

#: (size, channel_multiplier) configurations tried, in order, to guess a layout from D.
_KNOWN_CONFIGS: tuple[tuple[int, int], ...] = ((1024, 2), (512, 2), (256, 2), (256, 1))


def _check_1d(values: Any, n: int, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr.ravel()
    if arr.ndim != 1 or arr.shape[0] != n:
        raise Img2TabInputError(f"{name} must have shape ({n},) to match psi, got {arr.shape}")
    if arr.dtype == object:  # np.save(allow_pickle=False) cannot store object arrays
        arr = np.asarray([str(v) for v in arr.tolist()])
    return arr


# --------------------------------------------------------------------------- standardisation
def _row_blocks(n: int, d: int, budget: int = 1 << 24) -> range:
    """Start rows of blocks of about ``budget`` bytes of float64 (keeps temporaries small)."""
    return range(0, n, max(1, budget // (8 * max(1, d))))


def _column_stats(psi: np.ndarray, sample_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Float64 mean and (population, ddof=0) std per column, weighted if asked.

    Two passes over row blocks, so a large (memory-mapped) ``psi`` is never copied whole.
    """
    n, d = psi.shape
    step = _row_blocks(n, d).step
    w = None
    if sample_weight is not None:
        w = np.asarray(sample_weight, dtype=np.float64)
        w = w / w.sum()
    mean = np.zeros(d)
    for r0 in range(0, n, step):
        blk = psi[r0 : r0 + step]
        mean += blk.sum(axis=0, dtype=np.float64) if w is None else w[r0 : r0 + step] @ blk
    if w is None:
        mean /= n
    var = np.zeros(d)
    for r0 in range(0, n, step):
        dev = np.subtract(psi[r0 : r0 + step], mean, dtype=np.float64)
        np.square(dev, out=dev)
        var += dev.sum(axis=0) if w is None else w[r0 : r0 + step] @ dev
    if w is None:
        var /= n
    return mean, np.sqrt(var)


def _safe_std(std: np.ndarray, constant: np.ndarray, eps: float) -> np.ndarray:
    std = np.array(std, dtype=np.float64, copy=True)
    bad = constant | ~np.isfinite(std) | (std <= eps)
    std[bad] = 1.0
    return std


def standardize(
    psi: Any,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
    eps: float = 1e-12,
    *,
    sample_weight: np.ndarray | None = None,
    dtype: Any = np.float64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z-score every column: ``z = (psi - mean) / std``.

    Statistics are float64 and use the population std (``ddof=0``, like ``np.std`` and
    scikit-learn's ``StandardScaler``). Columns that are constant (max == min) or whose std is
    ``<= eps`` get ``std = 1`` so they standardise to ``x - mean`` (exactly 0 for a constant
    column), never NaN. The input is never modified.

    Args:
        psi: ``(N, D)`` array.
        mean: ``(D,)`` column means to use instead of computing them (e.g. training statistics
            applied to test data).
        std: ``(D,)`` column stds to use instead of computing them. Entries ``<= eps`` are
            treated as 1.
        eps: absolute threshold below which a std counts as zero.
        sample_weight: optional ``(N,)`` non-negative weights for the statistics.
        dtype: dtype of the returned ``z`` (float64 by default; float32 halves memory).

    Returns:
        ``(z, mean, std)``: ``z`` of shape ``(N, D)`` and the float64 ``(D,)`` statistics used
        (with degenerate stds already replaced by 1).
    """
    x = check_psi(psi)
    if mean is None or std is None:
        m, s = _fit_stats(x, sample_weight, eps)
        mean = m if mean is None else mean
        std = s if std is None else std
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    for arr, nm in ((mean, "mean"), (std, "std")):
        if arr.shape != (x.shape[1],):
            raise Img2TabInputError(f"{nm} must have shape ({x.shape[1]},), got {arr.shape}")
    std = _safe_std(std, np.zeros(std.shape, dtype=bool), eps)
    z = np.empty(x.shape, dtype=dtype)
    step = _row_blocks(*x.shape).step
    for r0 in range(0, x.shape[0], step):
        blk = np.subtract(x[r0 : r0 + step], mean, dtype=np.float64)
        blk /= std
        z[r0 : r0 + step] = blk
    return z, mean, std


def _fit_stats(x: np.ndarray, sample_weight: Any, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Float64 column mean and safe std of a validated ``(N, D)`` array."""
    w = None if sample_weight is None else _check_weights(sample_weight, x.shape[0])
    mean, std = _column_stats(x, w)
    constant = np.max(x, axis=0) == np.min(x, axis=0)
    return mean, _safe_std(std, constant, eps)


def _check_weights(sample_weight: Any, n: int) -> np.ndarray:
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim != 1 or w.shape[0] != n:
        raise Img2TabInputError(f"sample_weight must have shape ({n},), got {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise Img2TabInputError("sample_weight must be finite and non-negative")
    if w.sum() <= 0:
        raise Img2TabInputError("sample_weight sums to zero")
    return w


class Standardizer:
    """Scikit-learn style z-scoring of Ψ columns (see :func:`standardize`).

    Attributes (after :meth:`fit`):
        mean_: ``(D,)`` float64 column means.
        scale_: ``(D,)`` float64 column stds (degenerate ones replaced by 1).
        n_features_in_: D.
    """

    def __init__(self, eps: float = 1e-12) -> None:
        self.eps = eps

    def fit(self, psi: Any, y: Any = None, sample_weight: Any = None) -> Standardizer:
        """Compute column statistics of ``psi`` ``(N, D)``; returns self."""
        self.mean_, self.scale_ = _fit_stats(check_psi(psi), sample_weight, self.eps)
        self.n_features_in_ = int(self.mean_.shape[0])
        return self

    def transform(self, psi: Any) -> np.ndarray:
        """Return ``(psi - mean_) / scale_`` as float64 ``(N, D)``."""
        if not hasattr(self, "mean_"):
            raise Img2TabInputError("Standardizer is not fitted; call fit(psi) first")
        return standardize(psi, self.mean_, self.scale_, eps=self.eps)[0]

    def fit_transform(self, psi: Any, y: Any = None, sample_weight: Any = None) -> np.ndarray:
        """:meth:`fit` then :meth:`transform`."""
        return self.fit(psi, sample_weight=sample_weight).transform(psi)

    def inverse_transform(self, z: Any) -> np.ndarray:
        """Map standardised values back: ``z * scale_ + mean_``."""
        return np.asarray(z, dtype=np.float64) * self.scale_ + self.mean_


# --------------------------------------------------------------------------- layouts
def default_layout(n_features: int) -> StyleSpaceLayout:
    """Guess the StyleSpace layout from the number of Ψ columns.

    9088 -> 1024 px config-f (channel multiplier 2); 8960 -> 512/cm2; 8704 -> 256/cm2;
    7424 -> 256/cm1; anything else -> :meth:`StyleSpaceLayout.flat`.
    """
    for size, cm in _KNOWN_CONFIGS:
        layout = StyleSpaceLayout.from_generator_config(size, cm)
        if layout.total == n_features:
            return layout
    return StyleSpaceLayout.flat(n_features)


# --------------------------------------------------------------------------- dataset
def _sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _write_npy(path: Path, arr: np.ndarray) -> None:
    # Inside an atomic_dir: the folder swap makes the whole dataset atomic.
    with open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(arr), allow_pickle=False)


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


@dataclass(frozen=True, eq=False)
class PsiDataset:
    """A Ψ table with optional labels, protected attribute, ids and StyleSpace layout.

    Attributes:
        psi: ``(N, D)`` float32 StyleSpace vectors (other numeric input is cast to float32;
            a read-only ``np.memmap`` after :meth:`load` with ``mmap=True``).
        labels: ``(N,)`` class labels, or None.
        protected: ``(N,)`` protected attribute (group membership used by the fairness
            metrics; one attribute per dataset, any sortable values), or None.
        ids: ``(N,)`` unicode sample identifiers (e.g. file names), or None.
        layout: StyleSpace layout with ``layout.total == D``, or None.
        label_names: optional names of the classes in ``np.unique(labels)`` order
            (e.g. ``("female", "male")``).
        meta: free JSON-serialisable metadata (encoder, generator, source, ...).
        source: the folder this dataset was loaded from (set by :meth:`load`; None for an
            in-memory dataset). :meth:`img2tab.Img2Tab.save` refers to it instead of copying Ψ.

    Finiteness of ``psi`` is not checked here (that would read a memory-mapped file in full);
    :func:`check_psi` does it where it matters.
    """

    psi: np.ndarray
    labels: np.ndarray | None = None
    protected: np.ndarray | None = None
    ids: np.ndarray | None = None
    layout: StyleSpaceLayout | None = None
    label_names: tuple[str, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        psi = self.psi
        if not isinstance(psi, np.ndarray):
            try:
                psi = np.asarray(psi)
            except (TypeError, ValueError) as exc:
                raise Img2TabInputError(f"psi could not be converted to an array: {exc}") from exc
        if psi.ndim != 2:
            raise Img2TabInputError(
                f"psi must be 2-D with shape (n_samples, n_features), got shape {psi.shape}"
            )
        if psi.dtype.kind not in "biuf":
            raise Img2TabInputError(f"psi must be numeric, got dtype {psi.dtype}")
        if psi.dtype != np.float32:
            psi = psi.astype(np.float32)
        object.__setattr__(self, "psi", psi)
        n, d = psi.shape
        for name in ("labels", "protected", "ids"):
            value = getattr(self, name)
            if value is None:
                continue
            arr = _check_1d(value, n, name)
            if name == "ids":
                arr = arr.astype(str)
            object.__setattr__(self, name, arr)
        if self.layout is not None:
            if not isinstance(self.layout, StyleSpaceLayout):
                raise Img2TabInputError(
                    f"layout must be a StyleSpaceLayout, got {type(self.layout).__name__}"
                )
            if self.layout.total != d:
                raise Img2TabInputError(
                    f"layout describes {self.layout.total} StyleSpace channels but psi has {d} "
                    "columns; pass the layout of the generator that produced psi"
                )
        if self.label_names is not None:
            object.__setattr__(self, "label_names", tuple(str(s) for s in self.label_names))
        if not isinstance(self.meta, Mapping):
            raise Img2TabInputError(f"meta must be a dict, got {type(self.meta).__name__}")
        object.__setattr__(self, "meta", dict(self.meta))

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return int(self.psi.shape[0])

    @property
    def n_features(self) -> int:
        """Number of Ψ columns D."""
        return int(self.psi.shape[1])

    @property
    def classes(self) -> np.ndarray | None:
        """Sorted distinct labels (``np.unique(labels)``), or None without labels."""
        return None if self.labels is None else np.unique(self.labels)

    def __repr__(self) -> str:
        parts = [f"N={len(self)}", f"D={self.n_features}"]
        if self.labels is not None:
            parts.append(f"classes={np.unique(self.labels).tolist()[:10]}")
        for name in ("protected", "ids", "layout"):
            if getattr(self, name) is not None:
                parts.append(name)
        return f"PsiDataset({', '.join(parts)})"

    def subset(self, indices: Any) -> PsiDataset:
        """Rows ``indices`` (int array, slice or boolean mask) as a new in-memory dataset."""
        idx = indices
        if not isinstance(idx, slice):
            idx = np.asarray(idx)
            if idx.dtype == bool:
                if idx.shape != (len(self),):
                    raise Img2TabInputError(f"boolean mask must have shape ({len(self)},), got {idx.shape}")
            elif idx.dtype.kind not in "iu":
                raise Img2TabInputError(f"indices must be integers or a mask, got {idx.dtype}")

        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.array(a[idx])

        return PsiDataset(
            psi=np.array(self.psi[idx], dtype=np.float32),
            labels=take(self.labels),
            protected=take(self.protected),
            ids=take(self.ids),
            layout=self.layout,
            label_names=self.label_names,
            meta=dict(self.meta),
        )

    def split(
        self,
        test_size: float | int = 0.2,
        *,
        stratify: bool = True,
        random_state: int | None = 0,
    ) -> tuple[PsiDataset, PsiDataset]:
        """Random train/test split (stratified by label when available).

        Args:
            test_size: fraction (0..1) or absolute number of test rows.
            stratify: stratify by ``labels`` (ignored without labels).
            random_state: seed for reproducibility.

        Returns:
            ``(train, test)`` in-memory datasets.
        """
        from sklearn.model_selection import train_test_split

        strat = self.labels if (stratify and self.labels is not None) else None
        train_idx, test_idx = train_test_split(
            np.arange(len(self)), test_size=test_size, stratify=strat, random_state=random_state
        )
        return self.subset(np.sort(train_idx)), self.subset(np.sort(test_idx))

    # ------------------------------------------------------------------ IO
    def save(self, path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
        """Write the dataset atomically to directory ``path`` (convention: ``name.psi``).

        Everything is written and fsynced into a temporary sibling directory first;
        ``meta.json`` comes last. Then an existing dataset at ``path`` is renamed aside, the
        new directory renamed into place and the old one deleted. At any instant ``path``
        either does not exist or holds a complete dataset (the previous or the new one).

        Args:
            path: target directory.
            overwrite: replace an existing dataset at ``path``. Existing paths that are not
                img2tab datasets are never replaced.

        Returns:
            The target path.

        Raises:
            FileExistsError: ``path`` exists and is not replaceable.
        """
        target = Path(path)
        if target.exists():
            if not overwrite:
                raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
            if not _is_dataset_dir(target):
                raise FileExistsError(
                    f"{target} exists and is not an img2tab Ψ dataset (no valid meta.json); "
                    "refusing to replace it"
                )
        with atomic_dir(target) as tmp:
            files: dict[str, dict[str, Any]] = {}
            for name in _ARRAY_FILES:
                arr = getattr(self, name)
                if arr is None:
                    continue
                fpath = tmp / f"{name}.npy"
                _write_npy(fpath, arr)
                files[name] = {
                    "file": fpath.name,
                    "shape": list(arr.shape),
                    "dtype": np.asarray(arr).dtype.str,
                    "bytes": fpath.stat().st_size,
                    "sha256": _sha256(fpath),
                }
            meta = {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "n_samples": len(self),
                "n_features": self.n_features,
                "dtype": self.psi.dtype.str,
                "files": files,
                "layout": None if self.layout is None else self.layout.to_dict(),
                "label_names": None if self.label_names is None else list(self.label_names),
                "meta": self.meta,
            }
            text = json.dumps(jsonable(meta), indent=2, allow_nan=False) + "\n"
            _write_bytes(tmp / "meta.json", text.encode("utf-8"))  # last: the folder is complete
        logger.info("saved %r to %s", self, target)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], mmap: bool = True, *, verify: bool = False) -> PsiDataset:
        """Load a dataset written by :meth:`save`.

        Args:
            path: dataset directory.
            mmap: memory-map ``psi.npy`` read-only (``np.load(mmap_mode="r")``) instead of
                reading it into memory.
            verify: also check every file's sha256 against ``meta.json`` (reads all data).

        Raises:
            FileNotFoundError: ``path`` does not exist.
            Img2TabInputError: ``meta.json`` missing/invalid or arrays not matching it
                (an incomplete or corrupted dataset).
        """
        root = Path(path)
        if not root.exists():
            hint = ""
            leftovers = sorted(root.parent.glob(f".{root.name}.old-*"))
            if leftovers:
                hint = f"; a previous version may survive in {leftovers[-1]} (interrupted save)"
            raise FileNotFoundError(f"no Ψ dataset at {root}{hint}")
        meta = _read_meta(root)
        n, d = int(meta["n_samples"]), int(meta["n_features"])
        arrays: dict[str, np.ndarray | None] = {}
        for name in _ARRAY_FILES:
            info = meta["files"].get(name)
            if info is None:
                arrays[name] = None
                continue
            fpath = root / info["file"]
            if not fpath.is_file():
                raise Img2TabInputError(f"{root}: {info['file']} listed in meta.json is missing")
            if fpath.stat().st_size != int(info["bytes"]):
                raise Img2TabInputError(
                    f"{root}: {info['file']} has {fpath.stat().st_size} bytes, meta.json says "
                    f"{info['bytes']} (truncated or replaced file)"
                )
            if verify and _sha256(fpath) != info["sha256"]:
                raise Img2TabInputError(f"{root}: sha256 of {info['file']} does not match meta.json")
            try:
                arr = np.load(fpath, mmap_mode="r" if (mmap and name == "psi") else None, allow_pickle=False)
            except (ValueError, OSError) as exc:
                raise Img2TabInputError(f"{root}: cannot read {info['file']}: {exc}") from exc
            expected = (n, d) if name == "psi" else (n,)
            if tuple(arr.shape) != expected or list(arr.shape) != list(info["shape"]):
                raise Img2TabInputError(
                    f"{root}: {info['file']} has shape {arr.shape}, meta.json expects {expected}"
                )
            arrays[name] = arr
        if arrays["psi"] is None:
            raise Img2TabInputError(f"{root}: meta.json lists no psi.npy")
        layout = meta.get("layout")
        return cls(
            psi=arrays["psi"],
            labels=arrays["labels"],
            protected=arrays["protected"],
            ids=arrays["ids"],
            layout=None if layout is None else StyleSpaceLayout.from_dict(layout),
            label_names=meta.get("label_names"),
            meta=meta.get("meta") or {},
            source=os.fspath(root.resolve()),
        )


def _read_meta(root: Path) -> dict[str, Any]:
    meta_path = root / "meta.json"
    if not meta_path.is_file():
        raise Img2TabInputError(
            f"{root} is not a complete Ψ dataset: meta.json is missing (an interrupted save or "
            "not a dataset directory); re-create it with PsiDataset.save"
        )
    meta = read_json(meta_path, "Ψ dataset header")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise Img2TabInputError(f"{meta_path} is not an img2tab Ψ dataset header")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise Img2TabInputError(
            f"{meta_path} has format_version {version!r}; this img2tab reads up to "
            f"{FORMAT_VERSION} (upgrade img2tab)"
        )
    for key in ("n_samples", "n_features", "files"):
        if key not in meta:
            raise Img2TabInputError(f"{meta_path} lacks {key!r}")
    return meta


def _is_dataset_dir(path: Path) -> bool:
    if not path.is_dir():
        return False
    try:
        _read_meta(path)
    except Img2TabInputError:
        # A directory with only our own array files (e.g. a crashed legacy write) is ours too.
        names = {p.name for p in path.iterdir()}
        return bool(names) and names <= {f"{a}.npy" for a in _ARRAY_FILES} | {"meta.json"}
    return True


# --------------------------------------------------------------------------- official files
def _torch_load(path: str | os.PathLike[str]) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # unpickling errors differ between torch versions
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise Img2TabInputError(
            f"cannot load {path} with torch.load(weights_only=True) ({first}); only plain tensors, "
            "lists and dicts of tensors are accepted (no pickled objects)"
        ) from exc


def _to_numpy(obj: Any, what: str, path: Any) -> np.ndarray:
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return obj
    if isinstance(obj, Mapping):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor | np.ndarray)}
        preferred = [k for k in tensors if str(k).lower() in (what, f"{what}s")]
        if preferred:
            return _to_numpy(tensors[preferred[0]], what, path)
        if len(tensors) == 1:
            return _to_numpy(next(iter(tensors.values())), what, path)
        raise Img2TabInputError(
            f"{path}: dict with keys {list(obj)[:10]}; expected exactly one tensor or a key named {what!r}"
        )
    if isinstance(obj, Sequence) and obj and all(isinstance(t, torch.Tensor) for t in obj):
        parts = [t.detach().cpu().reshape(1, -1) if t.ndim <= 1 else t for t in obj]
        if what == "labels":
            return torch.cat([t.reshape(-1) for t in obj]).numpy()
        return torch.cat(parts, dim=0).numpy()
    raise Img2TabInputError(
        f"{path}: unsupported content {type(obj).__name__}; expected a tensor, a dict holding "
        "one tensor or a list of tensors"
    )


def load_official_psi(
    psi_path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str] | None = None,
    layout: StyleSpaceLayout | str | None = "auto",
    *,
    label_names: Sequence[str] | None = None,
) -> PsiDataset:
    """Import the official Img2Tab pre-encoded Ψ files (torch ``.pt``).

    Accepted content of ``psi_path``: a tensor ``[N, D]`` (a ``[N, 1, D]`` tensor is squeezed),
    a dict holding one tensor (or one under key ``"psi"``), or a list of ``[D]``/``[B, D]``
    tensors (stacked). ``labels_path`` (e.g. ``{attr}_train_labels.pt``) holds a ``[N]`` tensor
    in the same forms. Files are read with ``torch.load(map_location="cpu",
    weights_only=True)``, so no pickled code is executed.

    Args:
        psi_path: ``.pt`` file with Ψ.
        labels_path: optional ``.pt`` file with labels.
        layout: a layout, ``"auto"``/None to guess it from D (:func:`default_layout`: 9088 ->
            1024 px config-f), or ``"flat"`` for a one-layer layout.
        label_names: optional class names.

    Returns:
        A float32 in-memory :class:`PsiDataset` with ``meta["source"]`` set to the file names.
    """
    psi = _to_numpy(_torch_load(psi_path), "psi", psi_path)
    if psi.ndim == 3 and psi.shape[1] == 1:
        psi = psi[:, 0, :]
    if psi.ndim == 1:
        psi = psi.reshape(1, -1)
    if psi.ndim != 2:
        raise Img2TabInputError(f"{psi_path}: Ψ must be [N, D], got shape {psi.shape}")
    labels = None
    if labels_path is not None:
        labels = _to_numpy(_torch_load(labels_path), "labels", labels_path).reshape(-1)
        if labels.shape[0] != psi.shape[0]:
            raise Img2TabInputError(
                f"{labels_path} has {labels.shape[0]} labels but {psi_path} has {psi.shape[0]} Ψ rows"
            )
        if labels.dtype.kind == "f" and np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
    d = psi.shape[1]
    if layout is None or (isinstance(layout, str) and layout == "auto"):
        layout_obj = default_layout(d)
    elif isinstance(layout, str) and layout == "flat":
        layout_obj = StyleSpaceLayout.flat(d)
    elif isinstance(layout, StyleSpaceLayout):
        layout_obj = layout
    else:
        raise Img2TabInputError(f"layout must be a StyleSpaceLayout, 'auto' or 'flat', got {layout!r}")
    meta = {"source": {"psi": os.fspath(psi_path)}}
    if labels_path is not None:
        meta["source"]["labels"] = os.fspath(labels_path)
    return PsiDataset(
        psi=np.asarray(psi, dtype=np.float32),
        labels=labels,
        layout=layout_obj,
        label_names=label_names,
        meta=meta,
    )
