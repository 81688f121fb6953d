"""One small adapter per model family that :class:`~img2tab.tabular.ConceptClassifier` wraps.

Everything that depends on the inner model's library lives here, once per family: how to build
it, the keyword arguments of early stopping, the raw margin, importances, per-image additive
contributions, and saving / loading the fitted model **without pickles**:

============== ======================================= ===================================
family         fitted model on disk                    loaded as
============== ======================================= ===================================
xgboost        ``model.json`` (xgboost's JSON)          ``xgboost.XGBClassifier.load_model``
logreg         ``model.npz`` (coef, intercept)          ``LogisticRegression`` + arrays
mlp            ``model.npz`` (weights, biases)          ``MLPClassifier`` + arrays
random_forest  ``model.npz`` (every tree's node table)  ``RandomForestClassifier`` + trees
lightgbm       ``model.txt`` (LightGBM's text model)    a :class:`LightGBMModel` over a Booster
catboost       ``model.cbm`` (CatBoost's own format)    ``catboost.CatBoostClassifier``
============== ======================================= ===================================

``.npz`` files are read with ``allow_pickle=False`` and the native formats are parsed by their
libraries, so loading a saved classifier never executes code. The backends work on the *inner*
model (without the optional standardising step) and on the columns it sees (the kept features).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from img2tab.errors import Img2TabInputError

__all__ = ["BACKENDS", "Backend", "LightGBMModel", "get_backend", "load_npz", "optional_import"]

#: XGBoost importance types.
XGB_IMPORTANCE_TYPES = ("gain", "weight", "cover", "total_gain", "total_cover")


def optional_import(name: str) -> Any:
    """Import an optional boosting library or raise an ImportError naming the extra."""
    try:
        return __import__(name)
    except ImportError as exc:
        raise ImportError(
            f"model={name!r} needs the optional package {name!r}; install it with "
            f"`pip install img2tab[boosting]` (or `pip install {name}`)"
        ) from exc


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file, read without pickles; one-line error naming the file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: np.asarray(data[k]) for k in data.files}
    except FileNotFoundError as exc:
        raise Img2TabInputError(f"{path} is missing (incomplete saved model)") from exc
    except Exception as exc:  # zipfile.BadZipFile, ValueError (object arrays), EOFError, OSError
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise Img2TabInputError(f"{path} is not a readable img2tab array file (corrupt, truncated or "
                                f"holding pickled objects): {msg}") from exc


def _need(arrays: Mapping[str, np.ndarray], path: Path, *names: str) -> None:
    missing = [n for n in names if n not in arrays]
    if missing:
        raise Img2TabInputError(f"{path} lacks the arrays {missing} (not an img2tab model file)")


class Backend:
    """Adapter of one model family (stateless; one shared instance per family)."""

    name: ClassVar[str] = ""
    #: Built-in early stopping on a validation split.
    boosting: ClassVar[bool] = False
    #: ``decision_function`` (a raw margin) is available.
    has_margin: ClassVar[bool] = False
    #: Standardise the features when ``standardize="auto"``.
    scaled: ClassVar[bool] = False
    #: Importance kinds besides None (the model's default) and "permutation".
    importance_kinds: ClassVar[tuple[str, ...]] = ()
    #: File name of the saved inner model.
    model_file: ClassVar[str] = ""

    # ---------------------------------------------------------------- building and fitting
    def build(
        self,
        params: Mapping[str, Any],
        random_state: int | None,
        early_stopping_rounds: int | None,
        device: str | None,
        callbacks: list | None = None,
    ) -> Any:
        """A new unfitted inner model."""
        raise NotImplementedError

    def eval_kwargs(self, X_val: np.ndarray, y_val: np.ndarray, sw_val: Any, esr: int) -> dict[str, Any]:
        """``fit`` keyword arguments for early stopping on ``(X_val, y_val)`` (unprefixed)."""
        raise NotImplementedError

    def best_iteration(self, inner: Any) -> int | None:
        """0-based best boosting round after early stopping, or None."""
        return None

    # ---------------------------------------------------------------- outputs
    def margin(self, inner: Any, X: np.ndarray) -> np.ndarray:
        """Raw scores ``(N,)`` or ``(N, K)``."""
        raise Img2TabInputError(f"model={self.name!r} has no raw margin (decision_function)")

    def importance(self, inner: Any, kind: str | None, best_iteration: int | None,
                   all_trees: bool = False) -> np.ndarray:
        """Raw per-column importance over the inner model's columns (not normalised)."""
        raise NotImplementedError

    def contributions(self, inner: Any, X: np.ndarray, n_classes: int,
                      best_iteration: int | None) -> np.ndarray:
        """Additive contributions with the bias last: ``(N, n_cols + 1)`` or ``(N, K, n_cols + 1)``."""
        raise Img2TabInputError(
            "per-image contributions are available for xgboost, lightgbm, catboost and logreg "
            f"models, not {self.name!r}; use global_importance(..., importance_type='permutation')"
        )

    # ---------------------------------------------------------------- persistence
    def save(self, inner: Any, folder: Path) -> None:
        """Write the fitted inner model to ``folder / model_file`` (no pickle)."""
        raise NotImplementedError

    def load(self, folder: Path, template: Any, classes: np.ndarray, n_columns: int) -> Any:
        """Read the inner model back.

        Args:
            folder: the saved classifier folder.
            template: an unfitted inner model built from the saved parameters.
            classes: encoded classes ``0..K-1`` the inner model was trained on.
            n_columns: number of columns the inner model sees.
        """
        raise NotImplementedError


