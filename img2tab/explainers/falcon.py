"""FALCON (Kalibhat et al., ICML 2023): name groups of co-activated features in words, offline.

Step by step, as the official scripts (NehaKalibhat/falcon-explain: ``get_interpretable_features.py``,
``explain_feature_group.py``, ``falcon_utils.py``) do it, on a representation of a probe set:

1. **Representation** ``R [N, C]``: the pooled (global-average) ``layer4`` features of a ConceptCNN
   (mode ``"pooled"``; the official pre-FC ResNet vector), or any feature function such as img2tab's
   Ψ, standardized per column on the probe set (mode ``"features"``). Rows are L2-normalised.
2. **High activation**: one global threshold ``mean + lim * std`` over *all entries* of the
   normalised matrix (official ``lim = 5``, torch's unbiased std). A sample's *feature-group key* is the
   exact set of its features above the threshold; groups with more than ``min_group_size = 10``
   samples are kept; their members are the highly activating set.
3. **Crops**: Grad-CAM on ``model.layer4`` (forward/backward hooks, written here) with target = sum of
   the group's pooled features, min-max normalised per image, binarised at ``0.6``, and the largest
   box around a connected component is cropped and resized to the image–text model's input size.
4. **Interpretability**: mean pairwise cosine of the crops' embeddings (diagonal included) must
   exceed a threshold: the official ``0.8`` is on CLIP's scale, so by default it is recalibrated per
   model (``coherence_threshold="calibrated"``: the ``0.9`` quantile of the same statistic over random
   groups of crops drawn from all candidate groups, see :func:`~img2tab.explainers.image_text.
   calibrate_coherence_threshold`); ``None`` keeps every group; a float is used as is.
5. **Low-activation (contrastive) set**: samples whose group features are all below the matrix mean;
   ranked by the dot product of their non-group dimensions with the high set's mean non-group
   vector; kept if ``>= 0.3``, at most 10; **not cropped** (as in the official code).
6. **Captions**: five per image from the image–text model (retrieval with
   ``softmax(logit_scale * cos)``, the official ``100`` being CLIP's logit scale; or the truth
   captioner's exact captions with score 1).
7. **Parsing** (offline): lowercase, strip non-alphanumerics, drop the official discard words,
   a bundled stop-word list and a lemma table for the caption vocabulary
   (:func:`~img2tab.explainers.image_text.tokenize`); words of length <= 2 or with digits dropped.
   Word score per image = max caption score containing it; a word's score = sum over images / number
   of images. Phrases = runs of two or more content words between stop words / punctuation.
8. **Contrast**: remove every word or phrase that scores ``>= 0.1`` in the low set; report the top
   8 words and top 8 phrases. The 0.1 is on the score scale of CLIP retrieval (logit scale 100 over
   LAION chunks); by default (``contrast_threshold="calibrated"``) it is ``0.1 *`` the mean top-1
   caption score of the group's images, which is exactly 0.1 for the truth captioner (scores 1) and
   scales with a flatter softmax (WorldCLIP's learned logit scale is ~17, its bank 1,241 captions,
   so its caption scores are far below CLIP's and an absolute 0.1 would remove nothing).

Differences from the official code, kept or fixed (on purpose):

* The official parser uses TextBlob noun phrases and NLTK part-of-speech tags (NN*, VB*, JJ*) with
  WordNet lemmas; corpora cannot be downloaded here, so every content word counts (our captions are
  short templated phrases of nouns and adjectives, where the POS filter would drop little more than
  the stop words we drop) and phrases are runs of content words rather than noun-phrase chunks.
* The official discard list contains ``"background"`` and ``"small"`` — kept, so the background
  factor is named through its hue words ("pink", "blue", "backdrop", ...).
* Grad-CAM is hand-written with hooks (the official code uses pytorch-grad-cam's old ``use_cuda=``
  API on CLIP-preprocessed tensors); the largest box is taken over 8-connected components
  (scipy.ndimage.label) instead of the official "downright boxing", which can merge touching islands.
* The official per-chunk softmax over 411 LAION chunks (scores not comparable across chunks) is
  available through :class:`~img2tab.explainers.image_text.CaptionBank` ``chunk_size``; our banks
  are one chunk.
* **Degenerate threshold.** With a small representation (C = 128 instead of 512 / 2048) the
  mean + 5 sd threshold can leave no group with more than 10 members. Then (``adapt_lim=True``)
  ``lim`` is lowered step by step (5, 4, 3, 2.5, 2, 1.5, 1) until at least ``min_groups`` (3) groups
  survive, or else the step with the most groups is used (lowering ``lim`` makes keys longer, so
  exact-set groups fragment again); the value used is :attr:`FALCON.lim_` and is reported in every
  concept's ``info``. Measured on the quick unbiased task (ConceptCNN, C = 128, 600 probe images,
  almost no zero entries): no entry set survives at 5 sd except one, the first group appears at 3 sd.
* CUDA is not required; everything runs on the CPU.

Adapter (:class:`FALCON`, a :class:`~img2tab.explainers.ConceptExplainer`): concept = a kept
feature group; score ``t_c(x)`` = sum of the group's normalised features; importance ``w_c`` = the mean
absolute change of the ConceptCNN logit when the group's pooled features are set to their probe
mean (the method's own intervention, see :meth:`FALCON.intervene`); evidence = the group's Grad-CAM
map; ``model_logit`` = ConceptCNN's logit.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import Img2TabInputError
from ._protocol import Concept, ConceptExplainer, Intervention, check_concept_indices, check_images
from .image_text import (
    DISCARD_WORDS,
    LEMMAS,
    STOP_WORDS,
    ImageTextModel,
    calibrate_coherence_threshold,
    mean_pairwise_cosine,
    tokenize,
    word_factor,
)

__all__ = [
    "FALCON",
    "FalconGroup",
    "activation_threshold",
    "contrast",
    "falcon_for_context",
    "falcon_psi_for_context",
    "falcon_word_report",
    "find_feature_groups",
    "grad_cam",
    "largest_box",
    "low_activation_set",
    "parse_captions",
    "plot_falcon_group",
    "plot_falcon_words",
    "word_factor_share",
]

logger = logging.getLogger(__name__)

_LIM_STEPS = (5.0, 4.0, 3.0, 2.5, 2.0, 1.5, 1.0)


# ---------------------------------------------------------------------------------------------
# steps 1-2, 5: groups and sets on a plain matrix
# ---------------------------------------------------------------------------------------------


def _normalise_rows(r: np.ndarray) -> np.ndarray:
    r = np.asarray(r, dtype=np.float64)
    norm = np.linalg.norm(r, axis=1, keepdims=True)
    return r / np.maximum(norm, 1e-12)


def activation_threshold(r_hat: np.ndarray, lim: float = 5.0) -> float:
    """The official high-activation threshold: ``mean + lim * std`` over all entries (unbiased std).

    Args:
        r_hat: ``[N, C]`` row-normalised representation.
        lim: Number of standard deviations.
    """
    r_hat = np.asarray(r_hat, dtype=np.float64)
    return float(r_hat.mean() + lim * r_hat.std(ddof=1))


def find_feature_groups(
    r_hat: np.ndarray, lim: float = 5.0, min_group_size: int = 10
) -> dict[tuple[int, ...], np.ndarray]:
    """Feature groups: samples keyed by the exact set of their features above the threshold.

    Args:
        r_hat: ``[N, C]`` row-normalised representation.
        lim: Threshold in standard deviations (:func:`activation_threshold`).
        min_group_size: Groups need *more than* this many samples (official: 10).

    Returns:
        Dict sorted feature indices -> int64 sample indices ``[n_g]``, largest groups first.
    """
    r_hat = np.asarray(r_hat, dtype=np.float64)
    high = r_hat >= activation_threshold(r_hat, lim)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i in np.flatnonzero(high.any(axis=1)):
        groups.setdefault(tuple(int(j) for j in np.flatnonzero(high[i])), []).append(int(i))
    kept = {k: np.asarray(v, dtype=np.int64) for k, v in groups.items() if len(v) > min_group_size}
    return dict(sorted(kept.items(), key=lambda kv: (-len(kv[1]), kv[0])))


def low_activation_set(
    r_hat: np.ndarray, group: Sequence[int], high: np.ndarray, min_dot: float = 0.3, max_size: int = 10
) -> np.ndarray:
    """The official contrastive set of a group.

    Samples whose group features are all below the matrix mean, ranked by the dot product of their
    non-group dimensions with the high set's mean non-group vector; those ``>= min_dot``, at most
    ``max_size``.

    Args:
        r_hat: ``[N, C]`` row-normalised representation.
        group: Feature indices of the group.
        high: Sample indices of the highly activating set.

    Returns:
        int64 sample indices, best first.
    """
    r_hat = np.asarray(r_hat, dtype=np.float64)
    g = np.asarray(group, dtype=np.int64)
    rest = np.setdiff1d(np.arange(r_hat.shape[1]), g)
    mean_high = r_hat[np.asarray(high)][:, rest].mean(axis=0)
    cand = np.flatnonzero((r_hat[:, g] < r_hat.mean()).all(axis=1))
    dots = r_hat[cand][:, rest] @ mean_high
    order = np.argsort(-dots, kind="stable")
    keep = order[dots[order] >= min_dot][:max_size]
    return cand[keep].astype(np.int64)


# ---------------------------------------------------------------------------------------------
# step 3: Grad-CAM and boxes
# ---------------------------------------------------------------------------------------------


def grad_cam(
    layer: nn.Module,
    target_fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    batch_size: int = 128,
) -> np.ndarray:
    """Grad-CAM of a scalar-per-image target at one layer, with hooks.

    ``cam = relu(sum_c mean_hw(d target / d A_c) * A_c)``, upsampled bilinearly to the image size
    and min-max normalised per image to ``[0, 1]`` (as pytorch-grad-cam does).

    Args:
        layer: Module whose output ``A [N, C, h, w]`` is explained (e.g. ``model.layer4``).
        target_fn: Maps images ``[N, 3, H, W]`` to targets ``[N]`` (running ``layer`` inside).
        images: ``[N, 3, H, W]``.
        batch_size: Images per pass.

    Returns:
        float64 ``[N, H, W]`` in ``[0, 1]``.
    """
    acts: list[torch.Tensor] = []

    def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
        out.retain_grad()
        acts.append(out)

    handle = layer.register_forward_hook(hook)
    maps = []
    try:
        for start in range(0, images.shape[0], batch_size):
            acts.clear()
            x = images[start : start + batch_size].detach().clone().requires_grad_(True)
            with torch.enable_grad():
                target = target_fn(x)
                target.sum().backward()
            a = acts[-1]
            weights = a.grad.mean(dim=(2, 3), keepdim=True)
            cam = F.relu((weights * a).sum(dim=1, keepdim=True)).detach()
            cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
            lo = cam.flatten(1).min(1).values[:, None, None]
            hi = cam.flatten(1).max(1).values[:, None, None]
            maps.append(((cam - lo) / (hi - lo).clamp_min(1e-12)).double().numpy())
    finally:
        handle.remove()
    return np.concatenate(maps) if maps else np.zeros((0, *images.shape[-2:]))


def largest_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Largest-area bounding box ``(x0, y0, x1, y1)`` (end exclusive) over the 8-connected components
    of a boolean mask; the whole image if the mask is empty."""
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    best, best_area = (0, 0, w, h), -1
    for sl in ndimage.find_objects(labels):
        if sl is None:
            continue
        ys, xs = sl
        area = (ys.stop - ys.start) * (xs.stop - xs.start)
        if area > best_area:
            best, best_area = (xs.start, ys.start, xs.stop, ys.stop), area
    return best


