"""ACE: superpixels (off-by-one fix, de-duplication, grey fill, inclusive crop), a planted red-square
concept found, significant and localised by a hand-built CNN, the protocol adapter, the plots; the
world planted case (a ConceptCNN trained on glasses) is the slow test."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from img2tab.errors import Img2TabInputError
from img2tab.explainers.ace import (
    OFFICIAL_FILL,
    ACEConfig,
    ACEExplainer,
    extract_patches,
    plot_ace_tcav,
    plot_concept_gallery,
    segment_image,
)


def test_official_grey_on_the_model_scale() -> None:
    assert pytest.approx(2 * 117 / 255 - 1) == OFFICIAL_FILL
    assert pytest.approx(117) == (OFFICIAL_FILL + 1) / 2 * 255


def test_segments_visit_every_label_and_deduplicate() -> None:
    img = np.zeros((32, 32, 3), np.float64)
    img[:16, :16] = [1, 0, 0]
    img[:16, 16:] = [0, 1, 0]
    img[16:, :16] = [0, 0, 1]
    img[16:, 16:] = [1, 1, 0]
    masks = segment_image(img, ACEConfig(n_segments=(4,), compactness=(20.0,)))
    # four flat quadrants -> four segments; the official range(segments.max()) loop would miss one
    assert masks.shape == (4, 32, 32)
    assert masks.sum(0).max() == 1 and masks.any(0).all()
    # the same resolution twice: every second-pass segment overlaps a kept one (Jaccard 1) -> dropped
    twice = segment_image(img, ACEConfig(n_segments=(4, 4), compactness=(20.0, 20.0)))
    assert twice.shape == (4, 32, 32)


def test_patches_fill_grey_and_crop_the_inclusive_box() -> None:
    image = torch.linspace(-1, 1, 3 * 8 * 8).reshape(3, 8, 8)
    mask = np.zeros((1, 8, 8), bool)
    mask[0, 2, 5] = True  # a one-pixel segment: the official h1:h2 crop would be empty
    sup, patch = extract_patches(image, mask, size=16)
    assert sup.shape == (1, 3, 16, 16) and patch.shape == (1, 3, 8, 8)
    torch.testing.assert_close(sup[0], image[:, 2, 5][:, None, None].expand(3, 16, 16))
    outside = torch.from_numpy(~mask[0])
    assert torch.all(patch[0][:, outside] == torch.tensor(OFFICIAL_FILL))
    torch.testing.assert_close(patch[0][:, 2, 5], image[:, 2, 5])


# ---------------------------------------------------------------------------------------- planted
def red_square_images(n: int, seed: int, red: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """32 px flat bluish/greenish backgrounds with two blue distractor squares; ``red`` images get a
    10 px red square (its mask is returned)."""
    rng = np.random.default_rng(seed)
    size = 32
    imgs = np.empty((n, size, size, 3), np.float32)
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        base = rng.uniform(0.2, 0.8, size=3) * np.array([0.3, 1.0, 1.0])
        img = np.tile(base, (size, size, 1)) + rng.normal(0, 0.03, (size, size, 3))
        for _ in range(2):
            r, c = rng.integers(0, size - 8, 2)
            img[r : r + 8, c : c + 8] = rng.uniform(0.3, 1.0) * np.array([0.2, 0.4, 1.0])
        if red[i]:
            r, c = rng.integers(2, size - 12, 2)
            img[r : r + 10, c : c + 10] = [0.95, 0.1, 0.1]
            masks[i, r : r + 10, c : c + 10] = True
        imgs[i] = img.clip(0, 1)
    return torch.from_numpy(imgs * 2 - 1).permute(0, 3, 1, 2).contiguous(), masks


class RedNet(nn.Module):
    """Hand-built CNN: colour-opponent 1x1 conv -> ``layer4`` (8x8 map) -> a nonlinear 1x1 tail whose
    units respond to redness -> GAP -> logits; class 1 = "has red"."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.layer4 = nn.Sequential(nn.ReLU(), nn.AvgPool2d(4))
        self.tail = nn.Sequential(nn.Conv2d(4, 6, 1), nn.ReLU())
        self.head = nn.Linear(6, 2)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            w = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1], [0.3, 0.3, 0.3]])
            self.stem.weight.copy_(w[:, :, None, None])
            self.stem.bias.copy_(torch.tensor([-1.5, -1.5, -1.5, 0.5]))
            t = torch.randn(6, 4, generator=g) * 0.1
            t[:, 0] = torch.linspace(1.0, 3.0, 6)
            t[:, 3] = 0.0
            self.tail[0].weight.copy_(t[:, :, None, None])
            self.tail[0].bias.copy_(torch.linspace(-0.3, -0.05, 6))
            self.head.weight.copy_(torch.stack([torch.zeros(6), torch.full((6,), 12.0)]))
            self.head.bias.copy_(torch.tensor([0.0, -2.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.tail(self.layer4(self.stem(x))).mean((2, 3)))


SMALL = ACEConfig(
    n_discovery=10,
    max_imgs=15,
    min_imgs=15,
    n_random=12,
    n_clusters=12,
    kmeans_n_init=3,
    random_source="patches",
    batch_size=256,
)


@pytest.fixture(scope="module")
def planted() -> tuple[ACEExplainer, torch.Tensor, np.ndarray, np.ndarray, float]:
    y = np.arange(200) % 2
    x, masks = red_square_images(200, 0, y == 1)
    model = RedNet().eval()
    t0 = time.perf_counter()
    ace = ACEExplainer(model, SMALL, keep_insignificant=True, progress=False).fit(x, y)
    return ace, x, y, masks, time.perf_counter() - t0


def _on_mask(concept, masks: np.ndarray) -> float:
    m = concept.member_masks
    return float(((m & masks[concept.member_images]).sum((1, 2)) / m.sum((1, 2))).mean())


def test_planted_model_separates_the_classes(planted) -> None:
    ace, x, y, _, _ = planted
    assert ((ace.model_logit(x) > 0) == y).mean() > 0.95


def test_ace_finds_the_planted_concept(planted) -> None:
    ace, x, y, masks, seconds = planted
    top = ace.discovered_[0]
    assert top.significant and top.tcav.mean > 0.9  # ranked first: significant, highest TCAV
    assert _on_mask(top, masks) > 0.8  # its members lie on the red squares
    assert top.member_images.size == SMALL.max_imgs and np.all(y[top.member_images] == 1)
    # the kept clusters obey the official rules
    for c in ace.all_concepts_[1]:
        assert c.size > SMALL.min_imgs
        assert np.all(np.diff(c.member_costs) >= 0) and c.radius == pytest.approx(c.member_costs.max())
    assert ace.concepts_[0].importance == pytest.approx(top.tcav.mean - 0.5)
    assert seconds < 60


def test_adapter_scores_evidence_and_intervention(planted) -> None:
    ace, x, y, masks, _ = planted
    test_y = np.arange(10) % 2
    xt, mt = red_square_images(10, 5, test_y == 1)
    scores = ace.concept_scores(xt)
    assert scores.shape == (10, len(ace.concepts_))
    # the red concept's CAV projection is higher on red images
    assert scores[test_y == 1, 0].min() > scores[test_y == 0, 0].max()
    ev = ace.evidence(xt[test_y == 1], 0)
    assert ev.shape == (5, 32, 32) and ev.min() >= 0
    inside = (ev * mt[test_y == 1]).sum() / ev.sum()
    assert inside > 0.7  # evidence on the red squares
    assert ace.evidence(xt[:2], None).shape == (2, 32, 32)
    itv = ace.intervene(xt, [0])
    np.testing.assert_allclose(itv.logit_before, ace.model_logit(xt))
    # greying the concept's segments removes class-1 evidence from every red image
    red = test_y == 1
    assert np.all(itv.logit_after[red] < itv.logit_before[red] - 1.0)
    assert itv.images_after is not None and itv.images_after.shape == xt.shape
    changed = (itv.images_after != xt).any(1).numpy()
    assert (changed & mt).sum() / changed.sum() > 0.5  # what was greyed is mostly the red squares
    # repeated calls are deterministic
    np.testing.assert_array_equal(ace.concept_scores(xt), scores)


def test_report_and_plots(planted) -> None:
    ace, *_ = planted
    rep = ace.report()
    assert rep["classes"]["1"]["n_patches"] > 0 and rep["ranked"][0] == ace.concepts_[0].name
    assert plot_concept_gallery(ace, n_members=4).axes
    assert plot_ace_tcav(ace).axes


def test_fit_validates_input() -> None:
    model = RedNet()
    x = torch.zeros(4, 3, 32, 32)
    with pytest.raises(Img2TabInputError, match="labels"):
        ACEExplainer(model, SMALL).fit(x, np.zeros(3))
    with pytest.raises(Img2TabInputError, match="random_source"):
        ACEConfig(random_source="noise")
    with pytest.raises(Img2TabInputError, match="not fitted"):
        ACEExplainer(model).concept_scores(x)


# ---------------------------------------------------------------------------------------- world
@pytest.mark.slow
def test_world_glasses_concept_is_found_on_the_glasses_mask(tmp_path) -> None:
    """A ConceptCNN trained on class = glasses: ACE (ConceptCNN setting, official 20 random sets)
    ranks first a significant concept whose member segments lie on the glasses mask."""
    from img2tab.explainers.ace import concept_cnn_ace
    from img2tab.networks.cnn import ConceptCNNConfig, load_or_train_concept_cnn
    from img2tab.world import make_task
    from img2tab.world.groundtruth import factor_masks

    torch.set_num_threads(1)
    train = make_task(1200, seed=0, class_factor="glasses", spurious=None)
    model = load_or_train_concept_cnn(
        train.to_tensor(),
        train.y,
        ConceptCNNConfig(epochs=3, seed=0),
        cache_dir=str(tmp_path),
        progress=False,
    )
    ace = concept_cnn_ace(model, target_classes=(1,), n_random=20, progress=False)
    ace.fit(train.to_tensor(), train.y)
    glasses = factor_masks(train.factors, 64, ["glasses"])["glasses"]
    top = ace.discovered_[0]
    assert top.significant and top.tcav.mean > 0.8
    assert _on_mask(top, glasses) > 0.5  # glasses cover ~4 % of the image
    # the other significant concepts are not on the glasses and rank below it
    assert all(_on_mask(c, glasses) < 0.5 for c in ace.discovered_[1:])
