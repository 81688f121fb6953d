"""Image quality metrics, one place each: PSNR, SSIM and MS-SSIM (pure PyTorch, differentiable).

Used by the trainers (as losses), by the inverter quality bars of :mod:`img2tab.world.evaluation`
and by the benchmarks. Images are ``[B, C, H, W]`` tensors; ``data_range`` is 2 for images in
[-1, 1] (img2tab's convention) and 1 for [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["ms_ssim", "psnr", "ssim"]

_MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0, eps: float = 0.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, in dB.

    Args:
        x, y: ``[B, C, H, W]`` images of the same shape (``data_range`` = 2 for [-1, 1]).
        eps: floor of the mean squared error (0: identical images give an infinite PSNR; a positive
            floor caps it at ``10 log10(range^2 / eps)``).

    Returns:
        ``[B]`` PSNR values, ``10 log10(data_range^2 / MSE)``.
    """
    if x.shape != y.shape:
        raise ValueError(f"psnr needs images of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    mse = (x - y).square().flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(eps))


def _gauss_1d(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    k = g.numel()
    x = F.conv2d(x, g.reshape(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(x, g.reshape(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def _ssim_cs(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, data_range: float
             ) -> tuple[torch.Tensor, torch.Tensor]:
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mu_x, mu_y = _blur(x, g), _blur(y, g)
    sxx = _blur(x * x, g) - mu_x**2
    syy = _blur(y * y, g) - mu_y**2
    sxy = _blur(x * y, g) - mu_x * mu_y
    cs_map = (2 * sxy + c2) / (sxx + syy + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs_map
    return ssim_map.flatten(1).mean(1), cs_map.flatten(1).mean(1)


def _window(h: int, w: int, win_size: int) -> int:
    k = min(win_size, h, w)
    return k if k % 2 else k - 1


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0, win_size: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity per image (Gaussian window, valid region).

    Args:
        x, y: ``[B, C, H, W]`` images (``data_range`` = 2 for [-1, 1]).
        win_size: Gaussian window (shrunk to the image size when larger).

    Returns:
        ``[B]`` SSIM values (1 = identical).
    """
    k = _window(x.shape[-2], x.shape[-1], win_size)
    g = _gauss_1d(k, sigma, x.device, x.dtype)
    return _ssim_cs(x, y, g, data_range)[0]


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0, win_size: int = 11,
            sigma: float = 1.5, weights: Sequence[float] = _MS_WEIGHTS) -> torch.Tensor:
    """Multi-scale SSIM per image (Wang et al. 2003).

    The number of scales is reduced for small images so that the coarsest scale is still at
    least one window wide (1 scale at 16 px, 2 at 32, 3 at 64, 5 at >= 176); the weights of the
    used scales are renormalised. Contrast terms are clamped at a small positive value so the
    fractional powers stay differentiable.

    Args:
        x, y: ``[B, C, H, W]`` images (``data_range`` = 2 for [-1, 1]).

    Returns:
        ``[B]`` MS-SSIM values (1 = identical).
    """
    side = min(x.shape[-2:])
    k = _window(x.shape[-2], x.shape[-1], win_size)
    levels = 1
    while levels < len(weights) and side // 2**levels >= k:
        levels += 1
    w = torch.tensor(weights[:levels], device=x.device, dtype=x.dtype)
    w = w / w.sum()
    g = _gauss_1d(k, sigma, x.device, x.dtype)
    vals = []
    for i in range(levels):
        s, cs = _ssim_cs(x, y, g, data_range)
        if i < levels - 1:
            vals.append(cs.clamp_min(1e-6))
            x = F.avg_pool2d(x, 2)
            y = F.avg_pool2d(y, 2)
        else:
            vals.append(s.clamp_min(1e-6))
    stack = torch.stack(vals, dim=1)  # [B, levels]
    return torch.prod(stack ** w, dim=1)
