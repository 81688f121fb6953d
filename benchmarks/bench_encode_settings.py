"""Encoding throughput settings of ``Inverter.encode_psi`` on CPU (official-size e4e, random weights).

Times seconds per image of the encode path before and after this benchmark's changes, and of
the settings that were candidates, interleaving the settings over ``--rounds`` rounds (best of)
so that a changing machine load hits them alike:

- ``before``: NCHW batches and the official ``MaxPool2d(1, s)`` shortcut (the encode path until
  2026-12-01);
- ``now``: ``encode_psi``'s defaults (channels-last batches on CPU, the ``Subsample`` shortcut);
- batch size and torch thread count for both, and with ``--compile``, ``torch.compile`` of the
  encoder (compile time reported separately);
- bfloat16 autocast, for reference only: it is not within the 1e-5 the encode path keeps.

Ψ of every setting is compared with the ``before`` batch-1 Ψ (max abs difference). It also
reports the encoder's FLOPs per image (``torch.utils.flop_counter``) and the machine's float32
matrix-multiply rate at the same thread count (a 2,048-square ``torch.mm``), so that the
encoder's achieved FLOP rate can be read against what the cores can do.

Usage::

    python benchmarks/bench_encode_settings.py --images 8 --rounds 3 \
        --json benchmarks/results/encode_settings.json
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from _results import report

from img2tab.networks.e4e import BottleneckIR, Encoder4Editing, EncoderConfig, Subsample
from img2tab.networks.inverter import Inverter
from img2tab.networks.stylegan2 import Generator, GeneratorConfig


def _shortcuts(encoder: torch.nn.Module, official: bool) -> None:
    """Swap the identity shortcuts between ``MaxPool2d(1, s)`` (official) and ``Subsample(s)``."""
    for m in encoder.modules():
        if isinstance(m, BottleneckIR):
            sc = m.shortcut_layer
            if official and isinstance(sc, Subsample):
                m.shortcut_layer = torch.nn.MaxPool2d(1, sc.stride)
            elif not official and isinstance(sc, torch.nn.MaxPool2d):
                m.shortcut_layer = Subsample(int(sc.stride))


def _mm_gflops(threads: int, n: int = 2048, reps: int = 5) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best of)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the 2-thread settings")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    inv = Inverter(Encoder4Editing(EncoderConfig()), Generator(GeneratorConfig(1024)),
                   torch.randn(18, 512)).eval()
    x = torch.rand(args.images, 3, 256, 256) * 2 - 1
    t_, n_ = args.threads, args.images
    settings = [
        {"name": f"before: batch 1, {t_} threads", "batch": 1, "threads": t_, "now": False},
        {"name": f"before: batch {n_}, {t_} threads", "batch": n_, "threads": t_, "now": False},
        {"name": "before: batch 1, 1 thread", "batch": 1, "threads": 1, "now": False},
        {"name": f"now: batch 1, {t_} threads", "batch": 1, "threads": t_, "now": True},
        {"name": f"now: batch {n_}, {t_} threads", "batch": n_, "threads": t_, "now": True},
        {"name": "now: batch 1, 1 thread", "batch": 1, "threads": 1, "now": True},
        {"name": f"now + bfloat16 autocast (not exact): batch {n_}, {t_} threads", "batch": n_, "threads": t_,
         "now": True, "bf16": True},
    ]
    res: dict = {"command": "python benchmarks/bench_encode_settings.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" if not isinstance(v, bool) else f"--{k}" for k, v in vars(args).items()
        if v not in (None, False)), "load_avg_start": os.getloadavg(), "cpus": os.cpu_count()}
    res["settings"] = {s["name"]: {"s_per_image": float("inf")} for s in settings}
    with torch.inference_mode():
        torch.set_num_threads(t_)
        _shortcuts(inv.encoder, official=True)
        ref, _ = inv.encode_psi(x[:1], batch_size=1, with_w=False, channels_last=False)
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as fc:
            inv.encoder(inv.preprocess(x[:1]))
        res["encoder_gflop_per_image"] = fc.get_total_flops() / 1e9
        for r in range(args.rounds):
            for s in settings:
                torch.set_num_threads(s["threads"])
                _shortcuts(inv.encoder, official=not s["now"])
                t = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.get("bf16", False)):
                    psi, _ = inv.encode_psi(x, batch_size=s["batch"], with_w=False,
                                            channels_last=None if s["now"] else False)
                dt = (time.perf_counter() - t) / args.images
                out = res["settings"][s["name"]]
                out["s_per_image"] = min(out["s_per_image"], dt)
                out["max_abs_diff"] = float(abs(psi[:1] - ref).max())
                print(f"round {r}: {s['name']}: {dt:.3f} s/img, load {os.getloadavg()}", flush=True)
        res["mm_gflops"] = {str(n): _mm_gflops(n) for n in sorted({1, t_})}
        _shortcuts(inv.encoder, official=False)
        if args.compile:
            torch.set_num_threads(t_)
            enc = torch.compile(inv.encoder)

            def psi_compiled(xb: torch.Tensor) -> torch.Tensor:
                xb = xb.contiguous(memory_format=torch.channels_last)
                w = enc(inv.preprocess(xb))
                return inv.decoder.psi(w + inv.latent_avg if inv.latent_avg is not None else w)

            t = time.perf_counter()
            first = psi_compiled(x[:1])
            res["compile_first_call_s"] = time.perf_counter() - t
            best = float("inf")
            for _ in range(args.rounds):
                t = time.perf_counter()
                for i in range(args.images):
                    psi_compiled(x[i:i + 1])
                best = min(best, (time.perf_counter() - t) / args.images)
            res["settings"][f"now + torch.compile: batch 1, {t_} threads"] = {
                "s_per_image": best, "max_abs_diff": float(abs(first.numpy() - ref).max())}
    base = res["settings"][f"before: batch 1, {t_} threads"]["s_per_image"]
    for v in res["settings"].values():
        v["speedup_vs_before_batch1"] = base / v["s_per_image"]
        v["achieved_gflops"] = res["encoder_gflop_per_image"] / v["s_per_image"]
    res["load_avg_end"] = os.getloadavg()
    report(res, args.json)


if __name__ == "__main__":
    main()
