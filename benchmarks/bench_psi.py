"""Ψ extraction cost on CPU for the full-size e4e + 1024 config-f generator (random weights).

Compares img2tab's encoder-only path (e4e -> W+ -> 26 affine layers) with the path of the official
code (e4e -> W+ -> full 1024 px synthesis while capturing every modulation output). Both run on
img2tab's own generator: the "official" path is the official *procedure* on img2tab's networks,
not the upstream code (img2tab's generator is itself faster than upstream's).

Usage::

    python benchmarks/bench_psi.py [--images 3] [--threads 2] [--model e4e_ffhq_encode.pt]

Prints a markdown table (seconds per image, speed-up) and the model file's sha256 (random weights
unless ``--model`` is given).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from _model import add_model_argument, sha256

from img2tab.networks.e4e import Encoder4Editing, EncoderConfig
from img2tab.networks.inverter import Inverter
from img2tab.networks.stylegan2 import Generator, GeneratorConfig


def _official_path(inv: Inverter, x: torch.Tensor) -> torch.Tensor:
    """Encode, synthesise the 1024 px image and capture the styles on the way (official way)."""
    G = inv.generator
    seen: list[torch.Tensor] = []
    hooks = [m.modulation.register_forward_hook(lambda _m, _i, o: seen.append(o))
             for m in G.modulated_layers()]
    try:
        G([inv.encode(x)], input_is_latent=True, randomize_noise=False)
    finally:
        for h in hooks:
            h.remove()
    return torch.cat(seen, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=3, help="images per path (batch 1 each)")
    ap.add_argument("--threads", type=int, default=2)
    add_model_argument(ap, "random weights of the full-size config-f e4e + generator")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    if args.model:
        import img2tab

        inv = img2tab.load_inverter(args.model).eval()
        model_line = f"model {args.model} sha256 {sha256(args.model)}"
    else:
        with torch.random.fork_rng(devices=[]):  # seeded random weights without touching the caller's RNG
            torch.manual_seed(0)
            inv = Inverter(Encoder4Editing(EncoderConfig()), Generator(GeneratorConfig(1024)),
                           torch.randn(18, 512)).eval()
        model_line = "model: random weights (torch seed 0), no file"
    build = time.perf_counter() - t0
    n_in = inv.input_size
    x = torch.rand(args.images, 3, n_in, n_in, generator=gen) * 2 - 1
    res = {}
    with torch.inference_mode():
        inv.psi(x[:1])  # warm-up
        for name, fn in (("encoder-only (img2tab)", inv.psi),
                         ("encode + synthesize (official)", lambda b: _official_path(inv, b))):
            times = []
            out = None
            for i in range(args.images):
                t = time.perf_counter()
                out = fn(x[i:i + 1])
                times.append(time.perf_counter() - t)
            res[name] = (sorted(times)[len(times) // 2], out)
        a = inv.psi(x[:1])
        b = _official_path(inv, x[:1])
    diff = (a - b).abs().max().item()
    t_ours = res["encoder-only (img2tab)"][0]
    t_off = res["encode + synthesize (official)"][0]
    print(model_line)
    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} threads, batch 1, fp32, model build {build:.1f} s")
    print()
    print("| path | median s / image | speed-up |")
    print("|---|---|---|")
    print(f"| encode + synthesize (official) | {t_off:.2f} | 1.00x |")
    print(f"| encoder-only (img2tab) | {t_ours:.2f} | {t_off / t_ours:.2f}x |")
    print()
    print(f"max |Ψ_ours - Ψ_official| = {diff:.3g} over {a.shape[1]} features")


if __name__ == "__main__":
    main()
