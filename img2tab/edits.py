"""Concept edits: shift StyleSpace channels and re-render, many edits in one batch.

A concept is one flat Ψ index ``k`` (layer, channel). Editing it by strength ``λ`` sets
``Ψ'_k = Ψ_k + λ · scale_k`` and renders ``Ψ'`` with the generator's fixed noise. ``scale`` is
usually the per-channel standard deviation of Ψ over a data set, so strengths read as "standard
deviations"; with ``scale=None`` strengths are raw style units (as in the official code).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .networks.stylegan2 import Generator

__all__ = ["EditResult", "edit", "edit_psi", "render_psi"]


@dataclass(frozen=True)
class EditResult:
    """Rendered concept edits.

    Attributes:
        source: re-rendered unedited images ``[B, 3, H, W]`` in [-1, 1].
        images: edited images ``[B, n_concepts, n_strengths, 3, H, W]``.
        psi: Ψ of the sources ``[B, D]``.
        edited_psi: Ψ of every edit ``[B, n_concepts, n_strengths, D]``.
        concepts: flat Ψ indices edited.
        strengths: edit strengths (in units of ``scale``).
    """

    source: torch.Tensor
    images: torch.Tensor
    psi: torch.Tensor
    edited_psi: torch.Tensor
    concepts: tuple[int, ...]
    strengths: tuple[float, ...]


def edit_psi(
    psi: torch.Tensor,
    concepts: Sequence[int],
    strengths: Sequence[float],
    scale: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """All single-concept edits of Ψ.

    Args:
        psi: ``[B, D]`` flat StyleSpace.
        concepts: flat indices ``k`` to edit, one at a time.
        strengths: shifts applied to each concept.
        scale: ``[D]`` unit per channel (e.g. Ψ's standard deviation) or None for raw units.

    Returns:
        ``[B, n_concepts, n_strengths, D]``; the input is not modified.
    """
    if psi.ndim != 2:
        raise ValueError(f"psi must be [B, D], got shape {tuple(psi.shape)}")
    d = psi.shape[1]
    idx = torch.as_tensor(list(concepts), dtype=torch.long)
    if idx.numel() == 0:
        raise ValueError("concepts is empty: give at least one flat Ψ index")
    if (idx < 0).any() or (idx >= d).any():
        raise IndexError(f"concept indices must lie in [0, {d}), got {idx.tolist()}")
    lam = torch.as_tensor(list(strengths), dtype=psi.dtype, device=psi.device)
    if scale is None:
        unit = torch.ones(len(idx), dtype=psi.dtype, device=psi.device)
    else:
        unit = torch.as_tensor(np.asarray(scale), dtype=psi.dtype, device=psi.device)[idx]
    b, nc, ns = psi.shape[0], len(idx), len(lam)
    out = psi[:, None, None, :].expand(b, nc, ns, d).clone()
    shift = unit[:, None] * lam[None, :]  # [nc, ns]
    cols = idx[:, None].expand(nc, ns).to(psi.device)
    rows = out.gather(3, cols[None, :, :, None].expand(b, nc, ns, 1)).squeeze(3)
    out.scatter_(3, cols[None, :, :, None].expand(b, nc, ns, 1),
                 (rows + shift[None]).unsqueeze(3))
    return out


@torch.no_grad()
def render_psi(
    generator: Generator, psi: torch.Tensor, batch_size: int = 16, progress: bool = False
) -> torch.Tensor:
    """Render flat Ψ ``[N, D]`` in batches with the generator's fixed noise -> ``[N, 3, H, W]``."""
    p = next(generator.parameters())
    chunks = []
    it = range(0, psi.shape[0], batch_size)
    for i in tqdm(it, desc="render", disable=not progress, leave=False):
        chunks.append(generator.synthesize(psi[i:i + batch_size].to(p.device, p.dtype)).cpu())
    return torch.cat(chunks) if chunks else torch.empty(0, 3, generator.size, generator.size)


@torch.no_grad()
def edit(
    generator: Generator,
    w_plus_or_psi: torch.Tensor,
    concepts: Sequence[int],
    strengths: Sequence[float] = (-2.0, 2.0),
    scale: torch.Tensor | np.ndarray | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> EditResult:
    """Render single-concept edits of several images in one batched pass.

    Args:
        generator: the StyleGAN2 generator.
        w_plus_or_psi: W+ ``[B, n_latent, style_dim]`` or flat Ψ ``[B, D]``. (For images, call
            ``inverter.encode(images)`` first or use :meth:`img2tab.Img2Tab.edit`.)
        concepts: flat Ψ indices to edit.
        strengths: shifts per concept, in units of ``scale``.
        scale: ``[D]`` per-channel unit (typically Ψ's std over a data set), None = raw units.
        batch_size: images rendered per generator call.
        progress: show a progress bar.

    Returns:
        :class:`EditResult` with sources ``[B, 3, H, W]`` and edits ``[B, nc, ns, 3, H, W]``.
    """
    x = w_plus_or_psi
    if x.ndim == 3:
        psi = generator.psi(x.to(next(generator.parameters()).device))
    elif x.ndim == 2 and x.shape[1] == generator.layout.total:
        psi = x
    else:
        raise ValueError(
            f"expected W+ [B, {generator.n_latent}, {generator.style_dim}] or Ψ "
            f"[B, {generator.layout.total}], got {tuple(x.shape)}"
        )
    psi = psi.detach().float().cpu()
    edited = edit_psi(psi, concepts, strengths, scale)
    b, nc, ns, d = edited.shape
    flat = torch.cat([psi, edited.reshape(-1, d)])
    imgs = render_psi(generator, flat, batch_size=batch_size, progress=progress)
    return EditResult(
        source=imgs[:b],
        images=imgs[b:].reshape(b, nc, ns, *imgs.shape[1:]),
        psi=psi,
        edited_psi=edited,
        concepts=tuple(int(c) for c in concepts),
        strengths=tuple(float(s) for s in strengths),
    )
