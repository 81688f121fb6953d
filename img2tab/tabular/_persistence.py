"""Saving and loading :class:`~img2tab.tabular.ConceptClassifier` without pickles.

A saved classifier is a folder, written atomically (a failure half-way leaves the previous
folder intact)::

    model_dir/
        img2tab.json    format, constructor parameters, fitted attributes (classes, masks, ...)
        model.json      XGBoost (xgboost's JSON)      | model.npz  logreg / mlp / random forest
        model.txt       LightGBM (its text format)     | model.cbm  CatBoost (its own format)
        scaler.npz      the standardising step's mean / scale (only when standardising)

The model file is chosen by the model family recorded in ``img2tab.json``, never by a file name
the folder supplies: a tampered header that names a pickle (or any other file) is refused with
a one-line :class:`~img2tab.errors.Img2TabInputError`, and arrays are read with
``allow_pickle=False``. Loading therefore never executes code from the folder.

:func:`classifier_from_xgboost_json` imports a bare XGBoost model (such as the official
``Final_gender_XGBoost.json``, xgboost 1.7, ``gpu_hist``) and restores its training recipe.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from img2tab._atomic import atomic_dir, atomic_save_npz, atomic_write_json
from img2tab._json import jsonable, read_json
from img2tab.errors import Img2TabInputError

from ._backends import get_backend, load_npz
from ._classifier import MODELS, ConceptClassifier, _normalise
from ._validation import check_masked

__all__ = ["SIDECAR", "classifier_from_xgboost_json", "load_classifier", "save_classifier"]

logger = logging.getLogger(__name__)

SIDECAR = "img2tab.json"
_FORMAT = "img2tab.classifier"
#: 1: model.json (XGBoost) or model.joblib (a pickle, no longer read); 2: no pickles.
_FORMAT_VERSION = 2
_SCALER = "scaler.npz"

# Keys of an xgboost 1.x "scikit_learn" model attribute that are hardware- or run-specific and
# must not be restored as hyper-parameters (gpu_hist/gpu_id are deprecated since xgboost 2.0).
_XGB_SKIP_RESTORE = {
    "tree_method",
    "gpu_id",
    "predictor",
    "n_jobs",
    "nthread",
    "use_label_encoder",
    "callbacks",
    "verbosity",
    "missing",
    "feature_types",
    "importance_type",
    "device",
    "random_state",
    "early_stopping_rounds",
    "eval_metric",
    "eta",
    "seed",
}


def _classes_to_json(classes: np.ndarray) -> dict[str, Any]:
    if classes.dtype.kind in "biuf":
        return {"values": classes.tolist(), "dtype": classes.dtype.str}
    return {"values": [str(c) for c in classes.tolist()], "dtype": "str"}


def _classes_from_json(data: Any, where: Path) -> np.ndarray:
    try:
        if data["dtype"] == "str":
            out = np.asarray(data["values"], dtype=str)
        else:
            dtype = np.dtype(data["dtype"])
            if dtype.kind not in "biuf":
                raise ValueError(f"dtype {dtype} is not numeric")
            out = np.asarray(data["values"], dtype=dtype)
    except (KeyError, TypeError, ValueError) as exc:
        raise Img2TabInputError(f"{where}: invalid 'classes' entry ({exc})") from exc
    if out.ndim != 1 or out.size < 2:
        raise Img2TabInputError(f"{where}: 'classes' must list at least two classes")
    return out


# --------------------------------------------------------------------------- save
def save_classifier(clf: ConceptClassifier, path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
    """Write fitted ``clf`` to folder ``path`` (see the module docstring), atomically.

    Args:
        clf: a fitted :class:`ConceptClassifier`.
        path: target folder (parents created). An existing folder is replaced only if it is a
            saved classifier (has ``img2tab.json``) or empty.
        overwrite: replace an existing classifier folder.

    Returns:
        The folder.

    Raises:
        Img2TabInputError: parameters that JSON cannot hold (e.g. a callable in ``params``).
        FileExistsError: ``path`` is a file or a folder that is not a saved classifier.
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(clf)
    try:
        params = jsonable(clf.get_params(deep=False))
    except TypeError as exc:
        raise Img2TabInputError(f"cannot save classifier parameters: {exc}") from exc
    backend = get_backend(clf.model)
    est = clf.estimator_
    scaler = est[:-1][0] if hasattr(est, "steps") else None
    from img2tab._version import __version__

    sidecar = {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "img2tab_version": __version__,
        "params": params,
        "model_file": backend.model_file,
        "scaler_file": None if scaler is None else _SCALER,
        "fitted": {
            "classes": _classes_to_json(clf.classes_),
            "n_features_in": int(clf.n_features_in_),
            "masked_features": clf.masked_features_.tolist(),
            "mask_strategy": clf.mask_strategy_,
            "mask_values": None if clf.mask_values_ is None else clf.mask_values_.tolist(),
            "best_iteration": clf.best_iteration_,
            "device": clf.device_,
        },
    }
    root = Path(path)
    with atomic_dir(root, overwrite=overwrite, replaceable=_replaceable) as tmp:
        backend.save(clf.inner_model, tmp)
        if scaler is not None:
            atomic_save_npz(tmp / _SCALER, mean=scaler.mean_, scale=scaler.scale_, var=scaler.var_,
                            n_samples_seen=np.asarray(scaler.n_samples_seen_))
        atomic_write_json(tmp / SIDECAR, sidecar)  # last: a folder with it is complete
    logger.info("saved %s classifier to %s", clf.model, root)
    return root


