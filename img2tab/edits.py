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

from .errors import Img2TabInputError
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


def _concept_indices(concepts: Sequence[int]) -> list[int]:
    """Flat Ψ indices as ints; non-integer values (2.5, True, "3") raise naming the position."""
    if isinstance(concepts, (int, np.integer)):
        concepts = [concepts]
    vals = concepts.tolist() if isinstance(concepts, (np.ndarray, torch.Tensor)) else list(concepts)
    if not vals:
        raise Img2TabInputError("concepts is empty: give at least one flat Ψ index")
    out = []
    for j, c in enumerate(vals):
        if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)):
            raise Img2TabInputError(f"concepts must be integer flat Ψ indices, got {c!r} at position {j}")
        out.append(int(c))
    return out


def _strengths(strengths: Sequence[float]) -> list[float]:
    """Edit strengths as finite floats; NaN / inf / non-numbers raise."""
    if isinstance(strengths, (int, float, np.number)):
        strengths = [strengths]
    try:
        raw = strengths.detach().cpu() if isinstance(strengths, torch.Tensor) else list(strengths)
        vals = np.asarray(raw, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise Img2TabInputError(f"strengths must be numbers, got {strengths!r}") from exc
    if vals.size == 0:
        raise Img2TabInputError("strengths is empty: give at least one edit strength")
    if not np.isfinite(vals).all():
        raise Img2TabInputError(f"strengths must be finite numbers, got {vals.tolist()}")
    return vals.tolist()


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
    if isinstance(psi, np.ndarray):
        psi = torch.from_numpy(np.asarray(psi, dtype=np.float32))
    if psi.ndim != 2:
        raise Img2TabInputError(f"psi must be [B, D], got shape {tuple(psi.shape)}")
    d = psi.shape[1]
    idx = torch.as_tensor(_concept_indices(concepts), dtype=torch.long)
    if (idx < 0).any() or (idx >= d).any():
        raise IndexError(f"concept indices must lie in [0, {d}), got {idx.tolist()}")
    lam = torch.as_tensor(_strengths(strengths), dtype=psi.dtype, device=psi.device)
    if scale is None:
        unit = torch.ones(len(idx), dtype=psi.dtype, device=psi.device)
    else:
        sc = np.asarray(scale.detach().cpu() if isinstance(scale, torch.Tensor) else scale,
                        dtype=np.float64)
        if sc.shape != (d,):
            raise Img2TabInputError(f"scale must be a [D] = [{d}] array (one unit per Ψ feature), "
                                    f"got shape {sc.shape}")
        if not np.isfinite(sc[idx.numpy()]).all():
            raise Img2TabInputError("scale is NaN or infinite at an edited concept")
        unit = torch.as_tensor(sc, dtype=psi.dtype, device=psi.device)[idx]
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
        w_plus_or_psi: W+ ``[B, n_latent, style_dim]`` or flat Ψ ``[B, D]`` (tensor or numpy
            array). (For images, use ``inverter.encode_psi(images)`` first or
            :meth:`img2tab.Img2Tab.edit`.)
        concepts: flat Ψ indices to edit.
        strengths: shifts per concept, in units of ``scale``.
        scale: ``[D]`` per-channel unit (typically Ψ's std over a data set), None = raw units.
        batch_size: images rendered per generator call.
        progress: show a progress bar.

    Returns:
        :class:`EditResult` with sources ``[B, 3, H, W]`` and edits ``[B, nc, ns, 3, H, W]``.
    """
    x = w_plus_or_psi
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.asarray(x, dtype=np.float32))
    if not isinstance(x, torch.Tensor):
        raise Img2TabInputError(f"w_plus_or_psi must be a tensor or array, got {type(x).__name__}")
    if not torch.isfinite(x).all():
        raise Img2TabInputError("w_plus_or_psi contains NaN or infinite values")
    if x.ndim == 3 and x.shape[1:] == (generator.n_latent, generator.style_dim):
        psi = generator.psi(x.to(next(generator.parameters()).device))
    elif x.ndim == 2 and x.shape[1] == generator.layout.total:
        psi = x
    else:
        raise Img2TabInputError(
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
        concepts=tuple(_concept_indices(concepts)),
        strengths=tuple(_strengths(strengths)),
    )
