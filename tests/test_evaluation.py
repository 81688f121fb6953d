"""The evaluation pipeline and image figures on a tiny random inverter (numbers are meaningless
here; the test checks that every measurement runs and is reported)."""

from __future__ import annotations

import json

import numpy as np
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


def test_reconstruction_of_perfect_copies_is_infinite_psnr_free(tiny_inverter):
    x = ConceptWorld(size=32).sample(4, seed=0).to_tensor()
    stats, rec = reconstruction_quality(tiny_inverter, x)
    assert rec.shape == x.shape and stats["n"] == 4
    assert 0 < stats["psnr_mean"] < 40 and -1 <= stats["ssim_mean"] <= 1


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


def test_oracle_and_concept_validity(tiny_inverter):
    oracle, q = train_factor_oracle(32, n=200, epochs=1, n_test=50)
    assert set(q) == {f.name for f in FACTORS}
    w = torch.randn(3, tiny_inverter.generator.n_latent, 32)
    scale = np.ones(tiny_inverter.layout.total, np.float32)
    val = concept_validity(tiny_inverter, w, [0, 5], scale, oracle, strength=3.0)
    assert val["effect"].shape == (2, len(FACTORS))
    assert (val["effect"] >= 0).all() and val["n_valid"] in (0, 1, 2)


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
