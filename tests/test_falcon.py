"""FALCON (img2tab.explainers.falcon) on planted models and matrices, with the truth captioner."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from img2tab.explainers.falcon import (
    FALCON,
    contrast,
    find_feature_groups,
    grad_cam,
    largest_box,
    low_activation_set,
    parse_captions,
    plot_falcon_group,
    plot_falcon_words,
    word_factor_share,
)
from img2tab.explainers.image_text import TruthCaptioner, tokenize, word_factor
from img2tab.world import render, sample_factors


class _PlantedCNN(nn.Module):
    """A ConceptCNN-shaped model whose channels 3 and 5 detect ginger hair; the others are weak
    colour features. ``layer4`` gives ``[N, 16, 8, 8]``; ``head`` reads the ginger channels."""

    def __init__(self) -> None:
        super().__init__()
        a = nn.Conv2d(3, 6, 1)
        b = nn.Conv2d(6, 16, 1)
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            a.weight.zero_()
            a.bias.zero_()
            # ginger: p_R - p_B > 0.65 ...
            a.weight[0, 0], a.weight[0, 2], a.bias[0] = 5.0, -5.0, -6.5
            # ... and not bright green (blond hair, yellow/green backgrounds)
            a.weight[1, 1], a.bias[1] = 5.0, 0.5
            for c in range(3):  # pass-through of the colour, >= 0
                a.weight[3 + c, c], a.bias[3 + c] = 1.0, 1.0
            b.weight.zero_()
            b.bias.zero_()
            b.weight[:, 3:6, 0, 0] = torch.rand(16, 3, generator=gen) * 0.1
            b.bias.fill_(0.05)
            for g in (3, 5):
                b.weight[g].zero_()
                b.weight[g, 0, 0, 0], b.weight[g, 1, 0, 0] = 10.0, -20.0
                b.bias[g] = 0.0
        self.layer4 = nn.Sequential(a, nn.ReLU(), b, nn.ReLU(), nn.AvgPool2d(8))
        self.head = nn.Linear(16, 2)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.zero_()
            self.head.weight[1, 3] = self.head.weight[1, 5] = 1.0
            self.head.bias[0] = 0.5

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(x))


def _probe(n: int = 90, seed: int = 0) -> tuple[dict, torch.Tensor]:
    factors = sample_factors(n, seed)
    x = torch.from_numpy(render(factors, 64)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return factors, x


@pytest.fixture(scope="module")
def fitted() -> tuple[FALCON, dict, torch.Tensor]:
    factors, x = _probe()
    model = _PlantedCNN().eval()
    falcon = FALCON(  # one planted group: do not lower lim looking for three
        model, lambda imgs, y: TruthCaptioner(factors, imgs), coherence_threshold=None, min_groups=1
    )
    falcon.fit(x, np.zeros(len(x), dtype=np.int64))
    return falcon, factors, x


def test_planted_group_top_word_names_the_factor(fitted):
    falcon, factors, _ = fitted
    top = falcon.groups_[0]
    assert top.key == (3, 5)
    ginger = set(np.flatnonzero(factors["hair_color"] == 3).tolist())
    assert set(top.high.tolist()) <= ginger and len(top.high) > 10
    assert word_factor(top.words[0][0]) == "hair_color"
    assert top.words[0][0] in {"ginger", "auburn", "copper"}
    assert falcon.concepts_[0].info["words"][0] == top.words[0][0]
    assert falcon.word_scores("hair_color", k=1, top_words=3) == 1.0


def test_contrast_removes_words_the_low_set_shares(fitted):
    falcon, factors, _ = fitted
    top = falcon.groups_[0]
    assert len(top.low) > 0
    assert not (factors["hair_color"][top.low] == 3).any()  # low set lacks the group's factor
    before = [w for w, _ in top.words_before]
    # every low image's uncropped caption names its hair and the template's generic words
    assert "hair" in top.removed_words and "hair" not in [w for w, _ in top.words]
    assert "hair" in before or "hair" in [
        w for w, _ in parse_captions(top.high_captions, np.ones((len(top.high), 5)))[0]
    ]
    assert {"cartoon", "person"} <= set(top.removed_words)


def test_protocol_scores_intervention_evidence(fitted):
    falcon, factors, x = fitted
    t = falcon.concept_scores(x[:20])
    assert t.shape == (20, len(falcon.concepts_))
    ginger = factors["hair_color"][:20] == 3
    assert t[ginger, 0].min() > t[~ginger, 0].max()
    logit = falcon.model_logit(x[:20])
    with torch.no_grad():
        expect = (falcon.model(x[:20])[:, 1] - falcon.model(x[:20])[:, 0]).double().numpy()
    np.testing.assert_allclose(logit, expect, rtol=1e-6)
    iv = falcon.intervene(x[:20], [0])
    mean_g = falcon.probe_raw_mean_[[3, 5]].sum()
    np.testing.assert_allclose(iv.logit_after, mean_g - 0.5, rtol=1e-5)  # head reads only the group
    ev = falcon.evidence(x[:4], 0)
    assert ev.shape == (4, 64, 64) and ev.min() >= 0 and ev.max() <= 1
    assert falcon.importances()[0] > 0


def test_plots_return_figures(fitted):
    import matplotlib

    matplotlib.use("Agg")
    falcon, _, x = fitted
    fig = plot_falcon_group(falcon.groups_[0], x)
    fig2 = plot_falcon_words(falcon.groups_[0])
    assert fig is not None and fig2 is not None
    import matplotlib.pyplot as plt

    plt.close("all")


def test_groups_on_a_planted_matrix():
    rng = np.random.default_rng(0)
    r = rng.uniform(0.0, 0.1, size=(300, 16))
    r[:40, [3, 5]] = 3.0
    r[40:52, 9] = 3.0  # a second group, 12 members
    r[52:58, 1] = 3.0  # too small (6 members)
    from img2tab.explainers.falcon import _normalise_rows

    r_hat = _normalise_rows(r)
    from img2tab.explainers.falcon import activation_threshold

    assert 0.5 < activation_threshold(r_hat, 2.5) < 0.7 < activation_threshold(r_hat, 5.0)
    assert list(find_feature_groups(r_hat, lim=5.0, min_group_size=10)) == [
        (9,)
    ]  # the pair's 0.71 is too low
    groups = find_feature_groups(r_hat, lim=2.5, min_group_size=10)
    assert list(groups) == [(3, 5), (9,)]
    np.testing.assert_array_equal(groups[(3, 5)], np.arange(40))
    low = low_activation_set(r_hat, (3, 5), groups[(3, 5)], min_dot=0.0, max_size=10)
    assert len(low) == 10 and not np.isin(low, np.arange(40)).any()
    assert (r_hat[low][:, [3, 5]] < r_hat.mean()).all()


def test_grad_cam_of_a_pooled_channel_is_the_channel_map():
    layer = nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(3, 3, 8, 8).clamp(-1, 1)
    cam = grad_cam(layer, lambda t: layer(t).mean(dim=(2, 3))[:, 2], x)
    with torch.no_grad():
        a = torch.relu(layer(x)[:, 2]).double().numpy()
    a = (a - a.min(axis=(1, 2), keepdims=True)) / (
        a.max(axis=(1, 2), keepdims=True) - a.min(axis=(1, 2), keepdims=True)
    )
    np.testing.assert_allclose(cam, a, atol=1e-6)


def test_largest_box():
    m = np.zeros((10, 10), dtype=bool)
    m[1:3, 1:3] = True  # 2x2
    m[5:9, 4:7] = True  # 4x3
    assert largest_box(m) == (4, 5, 7, 9)
    assert largest_box(np.zeros((5, 6), bool)) == (0, 0, 6, 5)


def test_parse_and_contrast_official_rules():
    caps = [["a cartoon person with ginger hair", "an avatar with blue background"], ["ginger hair"]]
    words, phrases = parse_captions(caps, np.array([[0.6, 0.3], [0.2, 0.0]]))
    d = dict(words)
    assert d["ginger"] == pytest.approx((0.6 + 0.2) / 2)
    assert d["blue"] == pytest.approx(0.3 / 2)
    assert "background" not in d  # official discard word
    assert dict(phrases)["ginger hair"] == pytest.approx(0.4)
    kept, removed = contrast(words, [("ginger", 0.05), ("hair", 0.1)], threshold=0.1, top=8)
    assert "hair" in removed and "ginger" in [w for w, _ in kept]
    assert tokenize("Smiling eyes, 2 glasses!") == ["smile", "eye", "glasses"]
    assert word_factor_share(["ginger", "smile", "cartoon", "eye"], "smile") == 0.25


def test_feature_mode_uses_whole_images_and_feature_logit():
    factors, x = _probe(60, 1)
    rng = np.random.default_rng(0)
    table = rng.normal(size=(60, 12))
    ginger = factors["hair_color"] == 3
    table[ginger, 7] += 20.0
    lookup = {i: table[i] for i in range(60)}

    def features(imgs):  # the probe images in order (the test only calls it on them)
        assert imgs.shape[0] == 60
        return np.stack([lookup[i] for i in range(60)])

    falcon = FALCON(
        features=features,
        feature_logit=lambda z: z[:, 7].astype(np.float64),
        image_text=TruthCaptioner(factors, x),
        min_group_size=5,
        min_groups=1,
        coherence_threshold=None,
    ).fit(x, np.zeros(60, dtype=np.int64))
    assert falcon.groups_[0].key == (7,)
    assert (falcon.groups_[0].boxes == [0, 0, 64, 64]).all()
    assert falcon.evidence(x) is None
    iv = falcon.intervene(x, [0])
    np.testing.assert_allclose(iv.logit_after, table[:, 7].mean())


def test_psi_mode_factory_on_a_planted_context():
    from types import SimpleNamespace

    from img2tab.explainers.falcon import falcon_psi_for_context
    from img2tab.world import TaskSplit

    factors, x = _probe(60, 2)
    images = ((x.permute(0, 2, 3, 1) + 1) * 127.5).round().byte().numpy()
    rng = np.random.default_rng(1)
    psi = rng.normal(size=(60, 10))
    psi[factors["glasses"] == 1, 4] += 20.0  # Ψ column 4 is planted on glasses
    y = np.zeros(60, dtype=np.int64)
    train = TaskSplit(images=images, factors=factors, y=y, protected=y, spurious=y)
    clf = SimpleNamespace(decision_function=lambda z: 2.0 * z[:, 4])
    ctx = SimpleNamespace(train=train, psi_train=psi, psi_classifier=clf, inverter=None, quick=True, seed=0)
    # random non-group columns share no direction with the high set: accept any dot for the low set
    falcon = falcon_psi_for_context(
        ctx, "truth", min_group_size=5, min_groups=1, coherence_threshold=None, low_min_dot=-1.0
    )
    falcon.fit(train.to_tensor(), y)
    assert falcon.groups_[0].key == (4,)
    assert set(falcon.groups_[0].high.tolist()) <= set(np.flatnonzero(factors["glasses"] == 1).tolist())
    assert len(falcon.groups_[0].low) == 10 and not factors["glasses"][falcon.groups_[0].low].any()
    assert word_factor(falcon.groups_[0].words[0][0]) == "glasses"  # whole images: contrast leaves glasses
    np.testing.assert_allclose(falcon.model_logit(train.to_tensor()), 2.0 * psi[:, 4])
    iv = falcon.intervene(train.to_tensor(), [0])
    np.testing.assert_allclose(iv.logit_after, 2.0 * psi[:, 4].mean())
