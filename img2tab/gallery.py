"""Image figures: reconstructions, concept edit grids, W1 galleries, effect matrices.

Every function builds a :class:`matplotlib.figure.Figure` without pyplot's global state (or draws
into a given ``ax`` where a single axes makes sense), returns the figure and never shows it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["plot_edit_grid", "plot_effect_matrix", "plot_reconstructions", "plot_w1_gallery"]


def _to_img(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[3, H, W]`` in [-1, 1] -> ``[H, W, 3]`` in [0, 1]."""
    t = torch.as_tensor(x).detach().float().cpu()
    return ((t.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


def _blank(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def plot_reconstructions(inputs: torch.Tensor, recons: torch.Tensor, ncols: int = 8) -> Figure:
    """Inputs (odd rows) above their reconstructions (even rows).

    Args:
        inputs, recons: ``[N, 3, H, W]`` in [-1, 1].
        ncols: images per row.
    """
    n = len(inputs)
    nrows = 2 * int(np.ceil(n / ncols))
    fig = Figure(figsize=(1.2 * ncols, 1.25 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i in range(nrows * ncols // 2):
        r, c = 2 * (i // ncols), i % ncols
        for k, src in enumerate((inputs, recons)):
            ax = axes[r + k, c]
            _blank(ax)
            if i < n:
                ax.imshow(_to_img(src[i]), interpolation="nearest")
        if c == 0:
            axes[r, c].set_ylabel("input", fontsize=8)
            axes[r + 1, c].set_ylabel("recon", fontsize=8)
    fig.suptitle("inputs (top) and their reconstructions G(E(x)) (bottom)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_edit_grid(
    source: torch.Tensor,
    edits: torch.Tensor,
    concept_labels: Sequence[str],
    strengths: Sequence[float],
    proba_source: float | None = None,
    proba_edits: np.ndarray | None = None,
    class_name: str = "p(y=1)",
) -> Figure:
    """One image and its single-concept edits, with the classifier's probability on each.

    Args:
        source: ``[3, H, W]`` re-rendered source image.
        edits: ``[n_concepts, n_strengths, 3, H, W]``.
        concept_labels: one label per concept (e.g. ``"L9c6@32 (W1 1.2)"``).
        strengths: edit strengths (columns).
        proba_source: classifier probability of the source.
        proba_edits: ``[n_concepts, n_strengths]`` probabilities after each edit.
        class_name: what the probability is of.
    """
    nc, ns = edits.shape[:2]
    fig = Figure(figsize=(1.5 * (ns + 1), 1.6 * nc + 0.4))
    axes = fig.subplots(nc, ns + 1, squeeze=False)
    for i in range(nc):
        ax = axes[i, 0]
        _blank(ax)
        ax.imshow(_to_img(source), interpolation="nearest")
        ax.set_ylabel(concept_labels[i], fontsize=7)
        if proba_source is not None:
            ax.set_title(f"source\n{class_name}={proba_source:.2f}", fontsize=7)
        for j in range(ns):
            ax = axes[i, j + 1]
            _blank(ax)
            ax.imshow(_to_img(edits[i, j]), interpolation="nearest")
            title = f"{strengths[j]:+g} std"
            if proba_edits is not None:
                title += f"\n{class_name}={float(proba_edits[i, j]):.2f}"
            ax.set_title(title, fontsize=7)
    fig.tight_layout()
    return fig


def plot_w1_gallery(
    sources: torch.Tensor,
    edits: torch.Tensor,
    concept_labels: Sequence[str],
    strengths: Sequence[float],
) -> Figure:
    """Top-W1 concepts over several images: per concept a row block of ``-s / source / +s``.

    Args:
        sources: ``[B, 3, H, W]``.
        edits: ``[B, n_concepts, 2, 3, H, W]`` (negative and positive strength).
        concept_labels: one label per concept.
        strengths: the two strengths.
    """
    b, nc = edits.shape[:2]
    fig = Figure(figsize=(1.1 * 3 * b, 1.2 * nc + 0.5))
    axes = fig.subplots(nc, 3 * b, squeeze=False)
    for i in range(nc):
        for j in range(b):
            for k, img in enumerate((edits[j, i, 0], sources[j], edits[j, i, 1])):
                ax = axes[i, 3 * j + k]
                _blank(ax)
                ax.imshow(_to_img(img), interpolation="nearest")
                if i == 0:
                    name = "src" if k == 1 else f"{strengths[0 if k == 0 else 1]:+g}"
                    ax.set_title(name, fontsize=7)
        axes[i, 0].set_ylabel(concept_labels[i], fontsize=7)
    fig.suptitle("top Wasserstein-1 concepts: edit -/+ (std of Ψ) around each source", fontsize=9)
    fig.tight_layout()
    return fig


def plot_effect_matrix(effect: np.ndarray, concept_labels: Sequence[str],
                       factor_names: Sequence[str], ax: Axes | None = None) -> Figure:
    """Heat map of a concepts x factors effect matrix (from
    :func:`img2tab.world.evaluation.concept_validity`)."""
    if ax is None:
        fig = Figure(figsize=(1.0 + 0.8 * len(factor_names), 0.9 + 0.45 * len(concept_labels)))
        ax = fig.subplots()
    else:
        fig = ax.figure
    im = ax.imshow(effect, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(factor_names)), factor_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(concept_labels)), concept_labels, fontsize=8)
    for (i, j), v in np.ndenumerate(effect):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                color="white" if v < effect.max() * 0.6 else "black")
    fig.colorbar(im, ax=ax, label="mean |Δ reading|")
    ax.set_title("effect of concept edits on the ground-truth factors")
    fig.tight_layout()
    return fig
