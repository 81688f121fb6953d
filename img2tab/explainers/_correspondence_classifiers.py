"""The correspondence classifiers (kNN, EMD-Corr, CHM-Corr-style); documented in
:mod:`img2tab.explainers.correspondence`, which is their public home."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from ..errors import Img2TabInputError
from ._face_geometry import FaceGeometry, grid_points, oracle_transfer, points_to_cells
from ._protocol import check_images
from ._sinkhorn import (
    OFFICIAL_MAX_ITER,
    OFFICIAL_REG,
    OFFICIAL_TOL,
    chm_masked_scores,
    cross_correlation_maps,
    emd_pair_scores,
    patch_cosine,
)

__all__ = [
    "CHMCorrClassifier",
    "CorrespondenceResult",
    "EMDCorrClassifier",
    "KNNClassifier",
    "majority_vote",
    "rank_by_cosine",
]

log = logging.getLogger(__name__)

Embed = Callable[[torch.Tensor], Any]


# --------------------------------------------------------------------------------- primitives
def rank_by_cosine(query: np.ndarray, gallery: np.ndarray, k: int, exclude: np.ndarray | None = None,
                   drop: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` gallery rows by cosine similarity, ties to the lower gallery index.

    Args:
        query: ``[Q, D]``; gallery: ``[N, D]`` (need not be normalised).
        k: shortlist size (clipped to ``N``).
        exclude: optional int ``[Q]`` gallery index to leave out per query (-1 = none).
        drop: gallery indices left out for every query.

    Returns:
        ``(idx, sim)``: int64 and float64 ``[Q, k]``, most similar first.
    """
    q = np.asarray(query, dtype=np.float64)
    g = np.asarray(gallery, dtype=np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    sim = q @ g.T
    if exclude is not None:
        ex = np.asarray(exclude)
        rows = np.flatnonzero(ex >= 0)
        sim[rows, ex[rows]] = -np.inf
    drop = np.unique(np.asarray(drop, dtype=np.int64))
    sim[:, drop] = -np.inf
    k = min(int(k), g.shape[0] - len(drop) - (0 if exclude is None else 1))
    if k < 1:
        raise Img2TabInputError("no gallery image left to rank after exclusions")
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return idx.astype(np.int64), np.take_along_axis(sim, idx, axis=1)


def majority_vote(labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Majority vote per row, ties to the lowest class id.

    Args:
        labels: int ``[Q, K]`` voter labels.
        n_classes: number of classes.

    Returns:
        ``(prediction int64 [Q], counts int64 [Q, n_classes])``.
    """
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.stack([(labels == c).sum(1) for c in range(n_classes)], axis=1)
    return counts.argmax(1).astype(np.int64), counts  # argmax returns the first maximum


@dataclass(frozen=True)
class CorrespondenceResult:
    """A correspondence classifier's answer for a batch of queries.

    Attributes:
        shortlist: int64 ``[Q, M]`` gallery indices in kNN order.
        knn_sim: float64 ``[Q, M]`` their cosine similarities.
        scores: float64 ``[Q, M]`` re-ranking scores aligned with ``shortlist`` (kNN: ``knn_sim``).
        order: int64 ``[Q, M]`` positions into ``shortlist``, best first.
        pairs: int64 ``[Q, M, n, 2]`` matched (query patch, candidate patch) flat indices into the
            ``grid x grid`` map, aligned with ``shortlist``; ``-1`` where there is none.
        weights: float64 ``[Q, M, n]`` each pair's share of the score.
        prediction: int64 ``[Q]``.
        counts: int64 ``[Q, n_classes]`` votes.
        grid: side of the patch grid (0 for a space without patches).
    """

    shortlist: np.ndarray
    knn_sim: np.ndarray
    scores: np.ndarray
    order: np.ndarray
    pairs: np.ndarray
    weights: np.ndarray
    prediction: np.ndarray
    counts: np.ndarray
    grid: int

    def ranked(self) -> np.ndarray:
        """Gallery indices ``[Q, M]`` best first (after re-ranking)."""
        return np.take_along_axis(self.shortlist, self.order, axis=1)

    def top_exemplar(self, labels: np.ndarray) -> np.ndarray:
        """Position into ``shortlist`` ``[Q]`` of the best-ranked candidate of the predicted class."""
        lab = np.asarray(labels)[self.ranked()]
        first = np.argmax(lab == self.prediction[:, None], axis=1)
        return np.take_along_axis(self.order, first[:, None], axis=1)[:, 0]


def _batched(fn: Embed, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            out.append(torch.as_tensor(fn(images[i : i + batch_size])).detach().float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def _check_labels(y: Any, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,) or (y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0)):
        raise Img2TabInputError(f"y must be non-negative int labels of shape ({n},), got {y.shape} {y.dtype}")
    return y.astype(np.int64)


# --------------------------------------------------------------------------------- kNN
class KNNClassifier:
    """Cosine kNN over an embedding (ConceptCNN ``pooled`` or standardised Ψ).

    Args:
        embed: images ``[B, 3, H, W]`` -> ``[B, D]`` (tensor or array).
        n_shortlist: shortlist size (official 50).
        n_vote: voters (official 20).
        standardize: z-score each dimension with the gallery's mean and sd before the cosine (Ψ).
        maps: optional images -> ``[B, C, g, g]`` feature maps; gives kNN the cross-correlation
            patches of its explanation (the official kNN shows CC maps).
        batch_size: images per forward pass.
    """

    name = "knn"

    def __init__(self, embed: Embed, *, n_shortlist: int = 50, n_vote: int = 20,
                 standardize: bool = False, maps: Embed | None = None, batch_size: int = 128) -> None:
        self.embed = embed
        self.n_shortlist = n_shortlist
        self.n_vote = n_vote
        self.standardize = standardize
        self.maps = maps
        self.batch_size = batch_size

    # -- fitting
    def fit(self, images: torch.Tensor, y: np.ndarray) -> KNNClassifier:
        """Store the gallery (training images' embeddings and labels). Returns ``self``."""
        x = check_images(images)
        self.y_ = _check_labels(y, len(x))
        if len(x) < 2:
            raise Img2TabInputError("the gallery needs at least 2 images")
        if not 1 <= int(self.n_vote) <= int(self.n_shortlist):
            raise Img2TabInputError(f"need 1 <= n_vote <= n_shortlist, got {self.n_vote}, {self.n_shortlist}")
        self.n_classes_ = int(max(2, self.y_.max() + 1))
        emb = _batched(self.embed, x, self.batch_size).double().numpy().reshape(len(x), -1)
        if self.standardize:
            self.mean_ = emb.mean(0)
            self.scale_ = np.where(emb.std(0) > 0, emb.std(0), 1.0)
            emb = (emb - self.mean_) / self.scale_
        self.gallery_ = emb
        self.gallery_maps_ = (_batched(self.maps, x, self.batch_size) if self.maps is not None else None)
        self._fit_extra(x)
        return self

    def _fit_extra(self, x: torch.Tensor) -> None:
        pass

    def _check_fitted(self) -> None:
        if not hasattr(self, "gallery_"):
            raise Img2TabInputError(f"{type(self).__name__} is not fitted; call fit(images, y) first")

    def embed_queries(self, images: torch.Tensor) -> np.ndarray:
        """Query embeddings ``[Q, D]`` (standardised like the gallery)."""
        self._check_fitted()
        emb = _batched(self.embed, check_images(images), self.batch_size).double().numpy()
        emb = emb.reshape(len(emb), -1)
        return (emb - self.mean_) / self.scale_ if self.standardize else emb

    # -- inference
    def classify(self, images: torch.Tensor, exclude: np.ndarray | None = None,
                 drop: Sequence[int] = ()) -> CorrespondenceResult:
        """Shortlist, (re-)rank and vote.

        Args:
            images: ``[Q, 3, H, W]`` in [-1, 1].
            exclude: optional int ``[Q]`` gallery index to leave out per query (leave-one-out).
            drop: gallery indices removed for every query (example-deletion intervention).

        Returns:
            :class:`CorrespondenceResult`.
        """
        x = check_images(images)
        q = self.embed_queries(x)
        idx, sim = rank_by_cosine(q, self.gallery_, self.n_shortlist, exclude, drop)
        scores, pairs, weights = self._rerank_scores(x, idx, sim)
        order = np.argsort(-scores, axis=1, kind="stable")  # ties keep the kNN order
        ranked = np.take_along_axis(idx, order, axis=1)
        pred, counts = majority_vote(self.y_[ranked[:, : self.n_vote]], self.n_classes_)
        return CorrespondenceResult(idx, sim, scores, order, pairs, weights, pred, counts, self._grid())

    def _grid(self) -> int:
        m = getattr(self, "gallery_maps_", None)
        return 0 if m is None else int(m.shape[-1])

    def _rerank_scores(self, x: torch.Tensor, idx: np.ndarray,
                       sim: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """kNN keeps the cosine order; its pairs are the 5 query patches of largest CC weight."""
        q_n, m = idx.shape
        if self.gallery_maps_ is None:
            return sim.copy(), np.full((q_n, m, 0, 2), -1, np.int64), np.zeros((q_n, m, 0))
        qm = _batched(self.maps, x, self.batch_size).flatten(2)
        n = 5
        pairs = np.full((q_n, m, n, 2), -1, np.int64)
        weights = np.zeros((q_n, m, n))
        for i in range(q_n):
            gm = self.gallery_maps_[torch.from_numpy(np.array(idx[i], dtype=np.int64))].flatten(2)
            qcc, gcc = cross_correlation_maps(qm[i : i + 1].expand(len(gm), -1, -1), gm)
            qt = torch.argsort(-qcc, dim=1, stable=True)[:, :n]
            gt = torch.argsort(-gcc, dim=1, stable=True)[:, :n]
            pairs[i, :, :, 0], pairs[i, :, :, 1] = qt.numpy(), gt.numpy()
            weights[i] = qcc.gather(1, qt).numpy()
        return sim.copy(), pairs, weights

    def predict(self, images: torch.Tensor) -> np.ndarray:
        """Predicted class int64 ``[Q]``."""
        return self.classify(images).prediction

    def vote_margin(self, images: torch.Tensor, drop: Sequence[int] = ()) -> np.ndarray:
        """``(votes for class 1 - votes for class 0) / n_vote``, float64 ``[Q]`` (binary tasks)."""
        r = self.classify(images, drop=drop)
        return (r.counts[:, 1] - r.counts[:, 0]) / float(self.n_vote)

    def score(self, images: torch.Tensor, y: np.ndarray) -> float:
        """Accuracy on labelled images."""
        return float(np.mean(self.predict(images) == np.asarray(y)))

    def pair_scores(self, images: torch.Tensor, gallery_idx: np.ndarray) -> dict[str, np.ndarray]:
        """Similarity of each query to given gallery images (no shortlist).

        Args:
            images: ``[Q, 3, H, W]``; gallery_idx: int ``[M]``.

        Returns:
            dict ``score`` ``[Q, M]``, ``pairs`` ``[Q, M, n, 2]``, ``weights`` ``[Q, M, n]``.
        """
        x = check_images(images)
        gi = np.broadcast_to(np.asarray(gallery_idx, dtype=np.int64), (len(x), len(gallery_idx)))
        q = self.embed_queries(x)
        g = self.gallery_[gi[0]]
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        gn = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
        sim = qn @ gn.T
        scores, pairs, weights = self._rerank_scores(x, np.ascontiguousarray(gi), sim)
        return {"score": scores, "pairs": pairs, "weights": weights}


# --------------------------------------------------------------------------------- re-rankers
class _PatchReRanker(KNNClassifier):
    """kNN shortlist on the pooled maps, re-ranked by a patch-level score."""

    n_pairs = 5

    def __init__(self, model: Any, *, n_shortlist: int = 50, n_vote: int = 20, batch_size: int = 128) -> None:
        self.model = model
        super().__init__(self._pooled, n_shortlist=n_shortlist, n_vote=n_vote, standardize=False,
                         maps=self._features, batch_size=batch_size)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x).mean((2, 3))

    def _pair_batch(self, qm: torch.Tensor, gm: torch.Tensor, qi: int, gidx: np.ndarray,
                    ctx: Any) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _query_context(self, x: torch.Tensor) -> Any:
        return None

    def _rerank_scores(self, x: torch.Tensor, idx: np.ndarray,
                       sim: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        qm = _batched(self.maps, x, self.batch_size).flatten(2)
        ctx = self._query_context(x)
        q_n, m = idx.shape
        scores = np.zeros((q_n, m))
        pairs = np.full((q_n, m, self.n_pairs, 2), -1, np.int64)
        weights = np.zeros((q_n, m, self.n_pairs))
        n_bad = 0
        for i in range(q_n):
            gm = self.gallery_maps_[torch.from_numpy(np.array(idx[i], dtype=np.int64))].flatten(2)
            out = self._pair_batch(qm[i : i + 1].expand(len(gm), -1, -1), gm, i, idx[i], ctx)
            if "converged" in out:
                n_bad += int((~out["converged"]).sum())
            scores[i] = out["score"].numpy()
            n = out["pairs"].shape[1]
            pairs[i, :, :n] = out["pairs"].numpy()
            weights[i, :, :n] = out["weights"].numpy()
        if n_bad:
            warnings.warn(
                f"{type(self).__name__}: Sinkhorn did not converge within {self.max_iter} iterations "
                f"(tol {self.tol}) for {n_bad} of {idx.size} query-candidate pairs; their plans are the "
                "last iterate (the official code prints and goes on)",
                RuntimeWarning,
                stacklevel=3,
            )
        return scores, pairs, weights


class EMDCorrClassifier(_PatchReRanker):
    """EMD-Corr: kNN shortlist re-ranked by entropic OT between layer4 patches.

    Args:
        model: has ``features(x) -> [B, C, g, g]`` (non-negative; ConceptCNN's layer4).
        n_shortlist, n_vote: official 50 and 20.
        reg, max_iter, tol: Sinkhorn (official 0.05, 100, 0.1).
        n_patches: plan entries in the score (official 5).
        uniform: uniform marginals instead of cross-correlation ones (official ablation, off).
    """

    name = "emd-corr"

    def __init__(self, model: Any, *, n_shortlist: int = 50, n_vote: int = 20, reg: float = OFFICIAL_REG,
                 max_iter: int = OFFICIAL_MAX_ITER, tol: float = OFFICIAL_TOL, n_patches: int = 5,
                 uniform: bool = False, batch_size: int = 128) -> None:
        super().__init__(model, n_shortlist=n_shortlist, n_vote=n_vote, batch_size=batch_size)
        self.reg = reg
        self.max_iter = max_iter
        self.tol = tol
        self.n_patches = n_patches
        self.uniform = uniform

    @property
    def n_pairs(self) -> int:  # type: ignore[override]
        return int(self.n_patches)

    def _pair_batch(self, qm, gm, qi, gidx, ctx):  # type: ignore[no-untyped-def]
        out = emd_pair_scores(qm, gm, reg=self.reg, max_iter=self.max_iter, tol=self.tol,
                              n_patches=self.n_patches, uniform=self.uniform, warn=False)
        return {"score": out["score"], "pairs": out["pairs"], "weights": out["weights"],
                "converged": out["converged"]}


class CHMCorrClassifier(_PatchReRanker):
    """CHM-Corr-style: kNN shortlist re-ranked by cosines at grid correspondences.

    Args:
        model: has ``features(x) -> [B, C, g, g]``.
        matcher: ``"mutual-nn"`` (mutual nearest neighbours of patches; a query point without a
            mutual partner has cosine 0) or ``"oracle"`` (the world's true geometry).
        geometry: for ``"oracle"``: a :class:`FaceGeometry` (registered images are exact, others
            are read off the picture); default an empty one (everything read).
        threshold: CC-mask threshold (official 0.55); n_top: cosines averaged (official 5).
    """

    @property
    def name(self) -> str:  # type: ignore[override]
        return "chm-corr-oracle" if self.matcher == "oracle" else "chm-corr-mnn"

    def __init__(self, model: Any, *, matcher: Literal["mutual-nn", "oracle"] = "mutual-nn",
                 geometry: FaceGeometry | None = None, n_shortlist: int = 50, n_vote: int = 20,
                 threshold: float = 0.55, n_top: int = 5, batch_size: int = 128) -> None:
        super().__init__(model, n_shortlist=n_shortlist, n_vote=n_vote, batch_size=batch_size)
        self.matcher = matcher
        self.geometry = geometry
        self.threshold = threshold
        self.n_top = n_top

    @property
    def n_pairs(self) -> int:  # type: ignore[override]
        return int(self.n_top)

    def _fit_extra(self, x: torch.Tensor) -> None:
        if self.matcher not in ("mutual-nn", "oracle"):
            raise Img2TabInputError(f"matcher must be 'mutual-nn' or 'oracle', got {self.matcher!r}")
        if self.matcher == "oracle":
            self.geometry_ = self.geometry if self.geometry is not None else FaceGeometry()
            self.gallery_geometry_ = np.stack(self.geometry_(x), axis=1)  # [N, 2] tilt, width

    def _query_context(self, x: torch.Tensor) -> Any:
        return np.stack(self.geometry_(x), axis=1) if self.matcher == "oracle" else None

    def correspondences(self, qm: torch.Tensor, gm: torch.Tensor, q_geom: np.ndarray | None = None,
                        g_geom: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Matched candidate cell per query grid point, and whether it is valid.

        Args:
            qm, gm: ``[B, C, P]`` query and candidate maps; q_geom, g_geom: ``[B, 2]`` (tilt, width)
                for the oracle.

        Returns:
            ``(match int64 [B, P], valid bool [B, P])``.
        """
        grid = int(round(qm.shape[-1] ** 0.5))
        if self.matcher == "oracle":
            pts = oracle_transfer(grid_points(grid), q_geom[:, 0], q_geom[:, 1], g_geom[:, 0], g_geom[:, 1])
            match = torch.from_numpy(points_to_cells(pts, grid))
            return match, torch.ones_like(match, dtype=torch.bool)
        cos = patch_cosine(qm, gm)  # [B, P, P]
        fwd = cos.argmax(2)  # first maximum: ties to the lower index
        back = cos.argmax(1)  # best query patch for each candidate patch
        mutual = back.gather(1, fwd) == torch.arange(qm.shape[-1])[None]
        return fwd, mutual

    def _pair_batch(self, qm, gm, qi, gidx, ctx):  # type: ignore[no-untyped-def]
        qg = None if ctx is None else np.repeat(ctx[qi : qi + 1], len(gidx), 0)
        gg = None if ctx is None else self.gallery_geometry_[gidx]
        match, valid = self.correspondences(qm, gm, qg, gg)
        cos = patch_cosine(qm, gm)
        at = cos.gather(2, match.unsqueeze(-1)).squeeze(-1) * valid
        qcc, _ = cross_correlation_maps(qm, gm)
        out = chm_masked_scores(at, qcc, threshold=self.threshold, n_top=self.n_top)
        top = out["top"]
        pairs = torch.stack([top, match.gather(1, top)], dim=-1)
        return {"score": out["score"], "pairs": pairs, "weights": out["masked"].gather(1, top)}
