"""Patch-level matching for the correspondence classifiers: cross-correlation maps, entropic OT
(Sinkhorn) in torch, the EMD-Corr top-5 score and the CHM-Corr masked top-5 score.

Everything here works on batches of *pairs*: a query feature map and one candidate's map, both
flattened to ``[C, P]`` (``P = H * W`` patches). Shapes follow the official EMD-Corr code
(anguyen8/visual-correspondence-XAI, ``EMD-Corr/src/emd_utils.py``) with rows = query patches and
columns = candidate patches (the official code has them the other way round; the plan is the
transpose, the score is the same).

Official facts kept (read from the official code, not copied):

* marginals from *raw* features: each map is divided by the norm of its average-pooled vector and
  by its patch count, the pair's patch-by-patch dot products are summed per query patch (row
  sums) and per candidate patch (column sums), each normalised by ``sum + 1e-5``;
* cost ``1 - cos`` of L2-normalised patches, kernel ``exp(-cost / 0.05)``;
* Sinkhorn from ``r = c = 1``: ``r = u / (K c)``, ``c = v / (K^T r)``, at most 100 iterations,
  stop when ``mean |r - r_prev| < 0.1``; plan ``T = diag(r) K diag(c)``;
* score = ``sum T_ij cos_ij`` over the 5 largest entries of ``T``.

Official quirks fixed (documented):

* the stopping rule is applied **per pair** (the official loop tests the mean over the whole
  batch of 51 pairs, so whether one pair has converged depends on the others);
* non-convergence is reported with :func:`warnings.warn` (the official code prints), and a pair
  that converges on the last allowed iteration counts as converged (the official ``i == 99``
  test calls it unsolved);
* a map whose pooled vector is zero (a blank image under ReLU features) gets ``1e-12`` added to
  the norm instead of a division by zero;
* computation in float64 (the kernel reaches ``exp(-40)`` for opposite patches).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..errors import Img2TabInputError

__all__ = [
    "OFFICIAL_MAX_ITER",
    "OFFICIAL_REG",
    "OFFICIAL_TOL",
    "chm_masked_scores",
    "cross_correlation_maps",
    "emd_pair_scores",
    "patch_cosine",
    "sinkhorn",
    "top_entries",
]

OFFICIAL_REG = 0.05
"""Entropic regularisation of EMD-Corr (kernel ``exp(-cost / 0.05)``)."""
OFFICIAL_MAX_ITER = 100
"""Sinkhorn iteration cap of EMD-Corr."""
OFFICIAL_TOL = 0.1
"""EMD-Corr's stopping threshold on ``mean |r - r_prev|``."""


