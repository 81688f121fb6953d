"""Img2Tab as a :class:`~img2tab.explainers.ConceptExplainer`.

* **explained model**: encoder -> Ψ -> tabular classifier (XGBoost by default); the logit is the
  classifier's margin on ``Ψ(E(x))``.
* **concept**: one Ψ channel ``k`` (a StyleSpace layer and channel).
* **score** ``t_c(x)``: standardized Ψ, ``(Ψ_k(E(x)) - mean_k) / sd_k`` (mean and sd of the training
  split).
* **importance** ``w_c`` (``ranking``): ``"w1"`` -- the Wasserstein-1 distance between the
  class-conditional distributions of standardized Ψ_k (Img2Tab's concept ranking);
  ``"importance"`` -- the classifier's importance (XGBoost ``total_gain``; other models their
  ``feature_importances_``); ``"random"`` -- random channels with random importances (the lower
  bound of the benchmark).
* **evidence** ``e(x)``: ``sum_rgb |G(Ψ + k sd_c e_c) - G(Ψ)|`` -- where in the picture a ``+k`` sd
  edit of the channel changes pixels; for ``concept=None``, the importance-weighted mean of this map
  over the top ``evidence_top`` concepts.
* **intervention**: every given concept is moved by ``k`` sd (``strength``) in the direction that
  lowers the image's current class: a concept's direction ``d_c = sign(mean(t_c | y=1) - mean(t_c |
  y=0))`` on the training split; an image predicted as class 1 gets ``Ψ_c -= k sd_c d_c``, one
  predicted as class 0 gets ``Ψ_c += k sd_c d_c``. The edited Ψ goes straight through the
  classifier (features only, no re-encoding) for ``logit_after``; ``images_after`` is the edit
  rendered by the generator (for the oracle's reading of what really changed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import Img2TabInputError
from ._protocol import Concept, ConceptExplainer, Intervention, check_concept_indices, check_images

__all__ = ["Img2TabExplainer"]

_RANKINGS = ("w1", "importance", "random")


class Img2TabExplainer(ConceptExplainer):
    """Img2Tab's concepts (Ψ channels) behind the explainer protocol.

    Args:
        inverter: The :class:`~img2tab.Inverter` (encoder + generator).
        classifier: A :class:`~img2tab.tabular.ConceptClassifier` (unfitted: cloned and fitted on
            Ψ of the training split; fitted: used as is when ``prefitted=True``). Default:
            ``ConceptClassifier(random_state=random_state)`` (XGBoost).
        ranking: ``"w1"``, ``"importance"`` or ``"random"`` (see the module docstring).
        n_concepts: Number of ranked concepts kept (``K``).
        strength: Edit size ``k`` in standard deviations of Ψ (evidence and intervention).
        evidence_top: Concepts pooled into the decision evidence (``evidence(images, None)``).
        prefitted: Use ``classifier`` as already fitted on Ψ.
        random_state: Seed of the classifier and of the random ranking.
        batch_size: Images per encoder / generator call.
    """

    def __init__(
        self,
        inverter: Any,
        classifier: Any = None,
        ranking: str = "w1",
        n_concepts: int = 20,
        strength: float = 2.0,
        evidence_top: int = 3,
        prefitted: bool = False,
        random_state: int = 0,
        batch_size: int = 64,
    ) -> None:
        self.inverter = inverter
        self.classifier = classifier
        self.ranking = ranking
        self.n_concepts = n_concepts
        self.strength = strength
        self.evidence_top = evidence_top
        self.prefitted = prefitted
        self.random_state = random_state
        self.batch_size = batch_size
        self.name = {"w1": "img2tab-w1", "importance": "img2tab-importance",
                     "random": "random-concepts"}.get(ranking, "img2tab")

    # ------------------------------------------------------------------ fitting
    def fit(self, images: torch.Tensor, y: np.ndarray) -> Img2TabExplainer:
        """Encode the training images, fit the classifier on Ψ and rank the channels."""
        x = check_images(images)
        return self.fit_psi(self._encode(x), y)

    def fit_psi(self, psi: np.ndarray, y: np.ndarray) -> Img2TabExplainer:
        """Like :meth:`fit` from precomputed Ψ ``[N, D]`` of the training images."""
        from sklearn.base import clone

        from ..tabular import ConceptClassifier, wasserstein_relevance

        if self.ranking not in _RANKINGS:
            raise Img2TabInputError(f"ranking must be one of {_RANKINGS}, got {self.ranking!r}")
        if int(self.n_concepts) < 1 or float(self.strength) <= 0 or int(self.evidence_top) < 1:
            raise Img2TabInputError("n_concepts, strength and evidence_top must be positive")
        psi = np.asarray(psi, dtype=np.float64)
        y = np.asarray(y)
        if psi.ndim != 2 or y.shape != (psi.shape[0],):
            raise Img2TabInputError(f"psi [N, D] and y [N] must match, got {psi.shape} and {y.shape}")
        if np.unique(y).size != 2:
            raise Img2TabInputError("Img2TabExplainer explains binary tasks; y needs two classes")
        self.mean_ = psi.mean(0)
        sd = psi.std(0)
        self.scale_ = np.where(sd > 1e-12, sd, 1.0)
        z = (psi - self.mean_) / self.scale_
        y01 = (y == np.unique(y)[1])
        self.direction_ = np.sign(z[y01].mean(0) - z[~y01].mean(0))
        self.direction_[self.direction_ == 0] = 1.0
        if self.prefitted and self.classifier is not None:
            self.classifier_ = self.classifier
        else:
            base = self.classifier if self.classifier is not None else ConceptClassifier(
                random_state=self.random_state)
            self.classifier_ = clone(base).fit(psi.astype(np.float32), y)
        d = psi.shape[1]
        k = min(int(self.n_concepts), d)
        if self.ranking == "random":
            rng = np.random.default_rng(self.random_state)
            cols = rng.choice(d, size=k, replace=False)
            scores = np.sort(rng.uniform(0.0, 1.0, size=k))[::-1]
        else:
            full = (wasserstein_relevance(psi, y) if self.ranking == "w1"
                    else self._classifier_importance(d))
            full = np.asarray(full, dtype=np.float64).ravel()
            cols = np.argsort(-full, kind="stable")[:k]
            scores = full[cols]
        self.columns_ = np.asarray(cols, dtype=np.int64)
        layout = self.inverter.layout
        self.concepts_ = tuple(
            Concept(name=layout.label(int(c)), importance=float(s),
                    info={"psi_index": int(c), "layer": int(layout.locate(int(c))[0]),
                          "channel": int(layout.locate(int(c))[1]),
                          "direction": int(self.direction_[c])})
            for c, s in zip(self.columns_, scores)
        )
        return self

    def _classifier_importance(self, d: int) -> np.ndarray:
        """XGBoost ``total_gain`` per Ψ column (rounds used for prediction); else ``feature_importances_``."""
        clf = self.classifier_
        est = getattr(clf, "estimator_", None)
        if getattr(clf, "model", None) == "xgboost" and hasattr(est, "get_booster"):
            booster = est.get_booster()
            best = getattr(clf, "best_iteration_", None)
            if best is not None:
                booster = booster[: best + 1]
            inner = np.zeros(len(clf.kept_features_), dtype=np.float64)
            names = booster.feature_names
            lookup = {n: i for i, n in enumerate(names)} if names else None
            for key, val in booster.get_score(importance_type="total_gain").items():
                inner[lookup[key] if lookup is not None else int(key[1:])] = float(val)
            out = np.zeros(d, dtype=np.float64)
            out[np.asarray(clf.kept_features_)] = inner
            return out
        return np.asarray(clf.feature_importances_, dtype=np.float64)

    # ------------------------------------------------------------------ helpers
    def _encode(self, x: torch.Tensor) -> np.ndarray:
        if x.shape[0] == 0:
            return np.zeros((0, self.inverter.layout.total), dtype=np.float64)
        psi, _ = self.inverter.encode_psi(x, batch_size=int(self.batch_size), with_w=False)
        return psi.astype(np.float64)

    def _psi(self, images: torch.Tensor) -> np.ndarray:
        """Ψ of images, memoised for the last batch seen (same tensor object, unchanged)."""
        x = check_images(images)
        version = getattr(images, "_version", None)
        cached = getattr(self, "_last_psi", None)
        # the cache holds the tensor itself, so its id cannot be reused by another tensor meanwhile
        if cached is not None and cached[0] is images and cached[1] == version:
            return cached[2]
        psi = self._encode(x)
        self._last_psi = (images, version, psi)
        return psi

    def _logit_psi(self, psi: np.ndarray) -> np.ndarray:
        if psi.shape[0] == 0:
            return np.zeros(0)
        return np.asarray(self.classifier_.decision_function(psi.astype(np.float32)), dtype=np.float64)

    def _render(self, psi: np.ndarray) -> torch.Tensor:
        from ..edits import render_psi

        out = render_psi(self.inverter.generator, torch.as_tensor(psi, dtype=torch.float32),
                         batch_size=int(self.batch_size))
        return out.clamp(-1.0, 1.0)

    # ------------------------------------------------------------------ protocol
    def concept_scores(self, images: torch.Tensor) -> np.ndarray:
        """Standardized Ψ of the ranked channels, ``[N, K]``."""
        self._check_fitted()
        psi = self._psi(images)
        c = self.columns_
        return (psi[:, c] - self.mean_[c]) / self.scale_[c]

    def model_logit(self, images: torch.Tensor) -> np.ndarray:
        """Classifier margin on ``Ψ(E(x))``, ``[N]``."""
        self._check_fitted()
        return self._logit_psi(self._psi(images))

    def predict(self, images: torch.Tensor) -> np.ndarray | None:
        """The classifier's predictions on ``Ψ(E(x))`` (the explained model is the predictor)."""
        self._check_fitted()
        return np.asarray(self.classifier_.predict(self._psi(images).astype(np.float32)))

    def intervene(self, images: torch.Tensor, concepts: Sequence[int], render: bool = True) -> Intervention:
        """``±k`` sd edit of the given concepts towards the other class (see the module docstring)."""
        self._check_fitted()
        idx = check_concept_indices(concepts, len(self.concepts_))
        psi = self._psi(images)
        before = self._logit_psi(psi)
        sign = np.where(before > 0, -1.0, 1.0)  # lower the current class
        edited = psi.copy()
        for i in idx:
            col = self.columns_[i]
            edited[:, col] += sign * float(self.strength) * self.scale_[col] * self.direction_[col]
        after = self._logit_psi(edited)
        imgs = self._render(edited) if render and psi.shape[0] else None
        return Intervention(concepts=idx, logit_before=before, logit_after=after, images_after=imgs)

    def evidence(self, images: torch.Tensor, concept: int | None = None) -> np.ndarray | None:
        """``sum_rgb |G(Ψ + k sd e_c) - G(Ψ)|`` ``[N, H, W]`` (importance-weighted over the top
        ``evidence_top`` concepts when ``concept`` is None)."""
        self._check_fitted()
        idx, w = self._evidence_weights(concept, self.evidence_top)
        psi = self._psi(images)
        n = psi.shape[0]
        batch = [psi]
        for i in idx:
            e = psi.copy()
            col = self.columns_[i]
            e[:, col] += float(self.strength) * self.scale_[col]
            batch.append(e)
        imgs = self._render(np.concatenate(batch)).double()
        base = imgs[:n]
        out = torch.zeros(n, *imgs.shape[-2:], dtype=torch.float64)
        for j, wj in enumerate(w):
            out += float(wj) * (imgs[(j + 1) * n:(j + 2) * n] - base).abs().sum(1)
        return out.numpy()
