"""Concept edits on a tiny generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from img2tab.edits import edit, edit_psi, render_psi


def test_edit_psi_shapes_and_values():
    psi = torch.randn(3, 10)
    before = psi.clone()
    scale = np.arange(1, 11, dtype=np.float32)
    out = edit_psi(psi, [2, 7], [-1.0, 0.5, 2.0], scale=scale)
    assert out.shape == (3, 2, 3, 10)
    assert torch.equal(psi, before)  # never in place
    for ci, k in enumerate([2, 7]):
        for si, lam in enumerate([-1.0, 0.5, 2.0]):
            diff = out[:, ci, si] - psi
            expected = torch.zeros_like(psi)
            expected[:, k] = float(lam * scale[k])
            torch.testing.assert_close(diff, expected)
    with pytest.raises(IndexError):
        edit_psi(psi, [10], [1.0])
    with pytest.raises(ValueError, match="empty"):
        edit_psi(psi, [], [1.0])


def test_edit_renders_in_one_batch(tiny_generator):
    G = tiny_generator
    w = torch.randn(2, G.n_latent, G.style_dim)
    res = edit(G, w, concepts=[0, G.layout.offsets[5] + 1], strengths=[-3.0, 3.0], batch_size=5)
    assert res.images.shape == (2, 2, 2, 3, 32, 32)
    assert res.source.shape == (2, 3, 32, 32)
    with torch.no_grad():
        ref = G.synthesize(G.styles(w))
        single = G.synthesize(res.edited_psi[1, 1, 0][None])
    torch.testing.assert_close(res.source, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(res.images[1, 1, 0][None], single, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(res.images[0, 0, 0], res.images[0, 0, 1])
    # Ψ input works too, and gives the same result
    res2 = edit(G, res.psi, concepts=res.concepts, strengths=res.strengths)
    torch.testing.assert_close(res2.images, res.images)
    with pytest.raises(ValueError, match="expected W"):
        edit(G, torch.zeros(2, 5), [0])
    assert render_psi(G, res.psi[:0]).shape == (0, 3, 32, 32)
