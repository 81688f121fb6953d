"""ConceptCNN: shapes, non-negative bottleneck, hooks, seeding and the on-disk cache (tiny configs)."""

import numpy as np
import pytest
import torch

from img2tab.errors import Img2TabInputError
from img2tab.networks.cnn import (
    ConceptCNN,
    ConceptCNNConfig,
    concept_cnn_cache_key,
    load_or_train_concept_cnn,
    train_concept_cnn,
)

TINY = ConceptCNNConfig(size=16, widths=(4, 8), epochs=2, batch_size=8, seed=3)


def _data(n=24, size=16):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    y = np.arange(n) % 2
    x[y == 1, 0] = 0.9  # planted: class 1 has a saturated red channel
    return x, y


def test_default_shapes_and_nonnegative_bottleneck():
    m = ConceptCNN().eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        feats = m.features(x)
        assert feats.shape == (2, 128, 8, 8)
        assert float(feats.min()) >= 0.0
        assert m.pooled(x).shape == (2, 128)
        out = m(x)
        assert out.shape == (2, 2)
        torch.testing.assert_close(m.logit(x), out[:, 1] - out[:, 0])
        torch.testing.assert_close(m.classify_features(feats), out)


def test_layer4_hook_reads_and_differentiates():
    m = ConceptCNN(TINY).eval()
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    seen = {}
    handle = m.layer4.register_forward_hook(lambda mod, inp, out: seen.setdefault("a", out))
    logit = m.logit(x)
    handle.remove()
    a = seen["a"]
    assert a.shape == (3, 8, 4, 4)
    torch.testing.assert_close(a, m.features(x))
    # gradient of the logit w.r.t. the bottleneck equals the head's weight difference / (h*w)
    feats = m.features(x).detach().requires_grad_(True)
    out = m.classify_features(feats)
    (out[:, 1] - out[:, 0]).sum().backward()
    wdiff = (m.head.weight[1] - m.head.weight[0]).detach() / 16.0
    torch.testing.assert_close(feats.grad, wdiff[None, :, None, None].expand_as(feats))
    assert logit.shape == (3,)


def test_seeded_init_and_training_are_reproducible():
    a, b = ConceptCNN(TINY), ConceptCNN(TINY)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    x, y = _data()
    m1 = train_concept_cnn(x, y, TINY, progress=False)
    m2 = train_concept_cnn(x, y, TINY, progress=False)
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p, q)


def test_learns_planted_signal():
    x, y = _data(32)
    cfg = ConceptCNNConfig(size=16, widths=(4, 8), epochs=12, batch_size=16, lr=1e-2, seed=0)
    m = train_concept_cnn(x, y, cfg, progress=False)
    assert ((m.predict_logit(x) > 0) == y).mean() == 1.0


def test_cache_roundtrip(tmp_path):
    x, y = _data()
    m = load_or_train_concept_cnn(x, y, TINY, cache_dir=tmp_path, progress=False)
    key = concept_cnn_cache_key(x, y, TINY)
    folder = tmp_path / key
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [key]  # no temp folder left behind
    m2 = load_or_train_concept_cnn(x, y, TINY, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(m.predict_logit(x), m2.predict_logit(x))
    # a different config or different labels give a different key
    assert concept_cnn_cache_key(x, y, ConceptCNNConfig(size=16, widths=(4, 8), epochs=3)) != key
    assert concept_cnn_cache_key(x, 1 - y, TINY) != key


def test_bad_inputs():
    with pytest.raises(Img2TabInputError):
        ConceptCNNConfig(size=60)
    with pytest.raises(Img2TabInputError):
        ConceptCNN(TINY)(torch.zeros(1, 3, 32, 32))
    x, y = _data()
    with pytest.raises(Img2TabInputError):
        train_concept_cnn(x, y[:-1], TINY, progress=False)
    with pytest.raises(Img2TabInputError):
        train_concept_cnn(x, y + 5, TINY, progress=False)
