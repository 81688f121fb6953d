"""Exact per-column W1 relevance of a Dask Ψ array, one task per column block."""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np

from img2tab.errors import Img2TabInputError
from img2tab.tabular import check_labels
from img2tab.tabular._wasserstein import wasserstein_relevance

from ._client import require_dask

__all__ = ["wasserstein_relevance_dask"]

logger = logging.getLogger(__name__)


def _block_w1(block: np.ndarray, labels: np.ndarray, standardize: bool, weights: np.ndarray | None,
              multiclass: str) -> np.ndarray:
    """W1 of one ``(N, c)`` column block (every row): the single-process code, one thread."""
    return wasserstein_relevance(block, labels, standardize, sample_weight=weights, multiclass=multiclass,
                                 n_jobs=1)


def wasserstein_relevance_dask(
    psi: Any,
    labels: Any,
    standardize: bool = True,
    *,
    client: Any = None,
    sample_weight: Any = None,
    multiclass: Literal["ovr", "pairwise"] = "ovr",
    block_cols: int | None = None,
    progress: bool = False,
    return_classes: bool = False,
) -> np.ndarray | tuple[np.ndarray, Any]:
    """:func:`img2tab.tabular.wasserstein_relevance` of a Dask array, by column blocks.

    Each task takes all rows of ``block_cols`` columns (reading only those chunks of the
    store), z-scores and sorts them there, and returns ``block_cols`` scores; the matrix is
    never gathered. Every column's numbers come from the same code as the single-process path,
    so the result equals it (to float rounding, in practice bit for bit).

    Args:
        psi: ``(N, D)`` dask array (e.g. :func:`open_zarr` ``(...).psi``), or a numpy array.
        labels: ``(N,)`` class labels (numpy; small next to Ψ).
        standardize: z-score columns first, as the single-process default.
        client: a :class:`distributed.Client`; None uses the default client, or Dask's local
            scheduler when there is none.
        sample_weight: optional ``(N,)`` weights.
        multiclass: ``"ovr"`` or ``"pairwise"`` with three or more classes.
        block_cols: columns per task (default: the array's column chunk).
        progress: show a progress bar over finished blocks.
        return_classes: also return the classes (or pairs), as the single-process function.

    Returns:
        float64 scores, ``(D,)`` for two classes, ``(R, D)`` otherwise (see
        :func:`~img2tab.tabular.wasserstein_relevance`).
    """
    require_dask()
    import dask
    import dask.array as da

    x = psi if isinstance(psi, da.Array) else da.from_array(np.asarray(psi), chunks=(-1, block_cols or 256))
    if x.ndim != 2:
        raise Img2TabInputError(f"psi must be 2-D (n_samples, n_features), got shape {x.shape}")
    n = int(x.shape[0])
    y = check_labels(labels, n)
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    cols = block_cols or int(x.chunks[1][0])
    if cols < 1:
        raise Img2TabInputError(f"block_cols must be >= 1, got {cols}")
    x = x.rechunk({0: -1, 1: cols})
    blocks = x.to_delayed().ravel()
    logger.info("W1 on Dask: %d rows, %d columns in %d blocks", n, x.shape[1], len(blocks))
    if client is not None:
        # hash=False: a fresh key per call, so releasing an earlier call's copy cannot race us
        y_ref = client.scatter(y, broadcast=True, hash=False)
        w_ref = None if w is None else client.scatter(w, broadcast=True, hash=False)
        tasks = [dask.delayed(_block_w1)(b, y_ref, standardize, w_ref, multiclass) for b in blocks]
        futures = client.compute(tasks)
        if progress:
            from distributed import progress as dask_progress

            dask_progress(futures)
        parts = client.gather(futures)
    else:
        y_d = dask.delayed(y)
        w_d = None if w is None else dask.delayed(w)
        parts = dask.compute(*[dask.delayed(_block_w1)(b, y_d, standardize, w_d, multiclass) for b in blocks])
    out = np.concatenate([np.asarray(p) for p in parts], axis=-1)
    if not return_classes:
        return out
    classes = np.unique(y)
    if classes.size > 2 and multiclass == "pairwise":
        import itertools

        names = classes.tolist()
        return out, [(names[a], names[b]) for a, b in itertools.combinations(range(classes.size), 2)]
    return out, classes
