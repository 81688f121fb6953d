"""ACE (automatic concept-based explanations, Ghorbani et al. 2019) in pure PyTorch, with TCAV.

ACE explains one class of a CNN without concept labels: it cuts the class's images into superpixels
at several resolutions, embeds each superpixel (grey-filled, cropped, resized to the model input) in
the bottleneck, clusters the embeddings, keeps the clusters that many images share, and keeps the
concepts whose TCAV scores differ significantly from a random concept's.

Steps and defaults (amiratag/ACE ``ace.py`` / ``ace_run.py``; the PyTorch port
MKowal2/ACE_TCAV_Pytorch follows the same steps):

1. **Discovery set**: the first ``n_discovery`` images of the class (official 40 =
   ``num_discovery_imgs = max_imgs`` in ``ace_run.py``; the README example uses 50). TCAV images: the
   next ``max_imgs`` images of the class (official: the last ``max_imgs`` of the first
   ``2 max_imgs``, identical when ``n_discovery == max_imgs``).
2. **Superpixels**: ``skimage.segmentation.slic`` with ``n_segments`` 15, 50, 80, ``compactness`` 20
   each, ``sigma`` 1; a segment is kept when its area is above 0.1 % of the image and its Jaccard
   overlap with every segment kept at an earlier resolution is at most 0.5.
   *Official off-by-one, fixed*: the official loop ``for s in range(segments.max())`` visits labels
   ``0 .. max-1``; with scikit-image >= 0.19 (``start_label=1``) label 0 does not exist and the last
   label is never visited, so one segment per resolution is lost. img2tab iterates the labels that
   exist (``np.unique``).
3. **Patches**: outside the segment the image is filled with the official grey,
   ``average_image_value = 117`` on the 0..255 scale, i.e. ``117 / 255 = 0.4588`` on the [0, 1]
   scale the official code works in, which is ``2 * 117 / 255 - 1 = -0.0824`` on img2tab's [-1, 1]
   scale (:data:`OFFICIAL_FILL`). The patch is cropped to the segment's bounding box and resized
   (bicubic) to the model input. *Official quirk, fixed*: the crop ``patch[h1:h2, w1:w2]`` drops the
   last row and column of the box (and is empty for a one-pixel-wide segment); img2tab crops the
   inclusive box. The official resize goes through 8-bit PIL; img2tab resizes the float tensor
   (``torch.nn.functional.interpolate``, bicubic, clamped to [-1, 1]).
4. **Embedding**: the bottleneck activations (``layer4`` of
   :class:`~img2tab.networks.cnn.ConceptCNN`) averaged over space (``channel_mean=True``).
5. **Clustering**: ``KMeans(n_clusters=25)``; cost = L2 distance to the centre. img2tab passes
   ``n_init=10`` (scikit-learn's default when ACE was written; it is ``"auto"`` = 1 run today) and a
   seed.
6. **Cluster keeping**: with ``n`` the cluster size, ``u`` the number of distinct discovery images
   among its members and ``D`` the discovery-set size, a cluster is kept when ``n > min_imgs`` and
   (``u > 0.5 n``) or (``u > 0.25 n`` and ``u > 0.25 D``) or (``u > 0.1 n`` and ``u > 0.5 D``);
   ``min_imgs = 40`` (``ace_run.py``; the class default is 20). Its members are the ``max_imgs = 40``
   patches nearest the centre.
7. **CAVs and TCAV** (:mod:`img2tab.explainers.tcav`): each concept's members against each of
   ``n_random = 20`` random sets of ``max_imgs`` images, on the *flattened* bottleneck (not the
   channel mean), official SGD classifier and sign; the random concept (``random_discovery``) is
   another random set. Random sets are world images of any class (the images passed to ``fit``
   minus the class's discovery and TCAV images), each drawn with its own seed. TCAV scores use the
   loss gradient (official); see :mod:`~img2tab.explainers.tcav` for the conventions.
   img2tab option ``random_source="patches"``: each random example is one superpixel patch (at a
   random SLIC resolution) of a random image instead of a whole image, so that the CAV separates the
   concept from other patches and not "grey-filled patch" from "natural image".
8. **Significance and ranking**: the official paired ``ttest_rel`` of the concept's scores against the
   random concept's, concepts with ``p > 0.01`` dropped, the rest sorted by mean TCAV score. The
   official test is anti-conservative (see :mod:`~img2tab.explainers.tcav`); ``test="random_means"``
   with ``n_random_concepts >= 3`` is img2tab's calibrated alternative.

CPU setting (:meth:`ACEConfig.cpu`): 20 discovery images and 10 random sets instead of 40 and 20
(the official values stay the defaults of :class:`ACEConfig`). On ConceptCNN, :func:`concept_cnn_ace`
also moves the layer to ``body`` and draws random patches (:data:`CONCEPT_CNN_ACE` says why;
``benchmarks/bench_ace.py`` measures the four combinations on a glasses-detecting ConceptCNN, with
the wall time of each step).

The adapter :class:`ACEExplainer` puts ACE behind the benchmark protocol: concept score = the
projection of the image's bottleneck on the concept's CAVs (official ``find_profile``, mean over
random sets); importance = mean TCAV score - 0.5; evidence = the image's own segments that fall
inside the concept's cluster (distance to the centre at most the farthest member's), weighted by
closeness; intervention = those segments greyed out (at least the nearest one), re-classified by the
model; ``model_logit`` = the explained CNN's margin ``logit_1 - logit_0``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import Img2TabInputError
from ._protocol import Concept, ConceptExplainer, Intervention, check_concept_indices, check_images
from .tcav import (
    CAV,
    TCAV,
    ConceptTCAV,
    TCAVResult,
    _as_logits,
    _axes,
    _eval_mode,
    layer_activations,
    plot_tcav,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "ACEConfig",
    "ACEExplainer",
    "CONCEPT_CNN_ACE",
    "concept_cnn_ace",
    "DiscoveredConcept",
    "OFFICIAL_FILL",
    "extract_patches",
    "plot_ace_tcav",
    "plot_concept_gallery",
    "segment_image",
]

logger = logging.getLogger(__name__)

OFFICIAL_FILL: float = 2.0 * 117.0 / 255.0 - 1.0
"""The official grey (``average_image_value = 117`` of 255) on img2tab's [-1, 1] scale (-0.0824)."""


