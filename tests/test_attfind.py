"""AttFind (StylEx) on img2tab's StyleSpace: known-answer tests on planted classifiers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from img2tab.errors import Img2TabInputError
from img2tab.explainers import AttFindExplainer, plot_attfind_gallery
from img2tab.explainers.attfind import (
    attfind,
    explained_coordinates,
    filter_unstable_images,
    find_significant_styles,
    first_order_effects,
    format_table,
    merge_class_picks,
    ranking_agreement,
    scaled_unstable_count,
    screen_candidates,
    style_effects,
)


@pytest.fixture
def small_inverter():
    """A 16 px generator (72 conv + 40 toRGB styles) with a narrow e4e encoder (32 px input)."""
    from img2tab.networks.e4e import EncoderConfig, build_encoder
    from img2tab.networks.inverter import Inverter
    from img2tab.networks.stylegan2 import Generator, GeneratorConfig

    torch.manual_seed(0)
    G = Generator(GeneratorConfig(size=16, style_dim=16, n_mlp=1, channels=((4, 16), (8, 16), (16, 8))))
    with torch.no_grad():
        for m in G.modules():
            if m.__class__.__name__ == "NoiseInjection":
                m.weight.fill_(0.1)
    enc = build_encoder(EncoderConfig(stylegan_size=16, style_dim=16, input_size=32, widths=(8, 12, 16, 24),
                                      units=(1, 1, 1, 1), stem=8))
    return Inverter(enc, G.eval(), torch.randn(G.n_latent, 16) * 0.1).eval()


# ----------------------------------------------------------------------------- pure numpy steps
def test_unstable_filter_removes_exactly_the_images_over_the_count():
    e = np.zeros((4, 2, 100, 2), dtype=np.float32)
    e[0].reshape(-1)[:11] = 2.5          # 11 entries > 2 -> unstable (count 10)
    e[1].reshape(-1)[:10] = -3.0         # exactly 10 -> kept (the test is "more than")
    e[2].reshape(-1)[:50] = 2.0          # at the threshold, not above -> kept
    e[3].reshape(-1)[:11] = 0.5          # small effects -> kept
    before = e.copy()
    out, unstable = filter_unstable_images(e, effect_threshold=2.0, num_indices_threshold=10)
    assert unstable.tolist() == [True, False, False, False]
    assert np.all(out[0] == 0)
    np.testing.assert_array_equal(out[1:], before[1:])
    np.testing.assert_array_equal(e, before)  # input untouched (the notebook zeroes in place)
    # the signature default 0.3 counts the small effects too
    _, unstable03 = filter_unstable_images(e, effect_threshold=0.3, num_indices_threshold=10)
    assert unstable03.tolist() == [True, False, True, True]


def test_unstable_count_keeps_the_notebooks_fraction():
    assert scaled_unstable_count(5760) == 750
    assert scaled_unstable_count(1440) == 188  # the embedded default's conv styles
    assert scaled_unstable_count(2176) == 283


def test_greedy_respects_the_per_image_cap():
    # 3 images, 3 styles; class effects [n, 2, S]. Column (d=1, s=0) moves images 0 and 1 by 1.0
    # (mean 0.67); (d=1, s=1) moves images 0, 1 by 0.9 (mean 0.6); (d=0, s=2) moves image 2 by 0.5.
    e = np.zeros((3, 2, 3))
    e[[0, 1], 1, 0] = 1.0
    e[[0, 1], 1, 1] = 0.9
    e[2, 0, 2] = 0.5
    e[2, 0, 1] = -4.0  # negative effects never count
    picks = find_significant_styles(e, num_indices=3, max_image_effect=1.0)
    # after the first pick images 0 and 1 reached the cap, so only image 2 votes: (0, 2) beats (1, 1)
    assert picks[:2] == [(1, 0), (0, 2)]
    # without a cap the second pick is the stronger overall column
    assert find_significant_styles(e, 2, max_image_effect=np.inf) == [(1, 0), (1, 1)]


def test_greedy_stops_when_exhausted_and_keeps_style_zero():
    e = np.zeros((2, 2, 4))
    e[:, 0, 0] = 2.0  # style 0 (the notebook's search would stop on it with a discriminator)
    picks = find_significant_styles(e, num_indices=8, max_image_effect=1.0)
    assert picks == [(0, 0)]  # no NaN-mean pick of column 0 afterwards, no zero-effect filler
    rejected = find_significant_styles(e + (np.arange(4) == 3) * 0.5, 8, 1.0,
                                       style_filter=lambda d, s: s != 0)
    assert rejected == [(0, 3), (1, 3)]  # the filter skips style 0, the search goes on


def test_merge_flips_class1_picks_and_scores_both_classes():
    e = np.zeros((2, 2, 5, 2))
    e[:, 0, 1, 0] = 1.0    # style 1 to min raises class 0
    e[:, 1, 1, 1] = 0.5    # style 1 to max raises class 1
    e[:, 1, 3, 1] = 2.0    # style 3 to max raises class 1 -> towards class 0 is (0, 3)
    ranking = merge_class_picks(e, picks0=[(0, 1)], picks1=[(1, 3), (1, 1)])
    # (1, 1) of class 1 is dropped: style 1 is already a class-0 pick
    assert [(d, s, c) for d, s, c, _ in ranking] == [(0, 3, 1), (0, 1, 0)]
    assert ranking[0][3] == pytest.approx(2.0) and ranking[1][3] == pytest.approx(1.5)


def test_attfind_splits_by_prediction_not_labels():
    e = np.zeros((4, 2, 3, 2))
    base = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # predicted 0, 0, 1, 1
    e[2:, 0, 2, 0] = 1.0   # on class-1 images, style 2 to min raises class 0
    e[:2, 1, 0, 1] = 1.0   # on class-0 images, style 0 to max raises class 1
    e[:2, 0, 1, 0] = 5.0   # class-0 images only: irrelevant for the class-0 search
    res = attfind(e, base, num_indices=2, unstable_count=100)
    assert res.picks[0] == ((0, 2),) and res.picks[1] == ((1, 0),)
    assert res.predicted.tolist() == [0, 0, 1, 1]
    assert {(d, s) for d, s, _, _ in res.ranking} == {(0, 2), (0, 0)}


def test_ranking_agreement():
    a = [(0, 1, 0, 1.0), (1, 2, 1, 0.5)]
    assert ranking_agreement(a, [(0, 1), (1, 2)], 2) == {"equal": 1.0, "same_set": 1.0, "overlap": 1.0}
    assert ranking_agreement(a, [(1, 2), (0, 1)], 2)["equal"] == 0.0
    assert ranking_agreement(a, [(0, 1), (0, 5)], 2)["overlap"] == 0.5


# ----------------------------------------------------------------------------- planted classifiers
class PlantedPsiClassifier:
    """A 'Ψ classifier' whose margin reads one coordinate only: m = 4 · (Ψ_k − t)."""

    def __init__(self, k: int, t: float) -> None:
        self.k, self.t = k, t

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return 4.0 * (np.asarray(X)[:, self.k] - self.t)


def _images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, 32, 32, generator=g) * 2 - 1).clamp(-1, 1)


def test_planted_psi_classifier_coordinate_comes_first(small_inverter):
    x = _images(12)
    with torch.no_grad():
        psi = small_inverter.psi(x)
    coords = explained_coordinates(small_inverter.layout)
    k = int(coords[len(coords) // 2])  # a conv style in the middle
    t = float(psi[:, k].median())
    clf = PlantedPsiClassifier(k, t)
    ex = AttFindExplainer(small_inverter, psi_classifier=clf, max_images=None, progress=False).fit(x)
    top = ex.concepts_[0]
    assert top.info["feature"] == k
    # m grows with Ψ_k, so moving Ψ_k to its min pushes towards class 0
    assert top.info["direction"] == "min" and top.name.endswith("-")
    assert ex.mode_ == "exact" and ex.n_edits_ == 12 * 2 * len(coords)
    # only that coordinate has an effect: the search stops after it
    assert len(ex.concepts_) == 1
    row = ex.table()[0]
    assert (row["layer"], row["channel"]) == small_inverter.layout.locate(k)
    assert "| 0 |" in format_table(ex.table())
    # t_c: +z for max concepts, -z for min ones
    z = (psi[:, k].double().numpy() - ex.psi_mean_[k]) / ex.psi_std_[k]
    np.testing.assert_allclose(ex.concept_scores(x)[:, 0], -z, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ex.model_logit(x), clf.decision_function(psi.numpy()), rtol=1e-5)
    # the intervention moves every image towards the other class: all flip
    iv = ex.intervene(x, [0])
    assert iv.flipped.all()
    assert iv.images_after.shape == (12, 3, 16, 16)


def _planted_torgb_setup(generator: torch.nn.Module, j: int):
    """Make the image depend on one style only: the last toRGB's input channel j.

    All other toRGB weights are zeroed (their skip paths become constant biases), and output channel
    j of the last conv gets zero weights, so its feature map is constant; the image is then
    ``const + s_j · W_j x_j`` with ``x_j`` fixed."""
    with torch.no_grad():
        for t in [generator.to_rgb1, *generator.to_rgbs]:
            t.conv.weight.zero_()
        generator.to_rgbs[-1].conv.weight[0, :, j] = 1.0
        generator.convs[-1].conv.weight[0, j] = 0.0
        generator.convs[-1].activate.bias[j] = 1.0


def test_planted_image_classifier_responds_to_one_style(small_inverter):
    G = small_inverter.generator
    j = 3
    _planted_torgb_setup(G, j)
    k = G.layout.index(G.layout.n_layers - 1, j)  # last toRGB layer, channel j
    x = _images(6, seed=1)
    with torch.no_grad():
        psi = small_inverter.psi(x)
        center = float(G.synthesize(psi).clamp(-1, 1).mean(dim=(1, 2, 3)).median())

    def clf(images):  # brighter -> class 1
        return 20.0 * (images.mean(dim=(1, 2, 3)) - center)

    ex = AttFindExplainer(small_inverter, clf, include_torgb=True, mode="exact", max_images=None,
                          batch_size=128, progress=False).fit(x)
    top = ex.concepts_[0]
    assert top.info["feature"] == k
    with torch.no_grad():
        w_sign = float(G.convs[-1].activate(torch.zeros(1, G.convs[-1].conv.out_channel, 1, 1))[0, j])
    # brightness = const + s_j * (positive constant) -> min direction pushes towards class 0
    assert w_sign > 0 and top.info["direction"] == "min"
    # budget mode with a small candidate set finds the same top attribute, in the same direction
    bud = AttFindExplainer(small_inverter, clf, include_torgb=True, mode="budget", n_candidates=5,
                           max_images=None, batch_size=128, progress=False).fit(x)
    assert k in set(bud.coords_[bud.candidates_].tolist())
    assert bud.concepts_[0].name == top.name
    assert bud.n_edits_ == 6 * 2 * 5
    # evidence: only pixels change, non-negative, [N, H, W]
    ev = ex.evidence(x, 0)
    assert ev.shape == (6, 16, 16) and (ev >= 0).all() and ev.max() > 0


# ----------------------------------------------------------------------------- budget vs exact
class _TinyCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.w1 = torch.nn.Parameter(torch.randn(6, 3, 3, 3, generator=g) * 0.5)
        self.w2 = torch.nn.Parameter(torch.randn(2, 6, generator=g))

    def forward(self, x):
        h = torch.nn.functional.conv2d(x, self.w1, stride=2).relu().mean(dim=(2, 3))
        return 4 * h @ self.w2.t()


def test_budget_mode_agrees_with_exact_on_a_small_case(small_inverter):
    x = _images(6, seed=2)
    clf = _TinyCNN().eval()
    kw = dict(max_images=None, progress=False, num_indices=4, batch_size=128)
    exact = AttFindExplainer(small_inverter, clf, mode="exact", **kw).fit(x)
    s = exact.coords_.size
    # with every style a candidate, budget mode is the exact run
    full = AttFindExplainer(small_inverter, clf, mode="budget", n_candidates=s, **kw).fit(x)
    assert full.concept_names() == exact.concept_names()
    np.testing.assert_allclose(full.importances(), exact.importances(), rtol=1e-5, atol=1e-6)
    # with a quarter of the styles the exact entries it computes are the exact run's entries
    part = AttFindExplainer(small_inverter, clf, mode="budget", n_candidates=s // 4, **kw).fit(x)
    c = part.candidates_
    np.testing.assert_allclose(part.result_.effects[:, :, c], exact.result_.effects[:, :, c],
                               rtol=1e-4, atol=1e-5)
    # and the first-order screen is the derivative: small shifts match finite differences
    psi = small_inverter.psi(x).detach()
    coords = exact.coords_[:6]

    def lop(p):
        return clf(small_inverter.generator.synthesize(p))

    cur = psi[:, coords]
    lo, hi = cur.min(0).values, cur.max(0).values
    scr, _ = first_order_effects(lop, psi, coords, lo, hi, shift_size=1e-3, progress=False)
    ex_small, _ = style_effects(lop, psi, coords, lo, hi, shift_size=1e-3, progress=False)
    np.testing.assert_allclose(scr, ex_small, atol=2e-4 * max(1.0, float(np.abs(scr).max())))


def test_screen_candidates_ranks_by_the_greedy_statistic():
    e = np.zeros((4, 2, 5, 2))
    base = np.array([[0, 1.0], [0, 1.0], [1.0, 0], [1.0, 0]])
    e[:2, 0, 4, 0] = 3.0   # class-0 logit on class-1 images: counts
    e[2:, 1, 2, 1] = 1.0   # class-1 logit on class-0 images: counts
    e[2:, 0, 1, 0] = 9.0   # class-0 logit on class-0 images: not a statistic AttFind uses
    assert screen_candidates(e, base, 2).tolist() == [4, 2]


# ----------------------------------------------------------------------------- resumable effects
def test_effects_resume_from_checkpoint(tmp_path):
    psi = torch.randn(6, 10)
    coords = np.array([1, 4, 7])
    lo, hi = psi[:, coords].min(0).values, psi[:, coords].max(0).values
    weights = torch.randn(10, 2)
    calls = {"n": 0, "fail_at": None}

    def lop(p):
        calls["n"] += 1
        if calls["fail_at"] is not None and calls["n"] >= calls["fail_at"]:
            raise KeyboardInterrupt
        return p @ weights

    ref, base = style_effects(lop, psi, coords, lo, hi, batch_size=6, chunk_images=2, progress=False)
    n_ref = calls["n"]
    ck = tmp_path / "effects.npz"
    calls.update(n=0, fail_at=4)  # 1 base call + 1 call per chunk (2 images x 6 edits): dies in chunk 3
    with pytest.raises(KeyboardInterrupt):
        style_effects(lop, psi, coords, lo, hi, batch_size=6, chunk_images=2, checkpoint=ck,
                      progress=False)
    assert ck.exists() and not list(tmp_path.glob("*.tmp"))
    calls.update(n=0, fail_at=None)
    out, base2 = style_effects(lop, psi, coords, lo, hi, batch_size=6, chunk_images=2, checkpoint=ck,
                               progress=False)
    assert calls["n"] == n_ref - 2  # the two finished chunks were skipped
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    np.testing.assert_allclose(base2, base)
    # effects of a linear model: E[i, d, s, c] = w[k_s, c] * (target - psi[i, k_s])
    tgt = torch.stack([lo, hi])
    expect = (tgt[None] - psi[:, coords][:, None])[..., None] * weights[coords][None, None]
    np.testing.assert_allclose(out, expect.numpy(), rtol=1e-4, atol=1e-5)
    # another classifier (same type, other weights) never resumes this checkpoint
    other, _ = style_effects(lambda p: p @ (2 * weights), psi, coords, lo, hi, batch_size=6, chunk_images=2,
                             checkpoint=ck, progress=False)
    np.testing.assert_allclose(other, 2 * ref, rtol=1e-5, atol=1e-6)
    # other inputs: the stale checkpoint is ignored
    out2, _ = style_effects(lop, psi + 1, coords, lo, hi, batch_size=6, chunk_images=2, checkpoint=ck,
                            progress=False)
    assert not np.allclose(out2, out)


def test_input_errors(small_inverter):
    x = _images(4)
    with pytest.raises(Img2TabInputError, match="exactly one"):
        AttFindExplainer(small_inverter).fit(x)
    with pytest.raises(Img2TabInputError, match="budget"):
        AttFindExplainer(small_inverter, psi_classifier=PlantedPsiClassifier(0, 0.0), mode="budget").fit(x)
    with pytest.raises(Img2TabInputError, match="not fitted"):
        AttFindExplainer(small_inverter, psi_classifier=PlantedPsiClassifier(0, 0.0)).concept_scores(x)
    with pytest.raises(Img2TabInputError, match=r"\[N, 2, S, C\]"):
        filter_unstable_images(np.zeros((3, 3, 2, 2)))


def test_gallery_returns_a_figure(small_inverter):
    import matplotlib.pyplot as plt

    x = _images(8, seed=4)
    psi = small_inverter.psi(x).detach()
    coords = explained_coordinates(small_inverter.layout)
    k = int(coords[5])
    ex = AttFindExplainer(small_inverter, psi_classifier=PlantedPsiClassifier(k, float(psi[:, k].median())),
                          progress=False).fit(x)
    fig = plot_attfind_gallery(ex, x, concepts=[0], n_images=3)
    assert fig.axes and fig.axes[0].get_yticklabels()[0].get_text().startswith("#0")
    _, ax = plt.subplots()
    assert plot_attfind_gallery(ex, x, concepts=[0], n_images=2, ax=ax) is ax.figure
    plt.close("all")


@pytest.mark.slow
def test_benchmark_factory_with_the_psi_classifier(tmp_path):
    from img2tab.world.benchmark import BenchmarkSizes, default_explainers, make_context

    torch.set_num_threads(1)
    sizes = BenchmarkSizes(n_train=60, n_test=8, n_eval=4, n_values=2, oracle_n=50, oracle_epochs=1,
                           cnn_epochs=1)
    ctx = make_context("unbiased", seed=0, sizes=sizes, progress=False, cache_dir=str(tmp_path))
    ctx.quick = True
    ex = default_explainers(True)["attfind-psi"](ctx)
    ex.fit(ctx.train.to_tensor(), ctx.train.y)
    assert ex.mode_ == "exact" and len(ex.image_index_) == 32 and len(ex.concepts_) >= 1
    x = ctx.test.to_tensor()
    np.testing.assert_allclose(ex.model_logit(x), ctx.psi_classifier.decision_function(ctx.psi_test),
                               rtol=1e-4, atol=1e-4)
    iv = ex.intervene(x, [0])
    assert iv.logit_before.shape == (8,) and iv.images_after.shape == x.shape
    # the top attribute's edit moves the images towards the other class on average
    assert np.mean(np.sign(iv.logit_before) * (iv.logit_after - iv.logit_before)) < 0
