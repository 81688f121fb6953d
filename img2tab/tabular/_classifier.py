"""Tabular classifiers over Ψ whose important features are Img2Tab "concepts".

:class:`ConceptClassifier` is a scikit-learn classifier that wraps XGBoost (the default, as in
the paper), logistic regression, a random forest, an MLP, and LightGBM / CatBoost when the
``img2tab[boosting]`` extra is installed. Concept-level debugging is a constructor parameter::

    debugged = clone(clf).set_params(masked_features=[4614, 512]).fit(psi, y)

Masked concepts are either dropped (the inner model never sees them) or neutralised to their
training mean; the caller's arrays are never modified (the official code zeroes raw Ψ in place).

The official XGBoost models (``Final_{attr}_XGBoost.json``, xgboost 1.7, ``gpu_hist``) load with
:meth:`ConceptClassifier.from_xgboost_json` and predict on CPU. Our own models are saved with
:meth:`ConceptClassifier.save` to a directory::

    model_dir/
        img2tab.json    img2tab parameters and fitted attributes (classes, masks, ...)
        model.json      the XGBoost model (xgboost's own JSON format), or
        model.joblib    any other inner estimator (joblib pickle)

and loaded with :func:`load_classifier`, which also accepts a bare XGBoost ``.json``/``.ubj``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from img2tab.errors import Img2TabInputError

if TYPE_CHECKING:  # pragma: no cover
    import xgboost

__all__ = [
    "MODELS",
    "PRESETS",
    "ConceptClassifier",
    "default_device",
    "load_classifier",
]

logger = logging.getLogger(__name__)

#: Models :class:`ConceptClassifier` can wrap.
MODELS: tuple[str, ...] = ("xgboost", "logreg", "random_forest", "mlp", "lightgbm", "catboost")

_PAPER: dict[str, Any] = {
    "learning_rate": 0.1,
    "n_estimators": 600,
    "max_depth": 20,
    "min_child_weight": 1,
    "gamma": 0.3,
    "subsample": 0.74,
    "colsample_bytree": 0.6,
    "reg_alpha": 10,
    "reg_lambda": 0.1,
    "random_state": 2000,
}

#: XGBoost hyper-parameter presets. ``"paper"`` is the retraining recipe of the official code;
#: ``"shipped"`` is what the official ``Final_gender_XGBoost.json`` was actually trained with
#: (max_depth 6, random_state 2022, early stopping after 20 rounds without improvement on a
#: validation split). ``random_state`` and ``early_stopping_rounds`` of a preset are used only
#: when the constructor arguments of the same name are None.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(_PAPER),
    "shipped": {**_PAPER, "max_depth": 6, "random_state": 2022, "early_stopping_rounds": 20},
}

_BOOSTING = ("xgboost", "lightgbm", "catboost")
_MARGIN_MODELS = ("xgboost", "logreg", "lightgbm", "catboost")
_SCALED_MODELS = ("logreg", "mlp")
_SIDECAR = "img2tab.json"
_FORMAT = "img2tab.classifier"
_FORMAT_VERSION = 1

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


# --------------------------------------------------------------------------- helpers
def _nvml_device_count() -> int:
    """Number of NVIDIA GPUs seen by the driver (NVML), 0 without a driver.

    NVML does not create a CUDA context, so this is safe before ``fork`` and costs
    milliseconds, unlike ``import torch`` (seconds).
    """
    import ctypes

    for name in ("libnvidia-ml.so.1", "libnvidia-ml.so", "nvml.dll"):
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        return 0
    try:
        if lib.nvmlInit_v2() != 0:
            return 0
        count = ctypes.c_uint(0)
        ok = lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) == 0
        lib.nvmlShutdown()
        return int(count.value) if ok else 0
    except AttributeError:  # pragma: no cover - very old drivers
        return 0


@cache
def default_device() -> str:
    """``"cuda"`` when XGBoost is built with CUDA and a GPU is visible, else ``"cpu"``.

    Uses ``torch.cuda.is_available()`` when torch is already imported, else a cheap NVML
    query (respecting ``CUDA_VISIBLE_DEVICES=""``), so CPU-only use never imports torch.
    """
    import sys

    try:
        import xgboost

        if not xgboost.build_info().get("USE_CUDA", False):
            return "cpu"
        if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
            return "cpu"
        if "torch" in sys.modules:
            return "cuda" if sys.modules["torch"].cuda.is_available() else "cpu"
        return "cuda" if _nvml_device_count() > 0 else "cpu"
    except Exception:  # pragma: no cover - exotic builds
        return "cpu"


def _optional_import(name: str) -> Any:
    """Import an optional boosting library or raise an ImportError naming the extra."""
    try:
        return __import__(name)
    except ImportError as exc:
        raise ImportError(
            f"model={name!r} needs the optional package {name!r}; install it with "
            f"`pip install img2tab[boosting]` (or `pip install {name}`)"
        ) from exc


def _as_int_seed(random_state: Any) -> int | None:
    if random_state is None or isinstance(random_state, int | np.integer):
        return None if random_state is None else int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    raise Img2TabInputError(f"random_state must be None, an int or a numpy RandomState, got {random_state!r}")


def _check_masked(masked: Any, n_features: int) -> np.ndarray:
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


def _finite_or_raise(X: np.ndarray, name: str = "X", block: int = 4096) -> None:
    # Row blocks keep the temporary boolean array small for large (memory-mapped) Ψ.
    if all(np.isfinite(X[i : i + block]).all() for i in range(0, X.shape[0], block)):
        return
    finite = np.isfinite(X)
    n_nan = int(np.isnan(X).sum())
    n_inf = int((~finite).sum()) - n_nan
    rows = np.flatnonzero(~finite.all(axis=1))
    cols = np.flatnonzero(~finite.all(axis=0))
    raise Img2TabInputError(
        f"{name} (Ψ) contains {n_nan} NaN and {n_inf} inf value(s) in {rows.size} row(s) "
        f"(first rows {rows[:5].tolist()}) and {cols.size} column(s) (first {cols[:5].tolist()}); "
        "drop or re-encode those images before using the classifier"
    )


def _wrap_value_error(exc: ValueError) -> Img2TabInputError:
    if isinstance(exc, Img2TabInputError):
        return exc
    msg = " ".join(str(exc).split()) or type(exc).__name__
    return Img2TabInputError(msg)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"{type(obj).__name__} value {obj!r} is not JSON serialisable")


def _classes_to_json(classes: np.ndarray) -> dict[str, Any]:
    kind = classes.dtype.kind
    if kind in "biuf":
        return {"values": classes.tolist(), "dtype": classes.dtype.str}
    return {"values": [str(c) for c in classes.tolist()], "dtype": "str"}


def _classes_from_json(data: Mapping[str, Any]) -> np.ndarray:
    if data["dtype"] == "str":
        return np.asarray(data["values"], dtype=str)
    return np.asarray(data["values"], dtype=np.dtype(data["dtype"]))


# --------------------------------------------------------------------------- estimator
class ConceptClassifier(ClassifierMixin, BaseEstimator):
    """A scikit-learn classifier over Ψ (StyleSpace features) with concept masking.

    Parameters
    ----------
    model : {"xgboost", "logreg", "random_forest", "mlp", "lightgbm", "catboost"}
        Inner tabular model. ``"lightgbm"``/``"catboost"`` need ``img2tab[boosting]``.
    preset : {None, "paper", "shipped"}
        XGBoost hyper-parameters of the official Img2Tab code (see :data:`PRESETS`).
        Only valid with ``model="xgboost"``.
    params : dict, optional
        Keyword arguments for the inner model, overriding the preset and the defaults (e.g.
        ``{"n_estimators": 50, "n_jobs": 2}``).
    masked_features : array-like of int, optional
        Ψ column indices (concepts) the classifier must not use. A boolean mask of length
        ``n_features`` is accepted too. Validated in :meth:`fit` (range, duplicates).
    mask_strategy : {"drop", "mean"}
        ``"drop"`` removes the masked columns before the inner model; ``"mean"`` replaces them
        by their training mean (a constant, so they carry no information). Never a raw zero,
        never in place.
    standardize : bool or "auto"
        Z-score features in a :class:`~sklearn.pipeline.Pipeline` before the inner model.
        ``"auto"``: only for ``"logreg"`` and ``"mlp"``.
    random_state : int, RandomState or None
        Seed of the inner model and of the early-stopping split. None uses the preset's seed
        (if any), else the inner model's default.
    device : str, optional
        XGBoost ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``); None picks
        :func:`default_device`. For CatBoost ``"cuda"`` selects ``task_type="GPU"``; for
        LightGBM it is passed as ``device_type``. Ignored by the scikit-learn models.
    early_stopping_rounds : int, optional
        Stop boosting after this many rounds without improvement on a validation split (boosted
        models only). None uses the preset's value (20 for ``"shipped"``), else no early stopping.
    validation_fraction : float
        Fraction of the training rows held out (stratified) for early stopping when :meth:`fit`
        gets no ``eval_set``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, sorted.
    n_features_in_ : int
        Number of Ψ columns seen in :meth:`fit` (masked ones included).
    estimator_ : estimator
        The fitted inner model (a Pipeline when standardising). It sees ``kept_features_``
        columns (``"drop"``) or all columns (``"mean"``), with labels encoded as
        ``0..n_classes-1``.
    masked_features_ : ndarray of int64
        Sorted validated masked indices.
    kept_features_ : ndarray of int64
        Column indices the inner model receives (all of them for ``"mean"``).
    mask_values_ : ndarray of float64 or None
        Training means used for ``"mean"`` masking (aligned with ``masked_features_``).
    feature_importances_ : ndarray of shape (n_features_in_,)
        Normalised importances (sum 1 unless all zero), masked features 0. Boosted trees: average
        gain over the trees used for prediction (up to ``best_iteration_``); random forest:
        impurity decrease; logreg: |coef| on standardised features (mean over classes); MLP:
        mean |first-layer weight| per input (crude; prefer permutation importance, see
        :func:`img2tab.tabular._importance.global_importance`).
    best_iteration_ : int or None
        Best boosting round (0-based) when early stopping was used, else None. Predictions,
        importances and contributions use rounds ``0..best_iteration_``.
    device_ : str
        Device the inner model was trained on (``"cpu"`` for loaded official models).
    """

    def __init__(
        self,
        model: str = "xgboost",
        *,
        preset: str | None = None,
        params: Mapping[str, Any] | None = None,
        masked_features: Sequence[int] | np.ndarray | None = None,
        mask_strategy: Literal["drop", "mean"] = "drop",
        standardize: bool | Literal["auto"] = "auto",
        random_state: int | np.random.RandomState | None = None,
        device: str | None = None,
        early_stopping_rounds: int | None = None,
        validation_fraction: float = 0.1,
    ) -> None:
        self.model = model
        self.preset = preset
        self.params = params
        self.masked_features = masked_features
        self.mask_strategy = mask_strategy
        self.standardize = standardize
        self.random_state = random_state
        self.device = device
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction

    # ------------------------------------------------------------------ configuration
    def _config(self) -> dict[str, Any]:
        """Validate constructor parameters and resolve preset / defaults."""
        if self.model not in MODELS:
            raise Img2TabInputError(f"unknown model {self.model!r}; valid models: {', '.join(MODELS)}")
        if self.preset is not None and self.preset not in PRESETS:
            raise Img2TabInputError(
                f"unknown preset {self.preset!r}; valid presets: None, " + ", ".join(repr(p) for p in PRESETS)
            )
        if self.preset is not None and self.model != "xgboost":
            raise Img2TabInputError(
                f"preset {self.preset!r} holds XGBoost hyper-parameters and needs "
                f"model='xgboost', got model={self.model!r}"
            )
        if self.mask_strategy not in ("drop", "mean"):
            raise Img2TabInputError(f"unknown mask_strategy {self.mask_strategy!r}; valid: 'drop', 'mean'")
        if self.standardize not in (True, False, "auto"):
            raise Img2TabInputError(f"standardize must be True, False or 'auto', got {self.standardize!r}")
        if self.params is not None and not isinstance(self.params, Mapping):
            raise Img2TabInputError(
                f"params must be a dict of inner-model keyword arguments, got {type(self.params).__name__}"
            )
        vf = self.validation_fraction
        if not isinstance(vf, float | int) or not 0.0 < float(vf) < 1.0:
            raise Img2TabInputError(f"validation_fraction must be in (0, 1), got {vf!r}")
        preset = dict(PRESETS[self.preset]) if self.preset is not None else {}
        rs = self.random_state if self.random_state is not None else preset.pop("random_state", None)
        preset.pop("random_state", None)
        esr = self.early_stopping_rounds
        preset_esr = preset.pop("early_stopping_rounds", None)
        if esr is None:
            esr = preset_esr
        params = {**preset, **dict(self.params or {})}
        # early_stopping_rounds / random_state given through params are honoured too.
        if "early_stopping_rounds" in params:
            esr = params.pop("early_stopping_rounds")
        if "random_state" in params:
            rs = params.pop("random_state")
        if esr is not None:
            if not isinstance(esr, int | np.integer) or esr < 1:
                raise Img2TabInputError(f"early_stopping_rounds must be a positive int, got {esr!r}")
            if self.model not in _BOOSTING:
                raise Img2TabInputError(
                    f"early stopping is built in for {', '.join(_BOOSTING)}; for "
                    f"model={self.model!r} use its own option (e.g. params="
                    "{'early_stopping': True} for 'mlp')"
                )
        scale = self.standardize
        if scale == "auto":
            scale = self.model in _SCALED_MODELS
        device = self.device
        if self.model == "xgboost" and device is None:
            device = default_device()
        return {
            "params": params,
            "random_state": rs,
            "early_stopping_rounds": None if esr is None else int(esr),
            "standardize": bool(scale),
            "device": device if device is not None else "cpu",
        }

    def _build(self, cfg: Mapping[str, Any], callbacks: list | None = None) -> Any:
        model = self.model
        params = dict(cfg["params"])
        rs = cfg["random_state"]
        esr = cfg["early_stopping_rounds"]
        if model == "xgboost":
            import xgboost

            kw: dict[str, Any] = {"tree_method": "hist", "device": cfg["device"]}
            if rs is not None:
                kw["random_state"] = rs
            if esr is not None:
                kw["early_stopping_rounds"] = esr
            if callbacks:
                kw["callbacks"] = callbacks
            kw.update(params)
            est: Any = xgboost.XGBClassifier(**kw)
        elif model == "logreg":
            from sklearn.linear_model import LogisticRegression

            est = LogisticRegression(**{"max_iter": 1000, "random_state": rs, **params})
        elif model == "random_forest":
            from sklearn.ensemble import RandomForestClassifier

            est = RandomForestClassifier(**{"random_state": rs, **params})
        elif model == "mlp":
            from sklearn.neural_network import MLPClassifier

            est = MLPClassifier(**{"random_state": rs, **params})
        elif model == "lightgbm":
            lightgbm = _optional_import("lightgbm")
            kw = {"random_state": rs, "verbose": -1}
            if self.device is not None:
                kw["device_type"] = "cuda" if str(self.device).startswith("cuda") else self.device
            est = lightgbm.LGBMClassifier(**{**kw, **params})
        else:  # catboost
            catboost = _optional_import("catboost")
            kw = {"random_seed": rs, "verbose": 0, "allow_writing_files": False}
            if self.device is not None and str(self.device).startswith("cuda"):
                kw["task_type"] = "GPU"
            if esr is not None:
                kw["early_stopping_rounds"] = esr
            est = catboost.CatBoostClassifier(**{**kw, **params})
        if cfg["standardize"]:
            from sklearn.pipeline import Pipeline
            from sklearn.preprocessing import StandardScaler

            est = Pipeline([("scale", StandardScaler()), ("model", est)])
        return est

    # ------------------------------------------------------------------ input handling
    def _validate_X(self, X: Any, *, reset: bool, y: Any = None) -> Any:
        try:
            if reset:
                X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), ensure_all_finite=False)
            else:
                X = validate_data(
                    self, X, reset=False, dtype=(np.float64, np.float32), ensure_all_finite=False
                )
        except Img2TabInputError:
            raise
        except ValueError as exc:
            raise _wrap_value_error(exc) from exc
        _finite_or_raise(X)
        return (X, y) if reset else X

    def _apply_mask(self, X: np.ndarray) -> np.ndarray:
        """Return the inner model's view of ``X`` (a new array when masking; X is not modified)."""
        if self.masked_features_.size == 0:
            return X
        if self.mask_strategy_ == "drop":
            return X[:, self.kept_features_]
        out = np.array(X, copy=True)
        out[:, self.masked_features_] = self.mask_values_.astype(out.dtype)
        return out

    def _prepare(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return self._apply_mask(self._validate_X(X, reset=False))

    def _inner(self) -> Any:
        """The inner model without the scaling pipeline."""
        est = self.estimator_
        return est[-1] if hasattr(est, "steps") else est

    # ------------------------------------------------------------------ fit / predict
    def fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any = None,
        *,
        eval_set: tuple[Any, Any] | None = None,
        progress: bool = False,
    ) -> ConceptClassifier:
        """Fit the inner model on Ψ.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Ψ rows (finite). Never modified.
        y : array-like of shape (n_samples,)
            Class labels (at least two classes).
        sample_weight : array-like of shape (n_samples,), optional
            Per-sample weights passed to the inner model.
        eval_set : (X_val, y_val), optional
            Validation data for early stopping (instead of a split of ``X``).
        progress : bool
            Show a tqdm bar over boosting rounds (XGBoost only).

        Returns
        -------
        self
        """
        cfg = self._config()
        if y is not None and hasattr(y, "__len__") and not hasattr(X, "format"):  # not sparse
            try:
                n_x = X.shape[0] if hasattr(X, "shape") else len(X)
                n_y = y.shape[0] if hasattr(y, "shape") else len(y)
            except (TypeError, IndexError):
                n_x = n_y = -1
            if n_x != n_y:
                raise Img2TabInputError(
                    f"X has {n_x} rows but y has {n_y} labels; they must have the same length"
                )
        X, y = self._validate_X(X, reset=True, y=y)
        try:
            check_classification_targets(y)
        except ValueError as exc:
            raise _wrap_value_error(exc) from exc
        classes, y_enc = np.unique(y, return_inverse=True)
        y_enc = y_enc.reshape(-1).astype(np.int64)
        if classes.size < 2:
            raise Img2TabInputError(
                f"y contains only one class ({classes[0]!r}); a classifier needs at least two classes"
            )
        sw = None
        if sample_weight is not None:
            try:
                sw = _check_sample_weight(sample_weight, X, dtype=np.float64)
            except ValueError as exc:
                raise _wrap_value_error(exc) from exc
            if np.unique(y_enc[sw > 0]).size < 2:
                raise Img2TabInputError(
                    "sample_weight leaves only one class with positive weight; a classifier "
                    "needs at least two classes"
                )
        n_features = X.shape[1]
        masked = _check_masked(self.masked_features, n_features)

        self.classes_ = classes
        self.masked_features_ = masked
        self.mask_strategy_ = self.mask_strategy
        if self.mask_strategy == "drop":
            self.kept_features_ = np.setdiff1d(np.arange(n_features, dtype=np.int64), masked)
            self.mask_values_ = None
        else:
            self.kept_features_ = np.arange(n_features, dtype=np.int64)
            self.mask_values_ = (
                np.average(X[:, masked], axis=0, weights=sw).astype(np.float64)
                if masked.size
                else np.zeros(0)
            )
        Xm = self._apply_mask(X)

        fit_kw: dict[str, Any] = {}
        X_fit, y_fit, sw_fit = Xm, y_enc, sw
        esr = cfg["early_stopping_rounds"]
        if esr is not None:
            X_fit, y_fit, sw_fit, X_val, y_val, sw_val = self._early_stopping_split(
                Xm, y_enc, sw, eval_set, cfg
            )
            fit_kw.update(self._eval_kwargs(X_val, y_val, sw_val, esr, cfg))
        elif eval_set is not None:
            warnings.warn(
                "eval_set is ignored without early stopping (set early_stopping_rounds or preset='shipped')",
                UserWarning,
                stacklevel=2,
            )
        if sw_fit is not None:
            fit_kw[self._fit_param("sample_weight", cfg)] = sw_fit
            if cfg["standardize"]:  # weighted statistics, consistent with repeated rows
                fit_kw["scale__sample_weight"] = sw_fit

        bar = None
        callbacks = None
        if progress and self.model == "xgboost":
            bar, callbacks = _xgb_progress(cfg["params"].get("n_estimators", 100))
        est = self._build(cfg, callbacks=callbacks)
        try:
            est.fit(X_fit, y_fit, **fit_kw)
        finally:
            if bar is not None:
                bar.close()
        if callbacks:
            est.set_params(callbacks=None)  # keep the fitted model picklable and light

        self.estimator_ = est
        self.device_ = cfg["device"] if self.model == "xgboost" else "cpu"
        self.best_iteration_ = self._read_best_iteration() if esr is not None else None
        self.feature_importances_ = self._compute_importances()
        return self

    def _fit_param(self, name: str, cfg: Mapping[str, Any]) -> str:
        return f"model__{name}" if cfg["standardize"] else name

    def _early_stopping_split(
        self,
        X: np.ndarray,
        y_enc: np.ndarray,
        sw: np.ndarray | None,
        eval_set: tuple[Any, Any] | None,
        cfg: Mapping[str, Any],
    ) -> tuple:
        if eval_set is not None:
            if not isinstance(eval_set, tuple | list) or len(eval_set) != 2:
                raise Img2TabInputError("eval_set must be a pair (X_val, y_val)")
            X_val = self._apply_mask(self._validate_X(eval_set[0], reset=False))
            y_val = np.asarray(eval_set[1]).reshape(-1)
            if y_val.shape[0] != X_val.shape[0]:
                raise Img2TabInputError(f"eval_set has {X_val.shape[0]} rows but {y_val.shape[0]} labels")
            unknown = np.setdiff1d(np.unique(y_val), self.classes_)
            if unknown.size:
                raise Img2TabInputError(f"eval_set labels {unknown[:5].tolist()} were not seen in y")
            return X, y_enc, sw, X_val, np.searchsorted(self.classes_, y_val), None
        from sklearn.model_selection import train_test_split

        idx = np.arange(X.shape[0])
        seed = _as_int_seed(cfg["random_state"])
        try:
            tr, va = train_test_split(
                idx, test_size=self.validation_fraction, stratify=y_enc, random_state=seed
            )
        except ValueError:  # a class too small to stratify
            tr, va = train_test_split(idx, test_size=self.validation_fraction, random_state=seed)
        tr, va = np.sort(tr), np.sort(va)
        logger.debug("early stopping: %d training rows, %d validation rows", tr.size, va.size)
        sw_tr = None if sw is None else sw[tr]
        sw_va = None if sw is None else sw[va]
        return X[tr], y_enc[tr], sw_tr, X[va], y_enc[va], sw_va

    def _eval_kwargs(
        self, X_val: np.ndarray, y_val: np.ndarray, sw_val: Any, esr: int, cfg: Mapping[str, Any]
    ) -> dict[str, Any]:
        p = self._fit_param
        if self.model == "xgboost":
            kw: dict[str, Any] = {p("eval_set", cfg): [(X_val, y_val)], p("verbose", cfg): False}
            if sw_val is not None:
                kw[p("sample_weight_eval_set", cfg)] = [sw_val]
            return kw
        if self.model == "lightgbm":
            lightgbm = _optional_import("lightgbm")
            import inspect

            kw = {p("callbacks", cfg): [lightgbm.early_stopping(esr, verbose=False)]}
            if "eval_X" in inspect.signature(lightgbm.LGBMClassifier.fit).parameters:
                kw[p("eval_X", cfg)] = (X_val,)  # LightGBM >= 4.7 deprecates eval_set
                kw[p("eval_y", cfg)] = (y_val,)
            else:
                kw[p("eval_set", cfg)] = [(X_val, y_val)]
            if sw_val is not None:
                kw[p("eval_sample_weight", cfg)] = [sw_val]
            return kw
        return {p("eval_set", cfg): (X_val, y_val)}  # catboost

    def _read_best_iteration(self) -> int | None:
        inner = self._inner()
        try:
            if self.model == "xgboost":
                return int(inner.best_iteration)
            if self.model == "lightgbm":
                best = int(inner.best_iteration_)
                return best - 1 if best > 0 else None  # LightGBM counts from 1
            if self.model == "catboost":
                best = inner.get_best_iteration()
                return None if best is None else int(best)
        except (AttributeError, TypeError, ValueError):
            return None
        return None

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)

        Returns
        -------
        ndarray of shape (n_samples, n_classes), columns in ``classes_`` order.
        """
        Xm = self._prepare(X)
        return np.asarray(self.estimator_.predict_proba(Xm), dtype=np.float64)

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class per row, shape (n_samples,), values from ``classes_``."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def _has_margin(self) -> bool:
        return self.model in _MARGIN_MODELS

    @available_if(_has_margin)
    def decision_function(self, X: Any) -> np.ndarray:
        """Raw model scores (log-odds for boosted models and logistic regression).

        Returns
        -------
        ndarray of shape (n_samples,) for two classes (score of ``classes_[1]``), else
        (n_samples, n_classes).
        """
        Xm = self._prepare(X)
        if self.model == "xgboost":
            out = self.estimator_.predict(Xm, output_margin=True)
        elif self.model == "lightgbm":
            out = self.estimator_.predict(Xm, raw_score=True)
        elif self.model == "catboost":
            out = self.estimator_.predict(Xm, prediction_type="RawFormulaVal")
        else:
            out = self.estimator_.decision_function(Xm)
        out = np.asarray(out, dtype=np.float64)
        if self.classes_.size == 2:
            out = out.reshape(-1)
        return out

    # ------------------------------------------------------------------ importances
    def _booster(self, all_trees: bool = False) -> xgboost.Booster:
        """XGBoost booster restricted to the rounds used for prediction."""
        booster = self._inner().get_booster()
        if not all_trees and self.best_iteration_ is not None:
            return booster[: self.best_iteration_ + 1]
        return booster

    def _xgb_scores(self, importance_type: str, all_trees: bool = False) -> np.ndarray:
        """Per-feature raw XGBoost scores (length n_features_in_, masked/unused = 0)."""
        booster = self._booster(all_trees)
        score = booster.get_score(importance_type=importance_type)
        inner = np.zeros(self.kept_features_.size, dtype=np.float64)
        names = booster.feature_names
        lookup = {n: i for i, n in enumerate(names)} if names else None
        for key, val in score.items():
            j = lookup[key] if lookup is not None else int(key[1:])
            inner[j] = float(val)
        return self._scatter(inner)

    def _scatter(self, inner_values: np.ndarray) -> np.ndarray:
        full = np.zeros(self.n_features_in_, dtype=np.float64)
        full[self.kept_features_] = inner_values
        if self.masked_features_.size:
            full[self.masked_features_] = 0.0
        return full

    def _compute_importances(self) -> np.ndarray:
        inner = self._inner()
        if self.model == "xgboost":
            raw = self._xgb_scores("gain")
        elif self.model == "lightgbm":
            raw = self._scatter(inner.booster_.feature_importance(importance_type="gain"))
        elif self.model == "catboost":
            raw = self._scatter(np.asarray(inner.get_feature_importance(), dtype=np.float64))
        elif self.model == "random_forest":
            raw = self._scatter(np.asarray(inner.feature_importances_, dtype=np.float64))
        elif self.model == "logreg":
            raw = self._scatter(np.abs(np.asarray(inner.coef_, dtype=np.float64)).mean(axis=0))
        else:  # mlp
            raw = self._scatter(np.abs(np.asarray(inner.coefs_[0], dtype=np.float64)).mean(axis=1))
        raw = np.where(np.isfinite(raw), raw, 0.0)
        total = raw.sum()
        return raw / total if total > 0 else raw

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save the fitted classifier to directory ``path`` (created; files overwritten).

        XGBoost models are written as ``model.json`` (xgboost's JSON format); other inner
        models as ``model.joblib``. ``img2tab.json`` holds the constructor parameters and the
        fitted attributes. **joblib files are pickles: load them only from trusted sources.**

        Returns
        -------
        pathlib.Path of the directory.
        """
        check_is_fitted(self)
        root = Path(path)
        if root.exists() and not root.is_dir():
            raise Img2TabInputError(f"{root} exists and is not a directory")
        try:
            params = _jsonable(self.get_params(deep=False))
        except TypeError as exc:
            raise Img2TabInputError(f"cannot save classifier parameters: {exc}") from exc
        root.mkdir(parents=True, exist_ok=True)
        if self.model == "xgboost" and not hasattr(self.estimator_, "steps"):
            backend = "model.json"
            self.estimator_.save_model(root / backend)
        else:
            import joblib

            backend = "model.joblib"
            joblib.dump(self.estimator_, root / backend)
        from img2tab._version import __version__

        sidecar = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "img2tab_version": __version__,
            "params": params,
            "model_file": backend,
            "fitted": {
                "classes": _classes_to_json(self.classes_),
                "n_features_in": int(self.n_features_in_),
                "masked_features": self.masked_features_.tolist(),
                "kept_features": None
                if self.mask_strategy_ == "mean" or self.masked_features_.size == 0
                else self.kept_features_.tolist(),
                "mask_strategy": self.mask_strategy_,
                "mask_values": None if self.mask_values_ is None else self.mask_values_.tolist(),
                "best_iteration": self.best_iteration_,
                "device": self.device_,
            },
        }
        (root / _SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
        return root

    @classmethod
    def from_xgboost_json(
        cls, path: str | os.PathLike[str], *, restore_params: bool = True
    ) -> ConceptClassifier:
        """Load an XGBoost classifier file (e.g. the official ``Final_gender_XGBoost.json``).

        The model predicts on CPU whatever ``tree_method``/``gpu_id`` it was trained with. With
        ``restore_params`` the training hyper-parameters that xgboost 1.x stored in the file's
        ``scikit_learn`` attribute (which xgboost >= 2 ignores: its ``get_params()`` then reports
        ``tree_method=None``) become this classifier's ``params``/``random_state``, so
        ``clone(clf).set_params(masked_features=...).fit(X, y)`` retrains with the same
        recipe; ``gpu_hist`` becomes ``tree_method="hist"`` on the default device. If the file
        records early stopping (``best_iteration`` and a validation history) without the
        number of rounds, ``early_stopping_rounds`` is inferred as ``len(history) -
        best_iteration - 1`` (20 for the official gender model).

        Parameters
        ----------
        path : str or PathLike
            ``.json`` or ``.ubj`` XGBoost model of a classifier.
        restore_params : bool
            Restore the stored hyper-parameters (see above).

        Returns
        -------
        A fitted :class:`ConceptClassifier` with ``model="xgboost"``.
        """
        import xgboost

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no XGBoost model file at {path}")
        booster = xgboost.Booster()
        try:
            booster.load_model(os.fspath(path))
        except xgboost.core.XGBoostError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise Img2TabInputError(f"{path} is not a loadable XGBoost model: {first}") from exc
        meta_str = booster.attr("scikit_learn")
        meta = json.loads(meta_str) if meta_str else {}
        config = json.loads(booster.save_config())
        objective = config["learner"]["objective"]["name"]
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
            if esr is None and best is not None and history:
                n_rounds = len(next(iter(next(iter(history.values())).values())))
                esr = n_rounds - best - 1 if n_rounds - best - 1 > 0 else None
            if params.get("objective", "").startswith("binary:"):
                params.pop("objective")  # chosen automatically from the labels
        clf = cls(
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
        clf.feature_importances_ = clf._compute_importances()
        logger.debug(
            "loaded %s: %d features, %d classes, best_iteration=%s, restored params=%s",
            path,
            clf.n_features_in_,
            n_classes,
            clf.best_iteration_,
            sorted(params),
        )
        return clf

    # ------------------------------------------------------------------ sklearn tags
    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        return tags


def _xgb_progress(total: int) -> tuple[Any, list]:
    """A tqdm bar and an XGBoost callback advancing it once per boosting round."""
    import xgboost
    from tqdm.auto import tqdm

    bar = tqdm(total=int(total), desc="boosting", unit="round")

    class _Progress(xgboost.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            bar.update(1)
            return False

    return bar, [_Progress()]


def load_classifier(path: str | os.PathLike[str]) -> ConceptClassifier:
    """Load a classifier saved by :meth:`ConceptClassifier.save` or an XGBoost model file.

    Parameters
    ----------
    path : str or PathLike
        A directory written by :meth:`ConceptClassifier.save` (or its ``img2tab.json``), or an
        XGBoost ``.json``/``.ubj`` classifier such as the official ``Final_gender_XGBoost.json``
        (see :meth:`ConceptClassifier.from_xgboost_json`).

    Returns
    -------
    A fitted :class:`ConceptClassifier`.

    Notes
    -----
    Non-XGBoost models are stored with joblib (a pickle): only load directories you trust.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"no classifier at {root}")
    if root.is_file() and root.name == _SIDECAR:
        root = root.parent
    if root.is_file():
        return ConceptClassifier.from_xgboost_json(root)
    sidecar_path = root / _SIDECAR
    if not sidecar_path.is_file():
        raise FileNotFoundError(
            f"{root} is not a saved img2tab classifier (no {_SIDECAR}); pass an XGBoost "
            ".json/.ubj file or a directory written by ConceptClassifier.save"
        )
    try:
        side = json.loads(sidecar_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise Img2TabInputError(f"{sidecar_path} is not valid JSON: {exc}") from exc
    if side.get("format") != _FORMAT:
        raise Img2TabInputError(f"{sidecar_path} is not an img2tab classifier sidecar")
    if int(side.get("format_version", 0)) > _FORMAT_VERSION:
        raise Img2TabInputError(
            f"{sidecar_path} has format version {side['format_version']}; this img2tab reads "
            f"up to {_FORMAT_VERSION} (upgrade img2tab)"
        )
    clf = ConceptClassifier(**side["params"])
    fitted = side["fitted"]
    model_file = root / side["model_file"]
    if not model_file.is_file():
        raise FileNotFoundError(f"{model_file} is missing (incomplete classifier directory)")
    if side["model_file"].endswith(".json"):
        import xgboost

        est = xgboost.XGBClassifier()
        est.load_model(os.fspath(model_file))
    else:
        import joblib

        est = joblib.load(model_file)
    n = int(fitted["n_features_in"])
    clf.estimator_ = est
    clf.classes_ = _classes_from_json(fitted["classes"])
    clf.n_features_in_ = n
    clf.masked_features_ = np.asarray(fitted["masked_features"], dtype=np.int64)
    clf.mask_strategy_ = fitted["mask_strategy"]
    kept = fitted.get("kept_features")
    if kept is None:
        kept = (
            np.arange(n, dtype=np.int64)
            if clf.mask_strategy_ == "mean"
            else np.setdiff1d(np.arange(n, dtype=np.int64), clf.masked_features_)
        )
    clf.kept_features_ = np.asarray(kept, dtype=np.int64)
    mv = fitted.get("mask_values")
    clf.mask_values_ = None if mv is None else np.asarray(mv, dtype=np.float64)
    clf.best_iteration_ = fitted.get("best_iteration")
    clf.device_ = fitted.get("device", "cpu")
    clf.feature_importances_ = clf._compute_importances()
    return clf
