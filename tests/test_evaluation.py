"""The evaluation pipeline: known answers for its measurements (identity and offset
reconstructions, a planted channel in concept validity, planted factors in the probes), and the
whole pipeline and its figures on a tiny random inverter."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from img2tab.gallery import plot_edit_grid, plot_effect_matrix, plot_w1_gallery
from img2tab.world import FACTORS, ConceptWorld
from img2tab.world.evaluation import (
    EvaluationConfig,
    concept_validity,
    factor_probes,
    reconstruction_quality,
    run_evaluation,
    train_factor_oracle,
)


class _Copy:
    """An inverter stub whose reconstruction is its input plus a constant offset."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def reconstruct(self, x):
        return x + self.offset


def test_reconstruction_quality_known_answers():
    x = ConceptWorld(size=32).sample(4, seed=0).to_tensor()
    stats, rec = reconstruction_quality(_Copy(), x)
    assert rec.shape == x.shape and stats["n"] == 4
    assert stats["psnr_mean"] == float("inf") and stats["psnr_min"] == float("inf")
    assert stats["ssim_mean"] == pytest.approx(1.0, abs=1e-6)
    # an offset of 0.2 in [-1, 1] is 0.1 in [0, 1]: MSE 0.01, PSNR exactly 20 dB (no clipping here)
    mid = x.clamp(-0.5, 0.5)
    stats, _ = reconstruction_quality(_Copy(0.2), mid)
    assert stats["psnr_mean"] == pytest.approx(20.0, abs=1e-4)
    assert stats["psnr_min"] == pytest.approx(20.0, abs=1e-4)


def test_factor_probes_recover_planted_factors():
    rng = np.random.default_rng(0)
    world = ConceptWorld(size=32)
    tr, te = world.sample(400, seed=1), world.sample(200, seed=2)

    def fake_psi(f):
        cols = [np.asarray(f[x.name], float) if not x.is_categorical else
                np.eye(max(x.n_categories, 2))[np.asarray(f[x.name])].T for x in FACTORS]
        mat = np.column_stack([c.T if c.ndim == 2 else c for c in cols])
        return np.hstack([mat, rng.normal(size=(len(mat), 5))]).astype(np.float32)

    rows = factor_probes(fake_psi(tr.factors), tr.factors, fake_psi(te.factors), te.factors)
    assert [r["factor"] for r in rows] == [f.name for f in FACTORS]
    assert all(r["passed"] for r in rows), rows


class _PixelGenerator(torch.nn.Module):
    """Renders Ψ [B, 4] as flat 8 px images: concept 0 sets the red channel, 1 green, 2 blue."""

    size = 8
    n_latent, style_dim = 1, 4

    def __init__(self) -> None:
        super().__init__()
        from img2tab.networks.layout import StyleSpaceLayout

        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.layout = StyleSpaceLayout.flat(4)

    def synthesize(self, psi):
        return psi[:, :3, None, None].expand(-1, 3, 8, 8).clone()


class _PixelOracle:
    """Reads smile from the mean red value and eye size from the mean green value; the rest is fixed."""

    def read(self, images):
        n = images.shape[0]
        out = {}
        for f in FACTORS:
            if f.is_categorical and f.n_categories > 2:
                out[f.name] = np.full((n, f.n_categories), 1.0 / f.n_categories)
            else:
                out[f.name] = np.zeros(n)
        out["smile"] = images[:, 0].mean((1, 2)).numpy().astype(np.float64)
        out["eye_size"] = images[:, 1].mean((1, 2)).numpy().astype(np.float64)
        return out


def test_concept_validity_finds_the_planted_channel():
    class Inv:
        generator = _PixelGenerator()

    psi = torch.zeros(3, 4)
    scale = np.array([0.5, 0.25, 1.0, 1.0], np.float32)
    val = concept_validity(Inv(), psi, [0, 1], scale, _PixelOracle(), class_factor="smile", strength=2.0)
    names = [f.name for f in FACTORS]
    expected = np.zeros((2, len(FACTORS)))
    expected[0, names.index("smile")] = 2 * 2.0 * 0.5       # concept 0 moves smile by ±2 * 0.5
    expected[1, names.index("eye_size")] = 2 * 2.0 * 0.25  # concept 1 moves eye size by ±2 * 0.25
    np.testing.assert_allclose(val["effect"], expected, atol=1e-6)
    np.testing.assert_allclose(val["signed_class_shift"], [2.0, 0.0], atol=1e-6)
    assert val["moves_class_most"].tolist() == [True, False] and val["n_valid"] == 1


def test_oracle_trains_and_reads_every_factor(tiny_inverter):
    oracle, q = train_factor_oracle(32, n=200, epochs=1, n_test=50)
    assert set(q) == {f.name for f in FACTORS}
    read = oracle.read(torch.zeros(2, 3, 32, 32))
    assert set(read) == {f.name for f in FACTORS}


def test_run_evaluation_writes_everything(tmp_path, tiny_inverter):
    cfg = EvaluationConfig(n_recon=16, n_train=80, n_test=40, n_oracle=120, oracle_epochs=1,
                           cnn_epochs=1, n_edit=4, n_spurious_train=80, n_spurious_test=40,
                           extra_debug_tasks=(("eye_size", 60),), batch_size=32)
    from img2tab.tabular import ConceptClassifier

    clf = ConceptClassifier(params={"n_estimators": 10, "max_depth": 2, "n_jobs": 1}, device="cpu")
    m = run_evaluation(tiny_inverter, tmp_path, cfg, progress=False, classifier=clf)
    for name in ("metrics.json", "report.md", "reconstructions.png", "concept_effects.png"):
        assert (tmp_path / name).exists(), name
    def no_constants(name):
        raise AssertionError(f"metrics.json is not strict JSON: {name}")

    saved = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=no_constants)
    assert saved["reconstruction"]["n"] == 16
    assert len(saved["probes"]) == len(FACTORS)
    assert 0 <= m["classification"]["pixel_cnn"] <= 1
    assert len(saved["concept_validity"]["concepts"]) == 5
    dbg = saved["debugging"]
    assert {"before", "fixed", "after", "ceiling", "gain_decorrelated", "search"} <= set(dbg)
    assert dbg["search"][0]["ratio"] is None  # "exclude nothing" candidate, inf stored as null
    assert dbg["n_train"] == 80 and dbg["class_factor"] == "smile"
    extra = saved["debugging_extra"]
    assert [(e["class_factor"], e["n_train"]) for e in extra] == [("eye_size", 60)]
    for d in (dbg, *extra):
        for variant in ("before", "fixed", "after", "ceiling"):
            assert 0 <= d[variant]["decorrelated_worst_group"] <= d[variant]["decorrelated"] <= 1
    report = (tmp_path / "report.md").read_text()
    assert "| reconstruction PSNR" in report and "| eye_size | background_hue | 60 |" in report


def test_gallery_figures():
    src = torch.rand(3, 32, 32) * 2 - 1
    edits = torch.rand(2, 3, 3, 32, 32) * 2 - 1
    fig = plot_edit_grid(src, edits, ["a", "b"], [-2, 0, 2], 0.4, np.full((2, 3), 0.5))
    assert len(fig.axes) == 8
    fig = plot_w1_gallery(torch.rand(2, 3, 32, 32), torch.rand(2, 4, 2, 3, 32, 32), list("abcd"),
                          [-2, 2])
    assert len(fig.axes) == 4 * 6
    fig = plot_effect_matrix(np.random.default_rng(0).random((3, 4)), list("abc"), list("wxyz"))
    assert fig.axes
