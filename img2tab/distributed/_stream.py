"""Bounded-memory XGBoost training on a Dask cluster: row streams and exact quantile cuts.

``xgboost.dask`` materialises every partition in worker memory and builds XGBoost's quantile
sketch there; on a 9,088-column Ψ the sketch alone grows by gigabytes per 10,000 rows. This
module trains the same model without either:

1. **Cuts by column blocks.** One Dask task per block of columns reads every training row of
   those columns, sorts them and keeps at most ``max_bin + 1`` values per column, chosen by
   XGBoost's own summary pruning applied to the exact column (see :func:`block_summary`).
   The summaries form a small ``(max_bin + 1, D)`` reference matrix whose
   ``QuantileDMatrix`` carries these cuts.
2. **Rows streamed from the store.** Each worker owns a contiguous range of row batches and
   builds its ``xgboost.QuantileDMatrix`` from an ``xgboost.DataIter`` that computes one batch
   at a time (``X[a:b]`` with Dask's synchronous scheduler on that worker), with the reference
   cuts, so it never holds its partition as float32: only XGBoost's bin indices (about 2.2
   bytes per value: a row-wise and a column-wise copy), or, with ``external_memory``, an
   ``xgboost.ExtMemQuantileDMatrix`` whose pages live in files of the worker's local directory,
   so that a worker's memory no longer grows with its rows.
3. **XGBoost's collective.** A ``RabitTracker`` on the scheduler connects one task per worker;
   ``xgboost.train`` then allreduces gradient histograms and evaluation metrics across them,
   as ``xgboost.dask`` does internally. Rank 0 returns the booster.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from img2tab.errors import Img2TabInputError

__all__ = ["block_summary", "cut_reference", "stream_train"]

logger = logging.getLogger(__name__)

_BATCH_BYTES = 96 * 2**20  # float32 rows read at once by a worker's iterator
_TRACKERS: list[Any] = []  # keeps the scheduler-side trackers alive until they finish


# --------------------------------------------------------------------------- quantile cuts
def _prune(counts: np.ndarray, maxsize: int) -> np.ndarray:
    """Indices of the distinct values XGBoost's summary pruning keeps (``WQSummary::SetPrune``).

    ``counts`` are the multiplicities (or summed weights) of a column's sorted distinct values
    (an exact summary: ``rmin`` = rows below, ``rmax`` = rows up to and including, ``wmin`` =
    count); the result
    holds at most ``maxsize`` ascending indices, the first and the last included. Ranks are
    float32 as in XGBoost.
    """
    size = counts.size
    if size <= maxsize:
        return np.arange(size)
    f32 = np.float32
    c = counts.astype(f32)
    rmin = np.cumsum(c, dtype=f32) - c
    rmax = rmin + c
    s2 = rmax + rmin
    begin, span, n = rmax[0], f32(rmin[-1] - rmax[0]), f32(maxsize - 1)
    dx2 = f32(2) * ((np.arange(1, maxsize - 1, dtype=f32) * span) / n + begin)
    i = np.minimum(1 + np.searchsorted(s2[2:], dx2, side="right"), size - 1)
    stop = np.flatnonzero(i == size - 1)
    if stop.size:
        i, dx2 = i[: stop[0]], dx2[: stop[0]]
    pick = np.where(dx2 < (rmin[i] + c[i]) + (rmax[i + 1] - c[i + 1]), i, i + 1)
    keep = np.concatenate([[0], pick])
    keep = keep[np.concatenate([[True], keep[1:] != keep[:-1]])]
    return keep if keep[-1] == size - 1 else np.append(keep, size - 1)


def block_summary(block: np.ndarray, rows: np.ndarray | None, max_bin: int,
                  weights: np.ndarray | None = None) -> np.ndarray:
    """At most ``max_bin + 1`` summary values of every column of a ``(N, c)`` block.

    The summary of a column is XGBoost's final pruning step applied to the column's exact
    distribution (its distinct values with their counts, or with their summed weights), instead
    of to a streaming sketch of it: the distinct values themselves when there are at most
    ``max_bin + 1`` of them, which is exactly what XGBoost's sketch gives on such a column;
    otherwise close to it (XGBoost's sketch is itself approximate there). With integer
    ``weights`` the summary equals that of the block with each row repeated ``weight`` times.

    Args:
        block: ``(N, c)`` values (all rows of ``c`` columns).
        rows: optional ``(N,)`` boolean mask of the rows to summarise (the training rows).
        max_bin: XGBoost's ``max_bin``.
        weights: optional ``(N,)`` non-negative sample weights (XGBoost's weighted sketch);
            rows of weight 0 are left out.

    Returns:
        float32 ``(max_bin + 1, c)``: per column ascending values, padded by repeating the
        largest.
    """
    x = np.asarray(block, dtype=np.float32)
    w = None if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w is not None and w.shape[0] != x.shape[0]:
        raise Img2TabInputError(f"weights has {w.shape[0]} rows but the block has {x.shape[0]}")
    if rows is not None:
        x = x[rows]
        w = None if w is None else w[rows]
    if w is not None:
        if not np.isfinite(w).all() or (w < 0).any():
            raise Img2TabInputError("weights must be finite and non-negative")
        x, w = x[w > 0], w[w > 0]  # a row of weight 0 carries no rank
    s = np.ascontiguousarray(x.T)  # (c, n): each column contiguous
    c, n = s.shape
    out = np.zeros((max_bin + 1, c), dtype=np.float32)
    if n == 0:
        return out
    if w is None:
        s.sort(axis=1)  # float32 sorts are the fastest numpy has
        ws = None
    else:
        order = np.argsort(s, axis=1, kind="stable")
        s = np.take_along_axis(s, order, axis=1)
        ws = w[order]
    for j in range(c):
        col = s[j]
        starts = np.concatenate([[0], np.flatnonzero(col[1:] != col[:-1]) + 1])
        if ws is None:
            counts = np.diff(np.append(starts, n))
        else:
            counts = np.add.reduceat(ws[j], starts)
        values = col[starts][_prune(counts, max_bin + 1)]
        out[: values.size, j] = values
        out[values.size:, j] = values[-1]
    return out


def cut_reference(summary: np.ndarray, max_bin: int, n_threads: int = 1) -> Any:
    """A small ``xgboost.QuantileDMatrix`` whose quantile cuts are those of ``summary``.

    XGBoost's sketch is exact on ``max_bin + 1`` rows, so the cuts of this matrix are made of
    ``summary``'s values: training matrices built with ``ref=`` this one bin by them.
    """
    import xgboost

    return xgboost.QuantileDMatrix(np.ascontiguousarray(summary, dtype=np.float32), max_bin=max_bin,
                                   nthread=n_threads)


# --------------------------------------------------------------------------- row streams
class _Ship:
    """Carries a Dask array into a task without Dask computing it (plain attribute holder)."""

    def __init__(self, array: Any) -> None:
        self.array = array


def batch_bounds(n: int, row_chunk: int, n_features: int,
                 batch_rows: int | None = None) -> list[tuple[int, int]]:
    """Row batches ``[(a, b), ...]`` covering ``0..n``: about ``_BATCH_BYTES`` of float32 each,
    splitting the array's row chunks evenly so that no batch straddles two chunks."""
    if batch_rows is None:
        per_chunk = max(1, -(-row_chunk * n_features * 4 // _BATCH_BYTES))
        batch_rows = max(1, -(-row_chunk // per_chunk))
    if batch_rows < 1:
        raise Img2TabInputError(f"batch_rows must be >= 1, got {batch_rows}")
    bounds = []
    for c0 in range(0, n, row_chunk):
        c1 = min(n, c0 + row_chunk)
        bounds.extend((a, min(c1, a + batch_rows)) for a in range(c0, c1, batch_rows))
    return bounds


def _make_iter(xgboost: Any, X: Any, batches: list[tuple[int, int]], y: np.ndarray,
               keep: np.ndarray | None, w: np.ndarray | None, cache_prefix: str | None = None) -> Any:
    """An ``xgboost.DataIter`` over ``batches`` of the Dask array ``X`` (rows where ``keep``);
    with ``cache_prefix``, for an ``ExtMemQuantileDMatrix`` whose pages go to files there."""

    class RowStream(xgboost.DataIter):
        def __init__(self) -> None:
            self._i = 0
            super().__init__(cache_prefix=cache_prefix, release_data=True)

        def next(self, input_data: Any) -> bool:
            while self._i < len(batches):
                a, b = batches[self._i]
                self._i += 1
                sel = None if keep is None else keep[a:b]
                if sel is not None and not sel.any():
                    continue
                block = np.asarray(X[a:b].compute(scheduler="sync"), dtype=np.float32)
                if sel is not None and not sel.all():
                    block = block[sel]
                    yy, ww = y[a:b][sel], None if w is None else w[a:b][sel]
                else:
                    yy, ww = y[a:b], None if w is None else w[a:b]
                input_data(data=block, label=yy, weight=ww)
                return True
            return False

        def reset(self) -> None:
            self._i = 0

    return RowStream()


def _start_tracker(n_workers: int, host: str | None) -> dict[str, Any]:
    """Runs on the scheduler: start a ``RabitTracker`` for ``n_workers`` tasks, return its args."""
    from xgboost.tracker import RabitTracker

    tracker = RabitTracker(n_workers=n_workers, host_ip=host, sortby="task")
    tracker.start()
    thread = threading.Thread(target=tracker.wait_for, daemon=True)
    thread.start()
    _TRACKERS.append((tracker, thread))
    del _TRACKERS[:-8]
    return dict(tracker.worker_args())


def _cache_root() -> str:
    """The Dask worker's local directory (its scratch space), or the system temp directory."""
    import tempfile

    try:
        from distributed import get_worker

        return get_worker().local_directory
    except (ImportError, ValueError):
        return tempfile.gettempdir()


def _train_task(rank: int, coll_args: dict[str, Any], params: dict[str, Any], rounds: int,
                early_stopping_rounds: int | None, summary: np.ndarray, max_bin: int,
                train: tuple[Any, list, np.ndarray, Any, Any],
                valid: tuple[Any, list, np.ndarray, Any, Any] | None,
                external_memory: bool = False) -> bytes | None:
    """Runs on one worker: stream its rows into quantile matrices, train collectively.

    In memory a matrix costs about 2.2 bytes per value (XGBoost keeps a row-wise and a
    column-wise bin index); with ``external_memory`` its pages go to files in the worker's
    local directory (removed afterwards) and training reads them back one at a time.
    """
    import gc
    import shutil
    import tempfile

    import xgboost
    from xgboost import collective

    n_threads = int(params.get("nthread") or 1)
    ref = cut_reference(summary, max_bin, n_threads)
    cache = tempfile.mkdtemp(prefix=f"img2tab-xgb-{rank}-", dir=_cache_root()) if external_memory else None

    def matrix(spec: tuple[Any, list, np.ndarray, Any, Any], name: str, reference: Any) -> Any:
        ship, batches, y, keep, w = spec
        if cache is None:
            it = _make_iter(xgboost, ship.array, batches, y, keep, w)
            return xgboost.QuantileDMatrix(it, ref=reference, max_bin=max_bin, nthread=n_threads)
        it = _make_iter(xgboost, ship.array, batches, y, keep, w, cache_prefix=f"{cache}/{name}")
        return xgboost.ExtMemQuantileDMatrix(it, ref=reference, max_bin=max_bin, nthread=n_threads)

    try:
        with collective.CommunicatorContext(**coll_args, dmlc_task_id=f"img2tab-{rank:06d}"):
            dtrain = matrix(train, "train", ref)
            evals = [] if valid is None else [(matrix(valid, "valid", dtrain), "validation_0")]
            booster = xgboost.train(params, dtrain, num_boost_round=rounds, evals=evals,
                                    early_stopping_rounds=early_stopping_rounds, verbose_eval=False)
            raw = bytes(booster.save_raw("json")) if collective.get_rank() == 0 else None
            del dtrain, evals, booster
    finally:
        if cache is not None:
            gc.collect()  # the matrices' page files are closed when they are freed
            shutil.rmtree(cache, ignore_errors=True)
    return raw


def _split(batches: list[tuple[int, int]], keep: np.ndarray | None,
           parts: int) -> list[list[tuple[int, int]]]:
    """Contiguous runs of ``batches``, one per worker, with about equal numbers of kept rows
    (a batch goes to the worker whose share holds its first kept row; some may get none)."""
    sizes = np.array([(b - a) if keep is None else int(keep[a:b].sum()) for a, b in batches],
                     dtype=np.float64)
    total = float(sizes.sum())
    start = np.cumsum(sizes) - sizes
    owner = np.minimum(parts - 1, np.floor(start * parts / max(total, 1.0))).astype(np.int64)
    return [[b for b, o in zip(batches, owner, strict=True) if o == k] for k in range(parts)]


def stream_train(client: Any, params: dict[str, Any], rounds: int, early_stopping_rounds: int | None,
                 summary: np.ndarray, max_bin: int, train: tuple[Any, np.ndarray, Any, Any],
                 valid: tuple[Any, np.ndarray, Any, Any] | None, batch_rows: int | None = None,
                 external_memory: bool = False) -> bytes:
    """Train an XGBoost booster on every worker of ``client`` from streamed row batches.

    Args:
        client: a :class:`distributed.Client`.
        params: native XGBoost parameters (``nthread`` = threads per worker).
        rounds: boosting rounds.
        early_stopping_rounds: stop after this many rounds without improvement on ``valid``.
        summary: ``(max_bin + 1, D)`` cut summaries (:func:`block_summary`).
        max_bin: XGBoost ``max_bin``.
        train: ``(X, y, keep, w)``: Dask ``(N, D)`` array, ``(N,)`` encoded labels, optional
            ``(N,)`` boolean row mask, optional ``(N,)`` weights.
        valid: the same for the validation rows, or None.
        batch_rows: rows per streamed batch (default: about 96 MB of float32).
        external_memory: each worker keeps its quantile matrices' pages in files of its local
            directory (``xgboost.ExtMemQuantileDMatrix``), so its memory does not grow with its
            rows; same trees as in memory.

    Returns:
        The trained booster as XGBoost JSON bytes (from rank 0).
    """
    import distributed

    workers = sorted(client.scheduler_info()["workers"])
    if not workers:
        raise Img2TabInputError("the Dask cluster has no workers")

    def plan(part: tuple[Any, np.ndarray, Any, Any]) -> list[list[tuple[int, int]]]:
        X, _, keep, _ = part
        b = batch_bounds(int(X.shape[0]), int(X.chunks[0][0]), int(X.shape[1]), batch_rows)
        return _split(b, keep, len(workers))

    train_plan = plan(train)
    valid_plan = plan(valid) if valid is not None else None
    # a worker without training rows would stall the collective: use fewer workers
    used = [k for k, p in enumerate(train_plan) if p]
    if valid_plan is not None:
        spare = [b for k in range(len(workers)) if k not in used for b in valid_plan[k]]
        valid_plan = [valid_plan[k] for k in used]
        valid_plan[-1] = valid_plan[-1] + spare
    train_plan = [train_plan[k] for k in used]
    workers = [workers[k] for k in used]
    try:
        host = distributed.comm.get_address_host(client.scheduler.address).strip("/:")
    except Exception:  # noqa: BLE001 - an address family without a host (inproc): let xgboost guess
        host = None
    coll_args = client.run_on_scheduler(_start_tracker, len(workers), host)
    keep = train[2]
    logger.info("streaming XGBoost fit on %d worker(s): %s training rows", len(workers),
                ", ".join(str(sum((b - a) if keep is None else int(keep[a:b].sum()) for a, b in p))
                          for p in train_plan))

    def part(spec: tuple[Any, np.ndarray, Any, Any], batches: list[tuple[int, int]]) -> tuple:
        X, y, keep, w = spec
        return (_Ship(X), batches, y, keep, w)

    futures = [
        client.submit(_train_task, rank, coll_args, params, rounds, early_stopping_rounds, summary, max_bin,
                      part(train, train_plan[rank]),
                      None if valid is None else part(valid, valid_plan[rank]), external_memory,
                      workers=[addr], allow_other_workers=False, pure=False, retries=0)
        for rank, addr in enumerate(workers)
    ]
    results = client.gather(futures)
    raw = next((r for r in results if r is not None), None)
    if raw is None:  # pragma: no cover - rank 0 always returns
        raise RuntimeError("no worker returned the trained booster")
    return raw
