"""Per-feature Wasserstein-1 relevance: exactness against scipy, invariances, validation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from img2tab.errors import Img2TabInputError
from img2tab.tabular._dataset import standardize
from img2tab.tabular._wasserstein import (
    _quantile_grid,
    rank_by_relevance,
    wasserstein_relevance,
)


def _tied_data(n=233, d=23, seed=0, p=0.37):
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=(n, d)) * 2, 0).astype(np.float32) / 2  # heavy ties
    x[:, -1] = rng.gamma(1.0, size=n).astype(np.float32)  # no ties, skewed
    y = (rng.random(n) < p).astype(np.int64)
    return x, y


def _scipy(z, a_mask, b_mask, wa=None, wb=None):
    return np.array(
        [
            wasserstein_distance(
                z[a_mask, k],
                z[b_mask, k],
                None if wa is None else wa,
                None if wb is None else wb,
            )
            for k in range(z.shape[1])
        ]
    )


@pytest.mark.parametrize("std", [False, True])
@pytest.mark.parametrize("chunk_size", [None, 1, 6])
def test_binary_matches_scipy_with_ties(std, chunk_size):
    x, y = _tied_data()
    got = wasserstein_relevance(x, y, standardize=std, chunk_size=chunk_size)
    z = standardize(x)[0] if std else x.astype(np.float64)
    ref = _scipy(z, y == 1, y == 0)
    assert got.shape == (x.shape[1],) and got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("n0,n1", [(1, 1), (1, 7), (50, 50), (97, 13), (64, 36)])
def test_unequal_class_sizes(n0, n1):
    rng = np.random.default_rng(n0 * 100 + n1)
    x = rng.normal(size=(n0 + n1, 9))
    y = np.r_[np.zeros(n0, int), np.ones(n1, int)]
    perm = rng.permutation(n0 + n1)
    x, y = x[perm], y[perm]
    got = wasserstein_relevance(x, y, standardize=False)
    np.testing.assert_allclose(got, _scipy(x, y == 0, y == 1), rtol=0, atol=1e-9)


def test_quantile_grid_properties():
    ia, ib, length = _quantile_grid(6, 4)
    assert np.isclose(length.sum(), 1.0) and (length > 0).all()
    assert ia.max() == 5 and ib.max() == 3
    assert (np.diff(ia) >= 0).all() and (np.diff(ib) >= 0).all()
    assert len(ia) <= 6 + 4 - 1


def test_float64_input_and_label_types():
    x, y = _tied_data(n=120, d=7, seed=3)
    ref = wasserstein_relevance(x, y)
    np.testing.assert_allclose(wasserstein_relevance(x.astype(np.float64), y), ref, atol=1e-12)
    np.testing.assert_array_equal(wasserstein_relevance(x, y.astype(bool)), ref)
    np.testing.assert_array_equal(wasserstein_relevance(x, np.where(y == 1, "m", "f")), ref)
    np.testing.assert_array_equal(wasserstein_relevance(x, y * 5 - 2), ref)


@pytest.mark.parametrize("std", [False, True])
def test_multiclass_ovr_and_pairwise(std):
    rng = np.random.default_rng(1)
    n, d = 180, 11
    x = np.round(rng.normal(size=(n, d)), 1)
    y = rng.choice(np.array(["a", "b", "c", "d"]), size=n, p=[0.1, 0.2, 0.3, 0.4])
    z = standardize(x)[0] if std else x
    ovr, classes = wasserstein_relevance(x, y, std, multiclass="ovr", return_classes=True)
    np.testing.assert_array_equal(classes, np.unique(y))
    assert ovr.shape == (4, d)
    ref = np.stack([_scipy(z, y == c, y != c) for c in classes])
    np.testing.assert_allclose(ovr, ref, rtol=0, atol=1e-9)

    pw, pairs = wasserstein_relevance(x, y, std, multiclass="pairwise", chunk_size=4, return_classes=True)
    assert pairs == list(itertools.combinations(["a", "b", "c", "d"], 2))
    assert pw.shape == (6, d)
    ref = np.stack([_scipy(z, y == a, y == b) for a, b in pairs])
    np.testing.assert_allclose(pw, ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("std", [False, True])
def test_weighted_matches_scipy(std):
    x, y = _tied_data(n=150, d=8, seed=4)
    rng = np.random.default_rng(5)
    w = rng.random(150) * 3
    w[::9] = 0.0
    got = wasserstein_relevance(x, y, std, sample_weight=w, chunk_size=3)
    z = standardize(x, sample_weight=w)[0] if std else x.astype(np.float64)
    ref = _scipy(z, y == 1, y == 0, w[y == 1], w[y == 0])
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
    # unit weights reproduce the unweighted (quantile) path
    np.testing.assert_allclose(
        wasserstein_relevance(x, y, std, sample_weight=np.ones(150)),
        wasserstein_relevance(x, y, std),
        rtol=0,
        atol=1e-12,
    )


def test_weighted_multiclass_pairwise():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(90, 5))
    y = rng.integers(0, 3, 90)
    w = rng.random(90) + 0.1
    got = wasserstein_relevance(x, y, False, sample_weight=w, multiclass="pairwise")
    ref = np.stack(
        [_scipy(x, y == a, y == b, w[y == a], w[y == b]) for a, b in itertools.combinations(range(3), 2)]
    )
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


def test_planted_feature_is_top():
    rng = np.random.default_rng(7)
    n, d, k = 600, 300, 137
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (rng.random(n) < 0.45).astype(int)
    x[:, k] += 1.5 * y
    x[:, 42] *= 1000.0  # large raw scale, no signal: must not win after standardisation
    w1 = wasserstein_relevance(x, y)
    assert int(np.argmax(w1)) == k
    assert rank_by_relevance(w1)[0] == k
    assert int(np.argmax(wasserstein_relevance(x, y, standardize=False))) == 42


@pytest.mark.parametrize("a,b", [(3.0, -7.0), (-0.25, 100.0), (1e4, 0.0)])
def test_affine_invariance_after_standardization(a, b):
    x, y = _tied_data(n=200, d=6, seed=8)
    x = x.astype(np.float64)
    x2 = x.copy()
    x2[:, 2] = a * x2[:, 2] + b
    w = wasserstein_relevance(x, y)
    w2 = wasserstein_relevance(x2, y)
    np.testing.assert_allclose(w2, w, rtol=1e-9, atol=1e-12)


def test_constant_columns_are_exactly_zero():
    x, y = _tied_data(n=100, d=5, seed=9)
    x[:, 1] = 0.1  # not exactly representable: mean != value in floating point
    x[:, 3] = 0.0
    for std in (False, True):
        w = wasserstein_relevance(x, y, std)
        assert np.isfinite(w).all()
        assert w[1] == 0.0 and w[3] == 0.0
    w = wasserstein_relevance(x, y, sample_weight=np.linspace(1, 2, 100))
    assert w[1] == 0.0 and w[3] == 0.0


def test_inputs_not_mutated_and_readonly_ok():
    x, y = _tied_data(n=90, d=7, seed=10)
    w = np.random.default_rng(0).random(90)
    xc, yc, wc = x.copy(), y.copy(), w.copy()
    x.setflags(write=False)
    wasserstein_relevance(x, y)
    wasserstein_relevance(x, y, sample_weight=w)
    wasserstein_relevance(x, np.arange(90) % 3, multiclass="pairwise")
    np.testing.assert_array_equal(x, xc)
    np.testing.assert_array_equal(y, yc)
    np.testing.assert_array_equal(w, wc)


def test_fortran_order_and_memmap(tmp_path):
    x, y = _tied_data(n=70, d=9, seed=11)
    ref = wasserstein_relevance(x, y)
    np.testing.assert_array_equal(wasserstein_relevance(np.asfortranarray(x), y), ref)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    np.testing.assert_array_equal(wasserstein_relevance(mm, y, chunk_size=2), ref)


@pytest.mark.parametrize(
    "bad,match",
    [
        ("nan", r"1 NaN and 0 inf"),
        ("inf", r"0 NaN and 1 inf"),
    ],
)
def test_nonfinite_raises(bad, match):
    x, y = _tied_data(n=50, d=4, seed=12)
    x = x.copy()
    x[3, 1] = np.nan if bad == "nan" else np.inf
    with pytest.raises(Img2TabInputError, match=match) as info:
        wasserstein_relevance(x, y)
    msg = str(info.value)
    assert "1 rows (3)" in msg and "1 columns (1)" in msg and "drop" in msg


def test_validation_errors():
    x, y = _tied_data(n=50, d=4, seed=13)
    with pytest.raises(Img2TabInputError, match="at least 2 classes"):
        wasserstein_relevance(x, np.zeros(50))
    with pytest.raises(Img2TabInputError, match="49 entries but psi has 50 rows"):
        wasserstein_relevance(x, y[:-1])
    with pytest.raises(Img2TabInputError, match="2-D"):
        wasserstein_relevance(x[:, 0], y)
    with pytest.raises(Img2TabInputError, match="multiclass"):
        wasserstein_relevance(x, np.arange(50) % 3, multiclass="ovo")
    with pytest.raises(Img2TabInputError, match="sample_weight"):
        wasserstein_relevance(x, y, sample_weight=-np.ones(50))
    w = np.ones(50)
    w[y == 1] = 0
    with pytest.raises(Img2TabInputError, match="zero total sample_weight"):
        wasserstein_relevance(x, y, sample_weight=w)
    with pytest.raises(Img2TabInputError, match="chunk_size"):
        wasserstein_relevance(x, y, chunk_size=0)
    with pytest.raises(Img2TabInputError, match="numeric"):
        wasserstein_relevance(np.full((50, 2), "a"), y)


def test_progress_bar_runs(capsys):
    x, y = _tied_data(n=40, d=5, seed=14)
    np.testing.assert_array_equal(
        wasserstein_relevance(x, y, progress=True, chunk_size=2), wasserstein_relevance(x, y)
    )


def test_rank_by_relevance_stable_ties():
    w = np.array([0.5, 2.0, 0.5, 2.0, 0.0, np.nan])
    np.testing.assert_array_equal(rank_by_relevance(w), [1, 3, 0, 2, 4, 5])
    r2 = rank_by_relevance(np.array([[1.0, 3.0, 3.0], [0.0, 0.0, 1.0]]))
    np.testing.assert_array_equal(r2, [[1, 2, 0], [2, 0, 1]])
    assert rank_by_relevance([0.0, 0.0]).dtype == np.int64


@pytest.mark.parametrize("kw", [{}, {"sample_weight": np.linspace(0.2, 3.0, 400)}])
def test_threads_give_identical_results_and_match_scipy(kw, monkeypatch):
    import img2tab.tabular._wasserstein as w1_mod

    monkeypatch.setattr(w1_mod, "_READ_BYTES", 4 * 400 * 6)  # 6-column read blocks: 9 blocks
    rng = np.random.default_rng(11)
    x = np.round(rng.normal(size=(400, 50)), 1).astype(np.float32)  # ties
    y = (rng.random(400) < 0.4).astype(int)
    one = wasserstein_relevance(x, y, standardize=False, chunk_size=3, n_jobs=1, **kw)
    many = wasserstein_relevance(x, y, standardize=False, chunk_size=3, n_jobs=4, **kw)
    np.testing.assert_array_equal(one, many)  # every block writes its own columns
    w = kw.get("sample_weight")
    ref = [wasserstein_distance(x[y == 0, k], x[y == 1, k], None if w is None else w[y == 0],
                                None if w is None else w[y == 1]) for k in range(50)]
    np.testing.assert_allclose(many, ref, rtol=0, atol=1e-12)
    with pytest.raises(Img2TabInputError, match="n_jobs"):
        wasserstein_relevance(x, y, n_jobs=0)
