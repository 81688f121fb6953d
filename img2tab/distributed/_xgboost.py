""":class:`~img2tab.tabular.ConceptClassifier` fitted on a Dask cluster: streamed with bounded
memory (:mod:`img2tab.distributed._stream`, the default) or through ``xgboost.dask``.

The fitted classifier is an ordinary one: its inner model is a local ``xgboost.XGBClassifier``
loaded from the booster the cluster trained, so ``predict``, importances, contributions and
:meth:`~img2tab.tabular.ConceptClassifier.save` work, and save in the same format, as after a
single-process fit.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import numpy as np

from img2tab.errors import Img2TabInputError
from img2tab.tabular._validation import as_int_seed, check_masked

from ._client import require_dask

__all__ = ["fit_classifier_dask", "predict_proba_dask"]

logger = logging.getLogger(__name__)


def _fill_columns(
    block: np.ndarray, columns: np.ndarray, values: np.ndarray, block_info: Any = None
) -> np.ndarray:
    """A copy of ``block`` whose global ``columns`` hold ``values`` (``"mean"`` masking)."""
    c0, c1 = block_info[0]["array-location"][1]
    sel = (columns >= c0) & (columns < c1)
    if not sel.any():
        return block
    out = np.array(block, copy=True)
    out[:, columns[sel] - c0] = values[sel].astype(out.dtype)
    return out


def _masked_view(clf: Any, X: Any) -> Any:
    """The inner model's view of dask ``X`` (columns dropped or set to their means), lazily."""
    if clf.masked_features_.size == 0:
        return X
    if clf.mask_strategy_ == "drop":
        return X[:, clf.kept_features_]
    return X.map_blocks(_fill_columns, clf.masked_features_, clf.mask_values_, dtype=X.dtype)


def _rows_like(values: np.ndarray, X: Any) -> Any:
    import dask.array as da

    return da.from_array(values, chunks=(X.chunks[0],))


