"""Choosing a classifier by the class relevance of its important concepts (Img2Tab's analysis).

Img2Tab argues that a good classifier over Ψ should not only be accurate but should base its
decisions on *class-relevant* concepts, measured by the per-feature Wasserstein-1 score
(:func:`img2tab.tabular._wasserstein.wasserstein_relevance`). :func:`compare_classifiers`
tabulates, per fitted classifier, its accuracy and the W1 of its top-k important concepts;
:func:`select_classifier` keeps the classifiers within ``max_accuracy_drop`` of the most
accurate one and picks, among them, the one whose top-k concepts are the most relevant.

Importances of different model families mean different things (XGBoost gain, |coef| on
z-scores, impurity decrease, first-layer weights), so by default the comparison ranks every
model's concepts by *held-out permutation importance*
(:func:`sklearn.inspection.permutation_importance`: the loss increase when one concept is
shuffled on the test split), which has the same unit for all of them. The paper's variant
(each model's own importance, XGBoost's average gain, accuracy only breaking ties) is
``preset="paper"``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from img2tab.errors import Img2TabInputError

from ._importance import Table, importance_vector, rank_descending

__all__ = ["IMPORTANCE_METHODS", "classification_metrics", "compare_classifiers", "select_classifier"]

#: Values of ``importance`` in :func:`compare_classifiers` besides an explicit importance type.
IMPORTANCE_METHODS: tuple[str, ...] = ("permutation", "recommended", "native")


def _scores_for_auc(clf: Any, X: Any, classes: np.ndarray) -> np.ndarray | None:
    if hasattr(clf, "predict_proba"):
        return np.asarray(clf.predict_proba(X), dtype=np.float64)
    if hasattr(clf, "decision_function"):
        return np.asarray(clf.decision_function(X), dtype=np.float64)
    return None


def classification_metrics(clf: Any, X: Any, y: Any) -> dict[str, float]:
    """Accuracy, balanced accuracy and ROC AUC of a fitted classifier on ``(X, y)``.

    Args:
        clf: fitted classifier with ``predict`` (and ``predict_proba`` or
            ``decision_function`` for the AUC).
        X: ``(N, D)`` Ψ rows.
        y: ``(N,)`` true labels.

    Returns:
        ``{"accuracy", "balanced_accuracy", "auc"}`` as floats; the AUC is NaN when it is
        undefined (a single class in ``y``, or no scores). Multi-class AUC is one-vs-rest,
        macro-averaged.
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

    y = np.asarray(y).reshape(-1)
    pred = clf.predict(X)
    if pred.shape[0] != y.shape[0]:
        raise Img2TabInputError(f"X has {pred.shape[0]} rows but y has {y.shape[0]} labels")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # balanced accuracy warns on classes missing from y
        acc = float(accuracy_score(y, pred))
        bacc = float(balanced_accuracy_score(y, pred))
    auc = float("nan")
    classes = np.asarray(getattr(clf, "classes_", np.unique(y)))
    scores = _scores_for_auc(clf, X, classes)
    if scores is not None and np.unique(y).size >= 2:
        try:
            if classes.size == 2:
                s = scores[:, 1] if scores.ndim == 2 else scores
                auc = float(roc_auc_score(y == classes[1], s))
            elif scores.ndim == 2:
                auc = float(roc_auc_score(y, scores, multi_class="ovr", labels=classes))
        except ValueError:
            auc = float("nan")
    return {"accuracy": acc, "balanced_accuracy": bacc, "auc": auc}


def _check_w1(w1: Any, n_features: int, name: str) -> np.ndarray:
    w = np.asarray(w1, dtype=np.float64)
    if w.ndim != 1:
        raise Img2TabInputError(
            f"w1 must be a (D,) vector of per-feature scores (binary labels), got shape {w.shape}"
        )
    if w.shape[0] != n_features:
        raise Img2TabInputError(
            f"w1 has {w.shape[0]} scores but classifier {name!r} expects {n_features} features"
        )
    if not np.isfinite(w).all():
        raise Img2TabInputError("w1 contains NaN/inf")
    return w


