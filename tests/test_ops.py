"""Tests of img2tab.ops: references vs naive definitions, autograd, impl selection, CUDA sources."""

from __future__ import annotations

import ctypes
import importlib
import math
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy import signal

from img2tab import ops
from img2tab.ops import _impl, _plugin
from img2tab.ops._upfirdn2d import _grad_pads

CUDA_DIR = _plugin.CUDA_DIR
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# --------------------------------------------------------------------------------------------
# naive definitions (slow, obviously correct)


def naive_upfirdn2d(
    x: np.ndarray, k: np.ndarray, up: tuple[int, int], down: tuple[int, int], pads: tuple
) -> np.ndarray:
    """Zero insertion, explicit pad/crop, per-pixel correlation with the flipped kernel, stride."""
    n, c, h, w = x.shape
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = pads
    kh, kw = k.shape
    z = np.zeros((n, c, h * upy, w * upx))
    z[:, :, ::upy, ::upx] = x
    hp, wp = h * upy + py0 + py1, w * upx + px0 + px1
    padded = np.zeros((n, c, hp, wp))
    for i in range(hp):
        for j in range(wp):
            si, sj = i - py0, j - px0
            if 0 <= si < h * upy and 0 <= sj < w * upx:
                padded[:, :, i, j] = z[:, :, si, sj]
    kf = k[::-1, ::-1]
    oh, ow = (hp - kh) // downy + 1, (wp - kw) // downx + 1
    out = np.zeros((n, c, oh, ow))
    for oy in range(oh):
        for ox in range(ow):
            win = padded[:, :, oy * downy : oy * downy + kh, ox * downx : ox * downx + kw]
            out[:, :, oy, ox] = (win * kf).sum(axis=(-1, -2))
    return out


def blur_kernel(gain: float = 4.0) -> torch.Tensor:
    k1 = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64)
    k = torch.outer(k1, k1)
    return k / k.sum() * gain


@st.composite
def upfirdn_cases(draw: st.DrawFn) -> tuple:
    n = draw(st.integers(1, 2))
    c = draw(st.sampled_from([1, 3, 9]))  # polyphase (<= 8 channels) and transposed-conv paths
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    up = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    down = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pads = tuple(draw(st.integers(-3, 4)) for _ in range(4))
    assume(w * up[0] + pads[0] + pads[1] - kw >= 0)
    assume(h * up[1] + pads[2] + pads[3] - kh >= 0)
    seed = draw(st.integers(0, 2**16))
    return (n, c, h, w), (kh, kw), up, down, pads, seed


def _tensors(shape: tuple, kshape: tuple, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=dtype)
    k = torch.randn(kshape, generator=g, dtype=dtype)
    return x, k


# --------------------------------------------------------------------------------------------
# upfirdn2d reference


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(upfirdn_cases())
def test_upfirdn2d_ref_matches_naive(case: tuple) -> None:
    shape, kshape, up, down, pads, seed = case
    x, k = _tensors(shape, kshape, seed)
    y = ops.upfirdn2d(x, k, up=up, down=down, pad=pads, impl="ref")
    expected = naive_upfirdn2d(x.numpy(), k.numpy(), up, down, pads)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("up,down,pad", [(1, 1, (1, 2)), (2, 1, (-1, 3)), (3, 2, (0, 0))])
def test_upfirdn2d_int_and_pair_arguments(up: int, down: int, pad: tuple) -> None:
    x, k = _tensors((1, 2, 5, 4), (3, 2), 0)
    a = ops.upfirdn2d(x, k, up=up, down=down, pad=pad, impl="ref")
    b = ops.upfirdn2d(x, k, up=(up, up), down=(down, down), pad=(*pad, *pad), impl="ref")
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    expected = naive_upfirdn2d(x.numpy(), k.numpy(), (up, up), (down, down), (*pad, *pad))
    np.testing.assert_allclose(a.numpy(), expected, atol=1e-12)


