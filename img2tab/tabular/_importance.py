"""Concept importance: global rankings, per-image contributions and a small table type.

A *concept* is one Ψ column, i.e. one StyleSpace channel of the generator. Rankings always use
a stable descending argsort, so tied importances (thousands of zeros in a real XGBoost model)
give distinct indices in ascending index order (the official code looks values up with
``list.index`` and maps every tie to the first index).

:class:`ConceptTable` is a minimal column table (numpy arrays, no pandas dependency) whose rows
are concepts: ``feature`` (flat Ψ index, 0-based), ``layer``, ``channel``, ``module``,
``resolution``, ``is_torgb``, ``label`` (e.g. ``"L9c6@32"``; ``"f12"`` for a flat layout) and
value columns (``importance``, ``w1``, ``contribution``, ...).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from img2tab.errors import Img2TabInputError
from img2tab.networks.layout import StyleSpaceLayout

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
_CONCEPT_COLUMNS = ("feature", "layer", "channel", "module", "resolution", "is_torgb", "label")


# --------------------------------------------------------------------------- ranking
def rank_descending(values: Any) -> np.ndarray:
    """Indices sorting ``values`` from largest to smallest; ties keep ascending index order.

    Args:
        values: ``(D,)`` scores. NaN ranks last.

    Returns:
        ``(D,)`` int64 indices.
    """
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    key = np.where(np.isnan(arr), np.inf, -arr)
    return np.argsort(key, kind="stable").astype(np.int64)


# --------------------------------------------------------------------------- tables
def _fmt(value: Any, floatfmt: str) -> str:
    if isinstance(value, float | np.floating):
        return format(float(value), floatfmt)
    if isinstance(value, bool | np.bool_):
        return "True" if value else "False"
    return str(value)


def _py(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


@dataclass(frozen=True, eq=False)
class Table:
    """An immutable table of equally long 1-D numpy columns.

    Args:
        columns: mapping from column name to a 1-D array-like; order is kept. Columns are copied
            and made read-only.

    Indexing: ``table["importance"]`` returns a column, ``table[3]`` a row as a dict,
    ``table[1:5]`` / ``table[int_array]`` / ``table[bool_mask]`` a new table of those rows.
    """

    columns: Mapping[str, np.ndarray]

    def __post_init__(self) -> None:
        cols: dict[str, np.ndarray] = {}
        n = None
        for name, values in dict(self.columns).items():
            arr = np.array(values, copy=True)
            if arr.ndim != 1:
                raise Img2TabInputError(f"table column {name!r} must be 1-D, got shape {arr.shape}")
            if n is None:
                n = arr.shape[0]
            elif arr.shape[0] != n:
                raise Img2TabInputError(f"table column {name!r} has {arr.shape[0]} rows, expected {n}")
            arr.setflags(write=False)
            cols[str(name)] = arr
        object.__setattr__(self, "columns", cols)

    # ------------------------------------------------------------------ access
    @property
    def column_names(self) -> tuple[str, ...]:
        """Column names in order."""
        return tuple(self.columns)

    def __len__(self) -> int:
        for col in self.columns.values():
            return int(col.shape[0])
        return 0

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Iterate over rows as dicts of Python scalars."""
        for i in range(len(self)):
            yield self.row(i)

    def row(self, i: int) -> dict[str, Any]:
        """Row ``i`` as a dict of Python scalars (NaN -> None)."""
        return {k: _py(v[i]) for k, v in self.columns.items()}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return self.columns[key]
            except KeyError:
                raise KeyError(f"no column {key!r}; columns: {', '.join(self.column_names)}") from None
        if isinstance(key, int | np.integer):
            return self.row(int(key))
        if isinstance(key, slice):
            return self._take(np.arange(len(self))[key])
        idx = np.asarray(key)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return self._take(idx.astype(np.int64))

    def _take(self, idx: np.ndarray) -> Table:
        return type(self)({k: v[idx] for k, v in self.columns.items()})

    def head(self, k: int = 10) -> Table:
        """The first ``k`` rows."""
        return self._take(np.arange(min(max(int(k), 0), len(self))))

    def sort_by(self, column: str, descending: bool = True) -> Table:
        """Rows sorted by ``column`` (stable: ties keep their current order)."""
        values = self[column]
        if values.dtype.kind in "biuf":
            order = (
                rank_descending(values)
                if descending
                else np.argsort(values.astype(np.float64), kind="stable")
            )
        else:
            order = np.argsort(values, kind="stable")
            if descending:
                order = order[::-1]
        return self._take(order)

    def with_columns(self, **columns: Any) -> Table:
        """A copy with columns added or replaced (each of length ``len(self)``)."""
        return type(self)({**self.columns, **columns})

    def select(self, *names: str) -> Table:
        """A copy with only the given columns, in the given order."""
        return type(self)({n: self[n] for n in names})

    # ------------------------------------------------------------------ export
    def to_records(self) -> np.ndarray:
        """The table as a numpy structured array (one record per row)."""
        dtypes = []
        for name, col in self.columns.items():
            dt = col.dtype if col.dtype != object else np.asarray(col.astype(str)).dtype
            dtypes.append((name, dt))
        out = np.empty(len(self), dtype=dtypes)
        for name, col in self.columns.items():
            out[name] = col if col.dtype != object else col.astype(str)
        return out

    def to_dicts(self) -> list[dict[str, Any]]:
        """Rows as a list of dicts of JSON-serialisable Python scalars (NaN -> None)."""
        return list(self)

    def to_csv(self, path: str | os.PathLike[str] | None = None, *, float_format: str = ".10g") -> str:
        """Write the table as CSV (header + rows) to ``path`` and return the text.

        Args:
            path: output file; None only returns the text.
            float_format: ``format`` spec for floats.
        """
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.column_names)
        for i in range(len(self)):
            writer.writerow([_fmt(col[i], float_format) for col in self.columns.values()])
        text = buf.getvalue()
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def to_markdown(self, max_rows: int | None = None, *, floatfmt: str = ".4g") -> str:
        """A GitHub-flavoured markdown table (first ``max_rows`` rows; None: all)."""
        n = len(self) if max_rows is None else min(len(self), max_rows)
        header = "| " + " | ".join(self.column_names) + " |"
        align = (
            "|" + "|".join("---:" if c.dtype.kind in "iuf" else "---" for c in self.columns.values()) + "|"
        )
        rows = [
            "| " + " | ".join(_fmt(col[i], floatfmt) for col in self.columns.values()) + " |"
            for i in range(n)
        ]
        if n < len(self):
            rows.append(f"| ... {len(self) - n} more rows |" + " |" * (len(self.columns) - 1))
        return "\n".join([header, align, *rows])

    def _repr_markdown_(self) -> str:
        return self.to_markdown(max_rows=20)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} rows x {len(self.columns)} columns)\n" + self.to_markdown(
            max_rows=10
        )