class _Restricted:
    """``clf`` seen through a subset of columns: the others stay at their values in ``base``.

    :func:`sklearn.inspection.permutation_importance` shuffles every column it is given; passing
    only the candidate columns through this view restricts the (costly) shuffles to them while the
    classifier still sees complete rows.
    """

    _estimator_type = "classifier"

    def __init__(self, clf: Any, base: np.ndarray, columns: np.ndarray) -> None:
        self.clf = clf
        self.base = base
        self.columns = columns
        self.classes_ = np.asarray(clf.classes_)

    def _full(self, Xs: np.ndarray) -> np.ndarray:
        X = self.base.copy()
        X[:, self.columns] = Xs
        return X

    def fit(self, X: Any, y: Any) -> _Restricted:  # pragma: no cover - never refitted
        return self

    def predict(self, Xs: np.ndarray) -> np.ndarray:
        return np.asarray(self.clf.predict(self._full(Xs)))

    def predict_proba(self, Xs: np.ndarray) -> np.ndarray:
        return np.asarray(self.clf.predict_proba(self._full(Xs)))

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import Tags, TargetTags

        tags = Tags(estimator_type="classifier", target_tags=TargetTags(required=True))
        return tags


def _native_importance(clf: Any) -> np.ndarray:
    from ._importance import recommended_importance_type

    try:
        return importance_vector(clf, recommended_importance_type(clf))
    except Img2TabInputError:
        return importance_vector(clf, None)


def held_out_permutation_importance(
    clf: Any,
    X: Any,
    y: Any,
    *,
    candidates: Any = None,
    n_repeats: int = 3,
    scoring: str = "neg_log_loss",
    random_state: int | None = 0,
) -> np.ndarray:
    """Permutation importance of ``clf`` on held-out rows, ``(D,)`` float64.

    A thin call to :func:`sklearn.inspection.permutation_importance` (mean score decrease over
    ``n_repeats`` shuffles of one column). With ``candidates`` only those columns are shuffled
    (the others get 0), which keeps the cost at ``len(candidates) * n_repeats`` predictions.

    Args:
        clf: fitted classifier with ``predict_proba`` (for log loss) or ``predict``.
        X: ``(N, D)`` held-out Ψ. Not modified.
        y: ``(N,)`` labels.
        candidates: column indices to shuffle (None: all ``D``).
        n_repeats: shuffles per column.
        scoring: a scikit-learn scorer name.
        random_state: seed of the shuffles (a local generator; no global state).
    """
    from sklearn.inspection import permutation_importance

    X = np.asarray(X)
    d = X.shape[1]
    cols = np.arange(d) if candidates is None else np.unique(np.asarray(candidates, dtype=np.int64))
    view = _Restricted(clf, X, cols)
    res = permutation_importance(view, X[:, cols], np.asarray(y), scoring=scoring, n_repeats=int(n_repeats),
                                 random_state=random_state, n_jobs=None)
    out = np.zeros(d, dtype=np.float64)
    out[cols] = np.asarray(res.importances_mean, dtype=np.float64)
    return out