# --------------------------------------------------------------------------- xgboost
class XGBoostBackend(Backend):
    name = "xgboost"
    boosting = True
    has_margin = True
    importance_kinds = XGB_IMPORTANCE_TYPES
    model_file = "model.json"

    def build(self, params, random_state, early_stopping_rounds, device, callbacks=None):
        import xgboost

        kw: dict[str, Any] = {"tree_method": "hist", "device": device or "cpu"}
        if random_state is not None:
            kw["random_state"] = random_state
        if early_stopping_rounds is not None:
            kw["early_stopping_rounds"] = early_stopping_rounds
        if callbacks:
            kw["callbacks"] = callbacks
        kw.update(params)
        return xgboost.XGBClassifier(**kw)

    def eval_kwargs(self, X_val, y_val, sw_val, esr):
        kw: dict[str, Any] = {"eval_set": [(X_val, y_val)], "verbose": False}
        if sw_val is not None:
            kw["sample_weight_eval_set"] = [sw_val]
        return kw

    def best_iteration(self, inner):
        try:
            return int(inner.best_iteration)
        except (AttributeError, TypeError, ValueError):
            return None

    def margin(self, inner, X):
        return inner.predict(X, output_margin=True)

    def booster(self, inner: Any, best_iteration: int | None, all_trees: bool = False) -> Any:
        """The ``xgboost.Booster``, restricted to rounds ``0..best_iteration`` unless ``all_trees``."""
        booster = inner.get_booster()
        if not all_trees and best_iteration is not None:
            return booster[: best_iteration + 1]
        return booster

    def importance(self, inner, kind, best_iteration, all_trees=False):
        kind = "gain" if kind is None else kind
        if kind not in XGB_IMPORTANCE_TYPES:
            raise Img2TabInputError(
                f"unknown importance_type {kind!r} for xgboost; valid: None, "
                f"{', '.join(XGB_IMPORTANCE_TYPES)}, 'permutation'"
            )
        booster = self.booster(inner, best_iteration, all_trees)
        return booster_scores(booster, kind, booster.num_features())

    def contributions(self, inner, X, n_classes, best_iteration):
        import xgboost

        rng = (0, best_iteration + 1) if best_iteration is not None else (0, 0)
        return inner.get_booster().predict(xgboost.DMatrix(X), pred_contribs=True, iteration_range=rng)

    def save(self, inner, folder):
        inner.save_model(os.fspath(folder / self.model_file))

    def load(self, folder, template, classes, n_columns):
        import xgboost

        est = xgboost.XGBClassifier()
        path = folder / self.model_file
        try:
            est.load_model(os.fspath(path))
        except (xgboost.core.XGBoostError, ValueError) as exc:  # ValueError: undecodable message
            first = (str(exc).strip().splitlines() or [""])[0]
            raise Img2TabInputError(f"{path} is not a loadable XGBoost model: {first}") from exc
        return est


def booster_scores(booster: Any, kind: str, n: int) -> np.ndarray:
    """``booster.get_score(importance_type=kind)`` as a dense float64 ``(n,)`` vector."""
    score = booster.get_score(importance_type=kind)
    out = np.zeros(n, dtype=np.float64)
    names = booster.feature_names
    lookup = {nm: i for i, nm in enumerate(names)} if names else None
    for key, val in score.items():
        out[lookup[key] if lookup is not None else int(key[1:])] = float(val)
    return out


