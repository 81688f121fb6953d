"""Choosing a classifier by the class relevance of its important concepts (Img2Tab's analysis).

Img2Tab argues that a good classifier over Ψ should not only be accurate but should base its
decisions on *class-relevant* concepts, measured by the per-feature Wasserstein-1 score
(:func:`img2tab.tabular._wasserstein.wasserstein_relevance`). :func:`compare_classifiers`
tabulates, per fitted classifier, its accuracy and the W1 of its top-k important concepts;
:func:`select_classifier` picks the one whose top-k concepts are the most relevant.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from img2tab.errors import Img2TabInputError

from ._importance import Table, importance_vector, rank_descending

__all__ = ["classification_metrics", "compare_classifiers", "select_classifier"]


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


def compare_classifiers(
    classifiers: Mapping[str, Any],
    X_test: Any,
    y_test: Any,
    w1: Any,
    k: int = 20,
    *,
    importance_type: str | None = None,
) -> Table:
    """Compare fitted classifiers by accuracy and the class relevance of their concepts.

    Args:
        classifiers: ``{name: fitted classifier}`` (ConceptClassifier or any classifier with
            ``feature_importances_`` / ``coef_``), all over the same ``D`` Ψ columns.
        X_test: ``(N, D)`` held-out Ψ rows.
        y_test: ``(N,)`` held-out labels.
        w1: ``(D,)`` per-feature Wasserstein-1 relevance (usually computed on training data).
        k: number of top important concepts per classifier.
        importance_type: passed to
            :func:`~img2tab.tabular._importance.importance_vector` (None:
            ``feature_importances_``).

    Returns:
        :class:`~img2tab.tabular._importance.Table`, one row per classifier in input order,
        with columns ``classifier``, ``accuracy``, ``balanced_accuracy``, ``auc``,
        ``w1_mean``, ``w1_median``, ``w1_q25``, ``w1_q75`` (W1 of its top-k concepts),
        ``overlap_at_k`` (fraction of its top-k concepts that are among the k most relevant by
        W1), ``spearman`` (rank correlation between importance and W1 over all features; NaN
        when the importances are constant) and ``n_used`` (features with non-zero importance).
        For reference, the mean W1 of ``k`` random concepts is ``w1.mean()``.
    """
    if not isinstance(classifiers, Mapping) or not classifiers:
        raise Img2TabInputError("classifiers must be a non-empty dict {name: fitted classifier}")
    k = int(k)
    if k < 1:
        raise Img2TabInputError(f"k must be >= 1, got {k}")
    rows: dict[str, list[Any]] = {
        c: []
        for c in (
            "classifier",
            "accuracy",
            "balanced_accuracy",
            "auc",
            "w1_mean",
            "w1_median",
            "w1_q25",
            "w1_q75",
            "overlap_at_k",
            "spearman",
            "n_used",
        )
    }
    w_checked: np.ndarray | None = None
    for name, clf in classifiers.items():
        imp = importance_vector(clf, importance_type)
        w = _check_w1(w1, imp.shape[0], str(name)) if w_checked is None else w_checked
        w_checked = w
        if imp.shape[0] != w.shape[0]:
            raise Img2TabInputError(
                f"classifier {name!r} has {imp.shape[0]} features, the others {w.shape[0]}"
            )
        kk = min(k, imp.shape[0])
        top = rank_descending(imp)[:kk]
        top_w1 = rank_descending(w)[:kk]
        vals = w[top]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns on constant input and returns NaN
            rho = spearmanr(imp, w).statistic if np.ptp(imp) > 0 and np.ptp(w) > 0 else np.nan
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
    cols: dict[str, np.ndarray] = {}
    for key, values in rows.items():
        if key == "classifier":
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
    importance_type: str | None = None,
) -> str:
    """Name of the classifier whose top-k concepts have the highest mean W1.

    Ties are broken by higher accuracy, then by input order.

    Args:
        comparison: a table from :func:`compare_classifiers`, or the ``{name: classifier}``
            dict to compare (then ``X_test``, ``y_test`` and ``w1`` are required).
        X_test, y_test, w1, k, importance_type: see :func:`compare_classifiers`.

    Returns:
        The selected classifier name.
    """
    if not isinstance(comparison, Table):
        if X_test is None or y_test is None or w1 is None:
            raise Img2TabInputError(
                "select_classifier needs a compare_classifiers table, or classifiers with "
                "X_test, y_test and w1"
            )
        comparison = compare_classifiers(comparison, X_test, y_test, w1, k, importance_type=importance_type)
    for col in ("classifier", "w1_mean", "accuracy"):
        if col not in comparison:
            raise Img2TabInputError(f"comparison table lacks column {col!r}")
    if len(comparison) == 0:
        raise Img2TabInputError("comparison table is empty")
    w1_mean = np.nan_to_num(np.asarray(comparison["w1_mean"], dtype=np.float64), nan=-np.inf)
    acc = np.nan_to_num(np.asarray(comparison["accuracy"], dtype=np.float64), nan=-np.inf)
    order = np.arange(len(comparison))
    # lexsort: last key is primary; negate for descending, index ascending for ties.
    best = np.lexsort((order, -acc, -w1_mean))[0]
    return str(comparison["classifier"][best])