def compare_classifiers(
    classifiers: Mapping[str, Any],
    X_test: Any,
    y_test: Any,
    w1: Any,
    k: int = 20,
    *,
    importance: str | None = "permutation",
    importance_type: str | None = None,
    preset: str | None = None,
    n_candidates: int | None = 100,
    n_repeats: int = 3,
    scoring: str = "neg_log_loss",
    random_state: int | None = 0,
) -> Table:
    """Compare fitted classifiers by accuracy and the class relevance of their concepts.

    Args:
        classifiers: ``{name: fitted classifier}`` (ConceptClassifier or any classifier with
            ``feature_importances_`` / ``coef_``), all over the same ``D`` Ψ columns.
        X_test: ``(N, D)`` held-out Ψ rows.
        y_test: ``(N,)`` held-out labels.
        w1: ``(D,)`` per-feature Wasserstein-1 relevance (usually computed on training data).
        k: number of top important concepts per classifier.
        importance: how each classifier's concepts are ranked:

            * ``"permutation"`` (default): held-out permutation importance on ``(X_test,
              y_test)`` (:func:`held_out_permutation_importance`), comparable across families;
            * ``"recommended"`` / ``"native"``: each model's own importance
              (:func:`~img2tab.tabular._importance.recommended_importance_type`: XGBoost total
              gain), only comparable within one family;
            * None: use ``importance_type`` (see
              :func:`~img2tab.tabular._importance.importance_vector`; None there is
              ``feature_importances_``, XGBoost's average gain as in the paper).
        importance_type: explicit importance type when ``importance=None``.
        preset: ``"paper"``: the paper's procedure (``importance=None``, average gain).
        n_candidates: with ``"permutation"``, shuffle only the union of every classifier's
            ``n_candidates`` natively most important concepts and the ``n_candidates`` highest-W1
            ones (None: all ``D`` columns; costly for thousands of concepts).
        n_repeats, scoring, random_state: permutation settings.

    Returns:
        :class:`~img2tab.tabular._importance.Table`, one row per classifier in input order,
        with columns ``classifier``, ``accuracy``, ``balanced_accuracy``, ``auc``,
        ``w1_mean``, ``w1_median``, ``w1_q25``, ``w1_q75`` (W1 of its top-k concepts),
        ``overlap_at_k`` (fraction of its top-k concepts that are among the k most relevant by
        W1), ``spearman`` (rank correlation between importance and W1 over the ranked
        concepts; NaN when the importances are constant), ``n_used`` (features with non-zero
        importance) and ``importance`` (the method used). For reference, the mean W1 of ``k``
        random concepts is ``w1.mean()``.
    """
    if not isinstance(classifiers, Mapping) or not classifiers:
        raise Img2TabInputError("classifiers must be a non-empty dict {name: fitted classifier}")
    k = int(k)
    if k < 1:
        raise Img2TabInputError(f"k must be >= 1, got {k}")
    if preset is not None:
        if preset != "paper":
            raise Img2TabInputError(f"unknown preset {preset!r}; valid: None, 'paper'")
        importance, importance_type = None, None
    if importance is not None and importance not in IMPORTANCE_METHODS:
        raise Img2TabInputError(
            f"unknown importance {importance!r}; valid: {', '.join(IMPORTANCE_METHODS)} or None "
            "(then importance_type)")
    cols_order = ("classifier", "accuracy", "balanced_accuracy", "auc", "w1_mean", "w1_median", "w1_q25",
                  "w1_q75", "overlap_at_k", "spearman", "n_used", "importance")
    rows: dict[str, list[Any]] = {c: [] for c in cols_order}
    native: dict[str, np.ndarray] = {}
    for name, clf in classifiers.items():
        native[name] = (_native_importance(clf) if importance in ("permutation", "recommended", "native")
                        else importance_vector(clf, importance_type))
    d = next(iter(native.values())).shape[0]
    w = _check_w1(w1, d, str(next(iter(classifiers))))
    for name, imp in native.items():
        if imp.shape[0] != d:
            raise Img2TabInputError(f"classifier {name!r} has {imp.shape[0]} features, the others {d}")
    cand = None
    if importance == "permutation":
        X_arr = np.asarray(X_test)
        if X_arr.ndim != 2 or X_arr.shape[1] != d:
            raise Img2TabInputError(f"X_test has shape {X_arr.shape}, expected (N, {d})")
        if n_candidates is not None and int(n_candidates) < d:
            m = int(n_candidates)
            picks = [rank_descending(v)[:m] for v in native.values()] + [rank_descending(w)[:m]]
            cand = np.unique(np.concatenate(picks))
    label = (importance if importance is not None
             else ("feature_importances_" if importance_type is None else str(importance_type)))
    for name, clf in classifiers.items():
        if importance == "permutation":
            imp = held_out_permutation_importance(clf, X_test, y_test, candidates=cand, n_repeats=n_repeats,
                                                  scoring=scoring, random_state=random_state)
            ranked = cand if cand is not None else np.arange(d)
        else:
            imp = native[name]
            ranked = np.arange(d)
        kk = min(k, imp.shape[0])
        top = rank_descending(imp)[:kk]
        top_w1 = rank_descending(w)[:kk]
        vals = w[top]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns on constant input and returns NaN
            a, b = imp[ranked], w[ranked]
            rho = spearmanr(a, b).statistic if np.ptp(a) > 0 and np.ptp(b) > 0 else np.nan
        metrics = classification_metrics(clf, X_test, y_test)
        rows["classifier"].append(str(name))
        for key in ("accuracy", "balanced_accuracy", "auc"):
            rows[key].append(metrics[key])
        rows["w1_mean"].append(float(vals.mean()))
        rows["w1_median"].append(float(np.median(vals)))
        rows["w1_q25"].append(float(np.quantile(vals, 0.25)))
        rows["w1_q75"].append(float(np.quantile(vals, 0.75)))
        rows["overlap_at_k"].append(float(np.intersect1d(top, top_w1).size / kk))
        rows["spearman"].append(float(rho))
        rows["n_used"].append(int(np.count_nonzero(imp)))
        rows["importance"].append(label)
    cols: dict[str, np.ndarray] = {}
    for key, values in rows.items():
        if key in ("classifier", "importance"):
            cols[key] = np.asarray(values, dtype=str)
        elif key == "n_used":
            cols[key] = np.asarray(values, dtype=np.int64)
        else:
            cols[key] = np.asarray(values, dtype=np.float64)
    return Table(cols)