# --------------------------------------------------------------------------- scikit-learn
class LogRegBackend(Backend):
    name = "logreg"
    has_margin = True
    scaled = True
    model_file = "model.npz"

    def build(self, params, random_state, early_stopping_rounds, device, callbacks=None):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(**{"max_iter": 1000, "random_state": random_state, **params})

    def margin(self, inner, X):
        return inner.decision_function(X)

    def importance(self, inner, kind, best_iteration, all_trees=False):
        return np.abs(np.asarray(inner.coef_, dtype=np.float64)).mean(axis=0)

    def contributions(self, inner, X, n_classes, best_iteration):
        z = np.asarray(X, dtype=np.float64)
        coef = np.asarray(inner.coef_, dtype=np.float64)
        intercept = np.asarray(inner.intercept_, dtype=np.float64)
        if n_classes == 2:
            return np.concatenate([z * coef[0], np.full((z.shape[0], 1), intercept[0])], axis=1)
        vals = z[:, None, :] * coef[None, :, :]
        bias = np.broadcast_to(intercept[None, :, None], (z.shape[0], n_classes, 1))
        return np.concatenate([vals, bias], axis=2)

    def save(self, inner, folder):
        _save_npz(folder / self.model_file, coef=inner.coef_, intercept=inner.intercept_,
                  n_iter=np.asarray(inner.n_iter_))

    def load(self, folder, template, classes, n_columns):
        path = folder / self.model_file
        a = load_npz(path)
        _need(a, path, "coef", "intercept", "n_iter")
        k = 1 if classes.size == 2 else classes.size
        if a["coef"].shape != (k, n_columns) or a["intercept"].shape != (k,):
            raise Img2TabInputError(f"{path}: coef has shape {a['coef'].shape}, expected {(k, n_columns)}")
        est = template
        est.coef_ = a["coef"]
        est.intercept_ = a["intercept"]
        est.n_iter_ = a["n_iter"]
        est.classes_ = classes
        est.n_features_in_ = n_columns
        return est


class MLPBackend(Backend):
    name = "mlp"
    scaled = True
    model_file = "model.npz"

    def build(self, params, random_state, early_stopping_rounds, device, callbacks=None):
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(**{"random_state": random_state, **params})

    def importance(self, inner, kind, best_iteration, all_trees=False):
        return np.abs(np.asarray(inner.coefs_[0], dtype=np.float64)).mean(axis=1)

    def save(self, inner, folder):
        arrays = {f"coef_{i}": c for i, c in enumerate(inner.coefs_)}
        arrays.update({f"intercept_{i}": b for i, b in enumerate(inner.intercepts_)})
        _save_npz(folder / self.model_file, n_layers=np.asarray(inner.n_layers_),
                  out_activation=np.asarray(inner.out_activation_), n_iter=np.asarray(inner.n_iter_),
                  **arrays)

    def load(self, folder, template, classes, n_columns):
        from sklearn.preprocessing import LabelBinarizer

        path = folder / self.model_file
        a = load_npz(path)
        _need(a, path, "n_layers", "out_activation", "n_iter")
        n_layers = int(a["n_layers"])
        names = [f"coef_{i}" for i in range(n_layers - 1)] + [f"intercept_{i}" for i in range(n_layers - 1)]
        _need(a, path, *names)
        coefs = [a[f"coef_{i}"] for i in range(n_layers - 1)]
        if coefs[0].shape[0] != n_columns:
            raise Img2TabInputError(
                f"{path}: first layer has {coefs[0].shape[0]} inputs, expected {n_columns}"
            )
        est = template
        est.coefs_ = coefs
        est.intercepts_ = [a[f"intercept_{i}"] for i in range(n_layers - 1)]
        est.n_layers_ = n_layers
        est.n_outputs_ = int(coefs[-1].shape[1])
        est.out_activation_ = str(a["out_activation"])
        est.n_iter_ = int(a["n_iter"])
        est.classes_ = classes
        est.n_features_in_ = n_columns
        est._label_binarizer = LabelBinarizer().fit(classes)
        return est


