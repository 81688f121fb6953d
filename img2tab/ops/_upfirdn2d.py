"""upfirdn2d: upsample, pad, FIR-filter and downsample a batch of images.

Semantics (rosinality ``upfirdn2d`` / NVlabs ``upfirdn2d`` with ``flip_filter=False``, gain 1),
per axis with input length ``n``, factors ``up`` / ``down``, pads ``p0`` / ``p1`` and filter
length ``k``:

1. insert ``up - 1`` zeros after every sample (length ``n * up``);
2. pad with ``p0`` zeros before and ``p1`` after; a negative pad crops instead;
3. convolve with the filter (true convolution: correlation with the flipped filter), keeping only
   the fully overlapping ("valid") positions;
4. keep every ``down``-th sample, starting with the first.

Output length: ``(n * up + p0 + p1 - k) // down + 1``.

The reference implementation (``impl="ref"``, and every CPU tensor) is built from differentiable
torch ops, so gradients of any order come from autograd. For speed on CPU it never materialises
the zero-inserted image: upsampling runs as a depthwise transposed convolution (many channels) or
as a polyphase depthwise convolution followed by a pixel shuffle (few channels, e.g. RGB skips).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F

from ._impl import select_plugin

__all__ = ["upfirdn2d", "upfirdn2d_ref"]

Pair = int | Sequence[int]

# Below this many channels the polyphase formulation beats the depthwise transposed convolution on
# CPU (measured on 2 threads, torch 2.14; see benchmarks/bench_ops.py).
_POLYPHASE_MAX_CHANNELS = 8

_CUDA_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _pair(value: Pair, name: str) -> tuple[int, int]:
    """``int`` or ``(x, y)`` -> ``(x, y)``, each an int >= 1."""
    if isinstance(value, int) and not isinstance(value, bool):
        pair = (value, value)
    else:
        pair = tuple(value)  # type: ignore[arg-type]
        if len(pair) != 2:
            raise ValueError(f"{name} must be an int or an (x, y) pair, got {value!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair):
        raise ValueError(f"{name} must hold ints >= 1, got {value!r}")
    return int(pair[0]), int(pair[1])


def _pads(pad: int | Sequence[int]) -> tuple[int, int, int, int]:
    """``p`` / ``(p0, p1)`` / ``(x0, x1, y0, y1)`` -> ``(x0, x1, y0, y1)``."""
    if isinstance(pad, int) and not isinstance(pad, bool):
        pads: tuple[Any, ...] = (pad,) * 4
    else:
        pads = tuple(pad)
        if len(pads) == 2:
            pads = (pads[0], pads[1], pads[0], pads[1])
        elif len(pads) != 4:
            raise ValueError(f"pad must have 2 or 4 elements, got {pad!r}")
    if not all(isinstance(p, int) and not isinstance(p, bool) for p in pads):
        raise ValueError(f"pad must hold ints, got {pad!r}")
    return int(pads[0]), int(pads[1]), int(pads[2]), int(pads[3])


def _out_len(n: int, up: int, down: int, p0: int, p1: int, k: int) -> int:
    return (n * up + p0 + p1 - k) // down + 1


def _pad_crop(x: torch.Tensor, pads: Sequence[int]) -> torch.Tensor:
    """Pads the last two dims by ``(x0, x1, y0, y1)``; negative values crop after padding.

    Unlike a single ``F.pad`` this also works when a crop exceeds the unpadded size.
    """
    px0, px1, py0, py1 = pads
    if px0 > 0 or px1 > 0 or py0 > 0 or py1 > 0:
        x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    if px0 < 0 or px1 < 0 or py0 < 0 or py1 < 0:
        h, w = x.shape[-2], x.shape[-1]
        x = x[..., max(-py0, 0) : h - max(-py1, 0), max(-px0, 0) : w - max(-px1, 0)]
    return x


def _crop_window(
    y: torch.Tensor, k: tuple[int, int], pads: tuple[int, int, int, int], lengths: tuple[int, int]
) -> torch.Tensor:
    """Cuts the wanted window out of a full convolution of the zero-inserted image.

    ``y[..., f]`` holds sample ``f`` of the full convolution (zero beyond ``y``'s end); the padded,
    valid convolution wants samples ``k - 1 - p0 .. k - 1 - p0 + length - 1`` (zero outside).
    """
    kh, kw = k
    px0, _, py0, _ = pads
    h_len, w_len = lengths
    left, top = px0 - (kw - 1), py0 - (kh - 1)
    right = w_len - (y.shape[3] + left)
    bottom = h_len - (y.shape[2] + top)
    return _pad_crop(y, (left, right, top, bottom))


def upfirdn2d_ref(
    x: torch.Tensor,
    kernel: torch.Tensor,
    up: tuple[int, int],
    down: tuple[int, int],
    pads: tuple[int, int, int, int],
) -> torch.Tensor:
    """Pure-PyTorch upfirdn2d (the specification), differentiable to any order.

    Args:
        x: images [N, C, H, W].
        kernel: FIR filter [kh, kw]; cast to ``x``'s dtype and device.
        up: ``(up_x, up_y)``, each >= 1.
        down: ``(down_x, down_y)``, each >= 1.
        pads: ``(x0, x1, y0, y1)``; negative values crop.

    Returns:
        [N, C, H_out, W_out] with ``H_out = (H * up_y + y0 + y1 - kh) // down_y + 1`` (same for W).
    """
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = pads
    k = kernel.to(device=x.device, dtype=x.dtype)

    if upx == 1 and upy == 1:
        # Direct: pad/crop, depthwise valid convolution with the flipped filter, strided.
        x = _pad_crop(x, pads)
        weight = k.flip([0, 1]).reshape(1, 1, kh, kw).repeat(c, 1, 1, 1)
        return F.conv2d(x, weight, stride=(downy, downx), groups=c)

    h_len = h * upy + py0 + py1 - kh + 1  # lengths before downsampling
    w_len = w * upx + px0 + px1 - kw + 1
    if c <= _POLYPHASE_MAX_CHANNELS:
        # Polyphase: full-convolution sample f = a * up + r is sum_j x[a - j] * kernel[j * up + r],
        # so each phase r is a small convolution of x; phases are interleaved by a pixel shuffle.
        kph, kpw = -(-kh // upy), -(-kw // upx)  # taps per phase
        kp = F.pad(k, [0, kpw * upx - kw, 0, kph * upy - kh])
        phases = kp.reshape(kph, upy, kpw, upx).permute(1, 3, 0, 2).flip([2, 3])
        weight = phases.reshape(1, upy * upx, kph, kpw).repeat(c, 1, 1, 1)
        weight = weight.reshape(c * upy * upx, 1, kph, kpw)
        y = F.conv2d(F.pad(x, [kpw - 1, kpw - 1, kph - 1, kph - 1]), weight, groups=c)
        ha, wa = y.shape[2], y.shape[3]
        y = y.reshape(n, c, upy, upx, ha, wa).permute(0, 1, 4, 2, 5, 3)
        y = y.reshape(n, c, ha * upy, wa * upx)
    else:
        # Transposed convolution = full convolution of the zero-inserted image.
        weight = k.reshape(1, 1, kh, kw).repeat(c, 1, 1, 1)
        y = F.conv_transpose2d(x, weight, stride=(upy, upx), groups=c)
    y = _crop_window(y, (kh, kw), pads, (h_len, w_len))
    if downx > 1 or downy > 1:
        y = y[:, :, ::downy, ::downx]
    return y


def _grad_pads(
    in_size: tuple[int, int],
    out_size: tuple[int, int],
    k: tuple[int, int],
    up: tuple[int, int],
    down: tuple[int, int],
    pads: tuple[int, int, int, int],
) -> tuple[int, int, int, int]:
    """Pads of the adjoint: ``grad_x = upfirdn2d(grad_y, flip(kernel), up=down, down=up, pads)``.

    Args:
        in_size: forward input ``(H, W)``.
        out_size: forward output ``(H_out, W_out)``.
        k: filter ``(kh, kw)``.
        up: forward ``(up_x, up_y)``.
        down: forward ``(down_x, down_y)``.
        pads: forward ``(x0, x1, y0, y1)``.

    Returns:
        ``(x0, x1, y0, y1)`` for the adjoint call; its output has size ``in_size``.
    """
    (h, w), (oh, ow), (kh, kw) = in_size, out_size, k
    upx, upy = up
    downx, downy = down
    px0, _, py0, _ = pads
    gx0 = kw - 1 - px0
    gy0 = kh - 1 - py0
    gx1 = w * upx - ow * downx + px0 - upx + 1
    gy1 = h * upy - oh * downy + py0 - upy + 1
    return gx0, gx1, gy0, gy1


class _UpFirDn2dCuda(torch.autograd.Function):
    """upfirdn2d on the CUDA kernel. Linear in ``x``: the backward pass is this same function
    with up/down swapped, the flipped filter and adjoint pads, so every order of gradient works."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        kernel: torch.Tensor,
        up: tuple[int, int],
        down: tuple[int, int],
        pads: tuple[int, int, int, int],
        plugin: ModuleType,
    ) -> torch.Tensor:
        y = plugin.upfirdn2d(x, kernel, up[0], up[1], down[0], down[1], *pads)
        ctx.save_for_backward(kernel)
        ctx.cfg = (up, down, pads, plugin, (x.shape[2], x.shape[3]), (y.shape[2], y.shape[3]))
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        (kernel,) = ctx.saved_tensors
        up, down, pads, plugin, in_size, out_size = ctx.cfg
        grad_x = None
        if ctx.needs_input_grad[0]:
            kh, kw = kernel.shape
            gpads = _grad_pads(in_size, out_size, (kh, kw), up, down, pads)
            grad_x = _UpFirDn2dCuda.apply(grad_y, kernel.flip([0, 1]), down, up, gpads, plugin)
        return grad_x, None, None, None, None, None


