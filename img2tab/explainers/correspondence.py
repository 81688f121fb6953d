"""Explaining by examples and correspondences: kNN, EMD-Corr and CHM-Corr-style classifiers.

After Taesiri*, Nguyen* and Nguyen (NeurIPS 2022; anguyen8/visual-correspondence-XAI). A
correspondence classifier labels a query by a vote over training images and explains the label by
those images and the patches that match between them:

* **kNN** (:class:`KNNClassifier`) — cosine similarity of L2-normalised embeddings (ConceptCNN's
  average-pooled layer4, or Img2Tab's standardised Ψ); the top ``n_shortlist = 50`` form the
  shortlist and the labels of the top ``n_vote = 20`` vote (official ``K_value``, ``MajorityVotes_K``).
* **EMD-Corr** (:class:`EMDCorrClassifier`) — re-ranks the shortlist by an entropic optimal
  transport between the 8×8 layer4 patches of query and candidate (cross-correlation marginals
  from raw features, cost ``1 - cos`` of normalised patches, Sinkhorn with regularisation 0.05,
  ≤ 100 iterations, stop at ``mean |Δr| < 0.1``, a warning when it does not converge; score
  ``Σ T·cos`` over the 5 largest plan entries), then votes over the re-ranked top 20. Official
  quirks kept and fixed are listed in :mod:`img2tab.explainers._sinkhorn`.
* **CHM-Corr-style** (:class:`CHMCorrClassifier`) — the official matcher (CHMNet) has no weights
  here, so the query grid (the 8×8 layer4 cell centres; official 7×7 points at ``linspace(18,
  222)`` on 240 px, i.e. the 7×7 cell centres) is matched either by **mutual nearest neighbours**
  of ConceptCNN patches, or by the **oracle** correspondence of the concept world's geometry
  (:func:`oracle_transfer`), an upper bound no photo data set allows. Score = mean of the 5 largest
  cosines at the matched points, masked by the query's cross-correlation map min-max normalised
  and binarised at ``>= 0.55`` (official; masked points count as 0). Shortlist 50 (the paper's N; the
  CHM-Corr script's argparse default is 200) and vote 20.

Deterministic tie rules (the official code sorts with ``np.argsort(...)[::-1]``, which sends equal
scores to the *later* index): kNN ties go to the lower training index; re-ranking ties keep the kNN
order; vote ties go to the lowest class id (as the official ``argmax(bincount)``).

Benchmark adapter (:class:`CorrespondenceExplainer`, one per classifier):

* **concepts** — training exemplars: the ``n_concepts`` gallery images that appear most often among
  the top-``n_vote`` re-ranked voters of ``n_probe`` training probes (each probe left out of its own
  shortlist); importance = that frequency (the exemplar's *vote share*), ties to the lower index;
* **t_c(x)** — the method's similarity of ``x`` to exemplar ``c`` (cosine for kNN, the EMD score, the
  CHM score);
* **evidence** — the query patches matched to the exemplar (``concept=None``: to the query's own
  top exemplar of its predicted class), weighted by their share of the score and upsampled to
  pixels (nearest, each layer4 cell is a block of pixels): EMD-Corr's 5 largest plan entries,
  CHM-Corr's 5 largest masked cosines (points with weight 0 are no evidence), and for kNN on
  ConceptCNN the query's 5 cells of largest cross-correlation with the exemplar (the official kNN
  explanation shows CC maps; its "pairs" join the two images' top-5 CC cells by rank);
* **intervention** — grey out those patches (value 0 in [-1, 1]) and re-classify with the same
  correspondence classifier; the Ψ-space kNN has no patches, so there it removes the exemplars
  from the gallery and re-classifies (``images_after = None``);
* **model_logit** — the explained model is the correspondence classifier itself, whose output is a
  vote: ``(n_1 - n_0) / n_vote`` (the vote margin, in [-1, 1]; 0 on a tie, which the tie rule gives
  to class 0, consistent with ``logit > 0`` meaning class 1). It is piecewise constant: a factor
  change moves it only when it moves a voter across the top-20 boundary;
* **predict** — the classifier's prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ._correspondence_classifiers import (
    CHMCorrClassifier,
    CorrespondenceResult,
    EMDCorrClassifier,
    KNNClassifier,
    majority_vote,
    rank_by_cosine,
)
from ._face_geometry import FaceGeometry, oracle_transfer, read_geometry
from ._protocol import Concept, ConceptExplainer, Intervention, check_concept_indices, check_images

__all__ = [
    "CHMCorrClassifier",
    "CorrespondenceExplainer",
    "CorrespondenceResult",
    "EMDCorrClassifier",
    "FaceGeometry",
    "KNNClassifier",
    "majority_vote",
    "oracle_transfer",
    "plot_correspondences",
    "rank_by_cosine",
    "read_geometry",
]


class CorrespondenceExplainer(ConceptExplainer):
    """A correspondence classifier behind the benchmark protocol (see the module docstring).

    Args:
        classifier: an unfitted or fitted :class:`KNNClassifier`, :class:`EMDCorrClassifier` or
            :class:`CHMCorrClassifier` (fitted again by :meth:`fit`).
        n_concepts: exemplars kept as concepts.
        n_probe: training probes used to rank exemplars.
        seed: seed of the probe draw.
        name: report name (default from the classifier).
    """

    def __init__(self, classifier: KNNClassifier, *, n_concepts: int = 10, n_probe: int = 200,
                 seed: int = 0, name: str | None = None) -> None:
        self.classifier = classifier
        self.n_concepts = n_concepts
        self.n_probe = n_probe
        self.seed = seed
        self.name = name or getattr(classifier, "name", "correspondence")

    # ------------------------------------------------------------------------------ protocol
    def fit(self, images: torch.Tensor, y: np.ndarray) -> CorrespondenceExplainer:
        x = check_images(images)
        clf = self.classifier.fit(x, y)
        rng = np.random.default_rng(self.seed)
        probe = np.sort(rng.choice(len(x), size=min(int(self.n_probe), len(x)), replace=False))
        res = clf.classify(x[probe], exclude=probe)
        voters = res.ranked()[:, : clf.n_vote]
        counts = np.bincount(voters.ravel(), minlength=len(x))
        order = np.argsort(-counts, kind="stable")[: int(self.n_concepts)]
        order = order[counts[order] > 0]
        self.probe_ = probe
        self.concepts_ = tuple(
            Concept(
                name=f"exemplar {int(i)}",
                importance=float(counts[i]) / len(probe),
                info={"index": int(i), "label": int(clf.y_[i]), "votes": int(counts[i])},
            )
            for i in order
        )
        self.exemplars_ = order.astype(np.int64)
        return self

    def concept_scores(self, images: torch.Tensor) -> np.ndarray:
        self._check_fitted()
        return self.classifier.pair_scores(check_images(images), self.exemplars_)["score"]

    def model_logit(self, images: torch.Tensor) -> np.ndarray:
        return self.classifier.vote_margin(check_images(images)).astype(np.float64)

    def predict(self, images: torch.Tensor) -> np.ndarray:
        return self.classifier.predict(check_images(images))

    def _has_patches(self) -> bool:
        return getattr(self.classifier, "maps", None) is not None

    def _patch_weights(self, x: torch.Tensor, concepts: np.ndarray | None) -> np.ndarray | None:
        """Per-image weights over the query's grid cells ``[N, g*g]``, or None without patches."""
        clf = self.classifier
        if not self._has_patches():
            return None
        g = clf._grid()
        w = np.zeros((len(x), g * g))
        if concepts is None:
            res = clf.classify(x)
            pos = res.top_exemplar(clf.y_)
            pairs = res.pairs[np.arange(len(x)), pos]  # [N, n, 2]
            wts = res.weights[np.arange(len(x)), pos]
            _accumulate(w, pairs[:, None], wts[:, None])
        else:
            out = clf.pair_scores(x, self.exemplars_[concepts])
            _accumulate(w, out["pairs"], out["weights"])
        return w

    def evidence(self, images: torch.Tensor, concept: int | None = None) -> np.ndarray | None:
        self._check_fitted()
        x = check_images(images)
        cs = None if concept is None else check_concept_indices(concept, len(self.concepts_))
        w = self._patch_weights(x, cs)
        if w is None:
            return None
        g = self.classifier._grid()
        maps = torch.from_numpy(np.maximum(w, 0.0)).view(len(x), 1, g, g)
        up = F.interpolate(maps, size=tuple(x.shape[-2:]), mode="nearest")
        return up[:, 0].numpy().astype(np.float64)

    def intervene(self, images: torch.Tensor, concepts: Sequence[int]) -> Intervention:
        self._check_fitted()
        x = check_images(images)
        cs = check_concept_indices(concepts, len(self.concepts_))
        before = self.model_logit(x)
        if not self._has_patches():
            after = self.classifier.vote_margin(x, drop=self.exemplars_[cs])
            return Intervention(cs, before, after.astype(np.float64), None)
        if len(cs) == 0:
            return Intervention(cs, before, before.copy(), x.clone())
        w = self._patch_weights(x, cs)
        g = self.classifier._grid()
        cells = torch.from_numpy(w > 0).view(len(x), 1, g, g).float()
        mask = F.interpolate(cells, size=tuple(x.shape[-2:]), mode="nearest") > 0
        after_images = torch.where(mask.expand_as(x), torch.zeros_like(x), x)
        return Intervention(cs, before, self.model_logit(after_images), after_images)