def _check_pairs(q: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if q.ndim != 3 or g.ndim != 3 or q.shape[:2] != g.shape[:2]:
        raise Img2TabInputError(
            f"query and candidate maps must both be [B, C, P] with the same B and C, got "
            f"{tuple(q.shape)} and {tuple(g.shape)}"
        )
    return q.double(), g.double()


def cross_correlation_maps(q: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-correlation (CC) maps of query/candidate pairs from raw (unnormalised) features.

    Each map is scaled by ``1 / (||mean over patches|| * P)``; ``S = q^T g`` (``[P, P]``); the
    query map is the row sums of ``S`` and the candidate map the column sums.

    Args:
        q: query maps ``[B, C, P]``.
        g: candidate maps ``[B, C, P]`` (pair ``b`` is ``(q[b], g[b])``).

    Returns:
        ``(query_map, candidate_map)``, float64 ``[B, P]`` each (unnormalised; non-negative for
        non-negative features).
    """
    q, g = _check_pairs(q, g)
    p = q.shape[-1]
    qn = q / ((q.mean(-1).norm(dim=-1) + 1e-12) * p)[:, None, None]
    gn = g / ((g.mean(-1).norm(dim=-1) + 1e-12) * p)[:, None, None]
    # row sums of qn^T gn = qn^T (gn summed over candidate patches); column sums likewise
    query_map = torch.einsum("bcp,bc->bp", qn, gn.sum(-1))
    cand_map = torch.einsum("bcp,bc->bp", gn, qn.sum(-1))
    return query_map, cand_map


def patch_cosine(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every query patch with every candidate patch.

    Args:
        q: ``[B, C, P]``; g: ``[B, C, Pg]``.

    Returns:
        float64 ``[B, P, Pg]`` (a zero patch has cosine 0 with everything).
    """
    q, g = _check_pairs(q, g)
    qh = torch.nn.functional.normalize(q, p=2, dim=1)
    gh = torch.nn.functional.normalize(g, p=2, dim=1)
    return torch.einsum("bcp,bcs->bps", qh, gh)


def sinkhorn(
    kernel: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    *,
    max_iter: int = OFFICIAL_MAX_ITER,
    tol: float = OFFICIAL_TOL,
    warn: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Entropic optimal transport by Sinkhorn's scaling iterations, per pair.

    Solves ``min <T, M> - reg * H(T)`` s.t. ``T 1 = u``, ``T^T 1 = v`` for ``kernel = exp(-M / reg)``.
    Each pair stops on its own when ``mean |r - r_prev| < tol`` (EMD-Corr's rule).

    Args:
        kernel: ``[B, P, Q]`` positive.
        u: row marginals ``[B, P]`` (non-negative, summing to ~1).
        v: column marginals ``[B, Q]``.
        max_iter: Iteration cap (official 100).
        tol: Stopping threshold on the mean absolute change of ``r`` (official 0.1).
        warn: Issue a :class:`RuntimeWarning` naming how many pairs did not converge.

    Returns:
        ``(plan, converged)``: float64 ``[B, P, Q]`` plans ``diag(r) K diag(c)`` and bool ``[B]``.
    """
    if kernel.ndim != 3 or u.shape != kernel.shape[:2] or v.shape != (kernel.shape[0], kernel.shape[2]):
        raise Img2TabInputError(
            f"sinkhorn needs kernel [B, P, Q], u [B, P], v [B, Q]; got {tuple(kernel.shape)}, "
            f"{tuple(u.shape)}, {tuple(v.shape)}"
        )
    if int(max_iter) < 1:
        raise Img2TabInputError(f"max_iter must be >= 1, got {max_iter}")
    k = kernel.double()
    u = u.double()
    v = v.double()
    r = torch.ones_like(u)
    c = torch.ones_like(v)
    active = torch.ones(k.shape[0], dtype=torch.bool)
    converged = torch.zeros(k.shape[0], dtype=torch.bool)
    kt = k.transpose(1, 2)
    for _ in range(int(max_iter)):
        r_new = u / torch.bmm(k, c.unsqueeze(-1)).squeeze(-1)
        c_new = v / torch.bmm(kt, r_new.unsqueeze(-1)).squeeze(-1)
        done = active & ((r_new - r).abs().mean(-1) < tol)
        # pairs that stopped earlier keep their scalings (same result as running them alone)
        r = torch.where(active[:, None], r_new, r)
        c = torch.where(active[:, None], c_new, c)
        converged |= done
        active &= ~done
        if not bool(active.any()):
            break
    if warn and not bool(converged.all()):
        n_bad = int((~converged).sum())
        warnings.warn(
            f"Sinkhorn did not converge for {n_bad} of {len(converged)} pairs in {max_iter} iterations "
            f"(tol {tol}); their plans are the last iterate",
            RuntimeWarning,
            stacklevel=2,
        )
    plan = r.unsqueeze(-1) * k * c.unsqueeze(-2)
    return plan, converged


def top_entries(values: torch.Tensor, k: int) -> torch.Tensor:
    """Flat indices of the ``k`` largest entries of each ``[P, Q]`` matrix, ties by lower index.

    Args:
        values: ``[B, P, Q]``.
        k: how many.

    Returns:
        int64 ``[B, k]`` flat indices (row ``i = idx // Q``, column ``j = idx % Q``), largest first.
    """
    flat = values.detach().cpu().reshape(values.shape[0], -1).numpy()
    n = flat.shape[1]
    k = min(int(k), n)
    if k >= n:
        return torch.from_numpy(np.argsort(-flat, axis=1, kind="stable")[:, :k].copy())
    # k-th largest value per row, then every entry at least that large, ordered by (-value, index)
    kth = -np.partition(-flat, k - 1, axis=1)[:, k - 1]
    out = np.empty((flat.shape[0], k), dtype=np.int64)
    for b in range(flat.shape[0]):
        cand = np.flatnonzero(flat[b] >= kth[b])
        out[b] = cand[np.lexsort((cand, -flat[b, cand]))][:k]
    return torch.from_numpy(out)


def emd_pair_scores(
    q: torch.Tensor,
    g: torch.Tensor,
    *,
    reg: float = OFFICIAL_REG,
    max_iter: int = OFFICIAL_MAX_ITER,
    tol: float = OFFICIAL_TOL,
    n_patches: int = 5,
    uniform: bool = False,
    warn: bool = True,
) -> dict[str, torch.Tensor]:
    """EMD-Corr similarity of query/candidate pairs.

    Args:
        q: query maps ``[B, C, P]`` (raw, non-negative features).
        g: candidate maps ``[B, C, P]``.
        reg: Entropic regularisation (official 0.05).
        max_iter, tol: Sinkhorn stopping rule (official 100, 0.1).
        n_patches: Number of largest plan entries in the score (official 5); ``None``/``<= 0`` =
            all entries (``sum T * cos``).
        uniform: Uniform marginals instead of the cross-correlation ones (official ablation).
        warn: warn when Sinkhorn does not converge (the classifiers collect one warning per call).

    Returns:
        dict with ``score`` float64 ``[B]``, ``plan`` ``[B, P, P]``, ``cos`` ``[B, P, P]``,
        ``query_map``/``cand_map`` ``[B, P]`` (the normalised marginals), ``pairs`` int64
        ``[B, n, 2]`` (query patch, candidate patch) of the top plan entries, ``weights``
        ``[B, n]`` (their ``T * cos``) and ``converged`` bool ``[B]``.
    """
    q, g = _check_pairs(q, g)
    cos = patch_cosine(q, g)
    kernel = torch.exp(-(1.0 - cos) / float(reg))
    if uniform:
        p = q.shape[-1]
        u = torch.full(q.shape[::2], 1.0 / p, dtype=torch.float64)
        v = u.clone()
    else:
        qm, gm = cross_correlation_maps(q, g)
        u = qm / (qm.sum(-1, keepdim=True) + 1e-5)
        v = gm / (gm.sum(-1, keepdim=True) + 1e-5)
    plan, converged = sinkhorn(kernel, u, v, max_iter=max_iter, tol=tol, warn=warn)
    n_cols = plan.shape[-1]
    n = plan.shape[1] * n_cols if (n_patches is None or n_patches <= 0) else int(n_patches)
    top = top_entries(plan, n)
    contrib = (plan * cos).reshape(plan.shape[0], -1).gather(1, top)
    pairs = torch.stack([top // n_cols, top % n_cols], dim=-1)
    return {
        "score": contrib.sum(-1),
        "plan": plan,
        "cos": cos,
        "query_map": u,
        "cand_map": v,
        "pairs": pairs,
        "weights": contrib,
        "converged": converged,
    }


def chm_masked_scores(
    cos_at_matches: torch.Tensor,
    query_cc: torch.Tensor,
    *,
    threshold: float = 0.55,
    n_top: int = 5,
) -> dict[str, torch.Tensor]:
    """CHM-Corr score: cosine at each query grid point's correspondence, masked by the query's CC map.

    The CC map is min-max normalised per pair and binarised at ``>= threshold`` (official 0.55);
    the score is the mean of the ``n_top`` (official 5) largest masked cosines. As in the official
    code, masked-out points count as 0 (so a pair with fewer than ``n_top`` unmasked points is
    averaged with zeros) and a query point without a correspondence (mutual-NN rejection) has
    cosine 0. A constant CC map (the official min-max normalisation divides by zero) masks nothing.

    Args:
        cos_at_matches: ``[B, P]`` cosine of each query point with its matched candidate patch.
        query_cc: ``[B, P]`` the query's CC map for the pair (any scale).
        threshold: Binarisation threshold on the min-max normalised CC map.
        n_top: Number of largest masked cosines averaged.

    Returns:
        dict with ``score`` float64 ``[B]``, ``mask`` bool ``[B, P]``, ``top`` int64 ``[B, n_top]``
        (query points behind the score, largest first; ties by lower index) and ``masked`` ``[B, P]``.
    """
    cc = query_cc.double()
    lo = cc.min(-1, keepdim=True).values
    span = cc.max(-1, keepdim=True).values - lo
    norm = torch.where(span > 0, (cc - lo) / torch.where(span > 0, span, torch.ones_like(span)), 1.0)
    mask = norm >= float(threshold)
    masked = cos_at_matches.double() * mask
    top = top_entries(masked.unsqueeze(1), n_top)
    score = masked.gather(1, top).mean(-1)
    return {"score": score, "mask": mask, "top": top, "masked": masked}