# ---------------------------------------------------------------------------------------------
# steps 7-8: parsing and contrast
# ---------------------------------------------------------------------------------------------


def _phrases(caption: str) -> list[str]:
    out = []
    for chunk in re.split(r"[^a-z0-9 ]+", caption.lower()):
        run: list[str] = []
        for w in chunk.split() + [""]:
            content = (
                w
                and w not in STOP_WORDS
                and w not in DISCARD_WORDS
                and LEMMAS.get(w, w) not in DISCARD_WORDS
                and len(w) > 2
                and not any(c.isdigit() for c in w)
            )
            if content:
                run.append(w)
            else:
                if len(run) >= 2:
                    out.append(" ".join(run))
                run = []
    return out


def parse_captions(
    captions: Sequence[Sequence[str]], scores: np.ndarray
) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """Word and phrase scores of a set of captioned images (official scoring).

    Per image, a word's score is the largest score of a caption containing it; a word's set score is
    the sum over images divided by the number of images.

    Args:
        captions: ``[N][k]`` captions.
        scores: ``[N, k]`` caption scores.

    Returns:
        ``(words, phrases)``: lists of ``(text, score)``, best first (ties by text).
    """
    n = len(captions)
    words: dict[str, float] = {}
    phrases: dict[str, float] = {}
    scores = np.asarray(scores, dtype=np.float64)
    for i, caps in enumerate(captions):
        w_img: dict[str, float] = {}
        p_img: dict[str, float] = {}
        for j, cap in enumerate(caps):
            s = float(scores[i, j])
            for w in set(tokenize(cap)):
                w_img[w] = max(w_img.get(w, 0.0), s)
            for p in set(_phrases(cap)):
                p_img[p] = max(p_img.get(p, 0.0), s)
        for k, v in w_img.items():
            words[k] = words.get(k, 0.0) + v
        for k, v in p_img.items():
            phrases[k] = phrases.get(k, 0.0) + v

    def ranked(d: dict[str, float]) -> list[tuple[str, float]]:
        return sorted(((k, v / max(n, 1)) for k, v in d.items()), key=lambda kv: (-kv[1], kv[0]))

    return ranked(words), ranked(phrases)