def test_upfirdn2d_is_true_convolution() -> None:
    """up = down = 1 with pads k - 1 is scipy's full convolution (asymmetric kernel)."""
    x, k = _tensors((1, 1, 6, 5), (3, 2), 1)
    y = ops.upfirdn2d(x, k, pad=(1, 1, 2, 2), impl="ref")
    expected = signal.convolve2d(x[0, 0].numpy(), k.numpy(), mode="full")
    np.testing.assert_allclose(y[0, 0].numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("channels", [3, 16])
def test_generator_upsample_and_blur(channels: int) -> None:
    """StyleGAN2 Upsample (up 2, pad (2, 1)) keeps 2H; Blur (pad (1, 1)) maps 2H + 1 -> 2H."""
    x, _ = _tensors((2, channels, 8, 8), (1, 1), 2)
    k = blur_kernel()
    up = ops.upfirdn2d(x, k, up=2, pad=(2, 1), impl="ref")
    assert up.shape == (2, channels, 16, 16)
    np.testing.assert_allclose(
        up.numpy(), naive_upfirdn2d(x.numpy(), k.numpy(), (2, 2), (1, 1), (2, 1, 2, 1)), atol=1e-12
    )
    # a constant image stays constant away from the borders (gain 4 undoes the zero insertion)
    ones = ops.upfirdn2d(torch.ones(1, channels, 8, 8, dtype=torch.float64), k, up=2, pad=(2, 1))
    torch.testing.assert_close(ones[..., 2:-2, 2:-2], torch.ones_like(ones[..., 2:-2, 2:-2]))
    t = torch.randn(1, channels, 17, 17, dtype=torch.float64)
    blurred = ops.upfirdn2d(t, k, pad=(1, 1))
    assert blurred.shape == (1, channels, 16, 16)


def test_upfirdn2d_float32_and_kernel_dtype() -> None:
    x, k = _tensors((1, 4, 7, 7), (4, 4), 3, dtype=torch.float32)
    y = ops.upfirdn2d(x, k.double(), up=2, pad=(2, 1))
    assert y.dtype == torch.float32
    expected = naive_upfirdn2d(x.double().numpy(), k.double().numpy(), (2, 2), (1, 1), (2, 1) * 2)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"up": 0}, "up"),
        ({"down": (1, 2, 3)}, "down"),
        ({"pad": (1, 2, 3)}, "pad"),
        ({"pad": (-4, -4)}, "empty"),
    ],
)
def test_upfirdn2d_bad_arguments(kwargs: dict, match: str) -> None:
    x, k = _tensors((1, 1, 4, 4), (3, 3), 0)
    with pytest.raises(ValueError, match=match):
        ops.upfirdn2d(x, k, **kwargs)


def test_upfirdn2d_bad_shapes() -> None:
    with pytest.raises(ValueError, match="N, C, H, W"):
        ops.upfirdn2d(torch.zeros(3, 4, 4), torch.ones(2, 2))
    with pytest.raises(ValueError, match="kh, kw"):
        ops.upfirdn2d(torch.zeros(1, 3, 4, 4), torch.ones(4))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(upfirdn_cases())
