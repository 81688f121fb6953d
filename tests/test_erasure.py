"""LEACE (numpy) against the authors' concept-erasure package and its defining properties."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from img2tab.errors import Img2TabInputError
from img2tab.tabular import ConceptClassifier, ErasedClassifier, LinearErasure


def _data(n=600, d=12, seed=0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d))
    z = (rng.random(n) < 0.4).astype(np.int64)
    x = rng.normal(size=(n, d)) @ mix
    x[:, 2] += 1.5 * z
    x[:, 5] -= 0.7 * z
    return x, z


def test_matches_concept_erasure_package():
    torch = pytest.importorskip("torch")
    ce = pytest.importorskip("concept_erasure")
    x, z = _data()
    ours = LinearErasure().fit(x, z)
    ref = ce.LeaceFitter.fit(torch.as_tensor(x), torch.as_tensor(z, dtype=torch.float64)[:, None],
                             shrinkage=False, constrain_cov_trace=False).eraser
    np.testing.assert_allclose(ours.projection_, ref.P.numpy(), atol=1e-9)
    np.testing.assert_allclose(ours.transform(x), ref(torch.as_tensor(x)).numpy(), atol=1e-8)
    assert ours.rank_ == 1


def test_cross_covariance_is_zero_and_no_linear_classifier_beats_chance():
    x, z = _data(n=2000, seed=1)
    xe = LinearErasure().fit(x, z).transform(x)
    cross = (xe - xe.mean(0)).T @ (z - z.mean()) / len(z)
    assert np.abs(cross).max() < 1e-10
    # before: z is linearly decodable; after: the best logistic regression is the constant one
    before = LogisticRegression(C=1e6, max_iter=5000).fit(x, z)
    after = LogisticRegression(C=1e6, max_iter=5000).fit(xe, z)
    p = z.mean()
    entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p))

    def loss(m, a):
        q = np.clip(m.predict_proba(a)[:, 1], 1e-12, 1 - 1e-12)
        return -np.mean(z * np.log(q) + (1 - z) * np.log(1 - q))

    assert loss(before, x) < entropy - 0.1
    assert loss(after, xe) == pytest.approx(entropy, abs=1e-5)
    assert (after.predict(xe) == 0).mean() > 0.9  # it predicts the majority class (p(z=1) = 0.4)


def test_minimal_change_in_the_whitened_metric():
    x, z = _data(n=3000, seed=3)
    era = LinearErasure().fit(x, z)
    xe = era.transform(x)
    sigma = np.cov(x.T)
    lam, vec = np.linalg.eigh(sigma)
    whiten = (vec / np.sqrt(lam)) @ vec.T
    # another eraser that also zeroes the cross-covariance: Euclidean projection off Sigma_xz
    u = (x - x.mean(0)).T @ (z - z.mean())
    u /= np.linalg.norm(u)
    xo = x - np.outer((x - x.mean(0)) @ u, u)
    assert np.abs((xo - xo.mean(0)).T @ (z - z.mean())).max() < 1e-8

    def change(a):
        return float(np.mean(np.sum(((a - x) @ whiten.T) ** 2, axis=1)))

    assert change(xe) < change(xo)
    # the closed form: the whitened change is the squared norm of W Sigma_xz's direction in whitened x
    wz = whiten @ ((x - x.mean(0)).T @ (z - z.mean()) / (len(z) - 1))
    direction = wz / np.linalg.norm(wz)
    expected = float(np.mean((((x - x.mean(0)) @ whiten.T) @ direction) ** 2))
    assert change(xe) == pytest.approx(expected, rel=1e-9)


def test_given_erases_within_strata_and_keeps_the_class():
    rng = np.random.default_rng(4)
    n = 3000
    y = rng.integers(0, 2, n)
    z = np.where(rng.random(n) < 0.9, y, 1 - y)  # nuisance agrees with the class 90 %
    x = rng.normal(size=(n, 5))
    x[:, 0] += 2.0 * y          # class concept
    x[:, 1] += 2.0 * z          # nuisance concept
    plain = LinearErasure().fit(x, z).transform(x)
    cond = LinearErasure().fit(x, z, given=y).transform(x)
    # the pooled within-class cross-covariance with the nuisance is zero after the conditional fit
    pooled = sum((cond[y == c] - cond[y == c].mean(0)).T @ (z[y == c] - z[y == c].mean()) for c in (0, 1))
    assert np.abs(pooled).max() < 1e-8
    # the class stays separable after the conditional fit, much less after the plain one
    acc = {name: LogisticRegression().fit(a, y).score(a, y) for name, a in (("plain", plain), ("cond", cond))}
    assert acc["cond"] > 0.83 > acc["plain"] - 0.02


def test_erased_classifier_and_errors():
    x, z = _data(n=400, seed=5)
    y = (x[:, 0] > 0).astype(int)
    clf = ErasedClassifier.fit_erased(ConceptClassifier("logreg"), x, y, z, given=y)
    assert clf.predict(x).shape == (400,) and clf.predict_proba(x).shape == (400, 2)
    assert clf.n_features_in_ == 12 and clf.classes_.tolist() == [0, 1]
    with pytest.raises(Img2TabInputError, match="single value"):
        LinearErasure().fit(x, np.zeros(400))
    with pytest.raises(Img2TabInputError, match="rows"):
        LinearErasure().fit(x, z[:10])
    with pytest.raises(Img2TabInputError, match="shrinkage"):
        LinearErasure(shrinkage="bad").fit(x, z)
    with pytest.raises(Img2TabInputError, match="expected"):
        LinearErasure().fit(x, z).transform(x[:, :3])
    shrunk = LinearErasure(shrinkage="ledoit_wolf").fit(x, z)
    assert shrunk.rank_ == 1