@dataclass(frozen=True)
class ACEConfig:
    """ACE settings; the defaults are the official ones (amiratag/ACE ``ace_run.py``).

    Attributes:
        n_segments: SLIC resolutions (official 15, 50, 80).
        compactness: SLIC compactness per resolution (official 20 each).
        sigma: SLIC Gaussian smoothing (official 1).
        min_area: Smallest kept segment, as a share of the image (official 0.001).
        max_jaccard: Largest overlap with an already kept segment (official 0.5).
        fill: Grey outside the segment on the [-1, 1] scale (official 117/255, :data:`OFFICIAL_FILL`).
        n_discovery: Discovery images per class (official 40).
        n_clusters: k-means clusters (official 25).
        kmeans_n_init: k-means restarts (10, scikit-learn's default at the time).
        max_imgs: Members per concept, images per random set and TCAV images (official 40).
        min_imgs: A cluster needs more than this many patches (official 40).
        n_random: Random sets (official ``num_random_exp`` 20).
        n_random_concepts: Random concepts for the null (official 1; ``test="random_means"`` needs 3).
        test: ``"ttest_rel"`` (official), ``"ttest_ind"``, ``"ttest_1samp"`` or ``"random_means"``.
        significance: p-value threshold (official 0.01).
        bonferroni: Divide the threshold by the number of concepts tested.
        gradient: TCAV gradient convention, ``"loss"`` (official) or ``"logit"``.
        classifier: CAV classifier, ``"sgd"`` (official) or ``"logistic"``.
        layer: Bottleneck (``"layer4"`` of ConceptCNN).
        random_source: ``"images"`` (official: random sets of whole images) or ``"patches"``
            (img2tab option: each random example is one random superpixel patch of a random image,
            so the CAV contrasts the concept with other patches rather than with whole images).
        batch_size: Forward batch size.
        seed: Seed of k-means, random sets and CAVs.
    """

    n_segments: tuple[int, ...] = (15, 50, 80)
    compactness: tuple[float, ...] = (20.0, 20.0, 20.0)
    sigma: float = 1.0
    min_area: float = 0.001
    max_jaccard: float = 0.5
    fill: float = OFFICIAL_FILL
    n_discovery: int = 40
    n_clusters: int = 25
    kmeans_n_init: int = 10
    max_imgs: int = 40
    min_imgs: int = 40
    n_random: int = 20
    n_random_concepts: int = 1
    test: str = "ttest_rel"
    significance: float = 0.01
    bonferroni: bool = False
    gradient: str = "loss"
    classifier: str = "sgd"
    layer: str = "layer4"
    random_source: str = "images"
    batch_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_segments", tuple(int(n) for n in self.n_segments))
        object.__setattr__(self, "compactness", tuple(float(c) for c in self.compactness))
        if len(self.n_segments) == 0 or len(self.compactness) != len(self.n_segments):
            raise Img2TabInputError(
                f"n_segments and compactness must be non-empty and of equal length, got "
                f"{self.n_segments} and {self.compactness}"
            )
        if not -1.0 <= self.fill <= 1.0:
            raise Img2TabInputError(f"fill must be in [-1, 1], got {self.fill}")
        for name in ("n_discovery", "n_clusters", "max_imgs", "n_random", "n_random_concepts"):
            if int(getattr(self, name)) < 1:
                raise Img2TabInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.random_source not in ("images", "patches"):
            raise Img2TabInputError(
                f"random_source must be 'images' or 'patches', got {self.random_source!r}"
            )
        if self.max_imgs < 3:
            raise Img2TabInputError(f"max_imgs must be >= 3 (CAV hold-out), got {self.max_imgs}")

    @classmethod
    def cpu(cls, **overrides: Any) -> ACEConfig:
        """The CPU setting: 20 discovery images and 10 random sets (official: 40 and 20)."""
        return replace(cls(n_discovery=20, n_random=10), **overrides)


