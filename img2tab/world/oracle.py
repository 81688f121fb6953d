"""The factor oracle and concept validity: does editing a concept move the factor it should?

* :class:`FactorOracle` / :func:`train_factor_oracle`: a CNN that reads every concept-world factor
  off an image;
* :func:`concept_validity`: edit concepts by ±k standard deviations, render, read the factors
  with the oracle -> concepts x factors effect matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..networks.cnn import SmallCNN, fit_cnn
from ..networks.inverter import Inverter
from ._world import FACTORS, ConceptWorld, Factor

__all__ = ["FactorOracle", "concept_validity", "train_factor_oracle"]


class FactorOracle(nn.Module):
    """A CNN reading every concept-world factor off an image.

    :meth:`read` returns, per factor, a ``[N]`` value in [0, 1] (continuous factors rescaled to
    their range, binary factors as a probability) or ``[N, K]`` class probabilities.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.factors = FACTORS
        self.n_out = [f.n_categories if (f.is_categorical and f.n_categories > 2) else 1
                      for f in FACTORS]
        self.net = SmallCNN(size, sum(self.n_out))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.split(self.net(x), self.n_out, dim=1))

    def targets(self, factors: dict[str, np.ndarray]) -> list[torch.Tensor]:
        out = []
        for f in self.factors:
            v = np.asarray(factors[f.name])
            if f.is_categorical and f.n_categories > 2:
                out.append(torch.as_tensor(v, dtype=torch.long))
            elif f.is_categorical:
                out.append(torch.as_tensor(v, dtype=torch.float32))
            else:
                out.append(torch.as_tensor((v - f.low) / (f.high - f.low), dtype=torch.float32))
        return out

    def loss(self, outs: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
        total = torch.zeros(())
        for f, o, t in zip(self.factors, outs, targets):
            if f.is_categorical and f.n_categories > 2:
                total = total + F.cross_entropy(o, t)
            elif f.is_categorical:
                total = total + F.binary_cross_entropy_with_logits(o[:, 0], t)
            else:
                total = total + 10 * F.mse_loss(o[:, 0], t)
        return total

    @torch.no_grad()
    def read(self, images: torch.Tensor, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Factor readings of images ``[N, 3, size, size]`` in [-1, 1]."""
        self.eval()
        if images.shape[-1] != self.size:
            images = F.interpolate(images, size=(self.size, self.size), mode="bilinear",
                                   align_corners=False, antialias=True)
        parts: list[list[torch.Tensor]] = [[] for _ in self.factors]
        for i in range(0, len(images), batch_size):
            for j, o in enumerate(self(images[i:i + batch_size])):
                parts[j].append(o)
        res = {}
        for f, chunks in zip(self.factors, parts):
            o = torch.cat(chunks)
            if f.is_categorical and f.n_categories > 2:
                res[f.name] = torch.softmax(o, 1).numpy()
            elif f.is_categorical:
                res[f.name] = torch.sigmoid(o[:, 0]).numpy()
            else:
                res[f.name] = o[:, 0].numpy()
        return res


def train_factor_oracle(size: int, n: int = 10000, epochs: int = 10, seed: int = 7,
                        n_test: int = 1000, progress: bool = False) -> tuple[FactorOracle, dict]:
    """Train a :class:`FactorOracle` on freshly rendered concept-world images.

    Returns:
        ``(oracle, quality)`` with held-out R² / accuracy per factor.
    """
    world = ConceptWorld(size=size)
    train = world.sample(n, seed=seed)
    test = world.sample(n_test, seed=seed + 1)
    with torch.random.fork_rng(devices=[]):  # seeded initialisation, caller's RNG untouched
        torch.manual_seed(seed)
        oracle = FactorOracle(size)
    x = train.to_tensor()
    targets = oracle.targets(train.factors)
    fit_cnn(oracle, x, lambda outs, idx: oracle.loss(
        torch.split(outs, oracle.n_out, 1) if isinstance(outs, torch.Tensor) else outs,
        [t[idx] for t in targets]), epochs, 64, seed, progress, "factor oracle")
    quality = _oracle_quality(oracle, test.to_tensor(), test.factors)
    return oracle, quality


def _oracle_quality(oracle: FactorOracle, x: torch.Tensor, factors: dict[str, np.ndarray]) -> dict:
    from sklearn.metrics import r2_score

    read = oracle.read(x)
    q = {}
    for f in FACTORS:
        v = np.asarray(factors[f.name])
        if f.is_categorical and f.n_categories > 2:
            q[f.name] = float((read[f.name].argmax(1) == v).mean())
        elif f.is_categorical:
            q[f.name] = float(((read[f.name] > 0.5).astype(int) == v).mean())
        else:
            q[f.name] = float(r2_score((v - f.low) / (f.high - f.low), read[f.name]))
    return q


# ---------------------------------------------------------------------------- concept validity
def _effect(f: Factor, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image size of the change of one factor reading (TV distance for multi-class)."""
    if a.ndim == 2:
        return 0.5 * np.abs(a - b).sum(1)
    return np.abs(a - b)


def concept_validity(
    inv: Inverter,
    w_plus: torch.Tensor,
    concepts: Sequence[int],
    scale: np.ndarray,
    oracle: FactorOracle,
    class_factor: str = "smile",
    strength: float = 2.0,
    batch_size: int = 128,
) -> dict[str, Any]:
    """Edit each concept by ±``strength``·scale, render, and read all factors with the oracle.

    Returns:
        ``{"concepts", "factors", "effect" [n_concepts, n_factors], "signed_class_shift"
        [n_concepts], "moves_class_most" [n_concepts] bool, "n_valid"}``; ``effect[i, j]`` is the
        mean over images of |reading(+) - reading(-)| of factor j (0..1 scale).
    """
    from ..edits import edit

    res = edit(inv.generator, w_plus, concepts, (-strength, strength), scale=scale,
               batch_size=batch_size)
    imgs = res.images.clamp(-1, 1)  # [B, nc, 2, 3, H, W]
    b, nc = imgs.shape[:2]
    minus = oracle.read(imgs[:, :, 0].reshape(b * nc, *imgs.shape[3:]))
    plus = oracle.read(imgs[:, :, 1].reshape(b * nc, *imgs.shape[3:]))
    names = [f.name for f in FACTORS]
    effect = np.zeros((nc, len(names)))
    for j, f in enumerate(FACTORS):
        e = _effect(f, plus[f.name], minus[f.name])
        effect[:, j] = e.reshape(b, nc).mean(0)
    ci = names.index(class_factor)
    signed = (plus[class_factor] - minus[class_factor]).reshape(b, nc).mean(0)
    moves = effect.argmax(1) == ci
    return {"concepts": [int(c) for c in concepts], "factors": names, "effect": effect,
            "signed_class_shift": signed, "moves_class_most": moves, "n_valid": int(moves.sum())}
