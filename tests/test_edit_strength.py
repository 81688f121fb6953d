"""Edit strength: analytic answers on a planted generator / encoder, groups, a real tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from img2tab.edit_strength import (
    EditStrength,
    class_directions,
    concept_groups,
    measure_edit_strength,
    psi_scale,
)
from img2tab.errors import Img2TabInputError


class _PlantedGenerator(nn.Module):
    """Ψ [B, 3] -> 8x8 RGB: feature 0 sets one pixel, feature 1 a 4x4 block, feature 2 nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def synthesize(self, psi: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(psi.shape[0], 3, 8, 8)
        out[:, :, 0, 0] = 0.1 * psi[:, 0:1]
        out[:, :, 4:8, 4:8] = 0.05 * psi[:, 1].view(-1, 1, 1, 1)
        return out


class _PlantedInverter:
    """Reads features 0 and 1 back from the pixels exactly; feature 2 is lost (always 0)."""

    def __init__(self, psi: np.ndarray) -> None:
        self.generator = _PlantedGenerator()
        self._psi = psi

    def encode_psi(self, images, batch_size=16, with_w=True, **_):
        if images is _SOURCE:
            return self._psi.copy(), None
        x = torch.as_tensor(images)
        psi = np.zeros((len(x), 3), np.float32)
        psi[:, 0] = (x[:, 0, 0, 0] / 0.1).numpy()
        psi[:, 1] = (x[:, 0, 4, 4] / 0.05).numpy()
        return psi, None


_SOURCE = object()


class _Logistic:
    """p(class 1) = sigmoid(Ψ0 + Ψ2)."""

    def predict_proba(self, X):
        z = X[:, 0].astype(np.float64) + X[:, 2]
        p1 = 1.0 / (1.0 + np.exp(-z))
        return np.stack([1 - p1, p1], 1)


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_planted_metrics_match_the_analytic_values():
    rng = np.random.default_rng(0)
    psi = rng.normal(size=(6, 3)).astype(np.float32)
    inv = _PlantedInverter(psi)
    lam = 2.0
    res = measure_edit_strength(inv, _SOURCE, _Logistic(), {"a": [0, 1], "b": [2, 0]},
                                scale="sd", strength=lam, progress=False,
                                directions=np.array([1.0, 1.0, 0.0]))
    assert res.concepts == (0, 1, 2)
    sd = psi.astype(np.float64).std(0)
    # pixels: feature 0 moves 3 values of one pixel by 0.1*lam*sd0 (in [-1, 1] units, /2 for [0, 1])
    np.testing.assert_allclose(res.value("mean_abs_dx", 0), 0.1 * lam * sd[0] / 2 * 3 / (3 * 64), rtol=1e-5)
    np.testing.assert_allclose(res.value("mean_abs_dx", 1), 0.05 * lam * sd[1] / 2 * 48 / 192, rtol=1e-5)
    assert res.value("mean_abs_dx", 2) == 0.0
    assert res.value("frac_changed", 0) == pytest.approx(1 / 64)
    assert res.value("frac_changed", 1) == pytest.approx(16 / 64)
    assert res.value("locality", 0) == pytest.approx(1.0)          # all change in one pixel
    assert res.value("locality", 1) == pytest.approx(6 / 16)       # top 6 of 64 pixels hold 6/16
    assert np.isnan(res.value("locality", 2))
    # classifier: the round trip keeps Ψ0, loses Ψ2, so the measured class is argmax sigmoid(Ψ0)
    p_rt = _sig(psi[:, 0].astype(np.float64))
    cls1 = p_rt > 0.5
    def pc(p1):
        return np.where(cls1, p1, 1 - p1)
    exp_rt = np.mean([np.abs(pc(_sig(psi[:, 0] + s * lam * sd[0])) - pc(p_rt)) for s in (-1, 1)])
    assert res.value("mean_abs_dp", 0) == pytest.approx(exp_rt, rel=1e-5)
    # toward the other class: +lam for images predicted 0 (p1 rises), -lam for those predicted 1
    moved = _sig(psi[:, 0] + np.where(cls1, -1, 1) * lam * sd[0])
    exp_toward = np.mean(np.where(cls1, (1 - moved) - (1 - p_rt), moved - p_rt))
    assert exp_toward > 0.05
    assert res.value("dp_toward", 0) == pytest.approx(exp_toward, rel=1e-5)
    assert res.value("dp_toward", 1) == 0.0 and np.isnan(res.value("dp_toward", 2))
    flips = np.mean([(_sig(psi[:, 0] + s * lam * sd[0]) > 0.5) != cls1 for s in (-1, 1)])
    assert res.value("flip_rate", 0) == pytest.approx(flips)
    # direct Ψ: sigmoid(Ψ0 + Ψ2) moved by the edit of Ψ2, which the round trip cannot carry
    a = psi[:, 0].astype(np.float64) + psi[:, 2]
    exp_psi = np.mean([np.abs(pc(_sig(a + s * lam * sd[2])) - pc(_sig(a))) for s in (-1, 1)])
    assert res.value("mean_abs_dp_psi", 2) == pytest.approx(exp_psi, rel=1e-5)
    assert exp_psi > 0.05
    assert res.value("mean_abs_dp", 2) == 0.0 and res.value("flip_rate", 2) == 0.0
    assert res.value("mean_abs_dp", 1) == 0.0  # feature 1 changes pixels the classifier ignores
    summ = res.summary()
    assert summ["a"]["mean_abs_dp"] == pytest.approx((exp_rt + 0.0) / 2, rel=1e-5)
    assert summ["b"]["n_concepts"] == 2.0


def test_class_index_and_raw_scale():
    rng = np.random.default_rng(1)
    psi = rng.normal(size=(4, 3)).astype(np.float32)
    inv = _PlantedInverter(psi)
    res = measure_edit_strength(inv, _SOURCE, _Logistic(), {"g": [0]}, scale=None, strength=1.5,
                                class_index=1, progress=False)
    p = _sig(psi[:, 0].astype(np.float64))
    exp = np.mean([np.abs(_sig(psi[:, 0] + s * 1.5) - p) for s in (-1, 1)])
    assert res.value("mean_abs_dp", 0) == pytest.approx(exp, rel=1e-5)
    assert res.scale_kind == "raw"
    with pytest.raises(Img2TabInputError, match="class_index"):
        measure_edit_strength(inv, _SOURCE, _Logistic(), {"g": [0]}, class_index=2, progress=False)
    with pytest.raises(Img2TabInputError, match="strength"):
        measure_edit_strength(inv, _SOURCE, _Logistic(), {"g": [0]}, strength=float("nan"))
    with pytest.raises(Img2TabInputError, match="groups"):
        measure_edit_strength(inv, _SOURCE, _Logistic(), {})
    with pytest.raises(Img2TabInputError, match="concept indices"):
        measure_edit_strength(inv, _SOURCE, _Logistic(), {"g": [3]}, progress=False)


def test_class_directions():
    x = np.array([[0.0, 5.0, 1.0], [1.0, 4.0, 1.0], [2.0, 3.0, 1.0], [3.0, 2.0, 1.0]])
    np.testing.assert_array_equal(class_directions(x, np.array([0, 0, 1, 1])), [1, -1, 0])
    with pytest.raises(Img2TabInputError, match="2 classes"):
        class_directions(x, np.array([0, 1, 2, 2]))


def test_psi_scale_known_values():
    x = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
    np.testing.assert_allclose(psi_scale(x), [np.std([0, 2, 4]), 0.0])
    np.testing.assert_allclose(psi_scale(x, "range"), [3.96 - 0.04, 0.0])  # linear interpolation
    with pytest.raises(Img2TabInputError, match="kind"):
        psi_scale(x, "iqr")
    with pytest.raises(Img2TabInputError, match="N >= 2"):
        psi_scale(x[:1])


def test_concept_groups_planted():
    w1 = np.array([0.1, 0.9, 0.5, 0.0, 0.7, 0.2, 0.3, 0.05])
    imp = np.array([5.0, 0, 0, 9.0, 0, 1.0, 0, 0])
    g = concept_groups(w1, imp, top_k=2, n_random=3, seed=3)
    assert g["w1"] == [1, 4] and g["importance"] == [3, 0]
    assert len(g["random"]) == 3 and not set(g["random"]) & {0, 1, 3, 4}
    assert g == concept_groups(w1, imp, top_k=2, n_random=3, seed=3)  # seeded, reproducible
    g2 = concept_groups(w1, None, top_k=2, n_random=0, candidates=[0, 2, 5, 6])
    assert g2 == {"w1": [2, 6]}
    with pytest.raises(Img2TabInputError, match="importance must be"):
        concept_groups(w1, imp[:3])


def test_real_tiny_model_and_json(tiny_inverter, tmp_path):
    inv = tiny_inverter
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    d = inv.layout.total

    class _Half:
        def predict_proba(self, X):
            p1 = 1 / (1 + np.exp(-(X[:, 0] - X[:, 0].mean())))
            return np.stack([1 - p1, p1], 1)

    res = measure_edit_strength(inv, images, _Half(), {"w1": [0, d - 1], "random": [5]},
                                strength=3.0, batch_size=2, progress=False)
    assert isinstance(res, EditStrength) and res.n_images == 3
    assert res.layer_names[0].startswith("L0c0@")
    assert res.value("mean_abs_dx", 0) > 0 and res.value("mean_abs_dp_psi", 5) == 0.0
    out = json.loads(res.save(tmp_path / "es.json").read_text())
    assert set(out["summary"]) == {"w1", "random"}
    assert out["concepts"][0]["groups"] == ["w1"]
    assert "| w1 | 2 |" in res.markdown()
