"""Shared fixtures: tiny randomly initialised networks and deterministic seeds."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def tiny_generator():
    """A 32 px generator with small widths and style_dim 32 (random weights, noise != 0)."""
    from img2tab.networks.stylegan2 import Generator, GeneratorConfig

    torch.manual_seed(0)
    cfg = GeneratorConfig(size=32, style_dim=32, n_mlp=2,
                          channels=((4, 32), (8, 32), (16, 16), (32, 8)))
    G = Generator(cfg)
    with torch.no_grad():
        for m in G.modules():
            if m.__class__.__name__ == "NoiseInjection":
                m.weight.fill_(0.1)
    return G.eval()


@pytest.fixture
def tiny_inverter(tiny_generator):
    """An e4e encoder (64 px input, narrow IR-SE trunk) paired with ``tiny_generator``."""
    from img2tab.networks.e4e import EncoderConfig, build_encoder
    from img2tab.networks.inverter import Inverter

    torch.manual_seed(1)
    cfg = EncoderConfig(stylegan_size=32, style_dim=32, input_size=64, widths=(8, 16, 24, 32),
                        units=(1, 2, 2, 1), stem=8)
    enc = build_encoder(cfg)
    latent_avg = torch.randn(tiny_generator.n_latent, 32) * 0.1
    return Inverter(enc, tiny_generator, latent_avg).eval()