def test_upfirdn2d_adjoint_pads(case: tuple) -> None:
    """The CUDA backward's formula: <A x, g> == <x, A^T g> with A^T = upfirdn2d(flip k, swap)."""
    shape, kshape, up, down, pads, seed = case
    x, k = _tensors(shape, kshape, seed)
    y = ops.upfirdn2d(x, k, up=up, down=down, pad=pads, impl="ref")
    g = torch.randn_like(y)
    gpads = _grad_pads(shape[2:], tuple(y.shape[2:]), kshape, up, down, pads)
    gx = ops.upfirdn2d(g, k.flip([0, 1]), up=down, down=up, pad=gpads, impl="ref")
    assert gx.shape == x.shape
    torch.testing.assert_close((y * g).sum(), (x * gx).sum(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "channels,up,down,pad",
    [(2, 2, 1, (2, 1)), (9, 2, 1, (2, 1)), (3, 1, 1, (1, 1)), (2, 1, 2, (1, -1)), (10, 3, 2, (-1, 2))],
)
def test_upfirdn2d_ref_gradcheck(channels: int, up: int, down: int, pad: tuple) -> None:
    x, k = _tensors((1, channels, 2, 3), (2, 3), 4)
    x.requires_grad_(True)
    k.requires_grad_(True)

    def fn(x_: torch.Tensor, k_: torch.Tensor) -> torch.Tensor:
        return ops.upfirdn2d(x_, k_, up=up, down=down, pad=pad, impl="ref")

    fast = channels > 8  # the transposed-conv path; full mode costs ~10 s per case here
    assert torch.autograd.gradcheck(fn, (x, k), fast_mode=fast)
    assert torch.autograd.gradgradcheck(fn, (x, k), fast_mode=fast)


# --------------------------------------------------------------------------------------------
# fused leaky ReLU reference


def naive_fused_leaky_relu(x: np.ndarray, b: np.ndarray | None, slope: float, scale: float):
    if b is not None:
        x = x + b.reshape(1, -1, *([1] * (x.ndim - 2)))
    return np.where(x > 0, x, x * slope) * scale


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 4, 5), (2, 3, 4)])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("slope,scale", [(0.2, 2**0.5), (0.05, 3.0), (-0.5, 0.7)])
def test_fused_leaky_relu_ref_formula(shape, with_bias: bool, slope: float, scale: float) -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    b = torch.randn(shape[1], generator=g, dtype=torch.float64) if with_bias else None
    expected = naive_fused_leaky_relu(x.numpy(), None if b is None else b.numpy(), slope, scale)
    y = ops.fused_leaky_relu(x, b, negative_slope=slope, scale=scale)
    np.testing.assert_allclose(y.numpy(), expected, atol=1e-12)
    with torch.no_grad():  # in-place fast path
        np.testing.assert_allclose(ops.fused_leaky_relu_ref(x, b, slope, scale).numpy(), expected)
    assert y.shape == x.shape
    x_before = x.clone()
    ops.fused_leaky_relu(x, b, slope, scale)
    torch.testing.assert_close(x, x_before, rtol=0, atol=0)  # input untouched


def test_fused_leaky_relu_defaults_and_module() -> None:
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(
        ops.fused_leaky_relu(x), torch.nn.functional.leaky_relu(x, 0.2) * math.sqrt(2)
    )
    m = ops.FusedLeakyReLU(4, negative_slope=0.1, scale=2.0)
    assert list(m.state_dict()) == ["bias"]
    assert torch.equal(m.bias, torch.zeros(4))
    m.load_state_dict({"bias": torch.arange(4.0)})
    expected = naive_fused_leaky_relu(x.numpy(), np.arange(4.0), 0.1, 2.0)
    np.testing.assert_allclose(m(x).detach().numpy(), expected, rtol=1e-6, atol=1e-6)
    m(x).sum().backward()
    assert m.bias.grad is not None and m.bias.grad.shape == (4,)
    assert list(ops.FusedLeakyReLU(4, bias=False).state_dict()) == []
    assert "negative_slope=0.1" in repr(m)


def test_fused_leaky_relu_bad_bias() -> None:
    with pytest.raises(ValueError, match="bias"):
        ops.fused_leaky_relu(torch.zeros(2, 3), torch.zeros(4))
    with pytest.raises(ValueError, match="rank"):
        ops.fused_leaky_relu(torch.zeros(3), torch.zeros(3))


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 2, 2)])
def test_fused_leaky_relu_ref_gradcheck(shape: tuple) -> None:
    g = torch.Generator().manual_seed(6)
    # keep x + b away from the kink at 0
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    x = (x.sign() * (x.abs() + 0.5)).requires_grad_(True)
    b = (0.1 * torch.randn(shape[1], generator=g, dtype=torch.float64)).requires_grad_(True)

    def fn(x_: torch.Tensor, b_: torch.Tensor) -> torch.Tensor:
        return ops.fused_leaky_relu(x_, b_, negative_slope=0.3, scale=1.7, impl="ref")

    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


# --------------------------------------------------------------------------------------------
# implementation selection and the lazy build


