"""Ground-truth metrics on planted cases with known answers."""

import numpy as np
import pytest
import torch

from img2tab.errors import Img2TabInputError
from img2tab.explainers import OracleConceptExplainer
from img2tab.world import FACTOR_NAMES, render, sample_factors
from img2tab.world import gt_metrics as gm
from img2tab.world._world import _to_tensor
from img2tab.world.groundtruth import FactorLookup, factor_grid, factor_masks

SMILE = FACTOR_NAMES.index("smile")
BG = FACTOR_NAMES.index("background_hue")


def _smile_model(lookup):
    """A 'model' that reads exactly one factor: logit = 10 * smile (via the exact factor lookup)."""
    def logit(images):
        f, found = lookup.get(images)
        assert found.all()
        return 10.0 * f["smile"]
    return logit


def _lookup_with_counterfactuals(factors, size, n_values):
    lookup = FactorLookup()
    lookup.add(render(factors, size), factors)
    for _, _, cf, imgs in gm.counterfactual_sweep(factors, size, n_values):
        lookup.add(imgs, cf)
    return lookup


def test_true_reliance_of_a_one_factor_model_is_exact():
    size, nv = 32, 4
    f = sample_factors(6, seed=0)
    lookup = _lookup_with_counterfactuals(f, size, nv)
    R = gm.true_reliance(_smile_model(lookup), f, size, n_values=nv)
    expected = np.zeros(8)
    grid = factor_grid("smile", nv)
    expected[SMILE] = np.mean(10 * np.abs(grid[:, None] - f["smile"][None]))
    np.testing.assert_allclose(R, expected, rtol=1e-12, atol=1e-12)


def test_oracle_method_on_one_factor_model_gets_perfect_scores():
    """Concepts = the factors, evidence = the factor mask: localisation 1, pointing 1, ρ = 1, CFA 1."""
    size, nv = 32, 4
    f = sample_factors(6, seed=1, head_tilt=0.0)
    lookup = _lookup_with_counterfactuals(f, size, nv)
    model = _smile_model(lookup)
    x = _to_tensor(render(f, size))
    exp = OracleConceptExplainer(model, lookup, size=size, n_values=nv, n_fit=6).fit(x, f["smile"] > 0)
    assert exp.concept_names()[0] == "smile"
    base = exp.concept_scores(x)
    cf_scores = {k: [] for k in FACTOR_NAMES}
    cf_logits = {k: [] for k in FACTOR_NAMES}
    for name, _, _, imgs in gm.counterfactual_sweep(f, size, nv):
        cf_scores[name].append(exp.concept_scores(imgs))
        cf_logits[name].append(exp.model_logit(imgs))
    R = gm.reliance_from_logits(exp.model_logit(x), {k: np.stack(v) for k, v in cf_logits.items()})
    P = gm.response_matrix(base, {k: np.stack(v) for k, v in cf_scores.items()})
    # each concept responds to its own factor only: P is the permutation matrix of the ranking
    np.testing.assert_allclose(P, np.eye(8)[exp.factor_order_], atol=1e-12)
    assert gm.cfa_at_k(P, "smile", 1) == 1.0
    C = gm.claimed_reliance(P, exp.importances(), k=8)
    np.testing.assert_allclose(C, R, rtol=1e-12)
    agree = gm.reliance_agreement(C, R, spurious="background_hue")
    assert agree["reliance_spearman"] == pytest.approx(1.0)
    assert agree["reliance_top1"] == 1.0
    assert agree["reveals_shortcut"] == 1.0  # ties in R and Ĉ rank the background equally
    masks = factor_masks(f, size, ["smile", "background_hue"], n_values=nv)
    loc = gm.localisation(exp.evidence(x), masks["smile"], masks["background_hue"])
    assert loc["localisation"] == 1.0 and loc["pointing"] == 1.0 and loc["localisation_spurious"] == 0.0
    # the intervention re-renders smile on the other side: every prediction flips, all semantically
    iv = exp.intervene(x, [0])
    np.testing.assert_allclose(iv.logit_after, -10 * f["smile"])
    sem = gm.semantic_crossing((f["smile"] + 1) / 2, (-f["smile"] + 1) / 2)
    out = gm.faithfulness(iv.logit_before, iv.logit_after, sem)
    assert out["flip_rate"] == 1.0 and out["semantic_flip_rate"] == 1.0 and out["shortcut_flip_rate"] == 0.0
    np.testing.assert_allclose(out["delta_logit"], np.mean(20 * np.abs(f["smile"])))


def test_response_matrix_and_cfa_known_values():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(50, 3))
    sd = base.std(0)
    cf = {f: np.repeat(base[None], 2, 0) for f in FACTOR_NAMES}
    cf["smile"] = cf["smile"] + np.array([2.0, 1.0, 0.0])  # concept 0, 1 move with smile
    cf["glasses"] = cf["glasses"] + np.array([0.0, 3.0, 0.0])  # concept 1 moves more with glasses
    P = gm.response_matrix(base, cf)
    r1 = np.array([1.0, 3.0]) / sd[1]
    np.testing.assert_allclose(P[0], np.eye(8)[SMILE])
    np.testing.assert_allclose(P[1, [SMILE, FACTOR_NAMES.index("glasses")]], r1 / r1.sum())
    np.testing.assert_array_equal(P[2], np.zeros(8))  # responds to nothing
    assert gm.cfa_at_k(P, "smile", 1) == 1.0
    assert gm.cfa_at_k(P, "smile", 3) == pytest.approx(1 / 3)
    assert gm.cfa_at_k(P, "glasses", 3) == pytest.approx(1 / 3)
    np.testing.assert_allclose(gm.claimed_reliance(P, [2.0, -1.0, 5.0], k=2), 2 * P[0] + P[1])