class RandomForestBackend(Backend):
    name = "random_forest"
    model_file = "model.npz"

    def build(self, params, random_state, early_stopping_rounds, device, callbacks=None):
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(**{"random_state": random_state, **params})

    def importance(self, inner, kind, best_iteration, all_trees=False):
        return np.asarray(inner.feature_importances_, dtype=np.float64)

    def save(self, inner, folder):
        arrays: dict[str, Any] = {"n_trees": np.asarray(len(inner.estimators_))}
        for i, tree in enumerate(inner.estimators_):
            state = tree.tree_.__getstate__()
            arrays[f"nodes_{i}"] = state["nodes"]
            arrays[f"values_{i}"] = state["values"]
            arrays[f"max_depth_{i}"] = np.asarray(state["max_depth"])
            arrays[f"max_features_{i}"] = np.asarray(tree.max_features_)
        _save_npz(folder / self.model_file, **arrays)

    def load(self, folder, template, classes, n_columns):
        from sklearn.base import clone
        from sklearn.tree import DecisionTreeClassifier
        from sklearn.tree._tree import Tree

        path = folder / self.model_file
        a = load_npz(path)
        _need(a, path, "n_trees")
        n_trees = int(a["n_trees"])
        k = classes.size
        est = template
        base = DecisionTreeClassifier(**{p: getattr(est, p) for p in _TREE_PARAMS})
        trees = []
        for i in range(n_trees):
            _need(a, path, f"nodes_{i}", f"values_{i}", f"max_depth_{i}", f"max_features_{i}")
            nodes, values = a[f"nodes_{i}"], a[f"values_{i}"]
            if nodes.dtype.names is None or values.ndim != 3 or values.shape[2] != k:
                raise Img2TabInputError(f"{path}: tree {i} is not a node table of a {k}-class tree")
            feat = nodes["feature"]
            if np.any(feat >= n_columns) or np.any(nodes["left_child"] >= nodes.shape[0]):
                raise Img2TabInputError(f"{path}: tree {i} refers to features or nodes that do not exist")
            tree = Tree(n_columns, np.asarray([k], dtype=np.intp), 1)
            try:
                tree.__setstate__({"max_depth": int(a[f"max_depth_{i}"]), "node_count": int(nodes.shape[0]),
                                   "nodes": nodes, "values": np.ascontiguousarray(values)})
            except (ValueError, TypeError) as exc:
                raise Img2TabInputError(f"{path}: tree {i} does not fit this scikit-learn: {exc}") from exc
            dt = clone(base)
            dt.tree_ = tree
            dt.n_features_in_ = n_columns
            dt.n_outputs_ = 1
            dt.classes_ = classes
            dt.n_classes_ = k
            dt.max_features_ = int(a[f"max_features_{i}"])
            trees.append(dt)
        est.estimators_ = trees
        est.estimator_ = base
        est.classes_ = classes
        est.n_classes_ = k
        est.n_outputs_ = 1
        est.n_features_in_ = n_columns
        return est


_TREE_PARAMS = ("criterion", "max_depth", "min_samples_split", "min_samples_leaf",
                "min_weight_fraction_leaf", "max_features", "max_leaf_nodes", "min_impurity_decrease",
                "ccp_alpha", "monotonic_cst")


# --------------------------------------------------------------------------- lightgbm / catboost
class LightGBMModel:
    """A loaded LightGBM classifier: ``predict_proba`` over a ``lightgbm.Booster`` (``booster_``).

    LightGBM's own ``LGBMClassifier`` cannot be rebuilt from a saved text model without its
    private attributes; this adapter offers what :class:`ConceptClassifier` uses.
    """

    def __init__(self, booster: Any, classes: np.ndarray) -> None:
        self.booster_ = booster
        self.classes_ = classes

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = np.asarray(self.booster_.predict(X), dtype=np.float64)
        return np.column_stack([1.0 - p, p]) if p.ndim == 1 else p