def test_env_var_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_impl.ENV_VAR, raising=False)
    assert _impl.resolve_impl("auto") == "auto"
    for value in ("ref", "cuda", "auto"):
        monkeypatch.setenv(_impl.ENV_VAR, value)
        assert _impl.resolve_impl("auto") == value
        assert _impl.resolve_impl("ref") == "ref"  # explicit argument wins
        assert _impl.resolve_impl("cuda") == "cuda"
    monkeypatch.setenv(_impl.ENV_VAR, " REF ")
    assert _impl.resolve_impl("auto") == "ref"


def test_invalid_impl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_impl.ENV_VAR, raising=False)
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match=r"'fast'.*auto, ref, cuda"):
        ops.upfirdn2d(x, torch.ones(1, 1), impl="fast")
    with pytest.raises(ValueError, match=r"'Ref'.*auto, ref, cuda"):
        ops.fused_leaky_relu(x, impl="Ref")
    monkeypatch.setenv(_impl.ENV_VAR, "triton")
    with pytest.raises(ValueError, match=r"IMG2TAB_OPS='triton'.*auto, ref, cuda"):
        ops.fused_leaky_relu(x)
    ops.fused_leaky_relu(x, impl="ref")  # an explicit impl does not read the variable


def test_cpu_tensors_never_build(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("no build expected for CPU tensors")

    monkeypatch.setattr(_plugin, "build_plugin", boom)
    monkeypatch.setattr(_plugin, "_PLUGINS", {})
    monkeypatch.setenv(_impl.ENV_VAR, "cuda")
    x = torch.randn(1, 2, 4, 4)
    for impl in ("auto", "cuda", "ref"):
        ops.upfirdn2d(x, torch.ones(2, 2), pad=(1, 0), impl=impl)
        ops.fused_leaky_relu(x, torch.zeros(2), impl=impl)


def test_import_does_not_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.utils.cpp_extension as cpp_extension

    def boom(*args, **kwargs):
        raise AssertionError("cpp_extension.load called")

    monkeypatch.setattr(cpp_extension, "load", boom)
    monkeypatch.setattr(cpp_extension, "load_inline", boom)
    for name in [m for m in sys.modules if m == "img2tab" or m.startswith("img2tab.")]:
        monkeypatch.delitem(sys.modules, name)
    fresh = importlib.import_module("img2tab.ops")
    assert fresh is not ops
    importlib.import_module("img2tab")
    x = torch.randn(1, 3, 4, 4)
    assert fresh.upfirdn2d(x, blur_kernel().float(), up=2, pad=(2, 1)).shape == (1, 3, 8, 8)
    assert fresh.FusedLeakyReLU(3)(x).shape == x.shape


def test_build_failure_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def failing_build(op: str):
        calls.append(op)
        raise OSError("nvcc: not found\nmore details")

    monkeypatch.setattr(_plugin, "build_plugin", failing_build)
    monkeypatch.setattr(_plugin, "_PLUGINS", {})
    monkeypatch.setattr(_plugin, "_ERRORS", {})
    monkeypatch.delenv(_impl.ENV_VAR, raising=False)
    fake_cuda = SimpleNamespace(device=torch.device("cuda"))  # no GPU needed: only .device is read
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _impl.select_plugin("auto", fake_cuda, "upfirdn2d") is None
        assert _impl.select_plugin("auto", fake_cuda, "upfirdn2d") is None
    assert calls == ["upfirdn2d"]  # outcome cached, no retry
    relevant = [w for w in caught if "CUDA extension" in str(w.message)]
    assert len(relevant) == 1
    assert issubclass(relevant[0].category, RuntimeWarning)
    assert "nvcc: not found" in str(relevant[0].message)
    # explicit impl="cuda" (argument or environment) raises instead of falling back
    with pytest.raises(RuntimeError, match="impl='cuda'") as info:
        _impl.select_plugin("cuda", fake_cuda, "upfirdn2d")
    assert isinstance(info.value.__cause__, OSError)
    monkeypatch.setenv(_impl.ENV_VAR, "cuda")
    with pytest.raises(RuntimeError):
        _impl.select_plugin("auto", fake_cuda, "upfirdn2d")
    assert calls == ["upfirdn2d"]


def test_build_directory_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    for op in ("upfirdn2d", "fused_act"):
        d = _plugin.build_directory(op)
        assert d.parent == tmp_path
        assert d.name.startswith(f"img2tab_{op}_") and len(d.name) == len(f"img2tab_{op}_") + 16
        assert all(p.is_file() for p in _plugin.source_files(op))
        _plugin._stage_sources(op, d)
        assert sorted(p.name for p in d.iterdir()) == sorted(
            p.name for p in _plugin.source_files(op)
        )
    assert _plugin.build_directory("upfirdn2d") != _plugin.build_directory("fused_act")
    with pytest.raises(ValueError, match="unknown CUDA op"):
        _plugin.build_directory("conv2d")


def test_package_data_lists_sources() -> None:
    files = {p.name for op in _plugin.OPS for p in _plugin.source_files(op)}
    assert files == {p.name for p in CUDA_DIR.iterdir() if p.suffix in {".cu", ".cpp", ".h"}}


# --------------------------------------------------------------------------------------------
# the CUDA autograd functions, run on CPU with stand-in plugins that mimic the bindings


class FakeUpFirDn2dPlugin:
    """Same signature and semantics as the compiled ``img2tab_upfirdn2d`` module."""

    calls = 0

    @classmethod
    def upfirdn2d(cls, x, f, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1):
        assert not torch.is_grad_enabled()  # autograd.Function.forward
        cls.calls += 1
        pads = (pad_x0, pad_x1, pad_y0, pad_y1)
        return ops.upfirdn2d_ref(x, f, (up_x, up_y), (down_x, down_y), pads).contiguous()


class FakeFusedActPlugin:
    """Same signature and semantics as the compiled ``img2tab_fused_act`` module."""

    calls = 0

    @classmethod
    def fused_act(cls, x, bias=None, ref=None, slope=0.2, scale=2**0.5):
        assert not torch.is_grad_enabled()
        cls.calls += 1
        b = 0.0 if bias is None else bias.to(x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))
        if ref is None:
            pre = x + b
            return torch.where(pre > 0, pre, pre * slope) * scale
        pre = ref + b
        return x * torch.where(pre > 0, scale, scale * slope)


