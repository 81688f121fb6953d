"""Ground-truth metrics of concept explanations (one function per metric; formulas in docs/benchmark.md).

Notation: ``x`` an evaluation image with factors ``φ(x)``; ``x^{f<-v}`` the exact re-render with factor
``f`` set to ``v`` (``v`` over :func:`~img2tab.world.groundtruth.factor_grid`, ``V_f`` values);
``ℓ(x)`` the explained model's logit; ``t_c(x)`` a method's score of concept ``c`` (ranked ``c = 1..K``),
``w_c`` its importance; ``M_f(x)`` the factor mask; ``e(x)`` the method's evidence map.

* :func:`true_reliance` -- ``R[f] = mean_{x, v} |ℓ(x^{f<-v}) - ℓ(x)|``.
* :func:`response_matrix` -- ``P[c, f] = mean_{x, v} |t_c(x^{f<-v}) - t_c(x)| / sd_x(t_c)``, each row
  divided by its sum.
* :func:`cfa_at_k` -- ``CFA@k = (1/k) Σ_{c<=k} [argmax_f P[c, f] = f_class]`` (and the same for the
  spurious factor: ``spurious@k``).
* :func:`claimed_reliance` -- ``Ĉ[f] = Σ_{c<=k} |w_c| P[c, f]``; :func:`reliance_agreement` -- Spearman
  ``ρ(Ĉ, R)`` over the 8 factors, top-1 agreement ``[argmax Ĉ = argmax R]`` and "reveals shortcut"
  ``[rank_Ĉ(f_spur) <= rank_R(f_spur)]`` (rank 1 = largest).
* :func:`localisation` -- ``mass_M = mean_x Σ_p e·M / Σ_p e`` for the class and spurious masks, the
  pointing game ``mean_x [argmax_p e ∈ dilate_1px(M_class)]`` and the masks' area fractions (the
  expected value of a uniformly random evidence map).
* :func:`faithfulness` -- flip rate ``mean [sign ℓ_after != sign ℓ_before]``, mean logit change towards
  the other class ``mean sign(ℓ_before)(ℓ_before - ℓ_after)``, split into semantic flips (the oracle's
  class-factor reading crosses its midpoint) and shortcut flips (the rest).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import Img2TabInputError
from ._world import FACTOR_NAMES, _to_tensor
from .groundtruth import counterfactual, factor_grid, render

__all__ = [
    "cfa_at_k",
    "claimed_reliance",
    "counterfactual_sweep",
    "faithfulness",
    "localisation",
    "reliance_agreement",
    "response_matrix",
    "semantic_crossing",
    "true_reliance",
]


def counterfactual_sweep(
    factors: Mapping[str, np.ndarray], size: int, n_values: int = 4, progress: bool = False
) -> Iterator[tuple[str, int, dict[str, np.ndarray], torch.Tensor]]:
    """Yield ``(factor, value index, factors, images [N, 3, H, W])`` for every ``x^{f<-v}``."""
    total = sum(len(factor_grid(f, n_values)) for f in FACTOR_NAMES)
    bar = tqdm(total=total, desc="counterfactuals", disable=not progress, leave=False)
    for f in FACTOR_NAMES:
        for j, v in enumerate(factor_grid(f, n_values)):
            cf = counterfactual(factors, f, v)
            yield f, j, cf, _to_tensor(render(cf, size))
            bar.update(1)
    bar.close()


def reliance_from_logits(base: np.ndarray, cf_logits: Mapping[str, np.ndarray]) -> np.ndarray:
    """``R[f] = mean |cf_logits[f] - base|``.

    Args:
        base: ``ℓ(x)`` ``[N]``.
        cf_logits: factor -> ``ℓ(x^{f<-v})`` ``[V_f, N]``.

    Returns:
        float64 ``[8]`` in :data:`~img2tab.world.FACTOR_NAMES` order.
    """
    base = np.asarray(base, dtype=np.float64)
    return np.array([np.abs(np.asarray(cf_logits[f], dtype=np.float64) - base[None]).mean()
                     for f in FACTOR_NAMES])


def true_reliance(
    logit_fn: Callable[[torch.Tensor], np.ndarray],
    factors: Mapping[str, np.ndarray],
    size: int = 64,
    n_values: int = 4,
    progress: bool = False,
) -> np.ndarray:
    """True reliance ``R[f]`` of a model on each factor (mean ``|Δ logit|`` when ``f`` alone changes).

    Args:
        logit_fn: images ``[N, 3, H, W]`` in [-1, 1] -> logits ``[N]``.
        factors: Factors of the evaluation images (``[N]`` per name).
        size: Image size.
        n_values: Values per continuous factor (categorical factors take all categories).
        progress: Progress bar.

    Returns:
        float64 ``[8]`` in :data:`~img2tab.world.FACTOR_NAMES` order.
    """
    base = np.asarray(logit_fn(_to_tensor(render(factors, size))), dtype=np.float64)
    cf: dict[str, list[np.ndarray]] = {f: [] for f in FACTOR_NAMES}
    for f, _, _, imgs in counterfactual_sweep(factors, size, n_values, progress):
        cf[f].append(np.asarray(logit_fn(imgs), dtype=np.float64))
    return reliance_from_logits(base, {f: np.stack(v) for f, v in cf.items()})


def response_matrix(
    base_scores: np.ndarray, cf_scores: Mapping[str, np.ndarray], sd: np.ndarray | None = None
) -> np.ndarray:
    """Concept-factor response ``P[c, f]``, rows normalised to sum 1.

    Args:
        base_scores: ``t_c(x)`` ``[N, K]``.
        cf_scores: factor -> ``t_c(x^{f<-v})`` ``[V_f, N, K]``.
        sd: ``sd(t_c)`` ``[K]`` (default: the standard deviation of ``base_scores``; a zero sd
            counts as 1).

    Returns:
        float64 ``[K, 8]``; a concept that responds to nothing has an all-zero row.
    """
    base = np.asarray(base_scores, dtype=np.float64)
    if base.ndim != 2:
        raise Img2TabInputError(f"base_scores must be [N, K], got {base.shape}")
    s = base.std(0) if sd is None else np.asarray(sd, dtype=np.float64)
    s = np.where(s > 1e-12, s, 1.0)
    raw = np.stack([np.abs(np.asarray(cf_scores[f], dtype=np.float64) - base[None]).mean((0, 1)) / s
                    for f in FACTOR_NAMES], axis=1)
    total = raw.sum(1, keepdims=True)
    return np.divide(raw, total, out=np.zeros_like(raw), where=total > 0)


def _argmax_rows(P: np.ndarray) -> np.ndarray:
    """argmax per row, -1 for all-zero rows."""
    P = np.asarray(P, dtype=np.float64)
    return np.where(P.max(1) > 0, P.argmax(1), -1)


def cfa_at_k(P: np.ndarray, factor: str, k: int = 5) -> float:
    """Share of the top-``k`` concepts whose strongest response is ``factor`` (fewer if ``K < k``)."""
    P = np.asarray(P)
    j = FACTOR_NAMES.index(factor)
    top = _argmax_rows(P[: max(1, int(k))])
    return float(np.mean(top == j)) if top.size else float("nan")


def claimed_reliance(P: np.ndarray, importances: np.ndarray, k: int = 5) -> np.ndarray:
    """``Ĉ[f] = Σ_{c<=k} |w_c| P[c, f]``, float64 ``[8]``."""
    P = np.asarray(P, dtype=np.float64)[: int(k)]
    w = np.abs(np.asarray(importances, dtype=np.float64)[: int(k)])
    return w @ P


def _rank_desc(v: np.ndarray, j: int) -> float:
    """Rank of entry ``j`` in ``v`` (1 = largest; ties get the average rank)."""
    from scipy.stats import rankdata

    return float(rankdata(-np.asarray(v, dtype=np.float64), method="average")[j])


def reliance_agreement(claimed: np.ndarray, true: np.ndarray, spurious: str | None = None
                       ) -> dict[str, float]:
    """Spearman ρ between claimed and true reliance, top-1 agreement, and whether the spurious factor
    is ranked at least as high in ``claimed`` as in ``true``.

    Returns:
        ``{"reliance_spearman", "reliance_top1", "reveals_shortcut", "spurious_rank_claimed",
        "spurious_rank_true"}`` (ρ is NaN when either vector is constant; the shortcut keys are NaN
        without a spurious factor).
    """
    from scipy.stats import spearmanr

    c = np.asarray(claimed, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    if c.shape != (len(FACTOR_NAMES),) or t.shape != c.shape:
        raise Img2TabInputError(f"claimed and true must be [{len(FACTOR_NAMES)}], got {c.shape}, {t.shape}")
    rho = float(spearmanr(c, t).statistic) if np.ptp(c) > 0 and np.ptp(t) > 0 else float("nan")
    out = {"reliance_spearman": rho,
           "reliance_top1": float(np.argmax(c) == np.argmax(t)) if np.ptp(c) > 0 else 0.0}
    if spurious is not None:
        j = FACTOR_NAMES.index(spurious)
        rc, rt = _rank_desc(c, j), _rank_desc(t, j)
        out.update(reveals_shortcut=float(rc <= rt), spurious_rank_claimed=rc, spurious_rank_true=rt)
    else:
        out.update(reveals_shortcut=float("nan"), spurious_rank_claimed=float("nan"),
                   spurious_rank_true=float("nan"))
    return out


def localisation(evidence: np.ndarray, class_mask: np.ndarray, spurious_mask: np.ndarray | None = None
                 ) -> dict[str, float]:
    """Evidence mass inside the class (and spurious) factor's mask and the pointing game.

    Args:
        evidence: non-negative ``[N, H, W]``.
        class_mask: bool ``[N, H, W]``.
        spurious_mask: bool ``[N, H, W]`` or None.

    Returns:
        ``{"localisation", "localisation_spurious", "pointing", "class_area", "spurious_area",
        "pointing_area"}``: the mean mass fractions over images with non-zero evidence, the pointing
        hit rate, and the baselines (mean area fractions of the masks and of the dilated class mask).
    """
    from scipy.ndimage import binary_dilation

    e = np.asarray(evidence, dtype=np.float64)
    m = np.asarray(class_mask, dtype=bool)
    if e.ndim != 3 or m.shape != e.shape:
        raise Img2TabInputError(f"evidence and class_mask must both be [N, H, W], got {e.shape}, {m.shape}")
    if e.size and float(e.min()) < 0:
        raise Img2TabInputError("evidence must be non-negative")
    tot = e.sum((1, 2))
    ok = tot > 0
    nan = float("nan")
    frac = (e * m).sum((1, 2))[ok] / tot[ok]
    dil = np.stack([binary_dilation(mi, structure=np.ones((3, 3), bool)) for mi in m]) if len(m) else m
    flat = e.reshape(len(e), -1).argmax(1)
    hit = dil.reshape(len(e), -1)[np.arange(len(e)), flat][ok]
    out = {"localisation": float(frac.mean()) if ok.any() else nan,
           "pointing": float(hit.mean()) if ok.any() else nan,
           "class_area": float(m.mean()), "pointing_area": float(dil.mean())}
    if spurious_mask is not None:
        s = np.asarray(spurious_mask, dtype=bool)
        out["localisation_spurious"] = float(((e * s).sum((1, 2))[ok] / tot[ok]).mean()) if ok.any() else nan
        out["spurious_area"] = float(s.mean())
    else:
        out["localisation_spurious"] = nan
        out["spurious_area"] = nan
    return out


def semantic_crossing(read_before: np.ndarray, read_after: np.ndarray, midpoint: float = 0.5) -> np.ndarray:
    """bool ``[N]``: the oracle's class-factor reading lies on different sides of ``midpoint``."""
    return (np.asarray(read_before) > midpoint) != (np.asarray(read_after) > midpoint)


