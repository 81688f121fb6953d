"""Linear concept erasure of a nuisance attribute from Ψ (LEACE, numpy only).

LEACE (LEAst-squares Concept Erasure; Belrose et al., "LEACE: Perfect linear concept erasure in
closed form", NeurIPS 2023) is the affine map ``x -> x - (x - mu) R^T L^T`` with the smallest
expected change in the whitened metric ``E ||W (x' - x)||^2`` (``W = Sigma_xx^{-1/2}``) among all
maps after which the cross-covariance between Ψ and the nuisance ``z`` is zero, i.e. no linear
classifier can predict ``z`` better than a constant. In closed form: ``U`` = left singular vectors
of ``W Sigma_xz`` (above a tolerance), ``L = W^+ U``, ``R = U^T W``.

This is a torch-free re-implementation (the authors' package ``concept-erasure`` needs torch; the
tests check this one against it). Two additions for debugging a classifier:

* ``given``: fit on data centred within each stratum of ``given`` (e.g. the class label): only the
  nuisance direction *within* classes is erased, so the class signal that is correlated with the
  nuisance in a biased training split is kept;
* ``shrinkage``: Ledoit-Wolf shrinkage of ``Sigma_xx`` for when there are fewer rows than a few
  times the number of concepts.

:class:`ErasedClassifier` is a classifier trained on erased Ψ that takes raw Ψ.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

from img2tab.errors import Img2TabInputError

__all__ = ["ErasedClassifier", "LinearErasure"]


def _as_z(z: Any, n: int) -> np.ndarray:
    """Nuisance as a float matrix ``(n, m)``: labels -> indicator columns, vectors -> one column."""
    arr = np.asarray(z)
    if arr.shape[0] != n:
        raise Img2TabInputError(f"z has {arr.shape[0]} rows but X has {n}")
    if arr.ndim == 2:
        out = arr.astype(np.float64)
    elif arr.ndim == 1:
        if arr.dtype.kind in "fc" and np.unique(arr).size > 2:
            out = arr.astype(np.float64)[:, None]
        else:
            values = np.unique(arr)
            if values.size < 2:
                raise Img2TabInputError("z takes a single value: there is nothing to erase")
            # k groups -> k - 1 indicator columns (the last is implied by the others)
            out = (arr[:, None] == values[None, 1:]).astype(np.float64)
    else:
        raise Img2TabInputError(f"z must be (N,) labels or an (N, m) matrix, got shape {arr.shape}")
    if not np.isfinite(out).all():
        raise Img2TabInputError("z contains NaN/inf")
    return out


class LinearErasure(TransformerMixin, BaseEstimator):
    """LEACE eraser of a nuisance ``z`` from Ψ, an scikit-learn transformer (``fit(X, z)``).

    Args:
        shrinkage: None (sample covariance), ``"ledoit_wolf"`` or a float in [0, 1] (convex mix
            of the sample covariance with ``trace/D * I``).
        svd_tol: singular values of ``W Sigma_xz`` at or below this are not erased.

    Fitted attributes:
        mean_: ``(D,)`` mean of the training Ψ (the affine part).
        proj_left_, proj_right_: ``(D, r)`` and ``(r, D)``; the eraser is
            ``x - (x - mean_) @ proj_right_.T @ proj_left_.T``.
        rank_: ``r``, the dimension of the erased subspace (1 for a binary nuisance).
        n_features_in_: ``D``.
    """

    def __init__(self, shrinkage: str | float | None = None, svd_tol: float = 0.01) -> None:
        self.shrinkage = shrinkage
        self.svd_tol = svd_tol

    def fit(self, X: Any, z: Any, *, given: Any = None) -> LinearErasure:
        """Fit on Ψ ``X (N, D)`` and nuisance ``z`` (``(N,)`` labels or ``(N, m)`` values).

        Args:
            X: ``(N, D)`` Ψ. Not modified.
            z: the nuisance.
            given: optional ``(N,)`` strata (e.g. class labels): covariances are pooled over
                data centred within each stratum.

        Returns:
            self.
        """
        x = np.asarray(X, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise Img2TabInputError(f"X must be (N, D) with N >= 2, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise Img2TabInputError("X contains NaN/inf")
        n, d = x.shape
        zz = _as_z(z, n)
        if not float(self.svd_tol) > 0:
            raise Img2TabInputError(f"svd_tol must be > 0, got {self.svd_tol!r}")
        self.mean_ = x.mean(0)
        if given is None:
            xc = x - self.mean_
            zc = zz - zz.mean(0)
            dof = n - 1
        else:
            g = np.asarray(given).reshape(-1)
            if g.shape[0] != n:
                raise Img2TabInputError(f"given has {g.shape[0]} entries but X has {n} rows")
            xc = np.empty_like(x)
            zc = np.empty_like(zz)
            for value in np.unique(g):
                m = g == value
                xc[m] = x[m] - x[m].mean(0)
                zc[m] = zz[m] - zz[m].mean(0)
            dof = n - np.unique(g).size
        sigma_xx = (xc.T @ xc) / dof
        sigma_xx = (sigma_xx + sigma_xx.T) / 2
        sigma_xx = self._shrink(sigma_xx, xc)
        sigma_xz = (xc.T @ zc) / dof
        lam, vec = np.linalg.eigh(sigma_xx)
        keep = lam > lam[-1] * d * np.finfo(np.float64).eps
        lam = np.clip(lam, 0.0, None)
        inv_sqrt = np.where(keep, 1.0 / np.sqrt(np.where(keep, lam, 1.0)), 0.0)
        sqrt = np.where(keep, np.sqrt(lam), 0.0)
        whiten = (vec * inv_sqrt) @ vec.T
        unwhiten = (vec * sqrt) @ vec.T
        u, s, _ = np.linalg.svd(whiten @ sigma_xz, full_matrices=False)
        u = u[:, s > float(self.svd_tol)]
        self.proj_left_ = unwhiten @ u
        self.proj_right_ = u.T @ whiten
        self.rank_ = int(u.shape[1])
        self.n_features_in_ = d
        return self

    def _shrink(self, sigma: np.ndarray, xc: np.ndarray) -> np.ndarray:
        s = self.shrinkage
        if s is None:
            return sigma
        if s == "ledoit_wolf":
            from sklearn.covariance import ledoit_wolf_shrinkage

            alpha = float(ledoit_wolf_shrinkage(xc, assume_centered=True))
        elif isinstance(s, float | int) and 0.0 <= float(s) <= 1.0:
            alpha = float(s)
        else:
            raise Img2TabInputError(f"shrinkage must be None, 'ledoit_wolf' or a float in [0, 1], got {s!r}")
        mu = np.trace(sigma) / sigma.shape[0]
        return (1 - alpha) * sigma + alpha * mu * np.eye(sigma.shape[0])

    @property
    def projection_(self) -> np.ndarray:
        """The ``(D, D)`` linear part ``I - proj_left_ @ proj_right_``."""
        check_is_fitted(self, "proj_left_")
        return np.eye(self.n_features_in_) - self.proj_left_ @ self.proj_right_

    def transform(self, X: Any) -> np.ndarray:
        """Erased Ψ ``(N, D)`` (float64 for float64 input, else float32). Not in place."""
        check_is_fitted(self, "proj_left_")
        x = np.asarray(X)
        if x.ndim != 2 or x.shape[1] != self.n_features_in_:
            raise Img2TabInputError(f"X has shape {x.shape}, expected (N, {self.n_features_in_})")
        dtype = np.float64 if x.dtype == np.float64 else np.float32
        xd = x.astype(np.float64)
        out = xd - ((xd - self.mean_) @ self.proj_right_.T) @ self.proj_left_.T
        return out.astype(dtype)


class ErasedClassifier:
    """A fitted classifier on erased Ψ that takes raw Ψ: ``clf.predict(eraser.transform(X))``.

    Build it with :meth:`fit_erased`; it has ``classes_``, ``n_features_in_``, ``predict``,
    ``predict_proba`` (and ``decision_function`` when the classifier has one), so the metrics of
    :mod:`img2tab.tabular` accept it.
    """

    def __init__(self, eraser: LinearErasure, classifier: Any) -> None:
        self.eraser = eraser
        self.classifier = classifier
        self.classes_ = np.asarray(classifier.classes_)
        self.n_features_in_ = eraser.n_features_in_

    @classmethod
    def fit_erased(cls, clf: Any, X: Any, y: Any, z: Any, *, given: Any = None,
                   shrinkage: str | float | None = "ledoit_wolf") -> ErasedClassifier:
        """Erase ``z`` from ``X`` (LEACE fitted on ``X``), then fit ``clone(clf)`` on the result."""
        eraser = LinearErasure(shrinkage=shrinkage).fit(X, z, given=given)
        return cls(eraser, clone(clf).fit(eraser.transform(X), y))

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.classifier.predict(self.eraser.transform(X)))

    def predict_proba(self, X: Any) -> np.ndarray:
        return np.asarray(self.classifier.predict_proba(self.eraser.transform(X)))

    def decision_function(self, X: Any) -> np.ndarray:
        return np.asarray(self.classifier.decision_function(self.eraser.transform(X)))