@pytest.mark.parametrize(
    "up,down,pads",
    [((2, 2), (1, 1), (2, 1, 2, 1)), ((1, 1), (2, 2), (1, 1, 1, 1)), ((3, 2), (2, 3), (-1, 2, 0, 1))],
)
def test_upfirdn2d_cuda_function_autograd(up, down, pads) -> None:
    """Backward = the forward kernel with swapped factors, flipped filter, adjoint pads."""
    from img2tab.ops._upfirdn2d import _UpFirDn2dCuda

    x, k = _tensors((1, 2, 2, 3), (3, 2), 7)
    x.requires_grad_(True)

    def fn(x_: torch.Tensor) -> torch.Tensor:
        return _UpFirDn2dCuda.apply(x_, k, up, down, pads, FakeUpFirDn2dPlugin)

    torch.testing.assert_close(fn(x), ops.upfirdn2d_ref(x, k, up, down, pads))
    before = FakeUpFirDn2dPlugin.calls
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))
    assert FakeUpFirDn2dPlugin.calls > before


def test_cuda_dispatch_uses_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    from img2tab.ops import _fused_act, _upfirdn2d

    monkeypatch.setattr(_upfirdn2d, "select_plugin", lambda impl, x, op: FakeUpFirDn2dPlugin)
    monkeypatch.setattr(_fused_act, "select_plugin", lambda impl, x, op: FakeFusedActPlugin)
    x, k = _tensors((1, 3, 4, 4), (4, 4), 8)
    n_ufd, n_act = FakeUpFirDn2dPlugin.calls, FakeFusedActPlugin.calls
    ops.upfirdn2d(x, k, up=2, pad=(2, 1))
    ops.fused_leaky_relu(x, torch.zeros(3))
    assert FakeUpFirDn2dPlugin.calls == n_ufd + 1 and FakeFusedActPlugin.calls == n_act + 1
    ops.upfirdn2d(x, k.clone().requires_grad_(True), up=2, pad=(2, 1))  # filter grad -> ref
    assert FakeUpFirDn2dPlugin.calls == n_ufd + 1


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 2, 2)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_fused_act_cuda_function_autograd(shape: tuple, with_bias: bool) -> None:
    from img2tab.ops._fused_act import _FusedLeakyReLUCuda

    g = torch.Generator().manual_seed(9)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    x = (x.sign() * (x.abs() + 0.5)).requires_grad_(True)
    b = (0.1 * torch.randn(shape[1], generator=g, dtype=torch.float64)).requires_grad_(True)
    inputs = (x, b) if with_bias else (x,)

    def fn(*args: torch.Tensor) -> torch.Tensor:
        bias = args[1] if with_bias else None
        return _FusedLeakyReLUCuda.apply(args[0], bias, 0.3, 1.7, FakeFusedActPlugin)

    expected = ops.fused_leaky_relu_ref(x, b if with_bias else None, 0.3, 1.7)
    torch.testing.assert_close(fn(*inputs), expected)
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