def contrast(
    high: Sequence[tuple[str, float]], low: Sequence[tuple[str, float]], threshold: float = 0.1, top: int = 8
) -> tuple[list[tuple[str, float]], list[str]]:
    """The official contrastive step: drop every item scoring ``>= threshold`` in the low set.

    Returns:
        ``(kept top items, removed items)``.
    """
    banned = {w for w, s in low if s >= threshold}
    kept = [(w, s) for w, s in high if w not in banned]
    removed = [w for w, _ in high if w in banned]
    return kept[:top], removed


def word_factor_share(words: Sequence[str], factor: str) -> float:
    """Share of words (or phrases) that name ``factor`` (:func:`~img2tab.explainers.image_text.word_factor`);
    0 for an empty list."""
    if not words:
        return 0.0
    return float(np.mean([word_factor(w) == factor for w in words]))


# ---------------------------------------------------------------------------------------------
# the explainer
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FalconGroup:
    """Everything FALCON found for one feature group.

    Attributes:
        key: Feature indices of the group.
        high: Probe indices of the highly activating set ``[n_h]``.
        boxes: Grad-CAM crop boxes of the high set, int ``[n_h, 4]`` ``(x0, y0, x1, y1)``.
        low: Probe indices of the contrastive set ``[n_l]`` (uncropped).
        coherence: Mean pairwise cosine of the high crops' embeddings.
        interpretable: Whether it passed the (recalibrated) coherence threshold.
        words_before / phrases_before: Top items before the contrastive step (``3 * top_words``).
        words / phrases: Top items after it.
        removed_words / removed_phrases: What the contrastive step removed.
        high_captions / low_captions: The captions (``[n][k]``).
        contrast_threshold: The low-set score at which an item was removed.
    """

    key: tuple[int, ...]
    high: np.ndarray
    boxes: np.ndarray
    low: np.ndarray
    coherence: float
    interpretable: bool
    words_before: list[tuple[str, float]]
    phrases_before: list[tuple[str, float]]
    words: list[tuple[str, float]]
    phrases: list[tuple[str, float]]
    removed_words: list[str] = field(default_factory=list)
    removed_phrases: list[str] = field(default_factory=list)
    high_captions: list[list[str]] = field(default_factory=list)
    low_captions: list[list[str]] = field(default_factory=list)
    contrast_threshold: float = 0.1


