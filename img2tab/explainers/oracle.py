"""Oracle concepts: the 8 true factors as the concepts, the upper-bound row of the benchmark.

* **explained model**: any logit function (in the benchmark: Img2Tab's encoder -> Ψ -> XGBoost).
* **concepts**: the factors of the concept world (:data:`img2tab.world.FACTOR_NAMES`), ranked by
  the explained model's true reliance on them measured on training images (mean ``|Δ logit|`` when
  the factor alone changes, :func:`img2tab.world.gt_metrics.true_reliance`).
* **score** ``t_f(x)``: the factor's value rescaled to [0, 1] (categorical: category / (n - 1)),
  exact for images whose factors the :class:`~img2tab.world.groundtruth.FactorLookup` knows, else
  the :class:`~img2tab.world.oracle.FactorOracle` reading.
* **evidence**: the factor mask ``M_f(x)`` (the top ``evidence_top`` masks, importance-weighted, for
  ``concept=None``).
* **intervention**: re-render the image with each given factor moved to the opposite side of its
  range (continuous ``v -> low + high - v``; categorical: the category half-way round, e.g.
  glasses on <-> off), scored by the explained model on the re-rendered image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import Img2TabInputError
from ._protocol import Concept, ConceptExplainer, Intervention, check_concept_indices, check_images

__all__ = ["OracleConceptExplainer", "factor_readings", "opposite_value"]


def factor_readings(factors: dict[str, np.ndarray]) -> np.ndarray:
    """Factor values rescaled to [0, 1], float64 ``[N, 8]`` in :data:`~img2tab.world.FACTOR_NAMES` order."""
    from ..world import FACTORS

    cols = []
    for f in FACTORS:
        v = np.asarray(factors[f.name], dtype=np.float64)
        cols.append(v / (f.n_categories - 1) if f.is_categorical else (v - f.low) / (f.high - f.low))
    return np.stack(cols, axis=1)


def opposite_value(name: str, values: np.ndarray) -> np.ndarray:
    """A factor's values moved to the opposite side of its range (see the module docstring)."""
    from ..world import get_factor

    f = get_factor(name)
    v = np.asarray(values)
    if f.is_categorical:
        return ((v.astype(np.int64) + f.n_categories // 2) % f.n_categories).astype(np.int64)
    return f.low + f.high - v.astype(np.float64)


def _oracle_readings(oracle: Any, images: torch.Tensor) -> np.ndarray:
    from ..world import FACTORS

    read = oracle.read(images)
    cols = []
    for f in FACTORS:
        r = np.asarray(read[f.name], dtype=np.float64)
        if r.ndim == 2:  # class probabilities -> expected category / (n - 1)
            r = r @ np.arange(r.shape[1]) / (r.shape[1] - 1)
        cols.append(np.clip(r, 0.0, 1.0))
    return np.stack(cols, axis=1)


class OracleConceptExplainer(ConceptExplainer):
    """The true factors as concepts (upper bound).

    Args:
        logit_fn: The explained model, images ``[N, 3, H, W]`` -> logits ``[N]``.
        lookup: :class:`~img2tab.world.groundtruth.FactorLookup` with the factors of the images
            that will be scored.
        size: Image size.
        oracle: Optional :class:`~img2tab.world.oracle.FactorOracle` for images the lookup does
            not know (without it such images are an error).
        n_values: Values per continuous factor when measuring reliance in :meth:`fit`.
        n_fit: Training images used to measure reliance in :meth:`fit`.
        evidence_top: Factor masks pooled into the decision evidence.
    """

    name = "oracle-concepts"

    def __init__(self, logit_fn: Callable[[torch.Tensor], np.ndarray], lookup: Any, size: int = 64,
                 oracle: Any = None, n_values: int = 4, n_fit: int = 64, evidence_top: int = 1) -> None:
        self.logit_fn = logit_fn
        self.lookup = lookup
        self.size = size
        self.oracle = oracle
        self.n_values = n_values
        self.n_fit = n_fit
        self.evidence_top = evidence_top

    @classmethod
    def from_context(cls, ctx: Any) -> OracleConceptExplainer:
        """Build (unfitted) for a :class:`~img2tab.world.benchmark.BenchmarkContext`: explains
        the context's XGBoost-on-Ψ model; uses the context's factor lookup and oracle."""
        from .img2tab_w1 import Img2TabExplainer

        base = Img2TabExplainer(ctx.inverter, ctx.psi_classifier, prefitted=True, random_state=ctx.seed)
        base.fit_psi(ctx.psi_train, ctx.train.y)
        return cls(base.model_logit, ctx.lookup, size=ctx.size,
                   n_values=ctx.sizes.n_values, n_fit=ctx.sizes.n_eval)

    # ------------------------------------------------------------------ helpers
    def _factors(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        factors, found = self.lookup.get(images)
        if found.all():
            return factors
        if self.oracle is None:
            raise Img2TabInputError(
                f"{int((~found).sum())} images are unknown to the factor lookup and no oracle was given")
        from ..world import FACTORS

        read = _oracle_readings(self.oracle, images[torch.as_tensor(~found)])
        for j, f in enumerate(FACTORS):
            r = read[:, j]
            if f.is_categorical:
                vals = np.clip(np.round(r * (f.n_categories - 1)), 0, f.n_categories - 1).astype(np.int64)
            else:
                vals = f.low + r * (f.high - f.low)
            factors[f.name][~found] = vals
        return factors

    # ------------------------------------------------------------------ protocol
    def fit(self, images: torch.Tensor, y: np.ndarray) -> OracleConceptExplainer:
        """Rank the factors by the explained model's true reliance on ``n_fit`` training images
        (whose factors the lookup must know)."""
        from ..world import FACTOR_NAMES
        from ..world.gt_metrics import true_reliance

        x = check_images(images)[: int(self.n_fit)]
        factors = self._factors(x)
        rel = true_reliance(self.logit_fn, factors, self.size, n_values=self.n_values, progress=False)
        order = np.argsort(-rel, kind="stable")
        self.factor_order_ = order
        self.concepts_ = tuple(Concept(name=FACTOR_NAMES[j], importance=float(rel[j]),
                                       info={"factor": FACTOR_NAMES[j]}) for j in order)
        return self

    def concept_scores(self, images: torch.Tensor) -> np.ndarray:
        """Factor readings in [0, 1], ``[N, 8]`` in rank order."""
        self._check_fitted()
        return factor_readings(self._factors(check_images(images)))[:, self.factor_order_]

    def model_logit(self, images: torch.Tensor) -> np.ndarray:
        """The explained model's logit."""
        return np.asarray(self.logit_fn(check_images(images)), dtype=np.float64)

    def intervene(self, images: torch.Tensor, concepts: Sequence[int]) -> Intervention:
        """Re-render with the given factors on the opposite side of their range."""
        from ..world import FACTOR_NAMES, render
        from ..world._world import _to_tensor

        self._check_fitted()
        idx = check_concept_indices(concepts, len(self.concepts_))
        x = check_images(images)
        factors = self._factors(x)
        for i in idx:
            name = FACTOR_NAMES[self.factor_order_[i]]
            factors[name] = opposite_value(name, factors[name])
        after_imgs = _to_tensor(render(factors, self.size)) if len(x) else x.clone()
        if len(x):
            self.lookup.add(after_imgs, factors)
        return Intervention(concepts=idx, logit_before=self.model_logit(x),
                            logit_after=self.model_logit(after_imgs), images_after=after_imgs)

    def evidence(self, images: torch.Tensor, concept: int | None = None) -> np.ndarray | None:
        """The factor mask(s) as float ``[N, H, W]``."""
        from ..world import FACTOR_NAMES
        from ..world.groundtruth import factor_masks

        self._check_fitted()
        idx, w = self._evidence_weights(concept, self.evidence_top)
        names = [FACTOR_NAMES[self.factor_order_[i]] for i in idx]
        masks = factor_masks(self._factors(check_images(images)), self.size, names, n_values=self.n_values)
        return sum(float(wj) * masks[n].astype(np.float64) for wj, n in zip(w, names))