class ConceptTable(Table):
    """A :class:`Table` whose rows are concepts (Ψ columns).

    Usual columns: ``rank`` (1 = first), ``feature`` (flat 0-based Ψ index), ``layer``,
    ``channel``, ``module``, ``resolution``, ``is_torgb``, ``label`` and value columns such as
    ``importance``, ``w1`` or ``contribution``.
    """

    @property
    def features(self) -> np.ndarray:
        """The ``feature`` column (flat Ψ indices, int64)."""
        return np.asarray(self["feature"], dtype=np.int64)


# --------------------------------------------------------------------------- layouts
def resolve_layout(layout: StyleSpaceLayout | None, n_features: int) -> StyleSpaceLayout:
    """Return ``layout`` checked against ``n_features``, or guess one from ``n_features``.

    With ``layout=None``: 9088 -> the official 1024 px FFHQ layout (other known generator sizes
    likewise, see :func:`img2tab.tabular._dataset.default_layout`), anything else a one-layer
    ``"features"`` layout.
    """
    if layout is None:
        from ._dataset import default_layout

        return default_layout(int(n_features))
    if not isinstance(layout, StyleSpaceLayout):
        raise Img2TabInputError(f"layout must be a StyleSpaceLayout, got {type(layout).__name__}")
    if layout.total != n_features:
        raise Img2TabInputError(
            f"layout describes {layout.total} StyleSpace channels but there are {n_features} "
            "features; pass the layout of the generator that produced Ψ"
        )
    return layout