class FALCON(ConceptExplainer):
    """FALCON on ConceptCNN's pooled features (or on any feature table), with a pluggable captioner.

    Args:
        model: The explained CNN: needs ``layer4`` (module), ``pooled(x) -> [N, C]`` and
            ``head`` (``nn.Linear(C, 2)``) — e.g. :class:`img2tab.networks.cnn.ConceptCNN`. ``None``
            in feature mode.
        image_text: The captioner (:class:`~img2tab.explainers.image_text.ImageTextModel`), or a
            callable ``(images, y) -> ImageTextModel`` called in :meth:`fit` (for the truth captioner,
            which must know the probe images).
        features: Feature mode: ``images [N, 3, H, W] -> [N, D]`` (e.g. img2tab's Ψ); standardized
            per column on the probe set when ``standardize``. Crops are whole images (no Grad-CAM).
        feature_logit: Feature mode: explained model's logit from a feature table ``[N, D] -> [N]``
            (for :meth:`model_logit` and the intervention).
        standardize: Z-score the features (feature mode).
        lim: Threshold in standard deviations (official 5).
        adapt_lim: Lower ``lim`` if fewer than ``min_groups`` groups survive (see module docstring).
        min_groups: Groups wanted before ``lim`` stops being lowered; if no step reaches it, the
            step with the most groups is used (the larger ``lim`` on ties).
        min_group_size: Groups need more than this many members (official 10).
        max_high: Cap on the high set captioned per group (None = all; official: all).
        cam_threshold: Grad-CAM binarisation threshold (official 0.6).
        coherence_threshold: ``"calibrated"`` (default), a float (official 0.8 on CLIP's scale) or
            ``None`` (keep every group).
        coherence_quantile: Quantile used by the calibration.
        low_min_dot, low_max: Contrastive set parameters (official 0.3, 10).
        n_captions: Captions per image (official 5).
        contrast_threshold: A float (official 0.1, on the score scale of CLIP retrieval over LAION)
            or ``"calibrated"`` (default): ``0.1 *`` the mean top-1 caption score of the group's high
            and low images, i.e. 0.1 for a captioner whose best caption scores 1 (the truth
            captioner) and proportionally less for a flatter retrieval softmax (WorldCLIP).
        top_words: Items reported per group (official 8).
        max_groups: Keep at most this many groups (largest first) before captioning (None = all).
        seed: Seed of the calibration draws.
        name: Report name.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        image_text: ImageTextModel | Callable[[torch.Tensor, np.ndarray], ImageTextModel] | None = None,
        *,
        features: Callable[[torch.Tensor], np.ndarray] | None = None,
        feature_logit: Callable[[np.ndarray], np.ndarray] | None = None,
        standardize: bool = True,
        lim: float = 5.0,
        adapt_lim: bool = True,
        min_groups: int = 3,
        min_group_size: int = 10,
        max_high: int | None = 200,
        cam_threshold: float = 0.6,
        coherence_threshold: float | str | None = "calibrated",
        coherence_quantile: float = 0.9,
        low_min_dot: float = 0.3,
        low_max: int = 10,
        n_captions: int = 5,
        contrast_threshold: float | str = "calibrated",
        top_words: int = 8,
        max_groups: int | None = 20,
        seed: int = 0,
        name: str = "falcon",
    ) -> None:
        self.model = model
        self.image_text = image_text
        self.features = features
        self.feature_logit = feature_logit
        self.standardize = standardize
        self.lim = lim
        self.adapt_lim = adapt_lim
        self.min_groups = min_groups
        self.min_group_size = min_group_size
        self.max_high = max_high
        self.cam_threshold = cam_threshold
        self.coherence_threshold = coherence_threshold
        self.coherence_quantile = coherence_quantile
        self.low_min_dot = low_min_dot
        self.low_max = low_max
        self.n_captions = n_captions
        self.contrast_threshold = contrast_threshold
        self.top_words = top_words
        self.max_groups = max_groups
        self.seed = seed
        self.name = name

    # -------------------------------------------------------------- representation
    def _check_setup(self) -> None:
        if (self.model is None) == (self.features is None):
            raise Img2TabInputError(
                "FALCON needs exactly one of model= (a CNN) or features= (a feature function)"
            )
        if self.features is not None and self.feature_logit is None:
            raise Img2TabInputError(
                "FALCON in feature mode needs feature_logit= (the explained model's logit)"
            )

    def _raw(self, images: torch.Tensor) -> np.ndarray:
        """Un-normalised representation ``[N, C]`` (pooled features, or standardized features)."""
        if self.model is not None:
            was_training = self.model.training
            self.model.eval()
            try:
                with torch.no_grad():
                    return (
                        torch.cat(
                            [self.model.pooled(images[i : i + 256]) for i in range(0, images.shape[0], 256)]
                        )
                        .double()
                        .numpy()
                    )
            finally:
                self.model.train(was_training)
        z = np.asarray(self.features(images), dtype=np.float64)  # type: ignore[misc]
        return z

    def _table(self, raw: np.ndarray) -> np.ndarray:
        if self.model is None and self.standardize:
            return (raw - self.feat_mean_) / self.feat_std_
        return raw

    def _logit_from_raw(self, raw: np.ndarray) -> np.ndarray:
        if self.model is not None:
            with torch.no_grad():
                logits = self.model.head(torch.as_tensor(raw, dtype=torch.float32))
            return (logits[:, 1] - logits[:, 0]).double().numpy()
        return np.asarray(self.feature_logit(raw), dtype=np.float64)  # type: ignore[misc]

    # -------------------------------------------------------------- fit
    def fit(self, images: torch.Tensor, y: np.ndarray) -> FALCON:
        """Run FALCON on a probe set: groups, crops, captions, contrast; rank the groups.

        Args:
            images: ``[N, 3, H, W]`` in ``[-1, 1]`` (the probe set).
            y: ``[N]`` labels (only passed to an ``image_text`` factory; FALCON is unsupervised).

        Returns:
            ``self``.
        """
        self._check_setup()
        x = check_images(images)
        y = np.asarray(y)
        if y.shape != (x.shape[0],):
            raise Img2TabInputError(f"y must have shape ({x.shape[0]},), got {y.shape}")
        if self.image_text is None:
            raise Img2TabInputError("FALCON needs image_text= (an ImageTextModel or a factory)")
        itm = self.image_text if isinstance(self.image_text, ImageTextModel) else self.image_text(x, y)
        self.image_text_ = itm
        raw = self._raw(x)
        if self.model is None and self.standardize:
            self.feat_mean_ = raw.mean(axis=0)
            self.feat_std_ = np.maximum(raw.std(axis=0), 1e-12)
        table = self._table(raw)
        r_hat = _normalise_rows(table)
        self.probe_raw_mean_ = raw.mean(axis=0)
        self.probe_table_ = table

        steps = [self.lim] + ([v for v in _LIM_STEPS if v < self.lim] if self.adapt_lim else [])
        best: tuple[float, dict[tuple[int, ...], np.ndarray]] | None = None
        for lim in steps:
            found = find_feature_groups(r_hat, lim, self.min_group_size)
            if best is None or len(found) > len(best[1]):
                best = (float(lim), found)
            if len(found) >= self.min_groups:
                best = (float(lim), found)
                break
        assert best is not None
        self.lim_, groups = best
        if not groups:
            raise Img2TabInputError(
                f"FALCON found no feature group with more than {self.min_group_size} samples "
                f"(lim down to {steps[-1]}); use a larger probe set or a smaller min_group_size"
            )
        if self.lim_ != self.lim:
            logger.info("FALCON: lim lowered from %s to %s (%d groups)", self.lim, self.lim_, len(groups))
        self.threshold_ = activation_threshold(r_hat, self.lim_)
        if self.max_groups is not None:
            groups = dict(list(groups.items())[: self.max_groups])

        # crops and their embeddings
        rng = np.random.default_rng(self.seed)
        crops: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray, torch.Tensor]] = {}
        for key, members in groups.items():
            high = members
            if self.max_high is not None and len(high) > self.max_high:
                high = np.sort(rng.choice(high, self.max_high, replace=False))
            boxes = self._boxes(x[torch.from_numpy(high)], key)
            emb = itm.encode_crops(x[torch.from_numpy(high)], boxes)
            crops[key] = (high, boxes, emb)

        coherence = {k: mean_pairwise_cosine(e) for k, (_, _, e) in crops.items()}
        thresholds = self._coherence_thresholds(crops)
        self.coherence_thresholds_ = {",".join(map(str, k)): v for k, v in thresholds.items()}

        results: list[FalconGroup] = []
        for key, (high, boxes, emb) in crops.items():
            low = low_activation_set(r_hat, key, groups[key], self.low_min_dot, self.low_max)
            caps_h, sc_h = itm.caption(emb, self.n_captions)
            words_h, phrases_h = parse_captions(caps_h, sc_h)
            caps_l: list[list[str]] = []
            words_l: list[tuple[str, float]] = []
            phrases_l: list[tuple[str, float]] = []
            top1 = [np.asarray(sc_h)[:, 0]]
            if len(low):
                caps_l, sc_l = itm.caption(itm.encode_images(x[torch.from_numpy(low)]), self.n_captions)
                words_l, phrases_l = parse_captions(caps_l, sc_l)
                top1.append(np.asarray(sc_l)[:, 0])
            c_thr = self._contrast_threshold(np.concatenate(top1))
            words, removed_w = contrast(words_h, words_l, c_thr, self.top_words)
            phrases, removed_p = contrast(phrases_h, phrases_l, c_thr, self.top_words)
            thr = thresholds[key]
            results.append(
                FalconGroup(
                    key=key,
                    high=high,
                    boxes=boxes,
                    low=low,
                    coherence=coherence[key],
                    interpretable=thr is None or coherence[key] > thr,
                    words_before=words_h[: 3 * self.top_words],
                    phrases_before=phrases_h[: 3 * self.top_words],
                    words=words,
                    phrases=phrases,
                    removed_words=removed_w,
                    removed_phrases=removed_p,
                    high_captions=caps_h,
                    low_captions=caps_l,
                    contrast_threshold=c_thr,
                )
            )

        kept = [g for g in results if g.interpretable]
        if not kept:
            logger.warning("FALCON: no group passed the coherence threshold; keeping all %d", len(results))
            kept = results
        # importance = mean |logit change| of the group intervention on the probe set
        logit0 = self._logit_from_raw(raw)
        imps = []
        for g in kept:
            edited = raw.copy()
            edited[:, list(g.key)] = self._group_mean(g.key)
            imps.append(float(np.mean(np.abs(self._logit_from_raw(edited) - logit0))))
        order = np.argsort(-np.asarray(imps), kind="stable")
        self.groups_ = tuple(kept[i] for i in order)
        self.all_groups_ = tuple(results)
        self.concepts_ = tuple(
            Concept(
                name="group " + ",".join(map(str, kept[i].key)),
                importance=imps[i],
                info={
                    "features": list(kept[i].key),
                    "n_high": int(len(groups[kept[i].key])),
                    "n_low": int(len(kept[i].low)),
                    "words": [w for w, _ in kept[i].words],
                    "phrases": [p for p, _ in kept[i].phrases],
                    "words_before": [w for w, _ in kept[i].words_before],
                    "removed_words": list(kept[i].removed_words),
                    "contrast_threshold": kept[i].contrast_threshold,
                    "coherence": kept[i].coherence,
                    "lim": self.lim_,
                    "image_text": getattr(itm, "name", type(itm).__name__),
                },
            )
            for i in order
        )
        return self

    def _contrast_threshold(self, top1: np.ndarray) -> float:
        thr = self.contrast_threshold
        if isinstance(thr, str):
            if thr != "calibrated":
                raise Img2TabInputError(f"contrast_threshold must be a float or 'calibrated', got {thr!r}")
            return float(0.1 * np.mean(top1)) if top1.size else 0.1
        return float(thr)

    def _group_mean(self, key: Sequence[int]) -> np.ndarray:
        """Probe mean of the group's *raw* features (the intervention value)."""
        return self.probe_raw_mean_[list(key)]

    def _coherence_thresholds(
        self, crops: Mapping[tuple[int, ...], tuple[np.ndarray, np.ndarray, torch.Tensor]]
    ) -> dict[tuple[int, ...], float | None]:
        thr = self.coherence_threshold
        if thr is None:
            return {k: None for k in crops}
        if isinstance(thr, str):
            if thr != "calibrated":
                raise Img2TabInputError(
                    f"coherence_threshold must be a float, 'calibrated' or None, got {thr!r}"
                )
            pool = torch.cat([e for _, _, e in crops.values()])
            if len(crops) < 2:
                return {k: None for k in crops}
            return {
                k: calibrate_coherence_threshold(pool, len(e), self.coherence_quantile, seed=self.seed)
                for k, (_, _, e) in crops.items()
            }
        return {k: float(thr) for k in crops}

    # -------------------------------------------------------------- evidence
    def _group_cam(self, images: torch.Tensor, key: Sequence[int]) -> np.ndarray:
        model = self.model
        assert model is not None
        idx = list(key)
        was_training = model.training
        model.eval()
        try:
            return grad_cam(model.layer4, lambda t: model.pooled(t)[:, idx].sum(dim=1), images)
        finally:
            model.train(was_training)

    def _boxes(self, images: torch.Tensor, key: Sequence[int]) -> np.ndarray:
        n, _, h, w = images.shape
        if self.model is None:
            return np.tile(np.array([0, 0, w, h], dtype=np.int64), (n, 1))
        cams = self._group_cam(images, key)
        return np.array([largest_box(c >= self.cam_threshold) for c in cams], dtype=np.int64).reshape(n, 4)

    def evidence(self, images: torch.Tensor, concept: int | None = None) -> np.ndarray | None:
        """Grad-CAM map of a group (``concept``), or of the top group when ``None``; ``[N, H, W]``.

        ``None`` in feature mode (no Grad-CAM there)."""
        self._check_fitted()
        if self.model is None:
            return None
        x = check_images(images)
        c = 0 if concept is None else int(check_concept_indices([concept], len(self.concepts_))[0])
        return self._group_cam(x, self.groups_[c].key)

    # -------------------------------------------------------------- protocol
    def concept_scores(self, images: torch.Tensor) -> np.ndarray:
        """``t_c(x)`` = sum of the group's row-normalised features; float64 ``[N, K]``."""
        self._check_fitted()
        r_hat = _normalise_rows(self._table(self._raw(check_images(images))))
        return np.stack([r_hat[:, list(g.key)].sum(axis=1) for g in self.groups_], axis=1)

    def model_logit(self, images: torch.Tensor) -> np.ndarray:
        """Explained model's logit (ConceptCNN: ``logits[:, 1] - logits[:, 0]``); float64 ``[N]``."""
        self._check_setup()
        return self._logit_from_raw(self._raw(check_images(images)))

    def intervene(self, images: torch.Tensor, concepts: Sequence[int]) -> Intervention:
        """Set the groups' (pooled) features to their probe mean and re-run the head."""
        self._check_fitted()
        idx = check_concept_indices(concepts, len(self.concepts_))
        raw = self._raw(check_images(images))
        edited = raw.copy()
        for c in idx:
            key = list(self.groups_[c].key)
            edited[:, key] = self._group_mean(key)
        return Intervention(idx, self._logit_from_raw(raw), self._logit_from_raw(edited), None)

    # -------------------------------------------------------------- word-level score
    def word_scores(self, factor: str, k: int | None = None, top_words: int = 3) -> float:
        """Share of the top words (after the contrastive step) that name ``factor``.

        Args:
            factor: A world factor name.
            k: Groups considered (top-k concepts; ``None`` = all).
            top_words: Words per group.

        Returns:
            Mean over groups of the share of their top ``top_words`` words naming ``factor``.
        """
        self._check_fitted()
        groups = self.groups_[: k or len(self.groups_)]
        return float(
            np.mean([word_factor_share([w for w, _ in g.words[:top_words]], factor) for g in groups])
        )


