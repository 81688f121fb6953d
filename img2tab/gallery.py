"""Image figures: reconstructions, concept edit grids, W1 galleries, effect matrices.

Every function builds a :class:`matplotlib.figure.Figure` with constrained layout and without
pyplot's global state, returns the figure and never shows it. A single-axes plot takes ``ax=None``
(draw there instead); the image grids take ``fig=None`` (draw into that figure or subfigure, e.g.
one of ``fig.subfigures(...)``). Save with :func:`img2tab._atomic.atomic_savefig`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure

from .errors import Img2TabInputError
from .networks.layout import StyleSpaceLayout

__all__ = [
    "concept_label", "plot_edit_grid", "plot_effect_matrix", "plot_reconstructions", "plot_w1_gallery",
]


def _to_img(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[3, H, W]`` in [-1, 1] -> ``[H, W, 3]`` in [0, 1]."""
    t = torch.as_tensor(x).detach().float().cpu()
    return ((t.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


def _blank(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def plot_reconstructions(
    inputs: torch.Tensor,
    recons: torch.Tensor,
    ncols: int = 8,
    *,
    titles: Sequence[str] | None = None,
    fig: Figure | SubFigure | None = None,
) -> Figure:
    """Inputs (odd rows) above their reconstructions (even rows).

    Args:
        inputs, recons: ``[N, 3, H, W]`` in [-1, 1] (the two may differ in size).
        ncols: images per row.
        titles: one short title per image (e.g. its PSNR), drawn above the input.
        fig: draw into this figure or subfigure (None: a new constrained-layout figure).

    Returns:
        The figure (the root figure when ``fig`` is a subfigure).
    """
    n = len(inputs)
    if titles is not None and len(titles) != n:
        raise Img2TabInputError(f"titles has {len(titles)} entries for {n} images")
    ncols = max(1, min(int(ncols), n))
    nrows = 2 * int(np.ceil(n / ncols))
    root, target = _target(fig, (1.3 * ncols + 0.8, 1.35 * nrows + 0.5))
    axes = target.subplots(nrows, ncols, squeeze=False)
    for i in range(nrows * ncols // 2):
        r, c = 2 * (i // ncols), i % ncols
        for k, src in enumerate((inputs, recons)):
            ax = axes[r + k, c]
            _blank(ax)
            if i < n:
                ax.imshow(_to_img(src[i]), interpolation="nearest")
        if titles is not None and i < n:
            axes[r, c].set_title(titles[i], fontsize=8)
        if c == 0:
            _row_label(axes[r, c], "input", 8)
            _row_label(axes[r + 1, c], "recon.", 8)
    target.suptitle("inputs and their reconstructions G(E(x))", fontsize=10)
    return root


def concept_label(layout: StyleSpaceLayout, k: int, extra: str = "") -> str:
    """Row label of concept ``k``: ``"L3 c173 @8 px\n(k=941)"`` plus ``extra`` on its own line.

    Layer, channel and resolution come from ``layout.describe(k)``; toRGB channels say ``toRGB``.
    """
    d = layout.describe(int(k))
    rgb = " toRGB" if d["is_torgb"] else ""
    text = f"L{d['layer']} c{d['channel']} @{d['resolution']} px{rgb}\n(k={int(k)})"
    return f"{text}\n{extra}" if extra else text


def _row_label(ax: Axes, text: str, fontsize: float) -> None:
    """A horizontal label left of ``ax``; constrained layout makes room for all of it."""
    ax.set_ylabel(text, rotation=0, ha="right", va="center", fontsize=fontsize, labelpad=6)


def _target(fig: Figure | SubFigure | None,
            figsize: tuple[float, float]) -> tuple[Figure, Figure | SubFigure]:
    """(the root figure to return, the figure or subfigure to draw in)."""
    if fig is None:
        new = Figure(figsize=figsize, layout="constrained")
        return new, new
    return _root(fig), fig


def _root(fig: Figure | SubFigure) -> Figure:
    """The top-level figure (a SubFigure's ``.figure`` is its root figure)."""
    return fig.figure if isinstance(fig, SubFigure) else fig


def plot_edit_grid(
    source: torch.Tensor,
    edits: torch.Tensor,
    concept_labels: Sequence[str],
    strengths: Sequence[float],
    proba_source: float | None = None,
    proba_edits: np.ndarray | None = None,
    class_name: str = "p(y=1)",
    *,
    original: torch.Tensor | None = None,
    fig: Figure | SubFigure | None = None,
) -> Figure:
    """One image and its single-concept edits, with the classifier's probability on each.

    Columns: the original input (when given), its reconstruction ``G(E(x))`` (the image every edit
    starts from), then one column per strength. Row labels are drawn horizontally left of each row
    and the figure uses constrained layout, so long labels (see :func:`concept_label`) are not
    clipped.

    Args:
        source: ``[3, H, W]`` re-rendered source image (the reconstruction).
        edits: ``[n_concepts, n_strengths, 3, H, W]``.
        concept_labels: one label per concept (e.g. ``concept_label(layout, k)``).
        strengths: edit strengths (columns).
        proba_source: classifier probability of the source.
        proba_edits: ``[n_concepts, n_strengths]`` probabilities after each edit.
        class_name: what the probability is of.
        original: ``[3, H', W']`` the input image before inversion, shown left of the
            reconstruction (any size; shown as is).
        fig: draw into this figure or subfigure (None: a new constrained-layout figure).

    Returns:
        The figure (the root figure when ``fig`` is a subfigure).
    """
    nc, ns = edits.shape[:2]
    if len(concept_labels) != nc:
        raise Img2TabInputError(f"concept_labels has {len(concept_labels)} labels for {nc} edited concepts")
    lead = 2 if original is not None else 1
    width = max(len(line) for lab in concept_labels for line in str(lab).splitlines() or [""])
    root, target = _target(fig, (1.45 * (ns + lead) + 0.07 * width + 0.4, 1.55 * nc + 0.5))
    axes = target.subplots(nc, ns + lead, squeeze=False)
    for i in range(nc):
        if original is not None:
            ax = axes[i, 0]
            _blank(ax)
            ax.imshow(_to_img(original), interpolation="nearest")
            if i == 0:
                ax.set_title("input", fontsize=8)
        ax = axes[i, lead - 1]
        _blank(ax)
        ax.imshow(_to_img(source), interpolation="nearest")
        if i == 0:
            head = "reconstruction" if original is not None else "source"
            ax.set_title(head + (f"\n{class_name}={proba_source:.2f}" if proba_source is not None
                                 else ""), fontsize=8)
        _row_label(axes[i, 0], str(concept_labels[i]), 8)
        for j in range(ns):
            ax = axes[i, j + lead]
            _blank(ax)
            ax.imshow(_to_img(edits[i, j]), interpolation="nearest")
            title = f"{strengths[j]:+g} sd"
            if proba_edits is not None:
                title += f"\n{class_name}={float(proba_edits[i, j]):.2f}"
            ax.set_title(title, fontsize=8)
    return root


def plot_w1_gallery(
    sources: torch.Tensor,
    edits: torch.Tensor,
    concept_labels: Sequence[str],
    strengths: Sequence[float],
    *,
    originals: torch.Tensor | None = None,
    fig: Figure | SubFigure | None = None,
) -> Figure:
    """Top-W1 concepts over several images: per concept a row of ``-s / source / +s`` blocks.

    With ``originals`` a first row shows each input image above its block (the reconstruction is
    the middle column of every block). Cells are about 1.3 inches wide, labels 9 pt and
    horizontal, and the layout is constrained, so the default size is readable when saved at
    100 dpi.

    Args:
        sources: ``[B, 3, H, W]`` reconstructions the edits start from.
        edits: ``[B, n_concepts, 2, 3, H, W]`` (negative and positive strength).
        concept_labels: one label per concept.
        strengths: the two strengths.
        originals: ``[B, 3, H', W']`` input images (optional).
        fig: draw into this figure or subfigure (None: a new constrained-layout figure).

    Returns:
        The figure (the root figure when ``fig`` is a subfigure).
    """
    b, nc = edits.shape[:2]
    if len(concept_labels) != nc:
        raise Img2TabInputError(f"concept_labels has {len(concept_labels)} labels for {nc} edited concepts")
    top = 1 if originals is not None else 0
    width = max(len(line) for lab in concept_labels for line in str(lab).splitlines() or [""])
    root, target = _target(fig, (1.3 * 3 * b + 0.08 * width + 0.4, 1.35 * (nc + top) + 0.7))
    axes = target.subplots(nc + top, 3 * b, squeeze=False)
    if originals is not None:
        for j in range(b):
            for k in range(3):
                ax = axes[0, 3 * j + k]
                _blank(ax)
                if k == 1:
                    ax.imshow(_to_img(originals[j]), interpolation="nearest")
                    ax.set_title(f"input {j}", fontsize=9)
        _row_label(axes[0, 0], "input", 9)
    for i in range(nc):
        r = i + top
        for j in range(b):
            for k, img in enumerate((edits[j, i, 0], sources[j], edits[j, i, 1])):
                ax = axes[r, 3 * j + k]
                _blank(ax)
                ax.imshow(_to_img(img), interpolation="nearest")
                if i == 0:
                    name = "recon." if k == 1 else f"{strengths[0 if k == 0 else 1]:+g} sd"
                    ax.set_title(name, fontsize=9)
        _row_label(axes[r, 0], str(concept_labels[i]), 9)
    target.suptitle("top Wasserstein-1 concepts: each edited by -/+ (sd of Ψ) around each "
                    "reconstruction", fontsize=10)
    return root


def plot_effect_matrix(effect: np.ndarray, concept_labels: Sequence[str],
                       factor_names: Sequence[str], ax: Axes | None = None) -> Figure:
    """Heat map of a concepts x factors effect matrix (from
    :func:`img2tab.world.evaluation.concept_validity`)."""
    if ax is None:
        fig = Figure(figsize=(1.0 + 0.8 * len(factor_names), 0.9 + 0.45 * len(concept_labels)),
                     layout="constrained")
        ax = fig.subplots()
    else:
        fig = _root(ax.figure)
    im = ax.imshow(effect, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(factor_names)), factor_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(concept_labels)), concept_labels, fontsize=8)
    for (i, j), v in np.ndenumerate(effect):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                color="white" if v < effect.max() * 0.6 else "black")
    fig.colorbar(im, ax=ax, label="mean |Δ reading|")
    ax.set_title("effect of concept edits on the ground-truth factors")
    return fig