def concept_table(
    features: Any,
    layout: StyleSpaceLayout | None = None,
    n_features: int | None = None,
    *,
    rank: bool = True,
    **values: Any,
) -> ConceptTable:
    """Describe flat Ψ indices as a :class:`ConceptTable`.

    Args:
        features: ``(k,)`` flat 0-based Ψ indices, in the row order wanted.
        layout: StyleSpace layout (None: guessed from ``n_features``, see
            :func:`resolve_layout`).
        n_features: total number of Ψ columns (required when ``layout`` is None).
        rank: add a 1-based ``rank`` column first.
        **values: extra ``(k,)`` value columns (appended in the given order).

    Returns:
        A table with ``[rank,] feature, layer, channel, module, resolution, is_torgb, label``
        and the value columns.
    """
    idx = np.asarray(features).reshape(-1)
    if idx.size and idx.dtype.kind not in "iu":
        raise Img2TabInputError(f"features must be integer indices, got dtype {idx.dtype}")
    idx = idx.astype(np.int64)
    if layout is None and n_features is None:
        raise Img2TabInputError("concept_table needs a layout or n_features")
    lay = resolve_layout(layout, int(n_features if n_features is not None else layout.total))
    if idx.size and (idx.min() < 0 or idx.max() >= lay.total):
        bad = idx[(idx < 0) | (idx >= lay.total)][0]
        raise Img2TabInputError(f"feature index {int(bad)} out of range for {lay.total} features")
    offsets = np.asarray(lay.offsets, dtype=np.int64)
    layer = np.searchsorted(offsets, idx, side="right") - 1
    channel = idx - offsets[layer]
    specs = lay.layers
    module = np.asarray([s.name for s in specs], dtype=str)[layer] if idx.size else np.zeros(0, dtype=str)
    resolution = np.asarray([s.resolution for s in specs], dtype=np.int64)[layer]
    is_torgb = np.asarray([s.is_torgb for s in specs], dtype=bool)[layer]
    label = (
        np.asarray(
            [
                f"L{ly}c{ch}@{res}{'rgb' if rgb else ''}" if res > 0 else f"f{k}"
                for k, ly, ch, res, rgb in zip(
                    idx.tolist(),
                    layer.tolist(),
                    channel.tolist(),
                    resolution.tolist(),
                    is_torgb.tolist(),
                )
            ],
            dtype=str,
        )
        if idx.size
        else np.zeros(0, dtype=str)
    )
    cols: dict[str, Any] = {}
    if rank:
        cols["rank"] = np.arange(1, idx.size + 1, dtype=np.int64)
    cols.update(
        feature=idx,
        layer=layer.astype(np.int64),
        channel=channel.astype(np.int64),
        module=module,
        resolution=resolution,
        is_torgb=is_torgb,
        label=label,
    )
    for name, val in values.items():
        arr = np.asarray(val).reshape(-1)
        if arr.shape[0] != idx.size:
            raise Img2TabInputError(f"column {name!r} has {arr.shape[0]} values for {idx.size} features")
        cols[name] = arr
    return ConceptTable(cols)


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
                raw = clf._xgb_scores("gain", all_trees=True)
                total = raw.sum()
                return raw / total if total > 0 else raw
            return np.asarray(clf.feature_importances_, dtype=np.float64).copy()
        model = clf.model
        if model == "xgboost":
            if importance_type not in XGB_IMPORTANCE_TYPES:
                raise Img2TabInputError(
                    f"unknown importance_type {importance_type!r} for xgboost; valid: None, "
                    f"{', '.join(XGB_IMPORTANCE_TYPES)}, 'permutation'"
                )
            return clf._xgb_scores(importance_type, all_trees=all_trees)
        if model == "lightgbm":
            lgb_type = {"gain": "gain", "weight": "split", "split": "split"}.get(importance_type)
            if lgb_type is None:
                raise Img2TabInputError(
                    f"unknown importance_type {importance_type!r} for lightgbm; valid: None, "
                    "'gain', 'split', 'permutation'"
                )
            inner = clf._inner().booster_.feature_importance(importance_type=lgb_type)
            return clf._scatter(np.asarray(inner, dtype=np.float64))
        raise Img2TabInputError(
            f"importance_type {importance_type!r} is not available for model={model!r}; use "
            "None (feature_importances_) or 'permutation'"
        )
    # a plain estimator
    if importance_type is not None:
        booster = getattr(clf, "get_booster", None)
        if booster is None or importance_type not in XGB_IMPORTANCE_TYPES:
            raise Img2TabInputError(
                f"importance_type {importance_type!r} needs an XGBoost model or a "
                "ConceptClassifier; use None or 'permutation'"
            )
        score = booster().get_score(importance_type=importance_type)
        out = np.zeros(n, dtype=np.float64)
        names = booster().feature_names
        lookup = {nm: i for i, nm in enumerate(names)} if names else None
        for key, val in score.items():
            out[lookup[key] if lookup is not None else int(key[1:])] = float(val)
        return out
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
    if int(k) < 1:
        raise Img2TabInputError(f"k must be >= 1, got {k}")
    return global_importance(clf, importance_type, layout, **kwargs).head(int(k))


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
    Xm = clf._prepare(X)
    n_classes = clf.classes_.size
    inner = clf._inner()
    model = clf.model
    if hasattr(clf.estimator_, "steps"):  # standardising pipeline: the inner model sees z-scores
        Xm = np.asarray(clf.estimator_[:-1].transform(Xm))
    if model == "xgboost":
        import xgboost

        booster = inner.get_booster()
        rng = (0, clf.best_iteration_ + 1) if clf.best_iteration_ is not None else (0, 0)
        raw = booster.predict(xgboost.DMatrix(Xm), pred_contribs=True, iteration_range=rng)
    elif model == "lightgbm":
        raw = np.asarray(inner.predict(Xm, pred_contrib=True))
        if n_classes > 2:
            raw = raw.reshape(raw.shape[0], n_classes, -1)
    elif model == "catboost":
        import catboost

        raw = np.asarray(inner.get_feature_importance(catboost.Pool(Xm), type="ShapValues"))
    elif model == "logreg":
        z = Xm
        coef = np.asarray(inner.coef_, dtype=np.float64)
        intercept = np.asarray(inner.intercept_, dtype=np.float64)
        z = np.asarray(z, dtype=np.float64)
        if n_classes == 2:
            vals = z * coef[0]
            raw = np.concatenate([vals, np.full((z.shape[0], 1), intercept[0])], axis=1)
        else:
            vals = z[:, None, :] * coef[None, :, :]
            bias = np.broadcast_to(intercept[None, :, None], (z.shape[0], n_classes, 1))
            raw = np.concatenate([vals, bias], axis=2)
    else:
        raise Img2TabInputError(
            "per-image contributions are available for xgboost, lightgbm, catboost and logreg "
            f"models, not {model!r}; use global_importance(..., importance_type='permutation')"
        )
    raw = np.asarray(raw, dtype=np.float64)
    inner_vals, bias = raw[..., :-1], raw[..., -1]
    full = np.zeros((*inner_vals.shape[:-1], clf.n_features_in_), dtype=np.float64)
    full[..., clf.kept_features_] = inner_vals
    if clf.masked_features_.size:
        full[..., clf.masked_features_] = 0.0
    lay = resolve_layout(layout, clf.n_features_in_)
    return Contributions(values=full, bias=bias, classes=np.asarray(clf.classes_), layout=lay)