def upfirdn2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    up: Pair = 1,
    down: Pair = 1,
    pad: int | Sequence[int] = (0, 0),
    impl: str = "auto",
) -> torch.Tensor:
    """Upsample (zero insertion), pad, FIR-filter (true convolution) and downsample images.

    Examples of the StyleGAN2 generator's uses, ``k = outer([1, 3, 3, 1]) / 64 * 4``:
    ``upfirdn2d(x, k, up=2, pad=(2, 1))`` doubles H and W (``Upsample``);
    ``upfirdn2d(x, k, pad=(1, 1))`` blurs and shrinks H and W by 1 (``Blur`` after the
    transposed convolution).

    Args:
        x: images [N, C, H, W].
        kernel: filter [kh, kw], any float dtype (cast to ``x.dtype``). Not flipped by the caller.
        up: upsampling factor, an int or an ``(x, y)`` pair, >= 1.
        down: downsampling factor, an int or an ``(x, y)`` pair, >= 1.
        pad: ``p`` (all sides), ``(p0, p1)`` (both axes) or ``(x0, x1, y0, y1)``; negative crops.
        impl: ``"auto"`` (honours ``IMG2TAB_OPS``), ``"ref"`` or ``"cuda"``; see
            :mod:`img2tab.ops`. The CUDA kernel needs a CUDA tensor of dtype float16 / bfloat16 /
            float32 / float64 and a ``kernel`` that does not require grad; otherwise the reference
            runs.

    Returns:
        [N, C, (H * up_y + y0 + y1 - kh) // down_y + 1, (W * up_x + x0 + x1 - kw) // down_x + 1].

    Raises:
        ValueError: bad shapes, factors, pads, an empty output, or an invalid ``impl``.
        RuntimeError: ``impl="cuda"`` for a CUDA tensor and the extension cannot be built.
    """
    if x.ndim != 4:
        raise ValueError(f"x must have shape [N, C, H, W], got {tuple(x.shape)}")
    if kernel.ndim != 2:
        raise ValueError(f"kernel must have shape [kh, kw], got {tuple(kernel.shape)}")
    upx, upy = _pair(up, "up")
    downx, downy = _pair(down, "down")
    pads = _pads(pad)
    kh, kw = kernel.shape
    out_h = _out_len(x.shape[2], upy, downy, pads[2], pads[3], kh)
    out_w = _out_len(x.shape[3], upx, downx, pads[0], pads[1], kw)
    if out_h < 1 or out_w < 1 or kh < 1 or kw < 1:
        raise ValueError(
            f"upfirdn2d output would be empty: input {tuple(x.shape)}, "
            f"kernel {tuple(kernel.shape)}, up {(upx, upy)}, down {(downx, downy)}, pad {pads}"
        )
    plugin = select_plugin(impl, x, "upfirdn2d")
    if plugin is not None and x.dtype in _CUDA_DTYPES and not kernel.requires_grad:
        return _UpFirDn2dCuda.apply(x, kernel, (upx, upy), (downx, downy), pads, plugin)
    return upfirdn2d_ref(x, kernel, (upx, upy), (downx, downy), pads)