def test_reveals_shortcut_and_top1():
    R = np.array([5.0, 0, 0, 0, 0, 0, 3.0, 0])  # smile first, background second
    good = np.array([4.0, 0.1, 0, 0, 0, 0, 3.5, 0])
    hides = np.array([4.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.0, 0.3])
    a = gm.reliance_agreement(good, R, "background_hue")
    b = gm.reliance_agreement(hides, R, "background_hue")
    assert a["reveals_shortcut"] == 1.0 and a["reliance_top1"] == 1.0
    assert b["reveals_shortcut"] == 0.0 and b["spurious_rank_claimed"] == 8.0
    assert gm.reliance_agreement(np.ones(8), R)["reliance_top1"] == 0.0
    assert np.isnan(gm.reliance_agreement(np.ones(8), R)["reliance_spearman"])
    with pytest.raises(Img2TabInputError):
        gm.reliance_agreement(np.ones(3), np.ones(3))


def test_random_methods_land_on_their_analytic_expectation():
    rng = np.random.default_rng(0)
    # localisation and pointing of i.i.d. uniform evidence: E = mask area (by exchangeability)
    n, h = 4000, 12
    mask = np.zeros((n, h, h), bool)
    mask[:, 2:5, 3:9] = True  # 18 of 144 pixels
    dil_area = (5 * 8) / 144  # rows 1..5, cols 2..9 after a 1 px dilation
    loc = gm.localisation(rng.random((n, h, h)), mask)
    assert loc["class_area"] == pytest.approx(18 / 144)
    assert loc["pointing_area"] == pytest.approx(dil_area)
    se_mass = 0.01  # sd of the per-image fraction is ~0.027; / sqrt(4000) ~ 0.0004 -- generous bound
    assert abs(loc["localisation"] - 18 / 144) < se_mass
    se_point = 4 * np.sqrt(dil_area * (1 - dil_area) / n)
    assert abs(loc["pointing"] - dil_area) < se_point
    # CFA@k of a random ranking: E = share of concepts aligned with the class factor (here 4 of 20)
    P = np.zeros((20, 8))
    P[:4, SMILE] = 1.0
    P[4:, BG] = 1.0
    draws = [gm.cfa_at_k(P[rng.permutation(20)], "smile", 5) for _ in range(4000)]
    # hypergeometric: mean 4/20, variance of the mean of 5 draws = (4/20)(16/20)(15/19)/5
    sd = np.sqrt(0.2 * 0.8 * (15 / 19) / 5 / 4000)
    assert abs(np.mean(draws) - 0.2) < 4 * sd
    # Spearman of a random claimed reliance against a fixed R: E[ρ] = 0, E[top-1] = 1/8
    R = np.arange(8.0)
    res = [gm.reliance_agreement(rng.random(8), R) for _ in range(4000)]
    rho = np.array([r["reliance_spearman"] for r in res])
    top1 = np.array([r["reliance_top1"] for r in res])
    assert abs(rho.mean()) < 4 * np.sqrt(1 / 7 / 4000)  # Var(ρ) = 1/(n-1) under independence
    assert abs(top1.mean() - 1 / 8) < 4 * np.sqrt(1 / 8 * 7 / 8 / 4000)


def test_faithfulness_known_values():
    out = gm.faithfulness(np.array([1.0, -1.0, 2.0, -2.0]), np.array([-1.0, -1.0, 1.0, 3.0]),
                          np.array([True, False, False, False]))
    assert out == {"flip_rate": 0.5, "delta_logit": 2.0, "semantic_flip_rate": 0.25,
                   "shortcut_flip_rate": 0.25}
    assert np.isnan(gm.faithfulness(np.ones(2), np.ones(2))["semantic_flip_rate"])
    np.testing.assert_array_equal(gm.semantic_crossing([0.2, 0.7, 0.6], [0.8, 0.9, 0.4]), [True, False, True])


def test_localisation_pointing_uses_one_pixel_dilation_and_validates():
    mask = np.zeros((2, 8, 8), bool)
    mask[:, 3, 3] = True
    e = np.zeros((2, 8, 8))
    e[0, 4, 4] = 1.0  # diagonal neighbour: inside the dilated mask, outside the mask
    e[1, 6, 6] = 1.0
    loc = gm.localisation(e, mask)
    assert loc["pointing"] == 0.5 and loc["localisation"] == 0.0
    with pytest.raises(Img2TabInputError):
        gm.localisation(-e, mask)
    with pytest.raises(Img2TabInputError):
        gm.localisation(e, mask[:, :4])
    zero = gm.localisation(np.zeros((1, 8, 8)), mask[:1])
    assert np.isnan(zero["localisation"])


def test_factor_lookup_roundtrip():
    f = sample_factors(3, seed=4)
    u = render(f, 32)
    lk = FactorLookup()
    lk.add(u, f)
    got, found = lk.get(torch.as_tensor(_to_tensor(u)))
    assert found.all()
    for k in f:
        np.testing.assert_array_equal(got[k], f[k])
    _, found2 = lk.get(_to_tensor(render(sample_factors(2, seed=9), 32)))
    assert not found2.any()