# ---------------------------------------------------------------------------------------- segments
def segment_image(image: np.ndarray, config: ACEConfig = ACEConfig()) -> np.ndarray:
    """Multi-resolution SLIC superpixels of one image, de-duplicated by overlap.

    Args:
        image: ``[H, W, 3]`` float in [0, 1] or uint8.
        config: SLIC resolutions, compactness, sigma, area and overlap limits.

    Returns:
        bool ``[P, H, W]`` segment masks, coarse resolutions first.
    """
    from skimage.segmentation import slic

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise Img2TabInputError(f"image must be [H, W, 3], got shape {img.shape}")
    img = img.astype(np.float64) / 255.0 if img.dtype == np.uint8 else img.astype(np.float64)
    area = img.shape[0] * img.shape[1]
    kept = np.zeros((0, area), dtype=bool)
    for n_seg, comp in zip(config.n_segments, config.compactness):
        labels = slic(img, n_segments=n_seg, compactness=comp, sigma=config.sigma, start_label=1).ravel()
        # the labels that exist (fixes the official off-by-one), big enough
        segs = labels[None, :] == np.unique(labels)[:, None]
        segs = segs[segs.sum(1) > config.min_area * area]
        if kept.shape[0] and segs.shape[0]:
            inter = kept.astype(np.float64) @ segs.T.astype(np.float64)
            union = kept.sum(1)[:, None] + segs.sum(1)[None, :] - inter
            segs = segs[(inter / union).max(0) <= config.max_jaccard]
        # overlap is checked against earlier resolutions only (as in the official code)
        kept = np.concatenate([kept, segs])
    return kept.reshape(-1, *img.shape[:2])