def _accumulate(w: np.ndarray, pairs: np.ndarray, weights: np.ndarray) -> None:
    """Add pair weights ``[N, M, n]`` at their query cells ``pairs[..., 0]`` into ``w`` ``[N, P]``."""
    n = w.shape[0]
    q = pairs[..., 0].reshape(n, -1)
    wt = np.maximum(np.asarray(weights, dtype=np.float64).reshape(n, -1), 0.0)
    valid = (q >= 0) & (wt > 0)  # CHM's top-5 can hold masked-out points (weight 0): no evidence
    for i in range(n):
        np.add.at(w[i], q[i][valid[i]], wt[i][valid[i]])


# ------------------------------------------------------------------------------ figures
def _to_rgb(img: torch.Tensor) -> np.ndarray:
    return ((img.detach().cpu().float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


def plot_correspondences(classifier: KNNClassifier, query: torch.Tensor, gallery: torch.Tensor,
                         *, k: int = 3, ax: Any = None, class_names: Sequence[str] | None = None) -> Any:
    """The official explanation layout: the query, its top exemplars of the predicted class, and
    lines between matched patch centres (one colour per pair, width ~ the pair's weight).

    Args:
        classifier: a fitted correspondence classifier.
        query: one image ``[3, H, W]`` or ``[1, 3, H, W]`` in [-1, 1].
        gallery: the classifier's training images ``[N, 3, H, W]`` (for display).
        k: exemplars shown (one panel each: query left, exemplar right).
        ax: a matplotlib Axes to draw the *top* exemplar pair into, or ``None`` for a new figure
            with ``k`` panels.
        class_names: names of the classes for the titles.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    q = check_images(query if query.ndim == 4 else query[None])[:1]
    res = classifier.classify(q)
    ranked_pos = res.order[0]
    lab = classifier.y_[res.shortlist[0, ranked_pos]]
    keep = ranked_pos[lab == res.prediction[0]][:k]
    if ax is None:
        fig, axes = plt.subplots(1, len(keep), figsize=(3.2 * len(keep), 1.9), squeeze=False)
        axes = axes[0]
    else:
        fig, axes, keep = ax.figure, [ax], keep[:1]
    h, w = q.shape[-2:]
    g = res.grid
    names = class_names or [str(c) for c in range(classifier.n_classes_)]
    cmap = plt.get_cmap("tab10")
    for a, pos in zip(axes, keep):
        gi = int(res.shortlist[0, pos])
        pair_img = np.concatenate([_to_rgb(q[0]), np.ones((h, 2, 3)), _to_rgb(gallery[gi])], axis=1)
        a.imshow(pair_img, interpolation="nearest")
        pairs, wts = res.pairs[0, pos], res.weights[0, pos]
        wmax = max(float(np.max(np.abs(wts))) if wts.size else 0.0, 1e-12)
        for j, ((qp, gp), wt) in enumerate(zip(pairs, wts)):
            if qp < 0 or g == 0 or wt <= 0:
                continue
            qy, qx = divmod(int(qp), g)
            gy, gx = divmod(int(gp), g)
            cell = w / g
            x0, y0 = (qx + 0.5) * cell - 0.5, (qy + 0.5) * cell - 0.5
            x1, y1 = w + 2 + (gx + 0.5) * cell - 0.5, (gy + 0.5) * cell - 0.5
            col = cmap(j % 10)
            a.plot([x0, x1], [y0, y1], "-", color=col, lw=0.8 + 2.2 * abs(float(wt)) / wmax)
            for cx, cy in ((qx * cell, qy * cell), (w + 2 + gx * cell, gy * cell)):
                a.add_patch(plt.Rectangle((cx - 0.5, cy - 0.5), cell, cell, fill=False, ec=col, lw=1))
        a.set_title(f"#{gi} ({names[int(classifier.y_[gi])]}) s={res.scores[0, pos]:.3g}", fontsize=8)
        a.axis("off")
    fig.suptitle(f"{getattr(classifier, 'name', '')}: predicted {names[int(res.prediction[0])]} "
                 f"({int(res.counts[0].max())}/{classifier.n_vote} votes)", fontsize=9)
    return fig
