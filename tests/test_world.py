"""Tests for the concept world (img2tab.world): sampling, rendering and the spurious tasks."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from img2tab.errors import Img2TabInputError
from img2tab.world import (
    BINARY_LABELS,
    FACTOR_NAMES,
    FACTORS,
    ConceptWorld,
    Factor,
    TaskSplit,
    WorldSample,
    binarize,
    get_factor,
    image_grid,
    make_spurious_splits,
    make_task,
    neutral_factors,
    render,
    sample_factors,
)

SIZE = 64


def _box(y0: float, y1: float, x0: float, x1: float, size: int = SIZE) -> np.ndarray:
    """Boolean [size, size] mask of a box in image coordinates ([-1, 1], y downwards)."""
    c = (np.arange(size) + 0.5) * 2.0 / size - 1.0
    xx, yy = np.meshgrid(c, c)
    return (yy >= y0) & (yy <= y1) & (xx >= x0) & (xx <= x1)


# Where each factor may change the picture (at zero tilt, except head_tilt itself).
REGIONS: dict[str, np.ndarray] = {
    "smile": _box(0.05, 0.5, -0.4, 0.4),
    "eye_size": _box(-0.3, 0.12, -0.45, 0.45),
    "face_width": _box(-0.85, 0.65, -0.8, 0.8),
    "skin_tone": _box(-0.7, 1.0, -0.7, 0.7),
    "hair_color": _box(-0.85, 0.35, -0.8, 0.8),
    "glasses": _box(-0.35, 0.15, -0.7, 0.7),
    "background_hue": ~_box(-0.2, 0.5, -0.3, 0.3),
    "head_tilt": _box(-0.9, 0.8, -0.9, 0.9),
}


def test_factor_table() -> None:
    assert len(FACTORS) >= 7
    assert tuple(f.name for f in FACTORS) == FACTOR_NAMES
    assert set(REGIONS) == set(FACTOR_NAMES) == set(BINARY_LABELS)
    kinds = {f.kind for f in FACTORS}
    assert kinds == {"continuous", "categorical"}
    for f in FACTORS:
        assert isinstance(f, Factor)
        assert f.description
        if f.is_categorical:
            assert f.n_categories == len(f.categories) >= 2
        else:
            assert f.low < f.high
    assert get_factor("hair_color").categories == ("black", "brown", "blond", "red")
    assert get_factor("smile").low == -1.0 and get_factor("smile").high == 1.0
    with pytest.raises(Img2TabInputError):
        get_factor("nose_length")


def test_determinism_per_seed() -> None:
    world = ConceptWorld(size=SIZE)
    a = world.sample(24, seed=7)
    b = world.sample(24, seed=7)
    c = world.sample(24, seed=8)
    assert np.array_equal(a.images, b.images)
    for name in FACTOR_NAMES:
        assert np.array_equal(a.factors[name], b.factors[name])
    assert not np.array_equal(a.images, c.images)
    # rendering is per image: batch composition and chunking do not matter
    sub = {k: v[5:9] for k, v in a.factors.items()}
    assert np.array_equal(render(sub, SIZE), a.images[5:9])
    assert np.array_equal(render(a.factors, SIZE, batch_size=5), a.images)


def test_overrides_keep_other_factors() -> None:
    base = sample_factors(50, 3)
    fixed = sample_factors(50, 3, smile=0.25, glasses=np.ones(50, dtype=int))
    assert np.all(fixed["smile"] == 0.25) and np.all(fixed["glasses"] == 1)
    for name in FACTOR_NAMES:
        if name not in ("smile", "glasses"):
            assert np.array_equal(base[name], fixed[name])
    with pytest.raises(Img2TabInputError):
        sample_factors(5, 0, smile=2.0)
    with pytest.raises(Img2TabInputError):
        sample_factors(5, 0, hair_color=4)
    with pytest.raises(Img2TabInputError):
        sample_factors(5, 0, hair_color=1.5)
    with pytest.raises(Img2TabInputError):
        sample_factors(5, 0, mustache=1)
    with pytest.raises(Img2TabInputError):
        sample_factors(5, 0, smile=np.zeros(4))


@pytest.mark.parametrize("size", [32, 64, 128])
def test_shapes_and_dtypes(size: int) -> None:
    sample = ConceptWorld(size=size).sample(6, seed=1)
    assert isinstance(sample, WorldSample)
    assert len(sample) == 6
    assert sample.images.shape == (6, size, size, 3)
    assert sample.images.dtype == np.uint8
    x = sample.to_tensor()
    assert x.shape == (6, 3, size, size) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    back = ((x.permute(0, 2, 3, 1) + 1.0) * 127.5).round().to(torch.uint8).numpy()
    assert np.array_equal(back, sample.images)
    for f in FACTORS:
        dtype = np.int64 if f.is_categorical else np.float64
        assert sample.factors[f.name].dtype == dtype and sample.factors[f.name].shape == (6,)
    assert sample.factor_array().shape == (6, len(FACTORS))
    assert render(sample_factors(0, 0), size).shape == (0, size, size, 3)


def test_render_rejects_bad_factors() -> None:
    f = sample_factors(3, 0)
    with pytest.raises(Img2TabInputError):
        render({k: v for k, v in f.items() if k != "glasses"})
    with pytest.raises(Img2TabInputError):
        render({**f, "smile": np.array([0.0, 0.1])})
    with pytest.raises(Img2TabInputError):
        render({**f, "eye_size": np.array([0.0, np.nan, 0.2])})
    with pytest.raises(Img2TabInputError):
        render(f, size=8)


def test_factor_ranges() -> None:
    f = sample_factors(5000, 11)
    for fac in FACTORS:
        v = f[fac.name]
        if fac.is_categorical:
            counts = np.bincount(v, minlength=fac.n_categories)
            assert counts.size == fac.n_categories
            expected = 5000 / fac.n_categories
            assert np.all(np.abs(counts - expected) < 0.1 * expected), (fac.name, counts)
        else:
            span = fac.high - fac.low
            assert v.min() >= fac.low and v.max() <= fac.high
            assert v.min() < fac.low + 0.01 * span and v.max() > fac.high - 0.01 * span
            assert abs(v.mean() - fac.midpoint) < 0.03 * span


def test_factors_independent() -> None:
    f = sample_factors(5000, 12)
    m = np.stack([f[n].astype(float) for n in FACTOR_NAMES], axis=1)
    corr = np.corrcoef(m, rowvar=False)
    off = np.abs(corr[~np.eye(len(FACTOR_NAMES), dtype=bool)])
    assert off.max() < 0.06, off.max()


@pytest.mark.parametrize("name", FACTOR_NAMES)
def test_each_factor_changes_its_region(name: str) -> None:
    fac = get_factor(name)
    n = 16
    base = sample_factors(n, 3) if name == "head_tilt" else sample_factors(n, 3, head_tilt=0.0)
    if fac.is_categorical:
        pairs = [(a, b) for a in range(fac.n_categories) for b in range(a + 1, fac.n_categories)]
    else:
        pairs = [(fac.low, fac.high)]
    region = REGIONS[name]
    for lo, hi in pairs:
        a = render({**base, name: np.full(n, lo)}, SIZE).astype(np.float64)
        b = render({**base, name: np.full(n, hi)}, SIZE).astype(np.float64)
        d = np.abs(a - b).sum(-1)  # [N, H, W]
        total = d.sum(axis=(1, 2))
        inside = (d * region).sum(axis=(1, 2))
        # every image changes noticeably where the factor lives ...
        assert np.all(inside / region.sum() / 3.0 > 3.0), (name, lo, hi)
        assert np.all(total / d[0].size / 3.0 > 0.5), (name, lo, hi)
        # ... and (almost) nowhere else
        assert np.all(inside / total > 0.97), (name, lo, hi)
    # a small step changes less than the full sweep (continuous factors are graded)
    if not fac.is_categorical:
        mid = render({**base, name: np.full(n, fac.midpoint)}, SIZE).astype(np.float64)
        lo_img = render({**base, name: np.full(n, fac.low)}, SIZE).astype(np.float64)
        hi_img = render({**base, name: np.full(n, fac.high)}, SIZE).astype(np.float64)
        assert np.abs(mid - lo_img).mean() < np.abs(hi_img - lo_img).mean()


def test_neutral_factors_and_grid() -> None:
    f = neutral_factors(4, smile=np.linspace(-1, 1, 4))
    assert f["hair_color"].tolist() == [0, 0, 0, 0]
    assert np.allclose(f["eye_size"], 0.5)
    imgs = render(f, 32)
    grid = image_grid(imgs, ncols=2, upscale=2, pad=1)
    assert grid.shape == (2 * (2 * 32 + 1), 2 * (2 * 32 + 1), 3)
    assert grid.dtype == np.uint8


def test_binarize() -> None:
    assert binarize("smile", np.array([-0.5, 0.0, 0.3])).tolist() == [0, 0, 1]
    assert binarize("hair_color", np.array([0, 1, 2, 3])).tolist() == [0, 0, 1, 1]
    assert binarize("glasses", np.array([0, 1])).tolist() == [0, 1]
    assert binarize("background_hue", np.array([0.1, 0.9])).tolist() == [0, 1]


@pytest.mark.parametrize("spurious", ["background_hue", "glasses"])
def test_spurious_correlation_achieved(spurious: str) -> None:
    n = 4000
    for p in (0.9, 0.5, 0.1):
        task = make_task(n, seed=5, size=32, spurious=spurious, spurious_correlation=p)
        assert isinstance(task, TaskSplit) and len(task) == n
        assert task.images.shape == (n, 32, 32, 3)
        assert abs(task.y.mean() - 0.5) < 0.03
        assert abs(task.spurious_agreement - p) < 0.025, (p, task.spurious_agreement)
        assert np.array_equal(task.spurious, binarize(spurious, task.factors[spurious]))
        assert np.array_equal(task.y, (task.factors["smile"] > 0).astype(np.int64))
        assert abs(task.spurious.mean() - 0.5) < 0.03
        # the protected attribute and all other factors stay independent of y
        assert abs(np.corrcoef(task.y, task.protected)[0, 1]) < 0.06
        for name in FACTOR_NAMES:
            if name not in ("smile", spurious):
                assert abs(np.corrcoef(task.y, task.factors[name])[0, 1]) < 0.06, name
        assert set(np.unique(task.groups)) <= {0, 1, 2, 3}


def test_make_task_options_and_errors() -> None:
    task = make_task(500, seed=0, size=32, class_margin=0.2, spurious=None)
    assert np.all(np.abs(task.factors["smile"]) > 0.2)
    assert np.all(task.spurious == 0)
    assert task.class_names == ("frown", "smile")
    other = make_task(300, seed=1, size=32, class_factor="glasses", protected="hair_color")
    assert np.array_equal(other.y, other.factors["glasses"])
    assert np.array_equal(other.protected, (other.factors["hair_color"] >= 2).astype(np.int64))
    with pytest.raises(Img2TabInputError):
        make_task(10, 0, spurious_correlation=1.5)
    with pytest.raises(Img2TabInputError):
        make_task(10, 0, class_factor="smile", spurious="smile")
    with pytest.raises(Img2TabInputError):
        make_task(10, 0, protected="beard")


def test_make_spurious_splits() -> None:
    train, test = make_spurious_splits(3000, 2000, seed=3, size=32)
    again, _ = make_spurious_splits(3000, 2000, seed=3, size=32)
    assert np.array_equal(train.images, again.images)
    assert train.images.shape == (3000, 32, 32, 3) and test.images.shape == (2000, 32, 32, 3)
    assert train.spurious_correlation == 0.9 and test.spurious_correlation == 0.5
    assert abs(train.spurious_agreement - 0.9) < 0.03
    assert abs(test.spurious_agreement - 0.5) < 0.035
    assert not np.array_equal(train.factors["smile"][:2000], test.factors["smile"])
    assert train.to_tensor().shape == (3000, 3, 32, 32)


@pytest.mark.slow
def test_render_speed_10k() -> None:
    f = sample_factors(10_000, 0)
    # CPU time of this process, so a busy machine does not make the test flaky
    start = time.process_time()
    images = render(f, 64)
    elapsed = time.process_time() - start
    assert images.shape == (10_000, 64, 64, 3)
    assert elapsed < 20.0, f"rendering 10,000 images took {elapsed:.1f} s of CPU time"
