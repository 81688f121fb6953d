"""Array checks of the tabular half: Ψ matrices, labels, masks, seeds and counts.

One finiteness check (:func:`check_finite`, blockwise so a memory-mapped Ψ is never copied
whole) serves :func:`check_psi`, the classifier and every other caller; every failure is a
one-line :class:`~img2tab.errors.Img2TabInputError` naming the input.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from img2tab.errors import Img2TabInputError

__all__ = [
    "all_finite",
    "as_int_seed",
    "check_finite",
    "check_labels",
    "check_masked",
    "check_positive_int",
    "check_psi",
    "wrap_value_error",
]


def _describe_bad(bad: np.ndarray, what: str, limit: int = 5) -> str:
    idx = np.flatnonzero(bad)
    shown = ", ".join(str(int(i)) for i in idx[:limit])
    more = ", ..." if idx.size > limit else ""
    return f"{idx.size} {what} ({shown}{more})"


def all_finite(arr: np.ndarray) -> bool:
    """``np.isfinite(arr).all()`` of a 2-D array over row blocks (no N x D temporary).

    A block's float64 sum is finite unless the block holds NaN/inf (or overflows, in which case
    the exact element-wise check decides).
    """
    if arr.ndim != 2:
        return bool(np.isfinite(arr).all())
    step = max(1, (1 << 22) // max(1, arr.shape[1]))
    with np.errstate(invalid="ignore", over="ignore"):
        for r0 in range(0, arr.shape[0], step):
            blk = arr[r0 : r0 + step]
            if not np.isfinite(blk.sum(dtype=np.float64)) and not np.isfinite(blk).all():
                return False
    return True


def check_finite(arr: np.ndarray, name: str = "psi", *, hint: str = "before fitting") -> None:
    """Raise a one-line error counting the NaN/inf entries, rows and columns of 2-D ``arr``.

    Args:
        arr: ``(N, D)`` floating array.
        name: name of the input in the message.
        hint: when the rows must be dropped (end of the message).

    Raises:
        Img2TabInputError: ``arr`` holds NaN or inf.
    """
    if all_finite(arr):
        return
    finite = np.isfinite(arr)
    n_nan = int(np.isnan(arr).sum())
    n_inf = int((~finite).sum()) - n_nan
    bad_rows = ~finite.all(axis=1)
    bad_cols = ~finite.all(axis=0)
    raise Img2TabInputError(
        f"{name} (Ψ) contains {n_nan + n_inf} NaN/inf values: {n_nan} NaN and {n_inf} inf value(s) in "
        f"{_describe_bad(bad_rows, 'rows')} and {_describe_bad(bad_cols, 'columns')}; "
        f"drop those rows (e.g. {name}[np.isfinite({name}).all(axis=1)]) or re-encode those "
        f"images {hint}"
    )


def check_psi(
    psi: Any, name: str = "psi", *, allow_nan: bool = False, n_features: int | None = None
) -> np.ndarray:
    """Validate a Ψ matrix and return it as a 2-D floating array (no copy when possible).

    Args:
        psi: array-like of shape ``(N, D)``, numeric. Integer and bool input is converted to
            float64; float32/float64 (including ``np.memmap``) are returned as they are.
        name: name used in error messages.
        allow_nan: skip the finiteness check.
        n_features: expected D (e.g. the classifier's ``n_features_in_``); None: any.

    Returns:
        ``np.ndarray`` of shape ``(N, D)`` with a floating dtype. The input is never modified.

    Raises:
        Img2TabInputError: not 2-D, empty, non-numeric, of the wrong width, or containing
            NaN/inf (the message counts the bad rows and columns and suggests dropping them).
    """
    try:
        arr = np.asarray(psi)
    except (TypeError, ValueError) as exc:  # ragged lists and similar
        msg = " ".join(str(exc).split())
        raise Img2TabInputError(f"{name} could not be converted to an array: {msg}") from exc
    if arr.ndim != 2:
        hint = " (a single sample? use psi.reshape(1, -1))" if arr.ndim == 1 else ""
        raise Img2TabInputError(
            f"{name} must be 2-D with shape (n_samples, n_features), got shape {arr.shape}{hint}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise Img2TabInputError(f"{name} is empty (shape {arr.shape})")
    if n_features is not None and arr.shape[1] != int(n_features):
        raise Img2TabInputError(
            f"{name} has {arr.shape[1]} columns but {int(n_features)} are expected (Ψ of another "
            "generator, or a transposed array?)"
        )
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind != "f":
        raise Img2TabInputError(
            f"{name} must be numeric, got dtype {arr.dtype}; convert it with "
            f"np.asarray({name}, dtype=np.float32)"
        )
    if not allow_nan:
        check_finite(arr, name)
    return arr


def check_labels(
    labels: Any, n: int | None = None, *, name: str = "labels", min_classes: int = 2
) -> np.ndarray:
    """Validate a label vector and return it as a 1-D array.

    Args:
        labels: array-like of shape ``(N,)`` (``(N, 1)`` is flattened). Any values that
            ``np.unique`` can sort (ints, bools, strings, floats).
        n: expected number of samples (``psi.shape[0]``); ``None`` skips the check.
        name: name used in error messages.
        min_classes: minimum number of distinct values (2 for a classifier or W1).

    Returns:
        ``np.ndarray`` of shape ``(N,)``. The input is never modified.

    Raises:
        Img2TabInputError: wrong shape, length mismatch, NaN labels or too few classes.
    """
    arr = np.asarray(labels)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr.ravel()
    if arr.ndim != 1:
        raise Img2TabInputError(f"{name} must be 1-D with shape (n_samples,), got {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise Img2TabInputError(f"{name} has {arr.shape[0]} entries but psi has {n} rows; they must match")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise Img2TabInputError(
            f"{name} contains {_describe_bad(~np.isfinite(arr), 'NaN/inf entries')}; drop those samples"
        )
    if arr.dtype == object:
        try:
            np.unique(arr)
        except TypeError as exc:
            raise Img2TabInputError(f"{name} mixes types that cannot be sorted: {exc}") from exc
    n_classes = np.unique(arr).size
    if n_classes < min_classes:
        found = f"only {np.unique(arr)[:5].tolist()}" if n_classes else "no samples"
        raise Img2TabInputError(
            f"{name} must contain at least {min_classes} classes, found {found}; "
            "a relevance score or classifier needs samples of every class"
        )
    return arr


def check_positive_int(value: Any, name: str = "top_k") -> int:
    """``value`` as a Python int >= 1; bools, non-integral floats, NaN, zero and negatives fail.

    Raises:
        Img2TabInputError: naming ``name`` and the value.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise Img2TabInputError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(value, numbers.Integral):
        out = int(value)
    else:
        f = float(value)
        if not np.isfinite(f) or f != int(f):
            raise Img2TabInputError(f"{name} must be a positive integer, got {value!r}")
        out = int(f)
    if out < 1:
        raise Img2TabInputError(f"{name} must be a positive integer (>= 1), got {value!r}")
    return out


def check_masked(masked: Any, n_features: int) -> np.ndarray:
    """Validate ``masked_features`` against ``n_features``; return sorted unique int64 indices."""
    if masked is None:
        return np.zeros(0, dtype=np.int64)
    arr = np.asarray(masked)
    if arr.dtype == bool:
        if arr.shape != (n_features,):
            raise Img2TabInputError(
                f"a boolean masked_features must have shape ({n_features},), got {arr.shape}"
            )
        arr = np.flatnonzero(arr)
    arr = arr.reshape(-1) if arr.ndim <= 1 else arr
    if arr.ndim != 1:
        raise Img2TabInputError(f"masked_features must be 1-D indices, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise Img2TabInputError(
            f"masked_features must be integer feature indices, got dtype {arr.dtype} ({arr[:5].tolist()})"
        )
    arr = arr.astype(np.int64)
    bad = arr[(arr < 0) | (arr >= n_features)]
    if bad.size:
        raise Img2TabInputError(
            f"masked_features index {int(bad[0])} out of range for {n_features} features "
            f"(valid 0..{n_features - 1}); {bad.size} bad index(es)"
        )
    uniq, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        raise Img2TabInputError(f"masked_features contains duplicates: {uniq[counts > 1][:10].tolist()}")
    if uniq.size >= n_features:
        raise Img2TabInputError(
            f"masked_features masks all {n_features} features; nothing is left to train on"
        )
    return uniq


def as_int_seed(random_state: Any) -> int | None:
    """None, an int, or one draw of a numpy ``RandomState`` as an int seed."""
    if random_state is None or isinstance(random_state, int | np.integer):
        return None if random_state is None else int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    raise Img2TabInputError(f"random_state must be None, an int or a numpy RandomState, got {random_state!r}")


def wrap_value_error(exc: ValueError) -> Img2TabInputError:
    """A library's (multi-line) ValueError as a one-line :class:`Img2TabInputError`."""
    if isinstance(exc, Img2TabInputError):
        return exc
    msg = " ".join(str(exc).split()) or type(exc).__name__
    return Img2TabInputError(msg)
