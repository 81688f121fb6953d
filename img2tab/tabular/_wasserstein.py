"""Per-feature Wasserstein-1 relevance of Ψ columns (Img2Tab's concept relevance score).

For a feature ``k`` and two classes ``a`` and ``b`` the relevance is the 1-D Wasserstein-1
(earth mover's) distance between the class-conditional empirical distributions of column ``k``,
after z-scoring the column over all rows (Img2Tab's default, so that scores are comparable
across channels with different scales).

Exactness and speed
-------------------
Unweighted (the default) uses the quantile form

    W1(A, B) = ∫_0^1 |F_A^{-1}(t) - F_B^{-1}(t)| dt.

The quantile functions are step functions with breakpoints ``{i / n_a}`` and ``{j / n_b}``. The
class sizes are the same for every column, so the merged breakpoint grid (which sorted element
of each class is active on each interval, and the interval lengths) is computed once, in exact
integer arithmetic, and every column costs one values-only sort per class plus one gather and
one dot product. This equals ``scipy.stats.wasserstein_distance`` up to float rounding
(≈1e-15), ties included.

Weighted samples, and one-vs-rest with three or more classes, use the CDF form that scipy uses
(``Σ |F_A - F_B| Δx`` over the merged sorted column), vectorised over a chunk of columns.

Standardisation divides by the column std: ``W1((x - m) / s) = W1(x) / s``. The std is the
population std (``ddof=0``, weighted when ``sample_weight`` is given) over all rows; constant
columns (and stds ``<= 1e-12``) use ``s = 1`` and give exactly 0. This matches
:func:`img2tab.tabular._dataset.standardize`.

Columns are processed in chunks so that the working memory stays around ``64 MB`` besides the
input, which may be a read-only ``np.memmap``.

Every column is independent, so blocks of columns run in a thread pool (``n_jobs``; numpy releases
the GIL in its copies, sorts and gathers) and each block writes its own slice of the result: the
numbers do not depend on the thread count. The Dask version of this loop, one task per column
block, is :func:`img2tab.distributed.wasserstein_relevance_dask`.
"""

from __future__ import annotations

import itertools
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, Literal

import numpy as np

from img2tab.errors import Img2TabInputError

from ._dataset import _check_weights, check_labels, check_psi
from ._table import rank_descending
from ._validation import check_finite

__all__ = ["AGGREGATES", "rank_by_relevance", "relevance_columns", "wasserstein_relevance"]

#: How :func:`wasserstein_relevance` may reduce per-class (or per-pair) W1 rows to one score.
AGGREGATES = ("max", "mean")
_MODES = {"ovr": "ovr", "one-vs-rest": "ovr", "pairwise": "pairwise"}

logger = logging.getLogger(__name__)

_STD_EPS = 1e-12
_WORK_BYTES = 4 * 2**20  # working set per chunk: small enough to stay in L2/L3 cache
_READ_BYTES = 8 * 2**20  # columns copied out of the input at once


