"""Matplotlib plots for concept importance, W1 relevance, classifier choice and debugging.

Every function takes ``ax=None`` and returns the :class:`matplotlib.figure.Figure` it drew on.
With ``ax=None`` a new ``Figure`` is created through the object-oriented API (no pyplot, so no
global state and no open-figure bookkeeping); with an ``ax`` the plot goes there. Nothing calls
``plt.show()``. In Jupyter a returned Figure is displayed as the cell's value; in scripts save it
with ``fig.savefig(path)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from img2tab.errors import Img2TabInputError
from img2tab.networks.layout import StyleSpaceLayout

from ._importance import Table, concept_table, global_importance, importance_vector
from ._importance import rank_descending as _rank

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ._debugging import DebugReport

__all__ = [
    "plot_classifier_comparison",
    "plot_concept_density",
    "plot_debug_report",
    "plot_importance",
    "plot_importance_vs_relevance",
    "plot_relevance",
]

_BEFORE_AFTER = ("#8c8c8c", "#1f77b4")


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        try:
            fig = ax.get_figure(root=True)  # matplotlib >= 3.10 (SubFigure -> Figure)
        except TypeError:  # pragma: no cover - older matplotlib
            fig = ax.figure
        return fig, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _labels(table: Table) -> list[str]:
    if "label" in table:
        return [str(v) for v in table["label"]]
    return [f"f{int(v)}" for v in table["feature"]]


def _barh(ax: Axes, labels: list[str], values: np.ndarray, color: str) -> None:
    y = np.arange(len(labels))
    ax.barh(y, values, color=color)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()  # most important on top
    ax.tick_params(axis="y", labelsize=8)


def plot_importance(
    table: Any,
    top_k: int = 20,
    ax: Axes | None = None,
    *,
    value: str = "importance",
    title: str | None = None,
    color: str = "#1f77b4",
) -> Figure:
    """Horizontal bar chart of the ``top_k`` most important concepts.

    Args:
        table: a :class:`~img2tab.tabular._importance.ConceptTable` sorted by importance (e.g.
            from :func:`~img2tab.tabular._importance.global_importance`), or a fitted
            classifier (its :func:`global_importance` table is used).
        top_k: number of bars.
        ax: axes to draw on (None: a new figure).
        value: column to plot.
        title: axes title (default: ``"Top-k concepts by <value>"``).
        color: bar colour.

    Returns:
        The Figure. Bars are labelled ``L<layer>c<channel>@<resolution>`` (``rgb`` suffix for
        toRGB layers).
    """
    if not isinstance(table, Table):
        table = global_importance(table)
    t = table.head(top_k)
    fig, ax = _axes(ax, (6.0, 0.28 * len(t) + 1.2))
    _barh(ax, _labels(t), np.asarray(t[value], dtype=np.float64), color)
    ax.set_xlabel(value)
    ax.set_title(title or f"Top-{len(t)} concepts by {value}")
    return fig


def plot_relevance(
    w1: Any,
    layout: StyleSpaceLayout | None = None,
    top_k: int = 20,
    ax: Axes | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """Bar chart of the ``top_k`` concepts ranked by Wasserstein-1 class relevance.

    Args:
        w1: ``(D,)`` relevance scores.
        layout: StyleSpace layout (None: guessed from D).
        top_k: number of bars.
        ax: axes to draw on (None: a new figure).
        title: axes title.

    Returns:
        The Figure.
    """
    w = np.asarray(w1, dtype=np.float64)
    if w.ndim != 1:
        raise Img2TabInputError(f"w1 must be 1-D (D,), got shape {w.shape}")
    order = _rank(w)[: int(top_k)]
    t = concept_table(order, layout, w.shape[0], w1=w[order])
    fig, ax = _axes(ax, (6.0, 0.28 * len(t) + 1.2))
    _barh(ax, _labels(t), t["w1"], "#d62728")
    ax.set_xlabel("W1 (standardised)")
    ax.set_title(title or f"Top-{len(t)} class-relevant concepts")
    return fig


def plot_importance_vs_relevance(
    classifiers: Mapping[str, Any],
    w1: Any,
    ax: Axes | None = None,
    *,
    importance_type: str | None = None,
) -> Figure:
    """Scatter of each classifier's concept importance against W1 relevance.

    Args:
        classifiers: ``{name: fitted classifier or (D,) importance vector}``.
        w1: ``(D,)`` relevance scores.
        ax: axes to draw on (None: a new figure).
        importance_type: for classifiers, see
            :func:`~img2tab.tabular._importance.importance_vector`.

    Returns:
        The Figure. Importances are divided by each classifier's maximum so they share an
        axis; the legend gives Spearman's rank correlation with W1.
    """
    from scipy.stats import spearmanr

    w = np.asarray(w1, dtype=np.float64).reshape(-1)
    fig, ax = _axes(ax, (6.0, 4.5))
    if not classifiers:
        raise Img2TabInputError("classifiers is empty")
    for name, obj in classifiers.items():
        imp = (
            np.asarray(obj, dtype=np.float64).reshape(-1)
            if isinstance(obj, np.ndarray | list | tuple)
            else importance_vector(obj, importance_type)
        )
        if imp.shape != w.shape:
            raise Img2TabInputError(f"{name!r}: {imp.shape[0]} importances for {w.shape[0]} W1 scores")
        peak = np.max(np.abs(imp))
        scaled = imp / peak if peak > 0 else imp
        rho = spearmanr(imp, w).statistic if np.ptp(imp) > 0 and np.ptp(w) > 0 else np.nan
        ax.scatter(w, scaled, s=10, alpha=0.6, label=f"{name} (ρ={rho:.2f})")
    ax.set_xlabel("W1 relevance")
    ax.set_ylabel("importance / max importance")
    ax.set_title("Concept importance vs. class relevance")
    ax.legend(fontsize=8)
    return fig


def plot_concept_density(
    psi: Any,
    labels: Any,
    feature: int,
    layout: StyleSpaceLayout | None = None,
    ax: Axes | None = None,
    *,
    standardize: bool = True,
    bins: int = 40,
    kde: bool = True,
    label_names: Mapping[Any, str] | None = None,
) -> Figure:
    """Class-conditional density of one (standardised) concept, with its W1 in the title.

    Args:
        psi: ``(N, D)`` Ψ rows. Not modified.
        labels: ``(N,)`` class labels.
        feature: flat Ψ index of the concept.
        layout: StyleSpace layout (None: guessed from D).
        ax: axes to draw on (None: a new figure).
        standardize: z-score the column over all rows (as the W1 score does).
        bins: histogram bins.
        kde: overlay a Gaussian KDE per class (skipped for constant values).
        label_names: optional ``{label: name}`` for the legend.

    Returns:
        The Figure.
    """
    from scipy.stats import gaussian_kde

    from ._dataset import check_labels, check_psi
    from ._wasserstein import wasserstein_relevance

    x = check_psi(psi)
    y = check_labels(labels, x.shape[0])
    k = int(feature)
    if not 0 <= k < x.shape[1]:
        raise Img2TabInputError(f"feature {k} out of range for {x.shape[1]} features")
    col = np.asarray(x[:, k], dtype=np.float64)
    if standardize:
        sd = col.std()
        col = (col - col.mean()) / (sd if sd > 1e-12 else 1.0)
    w = np.asarray(wasserstein_relevance(x[:, [k]], y, standardize=standardize))
    w1 = float(w.max())
    desc = concept_table([k], layout, x.shape[1])
    fig, ax = _axes(ax, (6.0, 4.0))
    edges = np.histogram_bin_edges(col, bins=int(bins))
    for cls in np.unique(y):
        vals = col[y == cls]
        name = str(label_names.get(cls, cls)) if label_names else str(cls)
        (hist,) = ax.hist(
            vals,
            bins=edges,
            density=True,
            histtype="stepfilled",
            alpha=0.35,
            label=f"{name} (n={vals.size})",
        )[2:]
        if kde and vals.size > 1 and np.ptp(vals) > 0:
            grid = np.linspace(edges[0], edges[-1], 200)
            with contextlib.suppress(np.linalg.LinAlgError):  # degenerate sample
                ax.plot(grid, gaussian_kde(vals)(grid), color=hist[0].get_facecolor(), alpha=1.0)
    ax.set_xlabel("standardised value" if standardize else "value")
    ax.set_ylabel("density")
    ax.set_title(f"{desc['label'][0]} (feature {k}): W1 = {w1:.3f}")
    ax.legend(fontsize=8)
    return fig


def plot_debug_report(report: DebugReport, ax: Axes | None = None) -> Figure:
    """Grouped before/after bars of a :class:`~img2tab.tabular._debugging.DebugReport`.

    Metrics that are None or NaN (e.g. fairness without a protected attribute) are left out.

    Returns:
        The Figure.
    """
    keys = [
        k
        for k in report.before
        if report.before[k] is not None
        and report.after.get(k) is not None
        and np.isfinite(report.before[k])
        and np.isfinite(report.after[k])
    ]
    fig, ax = _axes(ax, (1.2 * max(len(keys), 2) + 2.0, 4.0))
    x = np.arange(len(keys))
    before = np.array([report.before[k] for k in keys], dtype=np.float64)
    after = np.array([report.after[k] for k in keys], dtype=np.float64)
    width = 0.38
    b1 = ax.bar(x - width / 2, before, width, label="before", color=_BEFORE_AFTER[0])
    b2 = ax.bar(x + width / 2, after, width, label="after", color=_BEFORE_AFTER[1])
    ax.bar_label(b1, fmt="%.3f", fontsize=7)
    ax.bar_label(b2, fmt="%.3f", fontsize=7)
    ax.set_xticks(x, [k.replace("_", "\n") for k in keys])
    ax.set_ylim(0, max(1.0, float(np.max(np.r_[before, after, 0.0]))) * 1.12)
    ax.set_title(f"Debugging: {len(report.excluded)} concept(s) excluded ({report.strategy})")
    ax.legend(fontsize=8)
    return fig


def plot_classifier_comparison(table: Table, ax: Axes | None = None) -> Figure:
    """Mean W1 of each classifier's top-k concepts, with the quartile range and accuracy.

    Args:
        table: output of :func:`~img2tab.tabular._selection.compare_classifiers`.
        ax: axes to draw on (None: a new figure).

    Returns:
        The Figure. Bars: mean W1 of the top-k concepts; black line: 25-75 % range with the
        median as a dot; text above: accuracy.
    """
    for col in ("classifier", "w1_mean", "w1_median", "w1_q25", "w1_q75", "accuracy"):
        if col not in table:
            raise Img2TabInputError(f"comparison table lacks column {col!r}")
    names = [str(n) for n in table["classifier"]]
    fig, ax = _axes(ax, (1.3 * max(len(names), 2) + 2.0, 4.0))
    x = np.arange(len(names))
    mean = np.asarray(table["w1_mean"], dtype=np.float64)
    bars = ax.bar(x, mean, 0.6, color="#2ca02c", alpha=0.8, label="mean W1 of top-k")
    ax.vlines(x, table["w1_q25"], table["w1_q75"], color="black", lw=2, label="25-75 %")
    ax.plot(x, table["w1_median"], "o", color="black", ms=4, label="median")
    ax.bar_label(bars, labels=[f"acc {a:.3f}" for a in table["accuracy"]], fontsize=7, padding=2)
    ax.set_xticks(x, names)
    ax.set_ylabel("W1 of top-k important concepts")
    ax.set_ylim(0, float(np.nanmax(np.r_[mean, table["w1_q75"], 0.0])) * 1.2 or 1.0)
    ax.set_title("Classifier choice by concept relevance")
    ax.legend(fontsize=8)
    return fig
