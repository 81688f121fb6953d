"""The estimator over Ψ whose important features are Img2Tab "concepts".

:class:`ConceptClassifier` is a scikit-learn classifier that wraps XGBoost (the default, as in
the paper), logistic regression, a random forest, an MLP, and LightGBM / CatBoost when the
``img2tab[boosting]`` extra is installed. Everything that depends on the inner model's library
lives in :mod:`img2tab.tabular._backends` (one adapter per family); saving and loading in
:mod:`img2tab.tabular._persistence`. Concept-level debugging is a constructor parameter::

    debugged = clone(clf).set_params(masked_features=[4614, 512]).fit(psi, y)

Masked concepts are either dropped (the inner model never sees them) or neutralised to their
training mean; the caller's arrays are never modified (the official code zeroes raw Ψ in place).

The official XGBoost models (``Final_{attr}_XGBoost.json``, xgboost 1.7, ``gpu_hist``) load with
:meth:`ConceptClassifier.from_xgboost_json` and predict on CPU. :meth:`ConceptClassifier.save`
writes a folder without any pickle (see :mod:`img2tab.tabular._persistence`), read back by
:func:`load_classifier`, which also accepts a bare XGBoost ``.json``/``.ubj``.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from img2tab.errors import Img2TabInputError

from ._backends import Backend, get_backend
from ._validation import as_int_seed, check_finite, wrap_value_error
from ._validation import check_masked as _check_masked  # noqa: F401  (kept for old imports)

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


@cache
def default_device() -> str:
    """``"cuda"`` when XGBoost is built with CUDA and torch (already imported) sees a GPU.

    The tabular half never imports torch itself: without torch in ``sys.modules`` (or with
    ``CUDA_VISIBLE_DEVICES`` empty) this is ``"cpu"``. Pass ``device="cuda"`` to
    :class:`ConceptClassifier` to train on a GPU explicitly.
    """
    try:
        import xgboost

        if not xgboost.build_info().get("USE_CUDA", False):
            return "cpu"
        if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
            return "cpu"
        torch = sys.modules.get("torch")
        return "cuda" if torch is not None and torch.cuda.is_available() else "cpu"
    except Exception:  # pragma: no cover - exotic builds
        return "cpu"


def _normalise(raw: np.ndarray) -> np.ndarray:
    raw = np.where(np.isfinite(raw), raw, 0.0)
    total = raw.sum()
    return raw / total if total > 0 else raw


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
    @property
    def _backend(self) -> Backend:
        return get_backend(self.model)

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
            if not self._backend.boosting:
                boosting = [m for m in MODELS if get_backend(m).boosting]
                raise Img2TabInputError(
                    f"early stopping is built in for {', '.join(boosting)}; for "
                    f"model={self.model!r} use its own option (e.g. params="
                    "{'early_stopping': True} for 'mlp')"
                )
        scale = self.standardize
        if scale == "auto":
            scale = self._backend.scaled
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
        device = cfg["device"] if self.model == "xgboost" else self.device
        est = self._backend.build(
            dict(cfg["params"]), cfg["random_state"], cfg["early_stopping_rounds"], device, callbacks
        )
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
            raise wrap_value_error(exc) from exc
        check_finite(X, "X", hint="before using the classifier")
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
    def _init_mask(self, n_features: int, masked: np.ndarray,
                   column_means: Callable[[np.ndarray], np.ndarray]) -> None:
        """Set ``masked_features_``, ``mask_strategy_``, ``kept_features_`` and ``mask_values_``.

        Args:
            n_features: width of Ψ.
            masked: validated masked column indices ``[k]``.
            column_means: ``cols -> [len(cols)]`` (sample-weighted) training means of those
                columns; called only for ``mask_strategy="mean"`` with at least one masked column.
        """
        self.masked_features_ = masked
        self.mask_strategy_ = self.mask_strategy
        if self.mask_strategy == "drop":
            self.kept_features_ = np.setdiff1d(np.arange(n_features, dtype=np.int64), masked)
            self.mask_values_ = None
        else:
            self.kept_features_ = np.arange(n_features, dtype=np.int64)
            self.mask_values_ = (np.asarray(column_means(masked), dtype=np.float64) if masked.size
                                 else np.zeros(0))

    def fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any = None,
        *,
        eval_set: tuple[Any, Any] | None = None,
        progress: bool = False,
        client: Any = None,
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
        client : distributed.Client, optional
            Fit XGBoost across this Dask cluster's workers (``X`` may then be a Dask array,
            which is also detected without ``client``: the default client is used), streaming
            each worker's rows with bounded memory. See
            :func:`img2tab.distributed.fit_classifier_dask` (``streaming=False`` for
            ``xgboost.dask``); the result saves and predicts like a local fit.

        Returns
        -------
        self
        """
        if client is not None or type(X).__module__.startswith("dask."):
            from img2tab.distributed import fit_classifier_dask  # optional extra, loaded on demand

            if client is None:
                from distributed import get_client

                client = get_client()
            return fit_classifier_dask(
                self, X, y, client=client, sample_weight=sample_weight, eval_set=eval_set
            )
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
            raise wrap_value_error(exc) from exc
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
                raise wrap_value_error(exc) from exc
            if np.unique(y_enc[sw > 0]).size < 2:
                raise Img2TabInputError(
                    "sample_weight leaves only one class with positive weight; a classifier "
                    "needs at least two classes"
                )
        n_features = X.shape[1]
        masked = _check_masked(self.masked_features, n_features)

        self.classes_ = classes
        self._init_mask(n_features, masked,
                        lambda cols: np.average(X[:, cols], axis=0, weights=sw).astype(np.float64))
        Xm = self._apply_mask(X)

        fit_kw: dict[str, Any] = {}
        X_fit, y_fit, sw_fit = Xm, y_enc, sw
        esr = cfg["early_stopping_rounds"]
        if esr is not None:
            X_fit, y_fit, sw_fit, X_val, y_val, sw_val = self._early_stopping_split(
                Xm, y_enc, sw, eval_set, cfg
            )
            eval_kw = self._backend.eval_kwargs(X_val, y_val, sw_val, esr)
            fit_kw.update({self._fit_param(k, cfg): v for k, v in eval_kw.items()})
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
        self.best_iteration_ = self._backend.best_iteration(self._inner()) if esr is not None else None
        self.feature_importances_ = _normalise(self.importance())
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
        seed = as_int_seed(cfg["random_state"])
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
        return self._backend.has_margin

    @available_if(_has_margin)
    def decision_function(self, X: Any) -> np.ndarray:
        """Raw model scores (log-odds for boosted models and logistic regression).

        Returns
        -------
        ndarray of shape (n_samples,) for two classes (score of ``classes_[1]``), else
        (n_samples, n_classes).
        """
        Xm = self._transform_inner(X)
        out = self._backend.margin(self._inner(), Xm)
        out = np.asarray(out, dtype=np.float64)
        if self.classes_.size == 2:
            out = out.reshape(-1)
        return out

    # ------------------------------------------------------------------ the inner model's view
    def _transform_inner(self, X: Any) -> np.ndarray:
        """Validated, masked and (when standardising) z-scored ``X``: what the inner model sees."""
        Xm = self._prepare(X)
        if hasattr(self.estimator_, "steps"):
            Xm = np.asarray(self.estimator_[:-1].transform(Xm))
        return Xm

    def _scatter(self, inner_values: np.ndarray) -> np.ndarray:
        """Inner-column values ``(..., n_kept)`` as ``(..., n_features_in_)``, masked features 0."""
        inner_values = np.asarray(inner_values, dtype=np.float64)
        full = np.zeros((*inner_values.shape[:-1], self.n_features_in_), dtype=np.float64)
        full[..., self.kept_features_] = inner_values
        if self.masked_features_.size:
            full[..., self.masked_features_] = 0.0
        return full

    # ------------------------------------------------------------------ public views of the model
    @property
    def inner_model(self) -> Any:
        """The fitted inner model (without the standardising step), e.g. an ``XGBClassifier``."""
        check_is_fitted(self)
        return self._inner()

    def booster(self, all_trees: bool = False) -> xgboost.Booster:
        """The XGBoost booster, restricted to the rounds used for prediction.

        Args:
            all_trees: include the trees after ``best_iteration_`` too.

        Raises:
            Img2TabInputError: the inner model is not XGBoost.
        """
        check_is_fitted(self)
        if self.model != "xgboost":
            raise Img2TabInputError(f"booster() needs model='xgboost', this classifier is {self.model!r}")
        return self._backend.booster(self._inner(), self.best_iteration_, all_trees)

    def importance(self, kind: str | None = None, *, all_trees: bool = False) -> np.ndarray:
        """Raw per-feature importance, shape ``(n_features_in_,)``, masked features 0.

        Args:
            kind: None for the model's own importance (XGBoost / LightGBM gain, random-forest
                impurity decrease, |coef| of logreg, mean |first-layer weight| of the MLP);
                an XGBoost type (``"gain"``, ``"weight"``, ``"cover"``, ``"total_gain"``,
                ``"total_cover"``) or a LightGBM one (``"gain"``, ``"split"``).
            all_trees: XGBoost only: count the trees after ``best_iteration_`` too.

        Returns:
            float64 ``(n_features_in_,)`` (not normalised; :attr:`feature_importances_` is).
        """
        check_is_fitted(self, "estimator_")
        backend = self._backend
        if kind is not None and kind not in backend.importance_kinds:
            valid = ", ".join(["None", *(repr(k) for k in backend.importance_kinds), "'permutation'"])
            raise Img2TabInputError(
                f"unknown importance_type {kind!r}: not available for model={self.model!r}; valid: {valid}"
            )
        raw = backend.importance(self._inner(), kind, self.best_iteration_, all_trees)
        return self._scatter(raw)

    def contributions(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Additive per-row contributions to the margin (SHAP values for trees).

        Args:
            X: ``(N, n_features_in_)`` Ψ rows. Not modified.

        Returns:
            ``(values, bias)``: values ``(N, n_features_in_)`` for two classes (towards
            ``classes_[1]``), else ``(N, K, n_features_in_)``, masked features 0; bias ``(N,)``
            or ``(N, K)``. ``values.sum(-1) + bias`` is :meth:`decision_function`.
        """
        Xm = self._transform_inner(X)
        raw = self._backend.contributions(self._inner(), Xm, self.classes_.size, self.best_iteration_)
        raw = np.asarray(raw, dtype=np.float64)
        return self._scatter(raw[..., :-1]), raw[..., -1]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
        """Save the fitted classifier to folder ``path``, atomically and without pickles.

        See :func:`img2tab.tabular._persistence.save_classifier` for the layout. A failure
        half-way leaves an existing classifier at ``path`` intact.

        Returns:
            The folder.
        """
        from ._persistence import save_classifier

        return save_classifier(self, path, overwrite=overwrite)

    @classmethod
    def from_xgboost_json(
        cls, path: str | os.PathLike[str], *, restore_params: bool = True
    ) -> ConceptClassifier:
        """Load an XGBoost classifier file (e.g. the official ``Final_gender_XGBoost.json``).

        See :func:`img2tab.tabular._persistence.classifier_from_xgboost_json`.
        """
        from ._persistence import classifier_from_xgboost_json

        return classifier_from_xgboost_json(path, restore_params=restore_params)

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
    """Load a classifier saved by :meth:`ConceptClassifier.save`, ``img2tab fit`` or
    :meth:`img2tab.Img2Tab.save`, or an XGBoost model file.

    Nothing in the folder is unpickled or executed (see
    :func:`img2tab.tabular._persistence.load_classifier`).
    """
    from ._persistence import load_classifier as _load

    return _load(path)