# --------------------------------------------------------------------------------------------
# CUDA sources without a GPU: host emulation of the kernels' arithmetic, nvcc compile checks

_HARNESS = r"""
#define IMG2TAB_HOST_EMULATION
#include "upfirdn2d.h"
#include "fused_act.h"
using namespace img2tab;
extern "C" void ufd(const double* x, const double* f, double* y, const int64_t* a) {
  UpFirDn2dParams p;
  p.planes = a[0]; p.in_h = a[1]; p.in_w = a[2]; p.out_h = a[3]; p.out_w = a[4];
  p.up_x = a[5]; p.up_y = a[6]; p.down_x = a[7]; p.down_y = a[8];
  p.pad_x0 = a[9]; p.pad_y0 = a[10]; p.k_h = a[11]; p.k_w = a[12];
  for (int64_t i = 0; i < p.planes * p.out_h * p.out_w; ++i)
    y[i] = upfirdn2d_element<double, double>(x, f, p, i);
}
extern "C" void act(const double* x, const double* ref, const double* bias, double* out,
                    int64_t numel, int64_t channels, int64_t inner, double slope, double scale) {
  FusedActParams p{numel, channels, inner, slope, scale};
  for (int64_t i = 0; i < numel; ++i) out[i] = fused_act_element<double, double>(x, ref, bias, p, i);
}
"""


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    cxx = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    d = tmp_path_factory.mktemp("host_kernels")
    (d / "harness.cpp").write_text(_HARNESS)
    lib = d / "harness.so"
    cmd = [cxx, "-std=c++17", "-O1", "-shared", "-fPIC", f"-I{CUDA_DIR}", "harness.cpp"]
    subprocess.run([*cmd, "-o", str(lib)], cwd=d, check=True, capture_output=True, timeout=120)
    dll = ctypes.CDLL(str(lib))
    ptr, i64, f64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double
    dll.ufd.argtypes = [ptr, ptr, ptr, ptr]
    dll.ufd.restype = None
    dll.act.argtypes = [ptr, ptr, ptr, ptr, i64, i64, i64, f64, f64]
    dll.act.restype = None
    return dll


def _ptr(a: np.ndarray | None):
    return None if a is None else a.ctypes.data_as(ctypes.c_void_p)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(case=upfirdn_cases())