def extract_patches(
    image: torch.Tensor, masks: np.ndarray, fill: float = OFFICIAL_FILL, size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """ACE's superpixel images and patches of one image.

    Args:
        image: ``[3, H, W]`` in [-1, 1].
        masks: bool ``[P, H, W]`` segments.
        fill: Grey outside the segment ([-1, 1] scale).
        size: Output side of the resized superpixels (default: ``H``).

    Returns:
        ``(superpixels [P, 3, size, size], patches [P, 3, H, W])``: the grey-filled image cropped
        to each segment's inclusive bounding box and resized (bicubic), and the uncropped
        grey-filled image.
    """
    m = torch.as_tensor(np.asarray(masks, dtype=bool))
    if m.ndim != 3 or m.shape[1:] != image.shape[1:]:
        raise Img2TabInputError(f"masks must be [P, H, W] matching the image, got {tuple(m.shape)}")
    out = size or int(image.shape[1])
    patches = torch.where(m[:, None], image[None], torch.tensor(float(fill), dtype=image.dtype))
    sups = []
    for p in range(m.shape[0]):
        rows = torch.nonzero(m[p].any(1)).ravel()
        cols = torch.nonzero(m[p].any(0)).ravel()
        if rows.numel() == 0:
            raise Img2TabInputError(f"segment {p} is empty")
        crop = patches[p : p + 1, :, int(rows[0]) : int(rows[-1]) + 1, int(cols[0]) : int(cols[-1]) + 1]
        sups.append(F.interpolate(crop, size=(out, out), mode="bicubic", align_corners=False))
    sup = torch.cat(sups).clamp_(-1.0, 1.0) if sups else torch.zeros(0, 3, out, out)
    return sup, patches


def _to_unit(images: torch.Tensor) -> np.ndarray:
    """``[N, 3, H, W]`` in [-1, 1] -> float64 ``[N, H, W, 3]`` in [0, 1]."""
    return ((images.permute(0, 2, 3, 1).double().numpy() + 1.0) / 2.0).clip(0.0, 1.0)


# ---------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class DiscoveredConcept:
    """One ACE concept (a kept k-means cluster) with its TCAV result.

    Attributes:
        name: ``"c{class} concept{i}"`` (``i`` = cluster order of discovery, from 1).
        target: The class it was discovered in.
        cluster: k-means cluster index.
        center: Cluster centre in the channel-mean bottleneck space, float64 ``[C]``.
        radius: Distance of the farthest member from the centre.
        size: Patches in the cluster (``n``).
        n_images: Distinct discovery images among the cluster's patches (``u``).
        member_images: Index (into the images given to ``fit``) of each member's source image ``[m]``.
        member_masks: bool ``[m, H, W]`` segment of each member.
        member_costs: Distance of each member to the centre ``[m]``, ascending.
        tcav: The concept's :class:`~img2tab.explainers.tcav.ConceptTCAV`.
        cavs: The concept's CAVs, one per random set.
    """

    name: str
    target: int
    cluster: int
    center: np.ndarray
    radius: float
    size: int
    n_images: int
    member_images: np.ndarray
    member_masks: np.ndarray
    member_costs: np.ndarray
    tcav: ConceptTCAV
    cavs: tuple[CAV, ...] = field(default=(), repr=False)

    @property
    def significant(self) -> bool:
        """Whether the TCAV test passed."""
        return bool(self.tcav.significant)

    def cav_matrix(self) -> np.ndarray:
        """Unit CAVs stacked, float64 ``[R, D]``."""
        return np.stack([c.vector for c in self.cavs])


# ---------------------------------------------------------------------------------------- ACE
class ACEExplainer(ConceptExplainer):
    """ACE concept discovery + TCAV for a CNN, behind the benchmark's explainer protocol.

    Args:
        model: The explained CNN (e.g. :class:`~img2tab.networks.cnn.ConceptCNN`): images
            ``[N, 3, H, W]`` in [-1, 1] -> logits ``[N, n_classes]``, with the bottleneck
            ``config.layer`` as a submodule.
        config: :class:`ACEConfig` (official defaults; :meth:`ACEConfig.cpu` for the CPU setting).
        target_classes: Classes to explain (each discovered separately; concepts of all of them
            are ranked together by importance).
        keep_insignificant: Also list the concepts that fail the test (ranked after the others).
        evidence_top: Concepts pooled into ``evidence(images, None)``.
        progress: Progress bars.

    Attributes set by ``fit``:
        concepts_: Ranked :class:`~img2tab.explainers.Concept` (significant first, by mean TCAV).
        discovered_: The :class:`DiscoveredConcept` behind each entry of ``concepts_``.
        all_concepts_: ``{class: [DiscoveredConcept]}`` every kept cluster, significant or not.
        tcav_results_: ``{class: TCAVResult}``.
        discovery_images_: ``{class: indices}`` of the discovery images in the fit images.
        n_patches_: ``{class: number of superpixel patches}``.
        timings_: Seconds per step and class.
        gallery_images_: ``{index: uint8 [H, W, 3]}`` the fit images that hold a member patch.
    """

    name = "ace"

    def __init__(
        self,
        model: nn.Module,
        config: ACEConfig = ACEConfig(),
        target_classes: Sequence[int] = (1,),
        keep_insignificant: bool = False,
        evidence_top: int = 3,
        progress: bool = True,
    ) -> None:
        self.model = model
        self.config = config
        self.target_classes = target_classes
        self.keep_insignificant = keep_insignificant
        self.evidence_top = evidence_top
        self.progress = progress

    # ------------------------------------------------------------------ helpers
    def _acts(self, x: torch.Tensor, channel_mean: bool) -> np.ndarray:
        return layer_activations(
            self.model, self.config.layer, x, batch_size=self.config.batch_size, channel_mean=channel_mean
        )

    def _patch_embeddings(self, image: torch.Tensor, masks: np.ndarray) -> np.ndarray:
        if masks.shape[0] == 0:
            return np.zeros((0, 0), dtype=np.float32)
        sup, _ = extract_patches(image, masks, self.config.fill)
        return self._acts(sup, channel_mean=True)

    def _tqdm(self, it: Any, desc: str, total: int | None = None) -> Any:
        from tqdm.auto import tqdm

        return tqdm(it, desc=desc, total=total, disable=not self.progress, leave=False)

    # ------------------------------------------------------------------ fit
    def fit(self, images: torch.Tensor, y: np.ndarray) -> ACEExplainer:
        """Discover and test the concepts of each target class.

        Args:
            images: ``[N, 3, H, W]`` in [-1, 1]; the first images of each target class are its
                discovery and TCAV images, and all others (any class) feed the random sets.
            y: int ``[N]`` labels.

        Returns:
            ``self``.
        """
        import time

        x = check_images(images)
        yy = np.asarray(y).astype(np.int64).ravel()
        if yy.shape[0] != x.shape[0]:
            raise Img2TabInputError(f"y has {yy.shape[0]} labels for {x.shape[0]} images")
        cfg = self.config
        self.__dict__.pop("_segment_cache", None)
        self.all_concepts_: dict[int, list[DiscoveredConcept]] = {}
        self.tcav_results_: dict[int, TCAVResult] = {}
        self.discovery_images_: dict[int, np.ndarray] = {}
        self.n_patches_: dict[int, int] = {}
        self.timings_: dict[str, float] = {}
        for target in [int(t) for t in self.target_classes]:
            idx = np.flatnonzero(yy == target)
            if idx.size < 2:
                raise Img2TabInputError(f"class {target} has {idx.size} images; ACE needs several")
            disc = idx[: cfg.n_discovery]
            tcav_idx = idx[cfg.n_discovery : cfg.n_discovery + cfg.max_imgs]
            if tcav_idx.size < 2:
                logger.warning(
                    "class %d: too few images for a separate TCAV set; using the discovery images", target
                )
                tcav_idx = disc[: cfg.max_imgs]
            pool = np.setdiff1d(np.arange(x.shape[0]), np.concatenate([disc, tcav_idx]))
            if pool.size < 3:
                raise Img2TabInputError(
                    f"too few images outside class {target}'s discovery/TCAV sets for random sets"
                )
            t0 = time.perf_counter()
            found, result, n_patches = self._discover(x, disc, tcav_idx, pool, target)
            self.timings_[f"class {target}"] = time.perf_counter() - t0
            self.all_concepts_[target] = found
            self.tcav_results_[target] = result
            self.discovery_images_[target] = disc
            self.n_patches_[target] = n_patches
        members = sorted({int(i) for cs in self.all_concepts_.values() for c in cs for i in c.member_images})
        unit = _to_unit(x[members]) if members else np.zeros((0, 1, 1, 3))
        self.gallery_images_ = {i: (u * 255).round().astype(np.uint8) for i, u in zip(members, unit)}
        ranked = [
            c for cs in self.all_concepts_.values() for c in cs if c.significant or self.keep_insignificant
        ]
        ranked.sort(key=lambda c: (not c.significant, -c.tcav.mean))
        self.discovered_ = tuple(ranked)
        self.concepts_ = tuple(
            Concept(
                name=c.name,
                importance=c.tcav.mean - 0.5,
                info={
                    "target": c.target,
                    "cluster": c.cluster,
                    "tcav_mean": c.tcav.mean,
                    "tcav_std": c.tcav.std,
                    "p_value": c.tcav.p_value,
                    "significant": c.significant,
                    "cav_accuracy": float(np.mean(c.tcav.cav_accuracies)),
                    "size": c.size,
                    "n_images": c.n_images,
                    "member_images": [int(i) for i in c.member_images],
                },
            )
            for c in ranked
        )
        return self

    def _discover(
        self, x: torch.Tensor, disc: np.ndarray, tcav_idx: np.ndarray, pool: np.ndarray, target: int
    ) -> tuple[list[DiscoveredConcept], TCAVResult, int]:
        import time

        from sklearn.cluster import KMeans

        cfg = self.config
        clock = time.perf_counter()

        def lap(step: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            self.timings_[f"class {target}: {step}"] = now - clock
            clock = now

        # 1-4: superpixels of the discovery images and their channel-mean embeddings
        masks_all, owner, emb = [], [], []
        for i in self._tqdm(disc, f"ACE class {target}: superpixels"):
            masks = segment_image(_to_unit(x[i : i + 1])[0], cfg)
            if masks.shape[0] == 0:
                continue
            masks_all.append(masks)
            owner.append(np.full(masks.shape[0], int(i)))
            emb.append(self._patch_embeddings(x[i], masks))
        if not emb:
            raise Img2TabInputError(f"class {target}: no superpixels survived the area filter")
        masks_cat = np.concatenate(masks_all)
        owner_cat = np.concatenate(owner)
        acts = np.concatenate(emb).astype(np.float64)
        n_patches = acts.shape[0]
        lap("superpixels + embeddings")
        # 5: k-means, cost = L2 distance to the centre
        k = min(cfg.n_clusters, n_patches)
        km = KMeans(n_clusters=k, n_init=cfg.kmeans_n_init, random_state=cfg.seed).fit(acts)
        centers = km.cluster_centers_
        dist = np.linalg.norm(acts[:, None, :] - centers[None], axis=-1)
        label, cost = dist.argmin(1), dist.min(1)
        # 6: official keeping rules
        n_disc = len(disc)
        clusters = []
        for c in range(k):
            members = np.flatnonzero(label == c)
            n = members.size
            if n <= cfg.min_imgs:
                continue
            u = np.unique(owner_cat[members]).size
            keep = (u > 0.5 * n) or (u > 0.25 * n and u > 0.25 * n_disc) or (u > 0.1 * n and u > 0.5 * n_disc)
            if keep:
                order = members[np.argsort(cost[members], kind="stable")[: cfg.max_imgs]]
                clusters.append((c, n, u, order))
        lap("k-means")
        logger.info("class %d: %d patches, %d of %d clusters kept", target, n_patches, len(clusters), k)
        if not clusters:
            return (
                [],
                TCAVResult((), target, cfg.gradient, cfg.test, cfg.significance, cfg.bonferroni, 0),
                n_patches,
            )
        # 7: CAVs on the flattened bottleneck of the members vs random sets of images
        concept_acts = {}
        for j, (_, _, _, order) in enumerate(clusters):
            sups = torch.cat(
                [extract_patches(x[owner_cat[p]], masks_cat[p : p + 1], cfg.fill)[0] for p in order]
            )
            concept_acts[f"c{target} concept{j + 1}"] = self._acts(sups, channel_mean=False)
        flat_pool: dict[int, np.ndarray] = {}
        seg_pool: dict[tuple[int, int], np.ndarray] = {}

        def pool_acts(key: int) -> np.ndarray:
            rng = np.random.default_rng([cfg.seed, target, key])
            ids = rng.choice(pool, min(cfg.max_imgs, pool.size), replace=False)
            if cfg.random_source == "patches":  # one random superpixel of each random image
                sups = []
                for i in ids:
                    res = int(rng.integers(len(cfg.n_segments)))  # at one random resolution
                    key_i = (int(i), res)
                    if key_i not in seg_pool:
                        one = replace(
                            cfg,
                            n_segments=cfg.n_segments[res : res + 1],
                            compactness=cfg.compactness[res : res + 1],
                        )
                        seg_pool[key_i] = segment_image(_to_unit(x[i : i + 1])[0], one)
                    segs = seg_pool[key_i]
                    if segs.shape[0]:
                        pick = int(rng.integers(segs.shape[0]))
                        sups.append(extract_patches(x[i], segs[pick : pick + 1], cfg.fill)[0])
                return self._acts(torch.cat(sups), channel_mean=False)
            missing = [int(i) for i in ids if int(i) not in flat_pool]
            if missing:
                for i, a in zip(missing, self._acts(x[missing], channel_mean=False)):
                    flat_pool[i] = a
            return np.stack([flat_pool[int(i)] for i in ids])

        randoms = [pool_acts(r) for r in range(cfg.n_random)]
        random_concepts = [pool_acts(10_000 + j) for j in range(cfg.n_random_concepts)]
        tcav = TCAV(
            self.model,
            cfg.layer,
            target=target,
            gradient=cfg.gradient,  # type: ignore[arg-type]
            classifier=cfg.classifier,  # type: ignore[arg-type]
            test=cfg.test,  # type: ignore[arg-type]
            significance=cfg.significance,
            bonferroni=cfg.bonferroni,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
        )
        lap("activations of members and random sets")
        tcav.fit_activations(concept_acts, randoms, random_concepts)
        lap("CAVs")
        # 8: TCAV on held-out class images, significance
        result = tcav.score(x[tcav_idx], target=target)
        lap("TCAV scores")
        found = []
        for (c, n, u, order), (name, cavs), res in zip(clusters, tcav.cavs_.items(), result.concepts):
            found.append(
                DiscoveredConcept(
                    name=name,
                    target=target,
                    cluster=int(c),
                    center=centers[c],
                    radius=float(cost[order].max()),
                    size=int(n),
                    n_images=int(u),
                    member_images=owner_cat[order],
                    member_masks=masks_cat[order],
                    member_costs=cost[order],
                    tcav=res,
                    cavs=tuple(cavs),
                )
            )
        return found, result, n_patches

    # ------------------------------------------------------------------ protocol
    def concept_scores(self, images: torch.Tensor) -> np.ndarray:
        """Mean projection of each image's flattened bottleneck on each concept's CAVs, ``[N, K]``."""
        self._check_fitted()
        x = check_images(images)
        if not self.discovered_:
            return np.zeros((x.shape[0], 0))
        acts = self._acts(x, channel_mean=False).astype(np.float64)
        return np.stack([(acts @ c.cav_matrix().T).mean(1) for c in self.discovered_], axis=1)

    def model_logit(self, images: torch.Tensor) -> np.ndarray:
        """The CNN's margin ``logit_1 - logit_0``, float64 ``[N]``."""
        x = check_images(images)
        out = []
        with _eval_mode(self.model), torch.no_grad():
            for i in range(0, x.shape[0], self.config.batch_size):
                lg = _as_logits(self.model(x[i : i + self.config.batch_size]))
                out.append((lg[:, 1] - lg[:, 0]).double())
        return torch.cat(out).numpy() if out else np.zeros(0)

    def _segments_and_embeddings(self, image: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Segments of one image and their channel-mean embeddings (cached by pixel digest)."""
        import hashlib

        key = hashlib.sha1(image.numpy().tobytes()).hexdigest()
        cache = self.__dict__.setdefault("_segment_cache", {})
        if key not in cache:
            masks = segment_image(_to_unit(image[None])[0], self.config)
            emb = self._patch_embeddings(image, masks).astype(np.float64)
            if len(cache) >= 512:
                cache.pop(next(iter(cache)))
            cache[key] = (masks, emb)
        return cache[key]

    def segment_weights(
        self, images: torch.Tensor, concepts: Sequence[int]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each image's segments and their closeness to each concept.

        Returns:
            Per image ``(masks bool [P, H, W], weights [P, k])`` with ``weight = 1 - d / radius``
            for a segment inside the concept's cluster (distance ``d`` to the centre at most the
            farthest member's), else 0; a segment nearest the centre that lies outside gets weight
            0 but is marked by ``-1`` (used as the fallback of :meth:`intervene`).
        """
        x = check_images(images)
        out = []
        disc = [self.discovered_[int(c)] for c in concepts]
        centers = np.stack([c.center for c in disc]) if disc else np.zeros((0, 0))
        radii = np.array([max(c.radius, 1e-12) for c in disc])
        for i in range(x.shape[0]):
            masks, emb = self._segments_and_embeddings(x[i])
            if masks.shape[0] == 0 or not disc:
                out.append((masks, np.zeros((masks.shape[0], len(disc)))))
                continue
            d = np.linalg.norm(emb[:, None, :] - centers[None], axis=-1)
            w = np.clip(1.0 - d / radii, 0.0, None)
            nearest = d.argmin(0)
            for kk in range(len(disc)):
                if w[nearest[kk], kk] == 0:
                    w[nearest[kk], kk] = -1.0
            out.append((masks, w))
        return out

    def evidence(self, images: torch.Tensor, concept: int | None = None) -> np.ndarray:
        """Per-pixel closeness of the image's own segments to the concept, float64 ``[N, H, W]``.

        A pixel's value is the largest weight (:meth:`segment_weights`) of the segments covering
        it; ``concept=None`` pools the first ``evidence_top`` concepts (maximum).
        """
        self._check_fitted()
        x = check_images(images)
        k = len(self.concepts_)
        if concept is None:
            chosen = list(range(min(self.evidence_top, k)))
        else:
            chosen = [int(check_concept_indices([concept], k)[0])]
        ev = np.zeros((x.shape[0], x.shape[2], x.shape[3]))
        if not chosen:
            return ev
        for i, (masks, w) in enumerate(self.segment_weights(x, chosen)):
            if masks.shape[0] == 0:
                continue
            seg_w = np.clip(w, 0.0, None).max(1)
            ev[i] = (masks * seg_w[:, None, None]).max(0)
        return ev

    def intervene(self, images: torch.Tensor, concepts: Sequence[int]) -> Intervention:
        """Grey out each image's segments that belong to the concepts and re-classify.

        For every concept, the segments inside its cluster are filled with ``config.fill``; when an
        image has none, its single nearest segment is filled (so every image loses its best match).
        """
        self._check_fitted()
        x = check_images(images)
        idx = check_concept_indices(concepts, len(self.concepts_))
        before = self.model_logit(x)
        after_imgs = x.clone()
        if idx.size:
            for i, (masks, w) in enumerate(self.segment_weights(x, idx)):
                if masks.shape[0] == 0:
                    continue
                sel = (w != 0).any(1)
                region = torch.from_numpy(masks[sel].any(0))
                after_imgs[i][:, region] = float(self.config.fill)
        return Intervention(
            concepts=idx,
            logit_before=before,
            logit_after=self.model_logit(after_imgs),
            images_after=after_imgs,
        )

    # ------------------------------------------------------------------ report
    def report(self) -> dict[str, Any]:
        """JSON-able summary: per class the TCAV result of every kept cluster, patch counts and timings."""
        self._check_fitted()
        return {
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.config.__dict__.items()},
            "classes": {
                str(t): {
                    "n_discovery": int(self.discovery_images_[t].size),
                    "n_patches": int(self.n_patches_[t]),
                    "seconds": float(self.timings_[f"class {t}"]),
                    "tcav": self.tcav_results_[t].to_dict(),
                }
                for t in self.all_concepts_
            },
            "ranked": [c.name for c in self.concepts_],
        }


# ---------------------------------------------------------------------------------------- ConceptCNN
CONCEPT_CNN_ACE: dict[str, Any] = {"layer": "body", "random_source": "patches"}
"""The two settings :func:`concept_cnn_ace` changes for :class:`~img2tab.networks.cnn.ConceptCNN`.

* ``layer="body"`` (the 16x16 stage before ``layer4``): ConceptCNN's head is a global average pool
  and a linear layer right after ``layer4``, so at ``layer4`` the class-evidence gradient has the
  same direction for every image and each CAV's TCAV score is 0 or 1 (``S = -(1 - p) w . v``); at
  ``body`` the gradient passes through ``layer4``'s ReLUs and varies per image, as at the official
  ``mixed4c`` of GoogLeNet. Clustering, CAVs and concept scores all use the same layer, as in ACE.
* ``random_source="patches"``: random sets of superpixel patches instead of whole images, so the
  CAV separates the concept from other patches and not "grey-filled patch" from "natural image".

``benchmarks/bench_ace.py`` measures both choices on the planted glasses task (results in
``benchmarks/RESULTS.md``).
"""


def concept_cnn_ace(
    model: nn.Module,
    quick: bool = False,
    seed: int = 0,
    target_classes: Sequence[int] = (0, 1),
    progress: bool = True,
    **overrides: Any,
) -> ACEExplainer:
    """ACE configured for a :class:`~img2tab.networks.cnn.ConceptCNN` (the benchmark's factory).

    Args:
        model: The ConceptCNN.
        quick: 10 discovery images, 15 members per concept and 8 random sets (CI); otherwise
            :meth:`ACEConfig.cpu`'s 20 discovery images with the official 20 random sets.
        seed: Seed of k-means, random sets and CAVs.
        target_classes: Classes to explain.
        progress: Progress bars.
        **overrides: Further :class:`ACEConfig` fields.

    Returns:
        An unfitted :class:`ACEExplainer` that also lists the concepts failing the test (ranked
        after the significant ones, ``info["significant"] = False``), so that the benchmark always
        has concepts to score.
    """
    base = dict(CONCEPT_CNN_ACE, seed=int(seed), n_random=20)
    if quick:
        base.update(n_discovery=10, max_imgs=15, min_imgs=15, n_random=8, kmeans_n_init=3)
    base.update(overrides)
    return ACEExplainer(
        model,
        ACEConfig.cpu(**base),
        target_classes=tuple(target_classes),
        keep_insignificant=True,
        progress=progress,
    )


# ---------------------------------------------------------------------------------------- plots
def _member_views(ace: ACEExplainer, concept: DiscoveredConcept, n: int, dim: float) -> np.ndarray:
    """uint8 ``[m, H, W, 3]``: each member's source image, dimmed outside its segment."""
    imgs = np.stack([ace.gallery_images_[int(i)] for i in concept.member_images[:n]]) / 255.0
    masks = concept.member_masks[:n, :, :, None]
    view = np.where(masks, imgs, imgs * (1.0 - dim) + dim * 0.5)
    return (view * 255).round().astype(np.uint8)


def plot_concept_gallery(
    ace: ACEExplainer,
    concepts: Sequence[int] | None = None,
    n_members: int = 8,
    ax: Axes | None = None,
    dim: float = 0.75,
) -> Figure:
    """Member patches of ACE concepts, one row per concept (nearest the centre first).

    Each cell is the member's source image with everything outside the segment faded to grey (the
    official ``plot_concepts`` shows the same segment-in-context view).

    Args:
        ace: A fitted :class:`ACEExplainer`.
        concepts: Indices into ``ace.concepts_`` (default: all, at most 8).
        n_members: Members per row.
        ax: Axes to draw the mosaic on; ``None`` creates a figure.
        dim: How strongly the rest of the image is faded (0 = not, 1 = flat grey).

    Returns:
        The figure.
    """
    from ..world import image_grid

    ace._check_fitted()
    chosen = list(range(min(8, len(ace.concepts_)))) if concepts is None else [int(c) for c in concepts]
    h = int(next(iter(ace.gallery_images_.values())).shape[0]) if ace.gallery_images_ else 1
    fig, ax = _axes(ax, (1.0 * n_members + 1.5, 1.0 * max(1, len(chosen)) + 0.4))
    rows = []
    for c in chosen:
        views = _member_views(ace, ace.discovered_[c], n_members, dim)
        pad = np.full((n_members - views.shape[0], h, h, 3), 255, np.uint8)
        rows.append(np.concatenate([views, pad]))
    if rows:
        ax.imshow(image_grid(np.concatenate(rows), ncols=n_members, pad=2))
        step = h + 2  # image_grid's padding
        ax.set_yticks(
            [step * r + h / 2 for r in range(len(chosen))],
            [f"{ace.concepts_[c].name}\nTCAV {ace.discovered_[c].tcav.mean:.2f}" for c in chosen],
            fontsize=7,
        )
    else:
        ax.text(0.5, 0.5, "no significant concept", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    ax.set_xticks([])
    ax.set_title("ACE concepts: member segments nearest the cluster centre", fontsize=8)
    return fig


def plot_ace_tcav(ace: ACEExplainer, target: int | None = None, ax: Axes | None = None) -> Figure:
    """TCAV scores (mean and spread over random sets, p-values) of every kept cluster of one class.

    Args:
        ace: A fitted :class:`ACEExplainer`.
        target: Class (default: the first explained class).
        ax: Axes; ``None`` creates a figure.

    Returns:
        The figure.
    """
    ace._check_fitted()
    t = int(next(iter(ace.tcav_results_)) if target is None else target)
    if t not in ace.tcav_results_:
        raise Img2TabInputError(f"class {t} was not explained; explained: {list(ace.tcav_results_)}")
    return plot_tcav(ace.tcav_results_[t], ax=ax)
