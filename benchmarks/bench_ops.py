"""CPU cost of img2tab.ops references vs naive implementations, at the generator's real uses.

upfirdn2d with the StyleGAN2 filter ``k = outer([1, 3, 3, 1]) / 64 * 4``:

- Upsample (up 2, pad (2, 1)): output 2H x 2W;
- Blur (pad (1, 1)): output (H - 1) x (W - 1) (after the transposed conv it maps 2H + 1 to 2H).

Baselines (our own code, representative of straightforward ports):

- ``native``: rosinality-``upfirdn2d_native``-style: materialise the zero-inserted, padded image
  (reshape + pad), fold channels into the batch and run a single-channel ``conv2d``;
- ``per-tap``: the same zero-inserted, padded image, then a Python loop over the kh x kw filter taps
  accumulating shifted slices.

fused_leaky_relu is compared with the unfused expression
``F.leaky_relu(x + b.view(1, -1, 1, 1), 0.2) * sqrt(2)`` (rosinality's CPU path), both under
``torch.no_grad()`` (inference) and as forward + backward (training).

Timings are the best of ``--repeats`` runs after one warm-up (other processes share the CPU).

Usage::

    python benchmarks/bench_ops.py --threads 2 --write benchmarks/RESULTS_ops.md
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from img2tab.ops import fused_leaky_relu, upfirdn2d


def _zero_insert_pad(x: torch.Tensor, up: int, p0: int, p1: int) -> torch.Tensor:
    n, c, h, w = x.shape
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    return F.pad(x, [p0, p1, p0, p1])


def naive_native(x: torch.Tensor, k: torch.Tensor, up: int, p0: int, p1: int) -> torch.Tensor:
    """Zero insertion + pad, channels folded into the batch, single-channel conv2d."""
    n, c, _, _ = x.shape
    xp = _zero_insert_pad(x, up, p0, p1)
    hp, wp = xp.shape[2:]
    y = F.conv2d(xp.reshape(n * c, 1, hp, wp), k.flip([0, 1])[None, None])
    return y.reshape(n, c, y.shape[2], y.shape[3])


def naive_per_tap(x: torch.Tensor, k: torch.Tensor, up: int, p0: int, p1: int) -> torch.Tensor:
    """Zero insertion + pad, then one shifted multiply-add per filter tap."""
    xp = _zero_insert_pad(x, up, p0, p1)
    kh, kw = k.shape
    oh, ow = xp.shape[2] - kh + 1, xp.shape[3] - kw + 1
    out = torch.zeros(*x.shape[:2], oh, ow, dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            out += k[kh - 1 - i, kw - 1 - j] * xp[:, :, i : i + oh, j : j + ow]
    return out


def unfused_leaky_relu(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x + b.view(1, -1, *([1] * (x.ndim - 2))), 0.2) * math.sqrt(2)


def best_ms(repeats: int, fn: Callable[..., object], *args: object, **kwargs: object) -> float:
    """Best wall time of ``fn(*args, **kwargs)`` in ms over ``repeats`` runs after a warm-up."""
    fn(*args, **kwargs)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3


def bench_upfirdn2d(shapes: list[tuple[int, ...]], repeats: int) -> list[str]:
    k1 = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = torch.outer(k1, k1) / 64 * 4
    rows = [
        "| op | input [N, C, H, W] | ours (ms) | native (ms) | per-tap (ms) "
        "| speed-up vs best naive | max abs diff |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, up, p0, p1 in [("Upsample (up 2, pad (2,1))", 2, 2, 1), ("Blur (pad (1,1))", 1, 1, 1)]:
        for shape in shapes:
            x = torch.randn(shape)
            with torch.no_grad():
                ours = upfirdn2d(x, k, up=up, pad=(p0, p1), impl="ref")
                diff = max(
                    (ours - naive_native(x, k, up, p0, p1)).abs().max().item(),
                    (ours - naive_per_tap(x, k, up, p0, p1)).abs().max().item(),
                )
                t_ours = best_ms(repeats, upfirdn2d, x, k, up=up, pad=(p0, p1), impl="ref")
                t_nat = best_ms(repeats, naive_native, x, k, up, p0, p1)
                t_tap = best_ms(max(1, repeats // 2), naive_per_tap, x, k, up, p0, p1)
            speedup = min(t_nat, t_tap) / t_ours
            rows.append(
                f"| {name} | {list(shape)} | {t_ours:.1f} | {t_nat:.1f} | {t_tap:.1f} "
                f"| {speedup:.1f}x | {diff:.1e} |"
            )
            print(rows[-1], flush=True)
    return rows


def _train_step(fn: Callable[..., torch.Tensor], x: torch.Tensor, b: torch.Tensor) -> None:
    fn(x, b).sum().backward()


def bench_fused(shapes: list[tuple[int, ...]], repeats: int) -> list[str]:
    rows = [
        "| op | input | mode | ours (ms) | unfused (ms) | speed-up | max abs diff |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for shape in shapes:
        x = torch.randn(shape)
        b = torch.randn(shape[1])
        with torch.no_grad():
            diff = (fused_leaky_relu(x, b, impl="ref") - unfused_leaky_relu(x, b)).abs().max()
            t_ours = best_ms(repeats, fused_leaky_relu, x, b, impl="ref")
            t_unf = best_ms(repeats, unfused_leaky_relu, x, b)
        rows.append(
            f"| fused_leaky_relu | {list(shape)} | no_grad | {t_ours:.1f} | {t_unf:.1f} "
            f"| {t_unf / t_ours:.1f}x | {diff.item():.1e} |"
        )
        print(rows[-1], flush=True)
        xg, bg = x.clone().requires_grad_(True), b.clone().requires_grad_(True)

        t_ours = best_ms(repeats, _train_step, fused_leaky_relu, xg, bg)
        t_unf = best_ms(repeats, _train_step, unfused_leaky_relu, xg, bg)
        rows.append(
            f"| fused_leaky_relu | {list(shape)} | fwd+bwd | {t_ours:.1f} | {t_unf:.1f} "
            f"| {t_unf / t_ours:.1f}x | - |"
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="small shapes only (smoke test)")
    ap.add_argument("--write", default=None, help="write the markdown report to this path")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.quick:
        shapes = [(1, 64, 16, 16), (2, 3, 32, 32)]
    else:
        shapes = [(1, 512, 64, 64), (4, 64, 256, 256), (4, 3, 256, 256)]
    ufd = bench_upfirdn2d(shapes, args.repeats)
    act = bench_fused(shapes[:2], args.repeats)
    env = (
        f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or 'cpu'}, "
        f"python {sys.version.split()[0]}, float32, best of {args.repeats} runs "
        f"(per-tap: best of {max(1, args.repeats // 2)})"
    )
    report = "\n".join(
        [
            "# img2tab.ops on CPU: references vs naive implementations",
            "",
            "Command: `OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_ops.py "
            f"--threads {args.threads} --repeats {args.repeats}"
            f"{' --quick' if args.quick else ''} --write benchmarks/RESULTS_ops.md`",
            "",
            f"Environment: {env}. The machine was shared with other jobs; numbers are indicative.",
            "",
            "## upfirdn2d (StyleGAN2 filter outer([1,3,3,1]) / 64 * 4)",
            "",
            "ours = `upfirdn2d(..., impl='ref')`: depthwise `conv2d` for up = 1; for up > 1 a "
            "depthwise `conv_transpose2d` (C > 8) or a polyphase depthwise `conv2d` + pixel "
            "shuffle (C <= 8). native = zero-inserted image, channels folded into the batch, "
            "single-channel `conv2d`; per-tap = Python loop over the 16 taps.",
            "",
            *ufd,
            "",
            "## fused_leaky_relu (slope 0.2, gain sqrt 2, bias over dim 1)",
            "",
            *act,
            "",
        ]
    )
    print()
    print(report)
    if args.write:
        with open(args.write, "w", encoding="utf-8") as fh:
            fh.write(report)


if __name__ == "__main__":
    main()