def test_upfirdn2d_kernel_arithmetic_on_host(host_kernels: ctypes.CDLL, case: tuple) -> None:
    shape, kshape, up, down, pads, seed = case
    x, k = _tensors(shape, kshape, seed)
    expected = ops.upfirdn2d(x, k, up=up, down=down, pad=pads, impl="ref").numpy()
    xa, ka = np.ascontiguousarray(x.numpy()), np.ascontiguousarray(k.numpy())
    y = np.zeros(expected.shape)
    n, c, h, w = shape
    args = [n * c, h, w, *expected.shape[2:], *up, *down, pads[0], pads[2], *kshape]
    host_kernels.ufd(_ptr(xa), _ptr(ka), _ptr(y), _ptr(np.array(args, dtype=np.int64)))
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4, 5)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_fused_act_kernel_arithmetic_on_host(host_kernels: ctypes.CDLL, shape, with_bias) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    g = rng.standard_normal(shape)
    b = rng.standard_normal(shape[1]) if with_bias else None
    slope, scale = 0.3, 1.7
    inner = int(np.prod(shape[2:]))
    out = np.zeros(shape)
    cargs = (x.size, shape[1], inner, slope, scale)
    host_kernels.act(_ptr(x), None, _ptr(b), _ptr(out), *cargs)
    np.testing.assert_allclose(out, naive_fused_leaky_relu(x, b, slope, scale), atol=1e-12)
    # gradient mode: x holds the incoming gradient, ref the forward input
    xt = torch.from_numpy(x).requires_grad_(True)
    bt = None if b is None else torch.from_numpy(b)
    (expected,) = torch.autograd.grad(
        ops.fused_leaky_relu(xt, bt, slope, scale, impl="ref"), xt, torch.from_numpy(g)
    )
    host_kernels.act(_ptr(g), _ptr(x), _ptr(b), _ptr(out), *cargs)
    np.testing.assert_allclose(out, expected.numpy(), atol=1e-12)


def _nvcc() -> str:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found")
    return nvcc


@pytest.mark.parametrize("source", ["upfirdn2d.cu", "fused_act.cu"])
def test_cuda_kernel_compiles(source: str, tmp_path: Path) -> None:
    """Kernel-only translation units (no torch headers): a real `nvcc -c`, a few seconds each."""
    cmd = [_nvcc(), "-c", "-std=c++17", "-O3", str(CUDA_DIR / source), "-o", str(tmp_path / "k.o")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "k.o").stat().st_size > 0
    print(f"nvcc -c {source}: {elapsed:.1f} s")