def select_classifier(
    comparison: Table | Mapping[str, Any],
    X_test: Any = None,
    y_test: Any = None,
    w1: Any = None,
    k: int = 20,
    *,
    max_accuracy_drop: float | None = 0.01,
    importance: str | None = "permutation",
    importance_type: str | None = None,
    preset: str | None = None,
    return_reason: bool = False,
) -> str | tuple[str, str]:
    """The classifier to use: accurate first, then relying on class-relevant concepts.

    Only classifiers whose test accuracy is within ``max_accuracy_drop`` of the most accurate
    one are eligible (0.01 = 1 point); among them the one whose top-k concepts have the highest
    mean W1 wins. Ties go to higher accuracy, then input order. ``preset="paper"`` (or
    ``max_accuracy_drop=None``) is the paper's rule: highest mean W1, accuracy only breaking ties.

    Args:
        comparison: a table from :func:`compare_classifiers`, or the ``{name: classifier}``
            dict to compare (then ``X_test``, ``y_test`` and ``w1`` are required).
        X_test, y_test, w1, k, importance, importance_type: see :func:`compare_classifiers`.
        max_accuracy_drop: accuracy (fraction) a more relevant classifier may give up.
        preset: ``"paper"`` for the paper's importance and rule.
        return_reason: also return a one-sentence reason.

    Returns:
        The selected classifier name (and the reason with ``return_reason=True``).
    """
    if preset is not None:
        if preset != "paper":
            raise Img2TabInputError(f"unknown preset {preset!r}; valid: None, 'paper'")
        max_accuracy_drop = None
    if not isinstance(comparison, Table):
        if X_test is None or y_test is None or w1 is None:
            raise Img2TabInputError(
                "select_classifier needs a compare_classifiers table, or classifiers with "
                "X_test, y_test and w1"
            )
        comparison = compare_classifiers(comparison, X_test, y_test, w1, k, importance=importance,
                                         importance_type=importance_type, preset=preset)
    for col in ("classifier", "w1_mean", "accuracy"):
        if col not in comparison:
            raise Img2TabInputError(f"comparison table lacks column {col!r}")
    if len(comparison) == 0:
        raise Img2TabInputError("comparison table is empty")
    if max_accuracy_drop is not None and not float(max_accuracy_drop) >= 0:
        raise Img2TabInputError(f"max_accuracy_drop must be >= 0 or None, got {max_accuracy_drop!r}")
    w1_mean = np.nan_to_num(np.asarray(comparison["w1_mean"], dtype=np.float64), nan=-np.inf)
    acc = np.nan_to_num(np.asarray(comparison["accuracy"], dtype=np.float64), nan=-np.inf)
    names = [str(c) for c in comparison["classifier"]]
    order = np.arange(len(comparison))
    if max_accuracy_drop is None:
        eligible = np.ones(len(acc), dtype=bool)
    else:
        eligible = acc >= acc.max() - float(max_accuracy_drop) - 1e-12
    # lexsort: last key is primary; negate for descending, index ascending for ties.
    best = int(np.lexsort((order, -acc, -w1_mean, ~eligible))[0])
    name = names[best]
    if not return_reason:
        return name
    method = str(comparison["importance"][best]) if "importance" in comparison else "importance"
    top_acc = int(np.argmax(acc))
    if max_accuracy_drop is None:
        reason = (f"{name}: highest mean W1 of its top concepts ({w1_mean[best]:.3f}, ranked by {method}); "
                  f"accuracy only breaks ties (paper's rule)")
    else:
        dropped = [names[i] for i in range(len(names)) if not eligible[i]]
        reason = (f"{name}: among the classifiers within {100 * float(max_accuracy_drop):g} point(s) of the "
                  f"best accuracy ({names[top_acc]}, {acc[top_acc]:.3f}), its top concepts (ranked by "
                  f"{method}) have the highest mean W1 ({w1_mean[best]:.3f}) at accuracy {acc[best]:.3f}"
                  + (f"; not eligible: {', '.join(dropped)}" if dropped else ""))
    return name, reason
