"""Concept importance: global rankings and per-image contributions.

A *concept* is one Ψ column, i.e. one StyleSpace channel of the generator. Rankings use
:func:`~img2tab.tabular._table.rank_descending` (stable; ties keep ascending index order); the
table types live in :mod:`img2tab.tabular._table` and are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from img2tab.errors import Img2TabInputError
from img2tab.networks.layout import StyleSpaceLayout

from ._backends import booster_scores
from ._table import ConceptTable, Table, concept_table, rank_descending, resolve_layout
from ._validation import check_positive_int

if TYPE_CHECKING:  # pragma: no cover
    from ._classifier import ConceptClassifier

__all__ = [
    "ConceptTable",
    "Contributions",
    "Table",
    "concept_contributions",
    "concept_table",
    "global_importance",
    "importance_vector",
    "rank_descending",
    "recommended_importance_type",
    "resolve_layout",
    "top_concepts",
]

XGB_IMPORTANCE_TYPES = ("gain", "weight", "cover", "total_gain", "total_cover")


# --------------------------------------------------------------------------- importances
def _is_concept_classifier(clf: Any) -> bool:
    from ._classifier import ConceptClassifier

    return isinstance(clf, ConceptClassifier)


def _n_features(clf: Any) -> int:
    n = getattr(clf, "n_features_in_", None)
    if n is None:
        raise Img2TabInputError(f"{type(clf).__name__} is not fitted (no n_features_in_); fit it first")
    return int(n)


def importance_vector(
    clf: Any,
    importance_type: str | None = None,
    *,
    X: Any = None,
    y: Any = None,
    n_repeats: int = 5,
    random_state: int | None = 0,
    all_trees: bool = False,
) -> np.ndarray:
    """Per-feature importance of a fitted classifier, shape ``(n_features_in_,)``.

    Args:
        clf: a fitted :class:`~img2tab.tabular._classifier.ConceptClassifier`, or any fitted
            scikit-learn-style classifier with ``feature_importances_`` or ``coef_`` (an
            ``xgboost.XGBClassifier`` too).
        importance_type: None for the classifier's ``feature_importances_`` (|coef| averaged
            over classes for linear models; for XGBoost the paper's average gain);
            ``"recommended"`` (:func:`recommended_importance_type`: ``"total_gain"`` for
            XGBoost, average ``"gain"`` under ``preset="paper"``); an XGBoost type (``"gain"``, ``"weight"``,
            ``"cover"``, ``"total_gain"``, ``"total_cover"``; ``"split"`` = ``"weight"`` for
            LightGBM); or ``"permutation"`` (needs ``X``, ``y``; mean accuracy drop over
            ``n_repeats`` shuffles, via :func:`sklearn.inspection.permutation_importance`).
        X, y: evaluation data for ``"permutation"``.
        n_repeats, random_state: permutation importance settings.
        all_trees: XGBoost only: count every tree, including those after
            ``best_iteration_`` (what ``XGBClassifier.feature_importances_`` and the official
            code do) instead of only the trees used for prediction. With ``importance_type=None``
            this gives xgboost's normalised ``feature_importances_`` over all trees.

    Returns:
        float64 ``(n_features_in_,)``, masked features 0 (raw, not normalised, except for
        ``None`` which returns the normalised ``feature_importances_``).
    """
    if importance_type == "recommended":
        importance_type = recommended_importance_type(clf)
    if importance_type == "permutation":
        if X is None or y is None:
            raise Img2TabInputError("importance_type='permutation' needs X and y")
        from sklearn.inspection import permutation_importance

        res = permutation_importance(clf, X, y, n_repeats=n_repeats, random_state=random_state, n_jobs=None)
        return np.asarray(res.importances_mean, dtype=np.float64)
    n = _n_features(clf)
    if _is_concept_classifier(clf):
        if importance_type is None:
            if all_trees and clf.model == "xgboost" and getattr(clf, "best_iteration_", None) is not None:
                # xgboost's own feature_importances_ (and the official code) use every tree
                raw = clf.importance("gain", all_trees=True)
                total = raw.sum()
                return raw / total if total > 0 else raw
            return np.asarray(clf.feature_importances_, dtype=np.float64).copy()
        return clf.importance(importance_type, all_trees=all_trees)
    # a plain estimator
    if importance_type is not None:
        booster = getattr(clf, "get_booster", None)
        if booster is None or importance_type not in XGB_IMPORTANCE_TYPES:
            raise Img2TabInputError(
                f"importance_type {importance_type!r} needs an XGBoost model or a "
                "ConceptClassifier; use None or 'permutation'"
            )
        return booster_scores(booster(), importance_type, n)
    if hasattr(clf, "feature_importances_"):
        return np.asarray(clf.feature_importances_, dtype=np.float64).reshape(-1).copy()
    if hasattr(clf, "coef_"):
        return np.abs(np.atleast_2d(np.asarray(clf.coef_, dtype=np.float64))).mean(axis=0)
    raise Img2TabInputError(
        f"{type(clf).__name__} has neither feature_importances_ nor coef_; use "
        "importance_type='permutation' with X and y"
    )


def recommended_importance_type(clf: Any) -> str | None:
    """The importance type to rank one model's concepts by.

    XGBoost: ``"total_gain"`` (the loss reduction a concept brings over the whole model;
    ``benchmarks/bench_importance.py`` shows that average gain, XGBoost's default, puts
    barely class-relevant concepts first), or ``"gain"`` (average gain, the paper's choice) for a
    :class:`ConceptClassifier` with ``preset="paper"``. LightGBM: ``"gain"`` (LightGBM's gain is
    a total). Other models: None (their ``feature_importances_``). To compare *different* model
    families use held-out permutation importance (``"permutation"``), whose unit is the same for
    all of them.
    """
    model = getattr(clf, "model", None)
    if model is None:  # a plain estimator
        return "total_gain" if hasattr(clf, "get_booster") else None
    if model == "xgboost":
        return "gain" if getattr(clf, "preset", None) == "paper" else "total_gain"
    if model == "lightgbm":
        return "gain"
    return None


def global_importance(
    clf: Any,
    importance_type: str | None = None,
    layout: StyleSpaceLayout | None = None,
    *,
    X: Any = None,
    y: Any = None,
    n_repeats: int = 5,
    random_state: int | None = 0,
    all_trees: bool = False,
    w1: Any = None,
) -> ConceptTable:
    """All concepts ranked by the classifier's importance (most important first).

    Args:
        clf: fitted classifier (see :func:`importance_vector`).
        importance_type: see :func:`importance_vector` (None: ``feature_importances_``,
            which for XGBoost is normalised average gain, as in the paper).
        layout: StyleSpace layout (None: guessed from the number of features).
        X, y, n_repeats, random_state, all_trees: see :func:`importance_vector`.
        w1: optional ``(D,)`` relevance scores added as a ``w1`` column.

    Returns:
        :class:`ConceptTable` with ``D`` rows: ``rank, feature, layer, channel, module,
        resolution, is_torgb, label, importance[, w1]``. Ties keep ascending feature order.
    """
    imp = importance_vector(
        clf,
        importance_type,
        X=X,
        y=y,
        n_repeats=n_repeats,
        random_state=random_state,
        all_trees=all_trees,
    )
    order = rank_descending(imp)
    extra: dict[str, Any] = {"importance": imp[order]}
    if w1 is not None:
        w = np.asarray(w1, dtype=np.float64).reshape(-1)
        if w.shape[0] != imp.shape[0]:
            raise Img2TabInputError(
                f"w1 has {w.shape[0]} scores but the classifier has {imp.shape[0]} features"
            )
        extra["w1"] = w[order]
    return concept_table(order, layout, imp.shape[0], **extra)


def top_concepts(
    clf: Any,
    k: int = 20,
    importance_type: str | None = None,
    layout: StyleSpaceLayout | None = None,
    **kwargs: Any,
) -> ConceptTable:
    """The ``k`` most important concepts (first ``k`` rows of :func:`global_importance`)."""
    k = check_positive_int(k, "k")
    return global_importance(clf, importance_type, layout, **kwargs).head(k)


# --------------------------------------------------------------------------- contributions
@dataclass(frozen=True, eq=False)
class Contributions:
    """Per-image additive concept contributions to the classifier's margin (log-odds).

    For every row ``i``: ``values[i].sum(-1) + bias[i] == margin[i]``, where the margin is what
    :meth:`ConceptClassifier.decision_function` returns and ``sigmoid(margin)`` is
    ``predict_proba[:, 1]`` (binary XGBoost / LightGBM / logistic regression).

    Attributes:
        values: ``(N, D)`` for two classes (contributions towards ``classes[1]``), else
            ``(N, K, D)``. Masked concepts are 0.
        bias: ``(N,)`` or ``(N, K)`` intercept (the SHAP expected value for trees).
        classes: the classifier's ``classes_``.
        layout: layout used to describe concepts.
    """

    values: np.ndarray
    bias: np.ndarray
    classes: np.ndarray
    layout: StyleSpaceLayout

    @property
    def margin(self) -> np.ndarray:
        """``values.sum(-1) + bias``: the raw model output per row (and class)."""
        return self.values.sum(axis=-1) + self.bias

    def top(
        self,
        i: int,
        k: int = 10,
        *,
        by: Literal["abs", "positive", "negative"] = "abs",
        class_index: int | None = None,
    ) -> ConceptTable:
        """The ``k`` concepts contributing most to image ``i``.

        Args:
            i: row index.
            k: number of concepts.
            by: ``"abs"`` largest |contribution|, ``"positive"`` largest towards the class,
                ``"negative"`` largest against it.
            class_index: for multi-class contributions, which class (index into ``classes``).

        Returns:
            :class:`ConceptTable` with a ``contribution`` column.
        """
        vals = self.values[int(i)]
        if vals.ndim == 2:
            if class_index is None:
                raise Img2TabInputError("multi-class contributions need class_index")
            vals = vals[int(class_index)]
        if by == "abs":
            order = rank_descending(np.abs(vals))
        elif by == "positive":
            order = rank_descending(vals)
        elif by == "negative":
            order = rank_descending(-vals)
        else:
            raise Img2TabInputError(f"by must be 'abs', 'positive' or 'negative', got {by!r}")
        order = order[: int(k)]
        return concept_table(order, self.layout, contribution=vals[order])


def concept_contributions(
    clf: ConceptClassifier, X: Any, layout: StyleSpaceLayout | None = None
) -> Contributions:
    """Additive per-image concept contributions (SHAP values for trees).

    XGBoost uses ``Booster.predict(pred_contribs=True)`` with ``iteration_range=(0,
    best_iteration_ + 1)``, the same trees as ``predict_proba`` (without it, early-stopped
    models would mix in trees the predictions do not use). LightGBM uses
    ``pred_contrib=True``, CatBoost ``ShapValues``; logistic regression the exact linear terms
    ``coef_j * z_j`` on standardised features.

    Args:
        clf: fitted :class:`~img2tab.tabular._classifier.ConceptClassifier` (xgboost,
            lightgbm, catboost or logreg).
        X: ``(N, D)`` Ψ rows. Not modified.
        layout: layout for :meth:`Contributions.top` (None: guessed from D).

    Returns:
        :class:`Contributions`.
    """
    if not _is_concept_classifier(clf):
        raise Img2TabInputError(
            f"concept_contributions needs a fitted ConceptClassifier, got {type(clf).__name__}"
        )
    full, bias = clf.contributions(X)
    lay = resolve_layout(layout, clf.n_features_in_)
    return Contributions(values=full, bias=bias, classes=np.asarray(clf.classes_), layout=lay)