class LightGBMBackend(Backend):
    name = "lightgbm"
    boosting = True
    has_margin = True
    importance_kinds = ("gain", "split", "weight")
    model_file = "model.txt"

    def build(self, params, random_state, early_stopping_rounds, device, callbacks=None):
        lightgbm = optional_import("lightgbm")
        kw: dict[str, Any] = {"random_state": random_state, "verbose": -1}
        if device is not None:
            kw["device_type"] = "cuda" if str(device).startswith("cuda") else device
        return lightgbm.LGBMClassifier(**{**kw, **params})

    def eval_kwargs(self, X_val, y_val, sw_val, esr):
        lightgbm = optional_import("lightgbm")
        kw: dict[str, Any] = {"callbacks": [lightgbm.early_stopping(esr, verbose=False)]}
        if "eval_X" in inspect.signature(lightgbm.LGBMClassifier.fit).parameters:
            kw["eval_X"] = (X_val,)  # LightGBM >= 4.7 deprecates eval_set
            kw["eval_y"] = (y_val,)
        else:
            kw["eval_set"] = [(X_val, y_val)]
        if sw_val is not None:
            kw["eval_sample_weight"] = [sw_val]
        return kw

    def best_iteration(self, inner):
        try:
            best = int(inner.best_iteration_)
        except (AttributeError, TypeError, ValueError):
            return None
        return best - 1 if best > 0 else None  # LightGBM counts from 1

    def margin(self, inner, X):
        # Booster.predict uses the best iteration when early stopping found one.
        return inner.booster_.predict(X, raw_score=True)

    def importance(self, inner, kind, best_iteration, all_trees=False):
        lgb_kind = {None: "gain", "gain": "gain", "weight": "split", "split": "split"}.get(kind)
        if lgb_kind is None:
            raise Img2TabInputError(
                f"unknown importance_type {kind!r} for lightgbm; valid: None, 'gain', 'split', 'permutation'"
            )
        return np.asarray(inner.booster_.feature_importance(importance_type=lgb_kind), dtype=np.float64)

    def contributions(self, inner, X, n_classes, best_iteration):
        raw = np.asarray(inner.booster_.predict(X, pred_contrib=True))
        return raw.reshape(raw.shape[0], n_classes, -1) if n_classes > 2 else raw

    def save(self, inner, folder):
        # num_iteration=None keeps the rounds up to the best one when early stopping found one.
        text = inner.booster_.model_to_string(num_iteration=None)
        (folder / self.model_file).write_text(text, encoding="utf-8")

    def load(self, folder, template, classes, n_columns):
        lightgbm = optional_import("lightgbm")
        path = folder / self.model_file
        try:
            booster = lightgbm.Booster(model_str=path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, lightgbm.basic.LightGBMError) as exc:
            msg = " ".join(str(exc).split())
            raise Img2TabInputError(f"{path} is not a loadable LightGBM model: {msg}") from exc
        if booster.num_feature() != n_columns:
            raise Img2TabInputError(f"{path} has {booster.num_feature()} features, expected {n_columns}")
        return LightGBMModel(booster, classes)


class CatBoostBackend(Backend):
    name = "catboost"
    boosting = True
    has_margin = True
    model_file = "model.cbm"

    def build(self, params, random_state, early_stopping_rounds, device, callbacks=None):
        catboost = optional_import("catboost")
        kw: dict[str, Any] = {"random_seed": random_state, "verbose": 0, "allow_writing_files": False}
        if device is not None and str(device).startswith("cuda"):
            kw["task_type"] = "GPU"
        if early_stopping_rounds is not None:
            kw["early_stopping_rounds"] = early_stopping_rounds
        return catboost.CatBoostClassifier(**{**kw, **params})

    def eval_kwargs(self, X_val, y_val, sw_val, esr):
        return {"eval_set": (X_val, y_val)}

    def best_iteration(self, inner):
        try:
            best = inner.get_best_iteration()
        except (AttributeError, TypeError, ValueError):
            return None
        return None if best is None else int(best)

    def margin(self, inner, X):
        return inner.predict(X, prediction_type="RawFormulaVal")

    def importance(self, inner, kind, best_iteration, all_trees=False):
        return np.asarray(inner.get_feature_importance(), dtype=np.float64)

    def contributions(self, inner, X, n_classes, best_iteration):
        import catboost

        return np.asarray(inner.get_feature_importance(catboost.Pool(X), type="ShapValues"))

    def save(self, inner, folder):
        inner.save_model(os.fspath(folder / self.model_file), format="cbm")

    def load(self, folder, template, classes, n_columns):
        catboost = optional_import("catboost")
        path = folder / self.model_file
        est = catboost.CatBoostClassifier()
        try:
            est.load_model(os.fspath(path), format="cbm")
        except catboost.CatBoostError as exc:
            msg = " ".join(str(exc).split())
            raise Img2TabInputError(f"{path} is not a loadable CatBoost model: {msg}") from exc
        return est


def _save_npz(path: Path, **arrays: Any) -> None:
    from img2tab._atomic import atomic_save_npz

    atomic_save_npz(path, **arrays)


#: One shared adapter per model family.
BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (XGBoostBackend(), LogRegBackend(), RandomForestBackend(), MLPBackend(),
              LightGBMBackend(), CatBoostBackend())
}


def get_backend(model: str) -> Backend:
    """The adapter of ``model`` (one of :data:`~img2tab.tabular.MODELS`)."""
    try:
        return BACKENDS[model]
    except KeyError:
        raise Img2TabInputError(f"unknown model {model!r}; valid models: {', '.join(BACKENDS)}") from None