def faithfulness(logit_before: np.ndarray, logit_after: np.ndarray, semantic: np.ndarray | None = None
                 ) -> dict[str, float]:
    """Flip rate and logit change of an intervention, split into semantic and shortcut flips.

    Args:
        logit_before: ``[N]``.
        logit_after: ``[N]``.
        semantic: bool ``[N]`` (the class factor really changed sides) or None when unknown.

    Returns:
        ``{"flip_rate", "delta_logit", "semantic_flip_rate", "shortcut_flip_rate"}`` (the split is
        NaN when ``semantic`` is None).
    """
    b = np.asarray(logit_before, dtype=np.float64)
    a = np.asarray(logit_after, dtype=np.float64)
    if b.shape != a.shape or b.ndim != 1:
        raise Img2TabInputError(f"logits must be matching [N] arrays, got {b.shape}, {a.shape}")
    flipped = (b > 0) != (a > 0)
    sign = np.where(b > 0, 1.0, -1.0)
    out = {"flip_rate": float(flipped.mean()) if b.size else float("nan"),
           "delta_logit": float((sign * (b - a)).mean()) if b.size else float("nan")}
    if semantic is None:
        out.update(semantic_flip_rate=float("nan"), shortcut_flip_rate=float("nan"))
    else:
        sem = np.asarray(semantic, dtype=bool)
        out.update(semantic_flip_rate=float((flipped & sem).mean()),
                   shortcut_flip_rate=float((flipped & ~sem).mean()))
    return out
