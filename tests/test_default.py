"""The shipped default model: loads through the public loaders and reconstructs concept-world
images well."""

from __future__ import annotations

import numpy as np
import torch

import img2tab
from img2tab.default import default_model_path
from img2tab.world import ConceptWorld


def test_default_model_loads_and_reconstructs():
    path = default_model_path()
    assert path.stat().st_size < 20 * 2**20  # the shipped weights stay under 20 MB
    inv = img2tab.load_default()
    # the same file loads through the generic loaders used for official checkpoints
    assert img2tab.load_inverter(path).encoder.config == inv.encoder.config
    G = img2tab.load_generator(path)
    assert G.config == inv.generator.config
    size = inv.generator.size
    # skin tones spread over the whole range: the lightest ones once failed (fp16 export bug)
    tones = np.linspace(0.0, 1.0, 16)
    x = ConceptWorld(size=size).sample(16, seed=4242, skin_tone=tones).to_tensor()
    with torch.no_grad():
        rec = inv.reconstruct(x).clamp(-1, 1)
        psi = inv.psi(x)
    mse = ((rec - x) / 2).square().flatten(1).mean(1)
    psnr = 10 * torch.log10(1 / mse)
    assert psnr.mean() > 27.0, psnr
    assert psnr.min() > 22.0, psnr
    assert psi.shape == (16, inv.layout.total)
    assert torch.isfinite(psi).all()