def _replaceable(path: Path) -> bool:
    return (path / SIDECAR).is_file() or not any(path.iterdir())


# --------------------------------------------------------------------------- load
def load_classifier(path: str | os.PathLike[str]) -> ConceptClassifier:
    """Load a classifier saved by :func:`save_classifier`, or a bare XGBoost model file.

    Args:
        path: a folder written by :meth:`ConceptClassifier.save`, by ``img2tab fit`` or by
            :meth:`img2tab.Img2Tab.save` (or its ``img2tab.json``), or an XGBoost
            ``.json``/``.ubj`` classifier such as the official ``Final_gender_XGBoost.json``
            (see :func:`classifier_from_xgboost_json`).

    Returns:
        A fitted :class:`ConceptClassifier`.

    Raises:
        FileNotFoundError: nothing at ``path``, or a folder without ``img2tab.json``.
        Img2TabInputError: a corrupt, truncated, tampered or pickle-based folder (one line
            naming the file). Nothing from the folder is executed.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"no classifier at {root}")
    if root.is_file() and root.name == SIDECAR:
        root = root.parent
    if root.is_file():
        return classifier_from_xgboost_json(root)
    sidecar_path = root / SIDECAR
    if not sidecar_path.is_file():
        raise FileNotFoundError(
            f"{root} is not a saved img2tab classifier (no {SIDECAR}); pass an XGBoost "
            ".json/.ubj file or a directory written by ConceptClassifier.save"
        )
    side = read_json(sidecar_path, "classifier header")
    if isinstance(side, dict) and side.get("format") == "img2tab.Img2Tab":
        # a folder written by Img2Tab.save / `img2tab fit`: its classifier is in classifier/
        return load_classifier(root / "classifier")
    if not isinstance(side, dict) or side.get("format") != _FORMAT:
        raise Img2TabInputError(f"{sidecar_path} is not an img2tab classifier header")
    version = side.get("format_version")
    if not isinstance(version, int) or version > _FORMAT_VERSION or version < 1:
        raise Img2TabInputError(
            f"{sidecar_path} has format version {version!r}; this img2tab reads 1 to "
            f"{_FORMAT_VERSION} (upgrade img2tab)"
        )
    params = side.get("params")
    if not isinstance(params, dict) or params.get("model", "xgboost") not in MODELS:
        raise Img2TabInputError(f"{sidecar_path}: 'params' must be a dict with a model in {MODELS}")
    valid = set(ConceptClassifier().get_params())
    unknown = sorted(set(params) - valid)
    if unknown:
        raise Img2TabInputError(f"{sidecar_path}: unknown classifier parameters {unknown}")
    clf = ConceptClassifier(**params)
    backend = get_backend(clf.model)
    named = side.get("model_file")
    if named != backend.model_file:
        raise Img2TabInputError(
            f"{sidecar_path} names the model file {named!r}, but img2tab reads only "
            f"{backend.model_file!r} for model={clf.model!r}"
            + ("; .joblib files are pickles, which img2tab no longer loads: re-fit and save with "
               "this version" if str(named).endswith((".joblib", ".pkl", ".pickle")) else "")
        )
    model_path = root / backend.model_file
    if not model_path.is_file():
        raise Img2TabInputError(f"{model_path} is missing (incomplete classifier folder)")
    fitted = side.get("fitted")
    if not isinstance(fitted, dict):
        raise Img2TabInputError(f"{sidecar_path}: 'fitted' must be a dict")
    try:
        n = int(fitted["n_features_in"])
        masked = check_masked(np.asarray(fitted["masked_features"], dtype=np.int64), n)
        strategy = fitted["mask_strategy"]
        best = fitted.get("best_iteration")
        best = None if best is None else int(best)
    except (KeyError, TypeError, ValueError) as exc:
        raise Img2TabInputError(f"{sidecar_path}: invalid fitted attributes ({exc})") from exc
    if n < 1 or strategy not in ("drop", "mean"):
        raise Img2TabInputError(f"{sidecar_path}: invalid n_features_in / mask_strategy")
    classes = _classes_from_json(fitted.get("classes"), sidecar_path)
    kept = (
        np.arange(n, dtype=np.int64)
        if strategy == "mean"
        else np.setdiff1d(np.arange(n, dtype=np.int64), masked)
    )
    mv = fitted.get("mask_values")
    mask_values = None if mv is None else np.asarray(mv, dtype=np.float64)
    if strategy == "mean" and (mask_values is None or mask_values.shape != masked.shape):
        raise Img2TabInputError(f"{sidecar_path}: mask_values do not match masked_features")

    cfg = clf._config()
    inner = backend.load(root, backend.build(dict(cfg["params"]), cfg["random_state"],
                                             cfg["early_stopping_rounds"], None),
                         np.arange(classes.size), kept.size)
    scaler_file = side.get("scaler_file")
    if scaler_file not in (None, _SCALER):
        raise Img2TabInputError(f"{sidecar_path} names the scaler file {scaler_file!r}; expected {_SCALER!r}")
    if scaler_file is not None:
        est = _pipeline(_load_scaler(root / _SCALER, kept.size), inner)
    elif cfg["standardize"] and version >= 2:
        raise Img2TabInputError(f"{sidecar_path}: a standardising classifier without {_SCALER}")
    else:
        est = inner
    clf.estimator_ = est
    clf.classes_ = classes
    clf.n_features_in_ = n
    clf.masked_features_ = masked
    clf.mask_strategy_ = strategy
    clf.kept_features_ = kept
    clf.mask_values_ = mask_values
    clf.best_iteration_ = best
    clf.device_ = str(fitted.get("device", "cpu"))
    clf.feature_importances_ = _normalise(clf.importance())
    return clf


def _load_scaler(path: Path, n_columns: int) -> Any:
    from sklearn.preprocessing import StandardScaler

    a = load_npz(path)
    if any(k not in a for k in ("mean", "scale", "var", "n_samples_seen")):
        raise Img2TabInputError(f"{path} lacks the scaler arrays (mean, scale, var, n_samples_seen)")
    if a["mean"].shape != (n_columns,) or a["scale"].shape != (n_columns,):
        raise Img2TabInputError(f"{path}: scaler has {a['mean'].shape} means, expected ({n_columns},)")
    sc = StandardScaler()
    sc.mean_ = a["mean"]
    sc.scale_ = a["scale"]
    sc.var_ = a["var"]
    sc.n_samples_seen_ = a["n_samples_seen"]
    sc.n_features_in_ = n_columns
    return sc


def _pipeline(scaler: Any, inner: Any) -> Any:
    from sklearn.pipeline import Pipeline

    return Pipeline([("scale", scaler), ("model", inner)])


# --------------------------------------------------------------------------- official XGBoost
def classifier_from_xgboost_json(
    path: str | os.PathLike[str], *, restore_params: bool = True
) -> ConceptClassifier:
    """Load an XGBoost classifier file (e.g. the official ``Final_gender_XGBoost.json``).

    The model predicts on CPU whatever ``tree_method``/``gpu_id`` it was trained with. With
    ``restore_params`` the training hyper-parameters that xgboost 1.x stored in the file's
    ``scikit_learn`` attribute (which xgboost >= 2 ignores: its ``get_params()`` then reports
    ``tree_method=None``) become the classifier's ``params``/``random_state``, so
    ``clone(clf).set_params(masked_features=...).fit(X, y)`` retrains with the same recipe;
    ``gpu_hist`` becomes ``tree_method="hist"`` on the default device. If the file records early
    stopping (``best_iteration`` and a validation history) without the number of rounds,
    ``early_stopping_rounds`` is inferred as ``len(history) - best_iteration - 1`` (20 for the
    official gender model).

    Args:
        path: ``.json`` or ``.ubj`` XGBoost model of a classifier.
        restore_params: restore the stored hyper-parameters (see above).

    Returns:
        A fitted :class:`ConceptClassifier` with ``model="xgboost"``.

    Raises:
        FileNotFoundError: no file at ``path``.
        Img2TabInputError: not a loadable XGBoost classifier (one line naming the file).
    """
    import xgboost

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no XGBoost model file at {path}")
    booster = xgboost.Booster()
    try:
        booster.load_model(os.fspath(path))
        meta_str = booster.attr("scikit_learn")
        meta = json.loads(meta_str) if meta_str else {}
        config = json.loads(booster.save_config())
        objective = config["learner"]["objective"]["name"]
    except (xgboost.core.XGBoostError, ValueError, KeyError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise Img2TabInputError(f"{path} is not a loadable XGBoost model: {first}") from exc
    if not isinstance(meta, dict):
        meta = {}
    if not (objective.startswith("binary:") or objective.startswith("multi:")):
        raise Img2TabInputError(
            f"{path} holds an XGBoost model with objective {objective!r}; a classifier "
            "(binary:* or multi:*) is required"
        )
    est = xgboost.XGBClassifier()
    est.load_model(os.fspath(path))

    params: dict[str, Any] = {}
    random_state = None
    esr = None
    if restore_params and meta:
        valid = set(xgboost.XGBClassifier().get_params())
        for key, val in meta.items():
            if key in _XGB_SKIP_RESTORE or key not in valid or val is None:
                continue
            if isinstance(val, float) and not math.isfinite(val):
                continue
            params[key] = val
        random_state = meta.get("random_state")
        esr = meta.get("early_stopping_rounds")
        try:
            best = int(booster.attr("best_iteration"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            best = None
        history = meta.get("evals_result_") or {}
        if esr is None and best is not None and isinstance(history, Mapping) and history:
            n_rounds = len(next(iter(next(iter(history.values())).values())))
            esr = n_rounds - best - 1 if n_rounds - best - 1 > 0 else None
        if str(params.get("objective", "")).startswith("binary:"):
            params.pop("objective")  # chosen automatically from the labels
    clf = ConceptClassifier(
        model="xgboost",
        params=params or None,
        random_state=random_state,
        early_stopping_rounds=esr,
    )
    n_classes = int(est.n_classes_)
    classes = np.arange(n_classes)
    stored = meta.get("classes_")
    if isinstance(stored, list) and len(stored) == n_classes:
        arr = np.asarray(stored)
        if arr.dtype.kind == "f" and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        classes = arr
    clf.classes_ = classes
    clf.n_features_in_ = int(booster.num_features())
    clf.estimator_ = est
    clf.masked_features_ = np.zeros(0, dtype=np.int64)
    clf.kept_features_ = np.arange(clf.n_features_in_, dtype=np.int64)
    clf.mask_strategy_ = "drop"
    clf.mask_values_ = None
    clf.device_ = "cpu"
    try:
        clf.best_iteration_ = int(est.best_iteration)
    except AttributeError:
        clf.best_iteration_ = None
    clf.feature_importances_ = _normalise(clf.importance())
    logger.debug(
        "loaded %s: %d features, %d classes, best_iteration=%s, restored params=%s",
        path,
        clf.n_features_in_,
        n_classes,
        clf.best_iteration_,
        sorted(params),
    )
    return clf