def fit_classifier_dask(clf: Any, X: Any, y: Any, *, client: Any, sample_weight: Any = None,
                        eval_set: tuple[Any, Any] | None = None, streaming: bool = True,
                        batch_rows: int | None = None, cut_block_cols: int = 128,
                        external_memory: bool | str = "auto") -> Any:
    """Fit ``clf`` (``model="xgboost"``) on a Dask array across the cluster's workers.

    Masking, the early-stopping split (the same stratified split of row indices as a local
    fit), ``eval_set`` and ``sample_weight`` behave as in :meth:`ConceptClassifier.fit`.

    Two engines:

    - ``streaming=True`` (default, bounded memory): quantile cuts computed exactly by column
      blocks, then every worker streams its range of rows batch by batch into an
      ``xgboost.QuantileDMatrix`` (about 2.2 bytes per value) or, with ``external_memory``,
      into an ``xgboost.ExtMemQuantileDMatrix`` paged to the worker's local directory; the
      workers train together through XGBoost's collective (see
      :mod:`img2tab.distributed._stream`). A worker never holds its rows as float32 nor
      XGBoost's quantile sketch. With at most ``max_bin + 1`` distinct values per column the
      cuts, hence the trees, are those of a local fit; otherwise the cuts are exact (weighted,
      with ``sample_weight``) quantiles where XGBoost's sketch approximates them.
    - ``streaming=False``: ``xgboost.dask`` (row chunks become partitions held in worker memory,
      XGBoost's distributed sketch).

    Args:
        clf: an unfitted or fitted :class:`ConceptClassifier`; fitted in place and returned.
        X: ``(N, D)`` dask array of Ψ (e.g. :func:`open_zarr` ``(...).psi``). With streaming,
            every worker computes its row batches from this array's graph, so it should read
            from storage the workers see (zarr, :func:`dataset_as_dask`), not wrap a large
            in-memory array.
        y: ``(N,)`` labels (numpy or dask; they are gathered: labels are small).
        client: a :class:`distributed.Client`.
        sample_weight: optional ``(N,)`` weights.
        eval_set: optional ``(X_val, y_val)`` for early stopping (dask or numpy).
        streaming: use the bounded-memory engine (True) or ``xgboost.dask`` (False).
        batch_rows: streaming: rows per batch a worker reads at once (default: about 96 MB of
            float32, splitting the array's row chunks evenly).
        cut_block_cols: streaming: columns per quantile-cut task (each holds all training rows
            of that many columns: ``N x cut_block_cols x 4`` bytes, twice while sorting).
        external_memory: streaming: page each worker's matrices to disk (True), keep them in
            memory (False), or ``"auto"``: page when a worker's in-memory matrices (about
            ``2.2 x rows x columns`` bytes) would exceed a quarter of its Dask memory limit.
            The trees are the same either way; paging costs local disk space (3.7 bytes per
            value measured at 200,000 x 9,088) and reads the pages back every round.

    Returns:
        ``clf``.
    """
    require_dask()
    import dask.array as da
    import xgboost
    import xgboost.dask  # noqa: F401  (a submodule, not imported by xgboost itself)
    from sklearn.model_selection import train_test_split

    if clf.model != "xgboost":
        raise Img2TabInputError(f"the Dask fit needs model='xgboost', this classifier is {clf.model!r}")
    cfg = clf._config()
    if cfg["standardize"]:
        raise Img2TabInputError("standardize=True is not supported on Dask (trees do not need it)")
    if not isinstance(X, da.Array):
        X = da.from_array(np.asarray(X), chunks=(max(1, len(X) // 2), -1))
    if X.ndim != 2:
        raise Img2TabInputError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
    y = np.asarray(y.compute() if hasattr(y, "compute") else y).reshape(-1)
    if y.shape[0] != X.shape[0]:
        raise Img2TabInputError(f"X has {X.shape[0]} rows but y has {y.shape[0]} labels")
    classes, y_enc = np.unique(y, return_inverse=True)
    y_enc = y_enc.reshape(-1).astype(np.int64)
    if classes.size < 2:
        raise Img2TabInputError(f"y contains only one class ({classes[0]!r}); a classifier needs two")
    sw = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    n_features = int(X.shape[1])
    masked = check_masked(clf.masked_features, n_features)

    clf.classes_ = classes
    clf.n_features_in_ = n_features

    def column_means(cols: np.ndarray) -> np.ndarray:
        sub = X[:, cols]
        if sw is None:
            means = sub.mean(axis=0, dtype=np.float64)
        else:
            means = (sub * _rows_like(sw, X)[:, None]).sum(axis=0, dtype=np.float64) / sw.sum()
        return np.asarray(client.compute(means).result(), dtype=np.float64)

    clf._init_mask(n_features, masked, column_means)
    Xm = _masked_view(clf, X)

    if streaming:
        return _fit_streaming(clf, cfg, Xm, y_enc, sw, eval_set, client, batch_rows, cut_block_cols,
                              external_memory)

    fit_kw: dict[str, Any] = {}
    esr = cfg["early_stopping_rounds"]
    X_fit, y_fit, sw_fit = Xm, y_enc, sw
    if esr is not None:
        if eval_set is not None:
            Xv = eval_set[0] if isinstance(eval_set[0], da.Array) else da.from_array(np.asarray(eval_set[0]))
            yv = eval_set[1].compute() if hasattr(eval_set[1], "compute") else eval_set[1]
            yv = np.asarray(yv).reshape(-1)
            unknown = np.setdiff1d(np.unique(yv), classes)
            if unknown.size:
                raise Img2TabInputError(f"eval_set labels {unknown[:5].tolist()} were not seen in y")
            X_val, y_val, sw_val = _masked_view(clf, Xv), np.searchsorted(classes, yv), None
        else:
            idx = np.arange(X.shape[0])
            seed = as_int_seed(cfg["random_state"])
            try:
                tr, va = train_test_split(
                    idx, test_size=clf.validation_fraction, stratify=y_enc, random_state=seed
                )
            except ValueError:
                tr, va = train_test_split(idx, test_size=clf.validation_fraction, random_state=seed)
            tr, va = np.sort(tr), np.sort(va)
            X_fit, y_fit = Xm[tr], y_enc[tr]
            X_val, y_val = Xm[va], y_enc[va]
            sw_fit = None if sw is None else sw[tr]
            sw_val = None if sw is None else sw[va]
        fit_kw["eval_set"] = [(X_val, _rows_like(y_val, X_val))]
        if sw_val is not None:
            fit_kw["sample_weight_eval_set"] = [_rows_like(sw_val, X_val)]
        fit_kw["verbose"] = False
    if sw_fit is not None:
        fit_kw["sample_weight"] = _rows_like(sw_fit, X_fit)

    params = clf._build(cfg).get_params()
    params.pop("callbacks", None)
    dest = xgboost.dask.DaskXGBClassifier(**params)
    dest.client = client
    logger.info("xgboost.dask fit: %d rows x %d columns in %d partitions", X_fit.shape[0], X_fit.shape[1],
                X_fit.numblocks[0])
    dest.fit(X_fit, _rows_like(y_fit, X_fit), **fit_kw)
    local = xgboost.XGBClassifier(**params)
    with tempfile.TemporaryDirectory() as tmp:  # the sklearn metadata travels with the file
        path = os.path.join(tmp, "model.json")
        dest.save_model(path)
        local.load_model(path)
    return _finish(clf, cfg, local)


def _finish(clf: Any, cfg: dict[str, Any], local: Any) -> Any:
    """Set the fitted attributes of ``clf`` from its local inner ``XGBClassifier``."""
    from img2tab.tabular._classifier import _normalise

    clf.estimator_ = local
    clf.device_ = cfg["device"]
    clf.best_iteration_ = (clf._backend.best_iteration(local) if cfg["early_stopping_rounds"] is not None
                           else None)
    clf.feature_importances_ = _normalise(clf.importance())
    return clf


def _split_rows(clf: Any, cfg: dict[str, Any], y_enc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The local fit's early-stopping split: sorted ``(train, validation)`` row indices."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(y_enc.shape[0])
    seed = as_int_seed(cfg["random_state"])
    try:
        tr, va = train_test_split(idx, test_size=clf.validation_fraction, stratify=y_enc, random_state=seed)
    except ValueError:
        tr, va = train_test_split(idx, test_size=clf.validation_fraction, random_state=seed)
    return np.sort(tr), np.sort(va)


def _summaries(client: Any, Xm: Any, keep: np.ndarray | None, sw: np.ndarray | None, max_bin: int,
               block_cols: int) -> np.ndarray:
    """``(max_bin + 1, D)`` cut summaries of ``Xm``'s training rows (weighted by ``sw``), one
    task per column block."""
    import dask

    from ._stream import block_summary

    if block_cols < 1:
        raise Img2TabInputError(f"cut_block_cols must be >= 1, got {block_cols}")
    blocks = Xm.rechunk({0: -1, 1: block_cols}).to_delayed().ravel()
    keep_ref = None if keep is None else client.scatter(keep, broadcast=True, hash=False)
    sw_ref = None if sw is None else client.scatter(sw, broadcast=True, hash=False)
    tasks = [dask.delayed(block_summary)(b, keep_ref, max_bin, sw_ref) for b in blocks]
    parts = client.gather(client.compute(tasks))
    return np.concatenate(parts, axis=1)


def _fit_streaming(clf: Any, cfg: dict[str, Any], Xm: Any, y_enc: np.ndarray, sw: np.ndarray | None,
                   eval_set: tuple[Any, Any] | None, client: Any, batch_rows: int | None,
                   cut_block_cols: int, external_memory: bool | str) -> Any:
    """The bounded-memory engine of :func:`fit_classifier_dask` (masked view ``Xm`` given)."""
    import dask.array as da
    import xgboost

    from ._stream import stream_train

    n_classes = clf.classes_.size
    esr = cfg["early_stopping_rounds"]
    keep = None
    valid = None
    if esr is not None:
        if eval_set is not None:
            Xv = eval_set[0] if isinstance(eval_set[0], da.Array) else da.from_array(np.asarray(eval_set[0]))
            if Xv.ndim != 2 or Xv.shape[1] != clf.n_features_in_:
                raise Img2TabInputError(
                    f"eval_set X must have {clf.n_features_in_} columns, got shape {Xv.shape}")
            yv = eval_set[1].compute() if hasattr(eval_set[1], "compute") else eval_set[1]
            yv = np.asarray(yv).reshape(-1)
            if yv.shape[0] != Xv.shape[0]:
                raise Img2TabInputError(f"eval_set has {Xv.shape[0]} rows but {yv.shape[0]} labels")
            unknown = np.setdiff1d(np.unique(yv), clf.classes_)
            if unknown.size:
                raise Img2TabInputError(f"eval_set labels {unknown[:5].tolist()} were not seen in y")
            valid = (_masked_view(clf, Xv), np.searchsorted(clf.classes_, yv).astype(np.float32), None, None)
        else:
            tr, va = _split_rows(clf, cfg, y_enc)
            keep = np.zeros(y_enc.shape[0], dtype=bool)
            keep[tr] = True
            valid = (Xm, y_enc.astype(np.float32), ~keep, sw)

    est = clf._build(cfg)
    sk_params = est.get_params()
    sk_params.pop("callbacks", None)
    rounds = int(est.get_num_boosting_rounds())
    params = {k: v for k, v in est.get_xgb_params().items() if v is not None}
    for k in ("n_estimators", "early_stopping_rounds", "callbacks"):
        params.pop(k, None)
    if n_classes > 2:
        params.update(objective="multi:softprob", num_class=int(n_classes))
    params["nthread"] = int(params.pop("n_jobs", None) or 1)
    max_bin = int(params.get("max_bin", 256))
    params["max_bin"] = max_bin

    n_rows = int(Xm.shape[0]) + (int(valid[0].shape[0]) if eval_set is not None and valid is not None else 0)
    paged = _use_external_memory(external_memory, client, n_rows, int(Xm.shape[1]))
    summary = _summaries(client, Xm, keep, sw, max_bin, cut_block_cols)
    logger.info("streaming fit: cuts of %d columns computed, %d rounds, %s", summary.shape[1], rounds,
                "matrices paged to disk" if paged else "matrices in memory")
    raw = stream_train(client, params, rounds, esr, summary, max_bin,
                       (Xm, y_enc.astype(np.float32), keep, sw), valid, batch_rows, external_memory=paged)
    local = xgboost.XGBClassifier(**sk_params)
    local.load_model(bytearray(raw))
    return _finish(clf, cfg, local)


_BYTES_PER_VALUE = 2.25  # in-memory QuantileDMatrix, measured: row-wise + column-wise bin index
_AUTO_SHARE = 0.25  # "auto" pages when the matrices would take more of a worker's memory limit


def _use_external_memory(option: bool | str, client: Any, n_rows: int, n_cols: int) -> bool:
    """Resolve ``external_memory`` (True, False or "auto") for a fit of ``n_rows x n_cols``."""
    if option == "auto":
        workers = client.scheduler_info()["workers"]
        limits = [int(v.get("memory_limit") or 0) for v in workers.values()]
        if not limits or min(limits) <= 0:  # no limit: keep it in memory
            return False
        per_worker = _BYTES_PER_VALUE * n_rows * n_cols / len(limits)
        return per_worker > _AUTO_SHARE * min(limits)
    if isinstance(option, bool | np.bool_):
        return bool(option)
    raise Img2TabInputError(f"external_memory must be True, False or 'auto', got {option!r}")


def predict_proba_dask(clf: Any, X: Any, *, client: Any) -> Any:
    """Class probabilities of a fitted XGBoost :class:`ConceptClassifier` on a Dask array.

    Returns:
        A lazy ``(N, n_classes)`` float dask array (columns in ``clf.classes_`` order), computed
        on the workers with the rounds up to ``best_iteration_``.
    """
    require_dask()
    import dask.array as da
    import xgboost
    import xgboost.dask  # noqa: F401  (a submodule, not imported by xgboost itself)

    if clf.model != "xgboost":
        raise Img2TabInputError(f"predict_proba_dask needs model='xgboost', got {clf.model!r}")
    if X.shape[1] != clf.n_features_in_:
        raise Img2TabInputError(f"X has {X.shape[1]} features, the classifier expects {clf.n_features_in_}")
    p = xgboost.dask.inplace_predict(client, clf.booster(), _masked_view(clf, X))
    if p.ndim == 1:
        p = da.stack([1.0 - p, p], axis=1)
    return p