# ---------------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------------


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    return ((img.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def plot_falcon_group(
    group: FalconGroup, images: torch.Tensor, ax: Any = None, n_show: int = 8, tile: int = 48
) -> Any:
    """One montage: the top row shows high-set crops, the bottom row the low (contrastive) set;
    the title gives the top words after the contrastive step.

    Args:
        group: A :class:`FalconGroup` (from :attr:`FALCON.groups_`).
        images: The probe images FALCON was fitted on ``[N, 3, H, W]``.
        ax: Matplotlib axes (a new figure when ``None``).
        n_show: Images per row.
        tile: Tile size in pixels.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    from .image_text import crop_resize

    if ax is None:
        fig, ax = plt.subplots(figsize=(1.1 * n_show, 2.6))
    fig = ax.figure
    canvas = np.full((2 * tile + 4, n_show * (tile + 2), 3), 255, dtype=np.uint8)
    hi = torch.from_numpy(group.high[:n_show])
    if len(hi):
        crops = crop_resize(images[hi].float(), group.boxes[:n_show], tile)
        for i in range(len(hi)):
            canvas[:tile, i * (tile + 2) : i * (tile + 2) + tile] = _to_uint8(crops[i])
    lo = torch.from_numpy(group.low[:n_show])
    if len(lo):
        full = F.interpolate(images[lo].float(), size=(tile, tile), mode="bilinear", antialias=True)
        for i in range(len(lo)):
            canvas[tile + 4 :, i * (tile + 2) : i * (tile + 2) + tile] = _to_uint8(full[i])
    ax.imshow(canvas)
    ax.set_xticks([])
    ax.set_yticks([tile / 2, 1.5 * tile + 4], labels=["high (crops)", "low"])
    words = ", ".join(w for w, _ in group.words[:5]) or "(none)"
    ax.set_title(f"group {','.join(map(str, group.key))}: {words}", fontsize=9)
    return fig


def plot_falcon_words(group: FalconGroup, ax: Any = None, phrases: bool = False, n: int = 12) -> Any:
    """Bar chart of words (or phrases) before the contrastive step: the top kept ones (blue, up to
    ``n // 2``) and the top removed ones (grey), ``n`` in all.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    before = group.phrases_before if phrases else group.words_before
    kept = (group.phrases if phrases else group.words)[: n // 2]
    # the kept items (after the contrast) always shown; the rest filled with the top items before it
    fill = [it for it in before if it[0] not in {k for k, _ in kept}][: n - len(kept)]
    items = sorted([*kept, *fill], key=lambda kv: (-kv[1], kv[0]))
    removed = set(group.removed_phrases if phrases else group.removed_words)
    if ax is None:
        fig, ax = plt.subplots(figsize=(4, 0.3 * max(len(items), 1) + 0.8))
    fig = ax.figure
    labels = [w for w, _ in items][::-1]
    vals = [s for _, s in items][::-1]
    colors = ["0.75" if w in removed else "tab:blue" for w in labels]
    ax.barh(range(len(labels)), vals, color=colors)
    ax.set_yticks(range(len(labels)), labels=labels, fontsize=8)
    ax.set_xlabel("score (grey: removed by contrast)", fontsize=8)
    ax.set_title(f"group {','.join(map(str, group.key))}", fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------------
# benchmark glue
# ---------------------------------------------------------------------------------------------


def falcon_for_context(ctx: Any, captioner: str = "truth", **kwargs: Any) -> FALCON:
    """An unfitted FALCON for a :class:`~img2tab.world.benchmark.BenchmarkContext`.

    Explains ``ctx.concept_cnn`` on the training split (the probe set the benchmark fits on).

    Args:
        ctx: The benchmark context (uses ``concept_cnn``, ``train``, ``quick``).
        captioner: ``"truth"`` (:class:`~img2tab.explainers.image_text.TruthCaptioner` of the training
            split) or ``"worldclip"`` (the shipped weights).
        **kwargs: Further :class:`FALCON` parameters.
    """
    from .image_text import TruthCaptioner, load_worldclip

    if captioner == "truth":
        factors = ctx.train.factors

        def itm(images: torch.Tensor, y: np.ndarray) -> ImageTextModel:
            return TruthCaptioner(factors, images)

        image_text: Any = itm
    elif captioner == "worldclip":
        image_text = load_worldclip()
    else:
        raise Img2TabInputError(f"captioner must be 'truth' or 'worldclip', got {captioner!r}")
    kwargs.setdefault("max_high", 40 if ctx.quick else 100)
    kwargs.setdefault("max_groups", 8 if ctx.quick else 20)
    return FALCON(ctx.concept_cnn, image_text, name=f"falcon-{captioner}", seed=ctx.seed, **kwargs)


def falcon_psi_for_context(ctx: Any, captioner: str = "truth", **kwargs: Any) -> FALCON:
    """An unfitted FALCON on img2tab's standardized Ψ (the second mode) for a benchmark context.

    The representation is Ψ of the encoder (``ctx.psi_train`` for the training images, looked up by
    pixel content; other images are encoded with ``ctx.inverter``), z-scored per column on the probe
    set; the explained model is the Ψ classifier (``ctx.psi_classifier.decision_function``); crops are
    whole images (no Grad-CAM on Ψ) and there is no evidence map.

    Args:
        ctx: The benchmark context (uses ``train``, ``psi_train``, ``psi_classifier``, ``inverter``).
        captioner: ``"truth"`` or ``"worldclip"``.
        **kwargs: Further :class:`FALCON` parameters.
    """
    from .image_text import TruthCaptioner, _image_key, load_worldclip

    x_train = ctx.train.to_tensor()
    known = {_image_key(x_train[i]): i for i in range(x_train.shape[0])}
    psi_train = np.asarray(ctx.psi_train, dtype=np.float64)

    def features(images: torch.Tensor) -> np.ndarray:
        idx = [known.get(_image_key(im)) for im in images]
        out = np.empty((images.shape[0], psi_train.shape[1]))
        missing = [i for i, j in enumerate(idx) if j is None]
        for i, j in enumerate(idx):
            if j is not None:
                out[i] = psi_train[j]
        if missing:
            from ..world.evaluation import encode_images

            out[missing] = encode_images(ctx.inverter, images[missing])[0]
        return out

    def feature_logit(z: np.ndarray) -> np.ndarray:
        return np.asarray(ctx.psi_classifier.decision_function(z.astype(np.float32)), dtype=np.float64)

    if captioner == "truth":
        factors = ctx.train.factors
        image_text: Any = lambda images, y: TruthCaptioner(factors, images)  # noqa: E731
    elif captioner == "worldclip":
        image_text = load_worldclip()
    else:
        raise Img2TabInputError(f"captioner must be 'truth' or 'worldclip', got {captioner!r}")
    kwargs.setdefault("max_high", 40 if ctx.quick else 100)
    kwargs.setdefault("max_groups", 8 if ctx.quick else 20)
    return FALCON(
        None,
        image_text,
        features=features,
        feature_logit=feature_logit,
        name=f"falcon-psi-{captioner}",
        seed=ctx.seed,
        **kwargs,
    )


def falcon_word_report(
    explainer: FALCON,
    class_factor: str = "smile",
    spurious_factor: str | None = None,
    k: int = 5,
    top_words: int = 3,
) -> dict[str, Any]:
    """The benchmark's word-level score of a fitted FALCON.

    Args:
        explainer: Fitted :class:`FALCON`.
        class_factor: The factor that defines the class.
        spurious_factor: The spurious factor of a biased task (or ``None``).
        k: Top groups (by importance) considered.
        top_words: Top words (after the contrastive step) per group.

    Returns:
        Dict with ``class_word_share`` (mean over the top-``k`` groups of the share of their top words
        naming ``class_factor``), ``spurious_word_share`` (same for ``spurious_factor``; ``None``
        without one), ``*_before``: the same over the top factor-naming words *before* the contrastive
        step (generic words such as "cartoon" skipped; a diagnostic, not FALCON's output),
        ``any_class_word`` (share of groups with at least one class word after the step), ``k``,
        ``top_words``, ``lim`` and ``groups`` (key, importance, words before/after, removed words).
    """
    explainer._check_fitted()
    groups = explainer.groups_[:k]
    words = [[w for w, _ in g.words[:top_words]] for g in groups]
    named_before = [[w for w, _ in g.words_before if word_factor(w) is not None][:top_words] for g in groups]
    return {
        "class_word_share_before": float(np.mean([word_factor_share(w, class_factor) for w in named_before])),
        "spurious_word_share_before": None
        if spurious_factor is None
        else float(np.mean([word_factor_share(w, spurious_factor) for w in named_before])),
        "class_word_share": float(np.mean([word_factor_share(w, class_factor) for w in words])),
        "spurious_word_share": None
        if spurious_factor is None
        else float(np.mean([word_factor_share(w, spurious_factor) for w in words])),
        "any_class_word": float(np.mean([any(word_factor(x) == class_factor for x in w) for w in words])),
        "k": len(groups),
        "top_words": top_words,
        "lim": explainer.lim_,
        "groups": [
            {
                "key": list(g.key),
                "importance": float(c.importance),
                "n_high": int(c.info["n_high"]),
                "words_before": [w for w, _ in g.words_before],
                "words": [w for w, _ in g.words],
                "phrases": [p for p, _ in g.phrases],
                "removed": list(g.removed_words),
            }
            for g, c in zip(groups, explainer.concepts_)
        ],
    }
