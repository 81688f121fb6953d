"""Ground truth of the concept world: counterfactuals, factor masks and the benchmark tasks."""

import numpy as np
import pytest

from img2tab.errors import Img2TabInputError
from img2tab.world import binarize, neutral_factors, render, sample_factors
from img2tab.world.groundtruth import (
    TASKS,
    benchmark_tasks,
    counterfactual,
    factor_grid,
    factor_masks,
    render_counterfactuals,
    task_splits,
)


def test_counterfactual_is_pure_and_changes_one_factor():
    f = sample_factors(5, seed=0)
    before = {k: v.copy() for k, v in f.items()}
    cf = counterfactual(f, "smile", 0.7)
    for k in f:
        np.testing.assert_array_equal(f[k], before[k])  # input untouched
        if k != "smile":
            np.testing.assert_array_equal(cf[k], f[k])
    np.testing.assert_array_equal(cf["smile"], np.full(5, 0.7))
    cf2 = counterfactual(f, "glasses", np.array([1, 0, 1, 0, 1]))
    np.testing.assert_array_equal(cf2["glasses"], [1, 0, 1, 0, 1])
    with pytest.raises(Img2TabInputError):
        counterfactual(f, "smile", 3.0)  # out of range
    with pytest.raises(Img2TabInputError):
        counterfactual(f, "nose", 0.0)


def test_render_counterfactuals_matches_render():
    f = sample_factors(3, seed=1)
    out = render_counterfactuals(f, "background_hue", [0.1, 0.6], size=32)
    assert out.shape == (2, 3, 32, 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[1], render(counterfactual(f, "background_hue", 0.6), 32))
    # setting the factor to its current value reproduces the image exactly
    same = render_counterfactuals(f, "smile", [f["smile"][0]], size=32)[0, 0]
    np.testing.assert_array_equal(same, render(f, 32)[0])


def test_factor_grid():
    np.testing.assert_allclose(factor_grid("smile", 5), [-1, -0.5, 0, 0.5, 1])
    np.testing.assert_array_equal(factor_grid("hair_color", 5), [0, 1, 2, 3])
    np.testing.assert_array_equal(factor_grid("glasses"), [0, 1])


def test_factor_masks_known_footprints():
    f = neutral_factors(2, head_tilt=0.0)
    m = factor_masks(f, size=32)
    assert set(m) == set(f)
    for v in m.values():
        assert v.shape == (2, 32, 32) and v.dtype == bool
    # the background covers the image corners; nothing of the face touches them
    for name in m:
        corner = m[name][:, 0, 0]
        assert corner.all() == (name == "background_hue"), name
    # the smile mask is small and sits inside the face, below the eyes
    smile = m["smile"][0]
    assert 0 < smile.mean() < 0.1
    rows = np.nonzero(smile)[0]
    assert rows.min() > 16  # lower half of the image
    # masks are exactly where pixels differ between two renders of the extreme values
    a = render(counterfactual(f, "smile", -1.0), 32).astype(int)
    b = render(counterfactual(f, "smile", 1.0), 32).astype(int)
    changed = (np.abs(a - b) > 8).any(-1)
    assert np.all(smile[changed[0]])  # every pixel that changes between extremes is in the mask
    only = factor_masks(f, size=32, factors_to_mask=["glasses"])
    assert list(only) == ["glasses"]
    np.testing.assert_array_equal(only["glasses"], m["glasses"])


def test_benchmark_tasks_bias_and_decorrelated_tests():
    tasks = benchmark_tasks(n_train=400, n_test=400, seed=0, size=32,
                            tasks=("unbiased", "biased", "biased-glasses"))
    assert set(tasks) == {"unbiased", "biased", "biased-glasses"} == set(TASKS)
    for name, (tr, te) in tasks.items():
        spur = TASKS[name]["spurious"]
        assert tr.spurious_factor == te.spurious_factor == spur and tr.class_factor == "smile"
        np.testing.assert_array_equal(tr.spurious, binarize(spur, tr.factors[spur]))
        assert abs(te.spurious_agreement - 0.5) < 0.08
        expected = TASKS[name]["train_correlation"]
        assert abs(tr.spurious_agreement - expected) < 0.06
    tr, te = task_splits("biased", 50, 20, seed=3, size=32)
    tr2, _ = task_splits("biased", 50, 20, seed=3, size=32)
    np.testing.assert_array_equal(tr.images, tr2.images)
    with pytest.raises(Img2TabInputError):
        task_splits("nope", 10, 10)
