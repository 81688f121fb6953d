"""Fused bias + leaky ReLU + gain (StyleGAN2's ``fused_leaky_relu``).

``y = leaky_relu(x + b, negative_slope) * scale`` with ``b`` broadcast over dim 1. Unlike
rosinality's CPU fallback, ``negative_slope`` is always honoured.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ._impl import select_plugin

__all__ = ["FusedLeakyReLU", "fused_leaky_relu", "fused_leaky_relu_ref"]

_CUDA_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _bias_view(bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return bias.to(dtype=x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))


def fused_leaky_relu_ref(
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    negative_slope: float = 0.2,
    scale: float = 2**0.5,
) -> torch.Tensor:
    """Pure-PyTorch reference (the specification), differentiable to any order.

    Without autograd (no grad mode, or no input requiring grad) it works in place on one
    temporary, which saves two full-size allocations on CPU.

    Args:
        x: input [N, C, *] (any rank >= 2 with a bias; any rank without).
        bias: [C] or ``None``; cast to ``x.dtype``.
        negative_slope: slope for negative inputs.
        scale: gain applied after the activation.

    Returns:
        Tensor of ``x``'s shape and dtype.
    """
    needs_graph = torch.is_grad_enabled() and (
        x.requires_grad or (bias is not None and bias.requires_grad)
    )
    if not needs_graph:
        t = x + _bias_view(bias, x) if bias is not None else x.clone()
        F.leaky_relu_(t, negative_slope)
        return t.mul_(scale)
    t = x + _bias_view(bias, x) if bias is not None else x
    return F.leaky_relu(t, negative_slope) * scale


class _FusedActGradCuda(torch.autograd.Function):
    """``grad -> grad * d act / d pre`` on the CUDA kernel. Linear in ``grad`` and piecewise
    constant in ``x`` / ``bias``, so its own backward is the same map applied to the incoming
    gradient (second derivatives with respect to ``x`` and ``bias`` are zero almost everywhere)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        grad: torch.Tensor,
        x: torch.Tensor,
        bias: torch.Tensor | None,
        slope: float,
        scale: float,
        plugin: ModuleType,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, bias)
        ctx.cfg = (slope, scale, plugin)
        return plugin.fused_act(grad, bias, x, slope, scale)

    @staticmethod
    def backward(ctx: Any, grad_grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, bias = ctx.saved_tensors
        slope, scale, plugin = ctx.cfg
        out = None
        if ctx.needs_input_grad[0]:
            out = _FusedActGradCuda.apply(grad_grad, x, bias, slope, scale, plugin)
        return out, None, None, None, None, None


class _FusedLeakyReLUCuda(torch.autograd.Function):
    """Forward on the CUDA kernel; saves the input and computes gradients with the same kernel."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        bias: torch.Tensor | None,
        slope: float,
        scale: float,
        plugin: ModuleType,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, bias)
        ctx.cfg = (slope, scale, plugin)
        return plugin.fused_act(x, bias, None, slope, scale)

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, bias = ctx.saved_tensors
        slope, scale, plugin = ctx.cfg
        grad_x = grad_b = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            grad_x = _FusedActGradCuda.apply(grad_y, x, bias, slope, scale, plugin)
        if bias is not None and ctx.needs_input_grad[1]:
            dims = [0, *range(2, grad_x.ndim)]
            grad_b = grad_x.sum(dims).to(bias.dtype)
        if not ctx.needs_input_grad[0]:
            grad_x = None
        return grad_x, grad_b, None, None, None


def fused_leaky_relu(
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    negative_slope: float = 0.2,
    scale: float = 2**0.5,
    impl: str = "auto",
) -> torch.Tensor:
    """``leaky_relu(x + bias, negative_slope) * scale``, bias broadcast over dim 1.

    Args:
        x: input [N, C, *] (any rank >= 2 with a bias; any rank without).
        bias: [C] or ``None``.
        negative_slope: slope for negative inputs.
        scale: gain applied after the activation (StyleGAN2 uses sqrt(2)).
        impl: ``"auto"`` (honours ``IMG2TAB_OPS``), ``"ref"`` or ``"cuda"``; see
            :mod:`img2tab.ops`. The CUDA kernel needs a CUDA tensor of dtype float16 / bfloat16 /
            float32 / float64; otherwise the reference runs.

    Returns:
        Tensor of ``x``'s shape and dtype.

    Raises:
        ValueError: bias shape mismatch, or an invalid ``impl``.
        RuntimeError: ``impl="cuda"`` for a CUDA tensor and the extension cannot be built.
    """
    if bias is not None:
        if x.ndim < 2:
            raise ValueError(f"x must have rank >= 2 when a bias is given, got {tuple(x.shape)}")
        if bias.ndim != 1 or bias.shape[0] != x.shape[1]:
            raise ValueError(
                f"bias must have shape [{x.shape[1]}] (x.shape[1]), got {tuple(bias.shape)}"
            )
    plugin = select_plugin(impl, x, "fused_act")
    if plugin is not None and x.dtype in _CUDA_DTYPES and x.ndim >= 1:
        return _FusedLeakyReLUCuda.apply(x, bias, float(negative_slope), float(scale), plugin)
    return fused_leaky_relu_ref(x, bias, negative_slope, scale)


class FusedLeakyReLU(nn.Module):
    """Module form of :func:`fused_leaky_relu` with a learnable bias (rosinality-compatible).

    The state dict holds ``bias`` [channel] (zeros at init) when ``bias=True``, so rosinality
    ``...activate.bias`` entries load directly.

    Args:
        channel: number of channels C (dim 1 of the input).
        bias: whether to learn a per-channel bias.
        negative_slope: slope for negative inputs.
        scale: gain applied after the activation.
        impl: ``"auto"``, ``"ref"`` or ``"cuda"`` (keyword only).
    """

    def __init__(
        self,
        channel: int,
        bias: bool = True,
        negative_slope: float = 0.2,
        scale: float = 2**0.5,
        *,
        impl: str = "auto",
    ) -> None:
        super().__init__()
        self.bias: nn.Parameter | None
        if bias:
            self.bias = nn.Parameter(torch.zeros(channel))
        else:
            self.register_parameter("bias", None)
        self.channel = channel
        self.negative_slope = negative_slope
        self.scale = scale
        self.impl = impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Applies the activation.

        Args:
            x: [N, C, *] with C = ``channel``.

        Returns:
            Tensor of ``x``'s shape.
        """
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale, impl=self.impl)

    def extra_repr(self) -> str:
        return (
            f"{self.channel}, bias={self.bias is not None}, "
            f"negative_slope={self.negative_slope}, scale={self.scale:.4g}"
        )
