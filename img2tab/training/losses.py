"""Losses used by the trainers (pure PyTorch, no downloaded weights).

* StyleGAN2 (rosinality ``train.py``): non-saturating logistic losses, R1, path-length penalty.
* Reconstruction: SSIM / MS-SSIM (from :mod:`img2tab.metrics`), discriminator-feature distance.
* e4e: delta regulariser, latent-code discriminator and its W pool.
* Distribution matching: sliced Wasserstein distance (used to fit the mapping network).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import autograd, nn

from ..metrics import ms_ssim, ssim

__all__ = [
    "LatentCodesDiscriminator",
    "LatentCodesPool",
    "d_logistic_loss",
    "d_r1_loss",
    "delta_loss",
    "feature_loss",
    "g_nonsaturating_loss",
    "g_path_regularize",
    "ms_ssim",
    "sliced_wasserstein",
    "ssim",
]

# ---------------------------------------------------------------------------- adversarial
def d_logistic_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    """``softplus(-D(x)) + softplus(D(G(z)))``, means over the batch; preds ``[B, 1]``."""
    return F.softplus(-real_pred).mean() + F.softplus(fake_pred).mean()


def g_nonsaturating_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    """``softplus(-D(G(z)))`` averaged over the batch."""
    return F.softplus(-fake_pred).mean()


def d_r1_loss(real_pred: torch.Tensor, real_input: torch.Tensor) -> torch.Tensor:
    """R1: ``E ||∇_x D(x)||²`` with ``real_input`` (``[B, ...]``, requires_grad) fed to D."""
    (grad,) = autograd.grad(outputs=real_pred.sum(), inputs=real_input, create_graph=True)
    return grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()


def g_path_regularize(
    fake_img: torch.Tensor, latents: torch.Tensor, mean_path_length: torch.Tensor | float,
    decay: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """StyleGAN2 path-length penalty.

    Args:
        fake_img: ``[B, 3, H, W]`` generated from ``latents``.
        latents: W+ ``[B, L, D]`` in the graph of ``fake_img``.
        mean_path_length: running mean of the path lengths (scalar).
        decay: running-mean rate.

    Returns:
        ``(penalty, new mean (detached), path lengths [B])``.
    """
    noise = torch.randn_like(fake_img) / math.sqrt(fake_img.shape[2] * fake_img.shape[3])
    (grad,) = autograd.grad(outputs=(fake_img * noise).sum(), inputs=latents, create_graph=True)
    path_lengths = torch.sqrt(grad.pow(2).sum(2).mean(1))
    path_mean = mean_path_length + decay * (path_lengths.mean() - mean_path_length)
    penalty = (path_lengths - path_mean).pow(2).mean()
    return penalty, path_mean.detach(), path_lengths


# ---------------------------------------------------------------------------- features
def feature_loss(feats_a: Sequence[torch.Tensor], feats_b: Sequence[torch.Tensor],
                 layers: Sequence[int] | None = None) -> torch.Tensor:
    """Mean over layers of the MSE between two feature lists (e.g. ``Discriminator.features``)."""
    idx = range(len(feats_a)) if layers is None else layers
    terms = [F.mse_loss(feats_a[i], feats_b[i]) for i in idx]
    return torch.stack(terms).mean()


# ---------------------------------------------------------------------------- e4e
def delta_loss(w: torch.Tensor, stage: int | None = None, p: float = 2.0) -> torch.Tensor:
    """e4e delta regulariser: ``sum_{i=1..stage} mean_b ||w_i - w_0||_p``.

    Args:
        w: W+ ``[B, L, D]``.
        stage: number of active deltas (None or >= L-1: all).
        p: norm order (``delta_norm``, 2 in e4e).

    Returns:
        Scalar loss (0 when no delta is active).
    """
    n = w.shape[1] - 1 if stage is None else min(int(stage), w.shape[1] - 1)
    if n <= 0:
        return w.new_zeros(())
    deltas = w[:, 1: n + 1] - w[:, :1]
    return torch.linalg.vector_norm(deltas, ord=p, dim=2).mean(0).sum()


class LatentCodesDiscriminator(nn.Module):
    """e4e's latent discriminator: ``n_mlp - 1`` × (Linear + LeakyReLU 0.2) + Linear(·, 1).

    Keys ``mlp.{0,2,4}.weight/bias`` and ``mlp.6`` for ``n_mlp = 4`` (official layout).

    Args:
        style_dim: width of w.
        n_mlp: number of linear layers.
    """

    def __init__(self, style_dim: int = 512, n_mlp: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(n_mlp - 1):
            layers += [nn.Linear(style_dim, style_dim), nn.LeakyReLU(0.2)]
        layers.append(nn.Linear(style_dim, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """w ``[B, style_dim]`` -> logits ``[B, 1]``."""
        return self.mlp(w)


class LatentCodesPool:
    """History of latent codes (pSp / e4e ``use_w_pool``): with probability 1/2 a queried code
    is swapped for a stored one.

    Args:
        pool_size: stored codes (0 disables the pool).
        seed: seed of the swap decisions.
    """

    def __init__(self, pool_size: int = 50, seed: int = 0) -> None:
        self.pool_size = pool_size
        self.codes: list[torch.Tensor] = []
        self._rng = random.Random(seed)

    def query(self, ws: torch.Tensor) -> torch.Tensor:
        """ws ``[B, D]`` -> ``[B, D]`` mix of new and pooled codes (detached)."""
        if self.pool_size == 0:
            return ws
        out = []
        for w in ws.detach():
            if len(self.codes) < self.pool_size:
                self.codes.append(w.clone())
                out.append(w)
            elif self._rng.random() > 0.5:
                i = self._rng.randrange(self.pool_size)
                out.append(self.codes[i].clone())
                self.codes[i] = w.clone()
            else:
                out.append(w)
        return torch.stack(out)

    def state_dict(self) -> dict:
        return {"codes": [c.cpu() for c in self.codes], "rng": self._rng.getstate()}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.codes = [c.to(device) for c in state.get("codes", [])]
        rng = state.get("rng")
        if rng is not None:
            self._rng.setstate((rng[0], tuple(rng[1]), rng[2]))


# ---------------------------------------------------------------------------- distributions
def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, n_proj: int = 64,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Squared sliced Wasserstein-2 distance between two equal-size point sets.

    Args:
        a, b: ``[N, D]`` samples (``b`` is usually detached).
        n_proj: number of random unit directions.
        generator: RNG for the directions (CPU generator).

    Returns:
        Scalar: mean over directions of the mean squared difference of sorted projections.
    """
    if a.shape != b.shape:
        raise ValueError(f"sliced_wasserstein needs equal shapes, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    dirs = torch.randn(a.shape[1], n_proj, generator=generator)
    dirs = (dirs / dirs.norm(dim=0, keepdim=True)).to(a.device, a.dtype)
    pa = torch.sort(a @ dirs, dim=0).values
    pb = torch.sort(b @ dirs, dim=0).values
    return (pa - pb).pow(2).mean()