@lru_cache(maxsize=64)
def _quantile_grid(na: int, nb: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merged quantile breakpoints of two empirical distributions with ``na`` and ``nb`` atoms.

    Breakpoints are integers ``u`` in units of ``1 / (na * nb)``. On the interval
    ``(u_k, u_{k+1}]`` the quantile function of ``A`` is its ``u_k // nb``-th sorted value and
    that of ``B`` its ``u_k // na``-th one.

    Returns:
        ``(ia, ib, length)``: int64 gather indices into the sorted ``A`` and ``B`` and float64
        interval lengths (summing to 1), each of shape ``(M,)`` with ``M <= na + nb - 1``.
    """
    u = np.union1d(np.arange(na + 1, dtype=np.int64) * nb, np.arange(nb + 1, dtype=np.int64) * na)
    left = u[:-1]
    length = np.diff(u).astype(np.float64) / (float(na) * float(nb))
    ia, ib = left // nb, left // na
    for arr in (ia, ib, length):
        arr.setflags(write=False)
    return ia, ib, length


def _w1_sorted(a_sorted: np.ndarray, b_sorted: np.ndarray) -> np.ndarray:
    """Row-wise W1 between ``(c, na)`` and ``(c, nb)`` row-sorted arrays -> ``(c,)`` float64."""
    ia, ib, length = _quantile_grid(a_sorted.shape[1], b_sorted.shape[1])
    # float32 - float32 is exact in float64; einsum avoids BLAS threads (slow when contended)
    # indices are in range by construction: mode="clip" skips numpy's per-element bounds error path
    diff = np.subtract(np.take(a_sorted, ia, axis=1, mode="clip"), np.take(b_sorted, ib, axis=1, mode="clip"),
                       dtype=np.float64)
    np.abs(diff, out=diff)
    return np.einsum("ij,j->i", diff, length)


def _w1_cdf(order: np.ndarray, dx: np.ndarray, signed_weight: np.ndarray) -> np.ndarray:
    """Row-wise W1 via CDF differences.

    Args:
        order: ``(c, n)`` argsort of each column's values.
        dx: ``(c, n - 1)`` float64 gaps between consecutive sorted values.
        signed_weight: ``(n,)`` weights ``w_i / W_a`` for rows of A, ``-w_i / W_b`` for rows of
            B and 0 elsewhere, so the running sum is ``F_A - F_B``.
    """
    cdf = np.cumsum(np.take(signed_weight, order[:, :-1]), axis=1)
    np.abs(cdf, out=cdf)
    return np.einsum("ij,ij->i", cdf, dx)


def _default_chunk(n: int, d: int, bytes_per_value: int) -> int:
    return int(max(1, min(d, _WORK_BYTES // max(1, bytes_per_value * n))))


def _transposed_copy(x: np.ndarray, c0: int, c1: int, order: np.ndarray | None = None) -> np.ndarray:
    """Columns ``c0:c1`` of ``x`` as a C-contiguous ``(c1 - c0, N)`` copy.

    Copies row blocks that fit in cache instead of walking each column down all rows, which
    is several times faster for a row-major (possibly memory-mapped) ``x``. With ``order``
    (a permutation of the rows) the copy's columns follow it.
    """
    n = x.shape[0]
    out = np.empty((c1 - c0, n), dtype=x.dtype)
    rows = max(1, (1 << 18) // ((c1 - c0) * x.dtype.itemsize))
    for r0 in range(0, n, rows):
        if order is None:
            out[:, r0 : r0 + rows] = x[r0 : r0 + rows, c0:c1].T
        else:
            out[:, r0 : r0 + rows] = x[order[r0 : r0 + rows], c0:c1].T
    return out


def _chunk_quantile_grouped(
    block: np.ndarray, bounds: list[tuple[int, int]], comparisons: list[tuple[tuple[int, ...], ...]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unweighted W1 of a ``(c, N)`` block for single-class-vs-single-class comparisons.

    The block's columns are grouped by class: class ``k`` holds columns
    ``bounds[k][0]:bounds[k][1]`` of ``block``. Each group is sorted in place (the block is a
    private copy), which saves a per-class gather.
    """
    sorted_cls = []
    for a, b in bounds:
        part = block[:, a:b]
        part.sort(axis=1)
        sorted_cls.append(part)
    res = np.empty((len(comparisons), block.shape[0]))
    for j, (a_set, b_set) in enumerate(comparisons):
        res[j] = _w1_sorted(sorted_cls[a_set[0]], sorted_cls[b_set[0]])
    lo = np.min([p[:, 0] for p in sorted_cls], axis=0)
    hi = np.max([p[:, -1] for p in sorted_cls], axis=0)
    return res, lo, hi


def _chunk_cdf(block: np.ndarray, signed: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """W1 of a ``(c, N)`` block through CDF differences, one row per signed weight vector."""
    order = np.argsort(block, axis=1)
    xs = np.take_along_axis(block, order, axis=1).astype(np.float64, copy=False)
    dx = np.diff(xs, axis=1)
    res = np.empty((len(signed), block.shape[0]))
    for j, s in enumerate(signed):
        res[j] = _w1_cdf(order, dx, s)
    return res, xs[:, 0], xs[:, -1]


def _chunk_std(block: np.ndarray, wn: np.ndarray | None, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Safe population std (two-pass, float64) of each row of ``block``; degenerate -> 1."""
    if wn is None:
        mean = block.sum(axis=1, dtype=np.float64) / block.shape[1]
        centred = np.subtract(block, mean[:, None], dtype=np.float64)
        var = np.einsum("ij,ij->i", centred, centred) / block.shape[1]
    else:
        mean = np.einsum("ij,j->i", block.astype(np.float64), wn)
        centred = np.subtract(block, mean[:, None], dtype=np.float64)
        np.square(centred, out=centred)
        var = np.einsum("ij,j->i", centred, wn)
    std = np.sqrt(var)
    std[(lo == hi) | ~np.isfinite(std) | (std <= _STD_EPS)] = 1.0
    return std


def _n_threads(n_jobs: int | None, n_blocks: int) -> int:
    """Threads to use: ``n_jobs`` (None: the usable cores), at most one per block."""
    if n_jobs is None:
        try:
            n_jobs = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not on Linux
            n_jobs = os.cpu_count() or 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int | np.integer) or n_jobs < 1:
        raise Img2TabInputError(f"n_jobs must be a positive int or None, got {n_jobs!r}")
    return int(max(1, min(n_jobs, n_blocks)))


def wasserstein_relevance(
    psi: Any,
    labels: Any,
    standardize: bool = True,
    *,
    sample_weight: Any = None,
    multiclass: Literal["ovr", "one-vs-rest", "pairwise"] = "ovr",
    pair: tuple[Any, Any] | None = None,
    aggregate: Literal["max", "mean"] | None = None,
    chunk_size: int | None = None,
    progress: bool = False,
    return_classes: bool = False,
    n_jobs: int | None = None,
) -> np.ndarray | tuple[np.ndarray, Any]:
    """Exact Wasserstein-1 distance between class-conditional distributions of every column.

    Args:
        psi: ``(N, D)`` Ψ matrix (float32/float64, may be a read-only memmap). Not modified.
        labels: ``(N,)`` class labels, any values ``np.unique`` can sort (0/1, bool, strings,
            ...). Classes are ordered as ``np.unique(labels)``.
        standardize: z-score every column over all rows first (Img2Tab's default). With
            ``False`` the raw-scale W1 is returned.
        sample_weight: optional ``(N,)`` non-negative weights; each class is then a weighted
            empirical distribution (as scipy's ``u_weights``/``v_weights``) and the
            standardisation std is weighted too. Exact, but slower (argsort-based).
        multiclass: with three or more classes, ``"ovr"`` (or ``"one-vs-rest"``) scores each
            class against the pooled rest, ``"pairwise"`` every pair in
            ``itertools.combinations(classes, 2)`` order. Ignored for two classes and with
            ``pair``.
        pair: ``(a, b)``: only W1 between class ``a`` and class ``b`` (labels as given, e.g.
            ``(3, 8)``; ``"3"`` matches the label ``3`` too). Rows of other classes are left out
            of the two distributions, but the standardisation std is still taken over all rows,
            so the result equals the ``(a, b)`` row of ``"pairwise"``. Shape ``(D,)``.
        aggregate: with three or more classes (and no ``pair``), reduce the per-class or
            per-pair rows to one ``(D,)`` score by their ``"max"`` or ``"mean"``. None (the
            default) returns every row: there is no implicit aggregation.
        chunk_size: columns per chunk (default: about 64 MB of working memory).
        progress: show a ``tqdm.auto`` bar over chunks.
        return_classes: also return what each output row compares: the class array
            ``np.unique(labels)`` (binary and ``"ovr"``) or the list of class pairs
            (``"pairwise"``).
        n_jobs: threads over column blocks (None: every core this process may use; 1: no
            pool). The result is the same for any value.

    Returns:
        float64 relevance scores, non-negative, exactly 0 for constant columns:

        - two classes: shape ``(D,)``;
        - ``"ovr"``: shape ``(n_classes, D)``, row ``k`` = class ``classes[k]`` vs rest;
        - ``"pairwise"``: shape ``(n_classes * (n_classes - 1) / 2, D)``;
        - ``pair=(a, b)`` or ``aggregate``: shape ``(D,)``.

        With ``return_classes=True``, a tuple ``(scores, classes_or_pairs)`` (``pair``: the
        pair of class labels; ``aggregate``: the classes or pairs that were aggregated).

    Raises:
        Img2TabInputError: NaN/inf in ``psi``, label length mismatch, fewer than two classes,
            invalid weights (or a class with zero total weight), bad ``multiclass``.
    """
    # finiteness is checked on the sorted blocks (a NaN or inf sorts to a column's ends), in the
    # threads, instead of in one serial pass over the whole matrix first
    x = check_psi(psi, allow_nan=True)
    n, d = x.shape
    y = check_labels(labels, n)
    if multiclass not in _MODES:
        raise Img2TabInputError(
            f"multiclass must be 'ovr', 'one-vs-rest' or 'pairwise', got {multiclass!r}")
    multiclass = _MODES[multiclass]  # type: ignore[assignment]
    if aggregate is not None and aggregate not in AGGREGATES:
        raise Img2TabInputError(f"aggregate must be one of {AGGREGATES} or None, got {aggregate!r}")
    if pair is not None and aggregate is not None:
        raise Img2TabInputError("give pair=(a, b) or aggregate=..., not both (a pair has one W1 row)")
    classes, codes = np.unique(y, return_inverse=True)
    codes = codes.reshape(-1)
    n_classes = classes.size
    w = None if sample_weight is None else _check_weights(sample_weight, n)

    # Comparisons as (class codes of side A, class codes of side B); one output row each.
    if pair is not None:
        ca, cb = _pair_codes(pair, classes)
        comparisons = [((ca,), (cb,))]
        row_info = (classes[ca].item(), classes[cb].item())
    elif n_classes == 2:
        comparisons = [((0,), (1,))]
        row_info: Any = classes
    elif multiclass == "ovr":
        comparisons = [((k,), tuple(j for j in range(n_classes) if j != k)) for k in range(n_classes)]
        row_info = classes
    else:
        pairs = list(itertools.combinations(range(n_classes), 2))
        comparisons = [((a,), (b,)) for a, b in pairs]
        names = classes.tolist()
        row_info = [(names[a], names[b]) for a, b in pairs]

    class_rows = [np.flatnonzero(codes == k) for k in range(n_classes)]
    if w is not None:
        class_w = np.array([w[r].sum() for r in class_rows])
        if (class_w <= 0).any():
            empty = [classes[k].item() for k in np.flatnonzero(class_w <= 0)]
            raise Img2TabInputError(f"classes {empty} have zero total sample_weight")
        wn = w / w.sum()

    use_cdf = w is not None or (n_classes > 2 and multiclass == "ovr" and pair is None)
    if use_cdf:
        signed = []
        for a_set, b_set in comparisons:
            in_a = np.isin(codes, a_set)
            in_b = np.isin(codes, b_set)
            ww = np.ones(n) if w is None else w
            s = np.zeros(n)
            s[in_a] = ww[in_a] / ww[in_a].sum()
            s[in_b] = -ww[in_b] / ww[in_b].sum()
            signed.append(s)
        bytes_per_value = 8 * 6
    else:
        bytes_per_value = x.dtype.itemsize * 3 + 8 * 2

    if chunk_size is None:
        chunk_size = _default_chunk(n, d, bytes_per_value)
    chunk_size = int(chunk_size)
    if chunk_size < 1:
        raise Img2TabInputError(f"chunk_size must be >= 1, got {chunk_size}")
    # Columns are copied out (transposed) in larger read blocks, then processed in chunks.
    read_cols = max(chunk_size, _READ_BYTES // (x.dtype.itemsize * n))
    read_cols = min(d, -(-read_cols // chunk_size) * chunk_size)
    logger.debug(
        "W1: n=%d d=%d classes=%d path=%s chunk=%d read=%d",
        n,
        d,
        n_classes,
        "cdf" if use_cdf else "quantile",
        chunk_size,
        read_cols,
    )

    out = np.empty((len(comparisons), d), dtype=np.float64)
    wn_or_none = None if w is None else wn
    # Quantile path: copy the rows grouped by class, so each class is a slice to sort in place.
    order = None if use_cdf else np.concatenate(class_rows)
    sizes = np.cumsum([0] + [r.size for r in class_rows])
    bounds = [(int(sizes[k]), int(sizes[k + 1])) for k in range(n_classes)]

    finite = [True]

    def run_block(r0: int) -> int:
        r1 = min(d, r0 + read_cols)
        buf = _transposed_copy(x, r0, r1, order)  # (cols, n), never a view of the caller's data
        for c0 in range(r0, r1, chunk_size):
            c1 = min(r1, c0 + chunk_size)
            block = buf[c0 - r0 : c1 - r0]
            if use_cdf:
                out[:, c0:c1], lo, hi = _chunk_cdf(block, signed)
            else:
                out[:, c0:c1], lo, hi = _chunk_quantile_grouped(block, bounds, comparisons)
            if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
                finite[0] = False
                return r1 - r0
            if standardize:
                out[:, c0:c1] /= _chunk_std(block, wn_or_none, lo, hi)
        return r1 - r0

    starts = range(0, d, read_cols)
    workers = _n_threads(n_jobs, len(starts))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=d, desc="W1", unit="col")
    try:
        if workers == 1:
            for r0 in starts:
                done = run_block(r0)
                if bar is not None:
                    bar.update(done)
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="img2tab-w1") as pool:
                for done in pool.map(run_block, starts):
                    if bar is not None:
                        bar.update(done)
    finally:
        if bar is not None:
            bar.close()
    if not finite[0]:
        check_finite(x, "psi")  # raises, naming the bad rows and columns
    # Rounding can leave -0.0 or tiny negatives only through cumsum; clip for a clean score.
    np.maximum(out, 0.0, out=out)

    if n_classes == 2 or pair is not None:
        result = out[0]
    elif aggregate is not None:
        result = out.max(axis=0) if aggregate == "max" else out.mean(axis=0)
    else:
        result = out
    return (result, row_info) if return_classes else result


def _pair_codes(pair: Any, classes: np.ndarray) -> tuple[int, int]:
    """Positions in ``classes`` of the two labels of ``pair`` (exact match, else by text)."""
    if isinstance(pair, str) or not hasattr(pair, "__len__") or len(pair) != 2:
        raise Img2TabInputError(f"pair must be two class labels (a, b), got {pair!r}")
    codes = []
    for label in pair:
        same_kind = isinstance(label, str) == (classes.dtype.kind in "US")
        hit = np.flatnonzero(classes == label) if same_kind else np.zeros(0, dtype=np.int64)
        if hit.size == 0:
            hit = np.flatnonzero(np.asarray([str(c) for c in classes.tolist()]) == str(label))
        if hit.size != 1:
            raise Img2TabInputError(
                f"pair class {label!r} is not one of the labels {classes.tolist()[:20]}")
        codes.append(int(hit[0]))
    if codes[0] == codes[1]:
        raise Img2TabInputError(f"pair must name two different classes, got {pair!r}")
    return codes[0], codes[1]


def relevance_columns(
    psi: Any,
    labels: Any,
    *,
    pair: tuple[Any, Any] | None = None,
    mode: Literal["one-vs-rest", "ovr", "pairwise"] = "one-vs-rest",
    aggregate: Literal["max", "mean"] | None = None,
    standardize: bool = True,
    progress: bool = False,
    n_jobs: int | None = None,
    scores: np.ndarray | None = None,
) -> tuple[str, dict[str, np.ndarray]]:
    """W1 relevance as named ``(D,)`` columns that say what each compares, and the one to rank by.

    - two classes: ``{"w1": ...}`` (the binary behaviour; ``pair`` must name those two classes);
    - ``pair=(a, b)``: ``{"w1[a vs b]": ...}``;
    - otherwise ``aggregate`` is required: one column per class (``"w1[c vs rest]"``, mode
      ``"one-vs-rest"``) or per pair (``"w1[a vs b]"``, mode ``"pairwise"``), then the
      aggregate ``"w1[max of one-vs-rest]"`` (or ``mean``, ``pairwise``), which ranks.

    Args:
        psi: ``(N, D)`` Ψ.
        labels: ``(N,)`` labels.
        pair, mode, aggregate, standardize, progress, n_jobs: see :func:`wasserstein_relevance`
            (``mode`` is its ``multiclass``).
        scores: precomputed per-class / per-pair rows ``(R, D)`` (or ``(D,)`` for two classes)
            for the same labels, mode and standardisation (e.g. from the Dask version); then
            ``psi`` is not read and ``pair`` must be None.

    Returns:
        ``(rank_column, columns)``: the name of the column to rank by and an ordered dict of
        float64 ``(D,)`` columns.

    Raises:
        Img2TabInputError: three or more classes without ``pair`` or ``aggregate`` (there is no
            implicit aggregation), or an invalid pair / mode / aggregate.
    """
    if mode not in _MODES:
        raise Img2TabInputError(f"mode must be 'one-vs-rest' or 'pairwise', got {mode!r}")
    if aggregate is not None and aggregate not in AGGREGATES:
        raise Img2TabInputError(f"aggregate must be one of {AGGREGATES} or None, got {aggregate!r}")
    y = np.asarray(labels).reshape(-1)
    classes = np.unique(y)
    kw = dict(standardize=standardize, progress=progress, n_jobs=n_jobs)
    if classes.size == 2:
        if pair is not None:
            _pair_codes(pair, classes)  # must name the two classes
        w = scores if scores is not None else wasserstein_relevance(psi, y, **kw)
        return "w1", {"w1": np.asarray(w, dtype=np.float64)}
    if pair is not None:
        if scores is not None:
            raise Img2TabInputError("relevance_columns: pass pair or precomputed scores, not both")
        w, names = wasserstein_relevance(psi, y, pair=pair, return_classes=True, **kw)
        name = f"w1[{names[0]} vs {names[1]}]"
        return name, {name: w}
    if aggregate is None:
        raise Img2TabInputError(
            f"the labels have {classes.size} classes: choose pair=(a, b) for W1 between two "
            "classes, or aggregate='max' or 'mean' to rank by one-vs-rest (or pairwise) W1 "
            "(there is no implicit aggregation)")
    mode_key = _MODES[mode]
    if scores is None:
        rows, info = wasserstein_relevance(psi, y, multiclass=mode_key, return_classes=True, **kw)
    else:
        rows = np.asarray(scores, dtype=np.float64)
        names = classes.tolist()
        info = classes if mode_key == "ovr" else [(names[a], names[b]) for a, b in
                                                  itertools.combinations(range(classes.size), 2)]
        if rows.ndim != 2 or rows.shape[0] != len(info):
            raise Img2TabInputError(f"scores must have {len(info)} rows, got shape {rows.shape}")
    if mode_key == "ovr":
        cols = {f"w1[{c} vs rest]": rows[k] for k, c in enumerate(np.asarray(info).tolist())}
    else:
        cols = {f"w1[{a} vs {b}]": rows[k] for k, (a, b) in enumerate(info)}
    agg_name = f"w1[{aggregate} of {'one-vs-rest' if mode_key == 'ovr' else 'pairwise'}]"
    cols[agg_name] = rows.max(axis=0) if aggregate == "max" else rows.mean(axis=0)
    return agg_name, cols


def rank_by_relevance(w1: Any) -> np.ndarray:
    """Feature indices from most to least relevant.

    A stable descending argsort: ties keep the lower index first (unlike the official
    value-lookup, which maps every tie to the first index). NaN scores rank last.

    Args:
        w1: ``(D,)`` scores, or ``(R, D)`` (ranked along the last axis).

    Returns:
        int64 array of the same shape with column indices.
    """
    return rank_descending(w1)