@pytest.mark.slow
@pytest.mark.parametrize("op", ["upfirdn2d", "fused_act"])
def test_cuda_extension_builds(op: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Full torch.utils.cpp_extension build (bindings with torch headers) and import."""
    _nvcc()
    pytest.importorskip("ninja")
    from torch.utils import cpp_extension

    def has_headers(home: str | None) -> bool:
        return bool(home) and (Path(home) / "include" / "cuda_runtime.h").is_file()

    if not has_headers(cpp_extension.CUDA_HOME):  # e.g. CUDA_HOME guessed from an nvcc wrapper
        home = next((h for h in ("/usr/local/cuda", "/opt/cuda") if has_headers(h)), None)
        if home is None:
            pytest.skip(f"no CUDA headers under CUDA_HOME={cpp_extension.CUDA_HOME}")
        monkeypatch.setattr(cpp_extension, "CUDA_HOME", home)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", os.environ.get("TORCH_CUDA_ARCH_LIST", "8.0"))
    t0 = time.perf_counter()
    module = _plugin.build_plugin(op)
    print(f"cpp_extension build of {op}: {time.perf_counter() - t0:.1f} s")
    assert hasattr(module, op)
    assert _plugin.build_directory(op).is_dir()


# --------------------------------------------------------------------------------------------
# CUDA kernels vs reference (GPU only)

GPU_CASES = [
    # (shape, kernel shape, up, down, pad)
    ((2, 3, 16, 16), (4, 4), 2, 1, (2, 1)),  # Upsample on RGB
    ((2, 64, 16, 16), (4, 4), 2, 1, (2, 1)),
    ((2, 64, 33, 33), (4, 4), 1, 1, (1, 1)),  # Blur after transposed conv
    ((1, 5, 17, 9), (3, 5), (2, 3), (1, 2), (1, -2, 3, 0)),
    ((3, 4, 12, 12), (4, 4), 1, 2, (1, 1)),  # downsample
    ((1, 2, 7, 5), (5, 2), 3, 2, (-1, 3)),
    ((1, 1, 1, 1), (1, 1), 1, 1, (0, 0)),
]


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("shape,kshape,up,down,pad", GPU_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_upfirdn2d_cuda_matches_ref(shape, kshape, up, down, pad, dtype) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).to("cuda", dtype)
    k = torch.randn(kshape, generator=g).cuda()
    y_ref = ops.upfirdn2d(x.double(), k, up=up, down=down, pad=pad, impl="ref")
    y = ops.upfirdn2d(x, k, up=up, down=down, pad=pad, impl="cuda")
    assert y.dtype == dtype
    tol = {torch.float16: 2e-2, torch.float32: 1e-5, torch.float64: 1e-10}[dtype]
    torch.testing.assert_close(y.double(), y_ref, rtol=tol, atol=tol)

    if dtype != torch.float16:
        xr = x.clone().requires_grad_(True)
        xc = x.clone().requires_grad_(True)
        yr = ops.upfirdn2d(xr, k, up=up, down=down, pad=pad, impl="ref")
        yc = ops.upfirdn2d(xc, k, up=up, down=down, pad=pad, impl="cuda")
        w = torch.randn_like(yr).requires_grad_(True)
        (gr,) = torch.autograd.grad((yr * w).sum(), xr, create_graph=True)
        (gc,) = torch.autograd.grad((yc * w).sum(), xc, create_graph=True)
        torch.testing.assert_close(gc, gr, rtol=tol, atol=tol)
        v = torch.randn_like(gr)  # double backward through the CUDA backward
        (ggr,) = torch.autograd.grad((gr * v).sum(), w)
        (ggc,) = torch.autograd.grad((gc * v).sum(), w)
        torch.testing.assert_close(ggc, ggr, rtol=tol, atol=tol)


@pytest.mark.gpu
@needs_cuda
def test_upfirdn2d_cuda_gradcheck() -> None:
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, device="cuda", requires_grad=True)
    k = torch.randn(3, 4, dtype=torch.float64, device="cuda")
    for up, down, pad in [(2, 1, (2, 1)), (1, 2, (1, -1, 0, 2)), ((3, 2), (2, 1), (0, 1))]:

        def fn(x_: torch.Tensor, up=up, down=down, pad=pad) -> torch.Tensor:
            return ops.upfirdn2d(x_, k, up=up, down=down, pad=pad, impl="cuda")

        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("shape", [(4, 7), (2, 8, 5, 3), (2, 3, 4, 5, 6)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("with_bias", [True, False])
def test_fused_leaky_relu_cuda_matches_ref(shape, dtype, with_bias) -> None:
    x = torch.randn(shape, device="cuda").to(dtype)
    b = torch.randn(shape[1], device="cuda") if with_bias else None
    y = ops.fused_leaky_relu(x, b, 0.15, 1.3, impl="cuda")
    y_ref = ops.fused_leaky_relu(x.double(), b, 0.15, 1.3, impl="ref")
    assert y.dtype == dtype
    tol = {torch.float16: 1e-2, torch.bfloat16: 3e-2}.get(dtype, 1e-6)
    torch.testing.assert_close(y.double(), y_ref, rtol=tol, atol=tol)
    if dtype in (torch.float32, torch.float64):
        xs = [x.clone().requires_grad_(True) for _ in range(2)]
        bs = [None if b is None else b.clone().requires_grad_(True) for _ in range(2)]
        outs = [
            ops.fused_leaky_relu(xs[i], bs[i], 0.15, 1.3, impl=impl)
            for i, impl in enumerate(("cuda", "ref"))
        ]
        w = torch.randn_like(outs[0])
        inputs = [[xs[i]] + ([] if b is None else [bs[i]]) for i in range(2)]
        grads = [torch.autograd.grad((outs[i] * w).sum(), inputs[i]) for i in range(2)]
        for gc, gr in zip(*grads):
            torch.testing.assert_close(gc, gr, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@needs_cuda
def test_fused_leaky_relu_cuda_gradgradcheck() -> None:
    x = torch.randn(2, 3, 4, dtype=torch.float64, device="cuda")
    x = (x.sign() * (x.abs() + 0.5)).requires_grad_(True)
    b = (0.1 * torch.randn(3, dtype=torch.float64, device="cuda")).requires_grad_(True)

    def fn(x_: torch.Tensor, b_: torch.Tensor) -> torch.Tensor:
        return ops.fused_leaky_relu(x_, b_, 0.3, 1.7, impl="cuda")

    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))
