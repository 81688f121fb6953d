"""Encoding throughput settings of ``Inverter.encode_psi`` on CPU (official-size e4e, random weights).

Times seconds per image for batch size, ``channels_last`` memory format, torch thread count and,
with ``--compile``, ``torch.compile`` (compile time reported separately), interleaving the
settings so that a changing machine load hits them alike. Ψ of every setting is compared with
the default setting's (max abs difference).

Usage::

    python benchmarks/bench_encode_settings.py --images 4 --json runs/encode_settings.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from img2tab.networks.e4e import Encoder4Editing, EncoderConfig
from img2tab.networks.inverter import Inverter
from img2tab.networks.stylegan2 import Generator, GeneratorConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds (best of)")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    inv = Inverter(Encoder4Editing(EncoderConfig()), Generator(GeneratorConfig(1024)),
                   torch.randn(18, 512)).eval()
    x = torch.rand(args.images, 3, 256, 256) * 2 - 1
    settings = [
        {"name": "batch 1, 2 threads", "batch": 1, "threads": 2, "cl": False},
        {"name": "batch 4, 2 threads", "batch": 4, "threads": 2, "cl": False},
        {"name": "batch 1, 1 thread", "batch": 1, "threads": 1, "cl": False},
        {"name": "batch 1, 2 threads, channels_last", "batch": 1, "threads": 2, "cl": True},
        {"name": "batch 4, 2 threads, channels_last", "batch": 4, "threads": 2, "cl": True},
    ]
    ref = None
    res = {s["name"]: {"s_per_image": float("inf")} for s in settings}
    with torch.inference_mode():
        torch.set_num_threads(2)
        ref, _ = inv.encode_psi(x[:1], batch_size=1, with_w=False)  # warm-up and reference
        for _ in range(args.rounds):
            for s in settings:
                torch.set_num_threads(s["threads"])
                inv.encoder.to(memory_format=torch.channels_last if s["cl"] else torch.contiguous_format)
                xi = x.contiguous(memory_format=torch.channels_last) if s["cl"] else x
                t = time.perf_counter()
                psi, _ = inv.encode_psi(xi, batch_size=s["batch"], with_w=False)
                dt = (time.perf_counter() - t) / args.images
                r = res[s["name"]]
                r["s_per_image"] = min(r["s_per_image"], dt)
                r["max_abs_diff"] = float(abs(psi[:1] - ref).max())
                print(s["name"], f"{dt:.2f} s/img", os.getloadavg(), flush=True)
        inv.encoder.to(memory_format=torch.contiguous_format)
        if args.compile:
            torch.set_num_threads(2)
            enc = torch.compile(inv.encoder)

            def psi_compiled(xb: torch.Tensor) -> torch.Tensor:
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
            res["batch 1, 2 threads, torch.compile (encoder)"] = {
                "s_per_image": best, "max_abs_diff": float(abs(first.numpy() - ref).max())}
    res["load_avg_end"] = os.getloadavg()
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
