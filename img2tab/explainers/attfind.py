"""StylEx's AttFind on img2tab's StyleSpace, for any generator and any classifier.

AttFind (Lang et al., "Explaining in Style", ICCV 2021; the official code is the TF2 colab
``Explaining_in_Style_AttFind.ipynb`` of google/explaining-in-style) explains a classifier by the
StyleSpace coordinates whose change moves the classifier's logits most. This module runs it on any
img2tab generator (an :class:`~img2tab.networks.Inverter` gives the latents of the explained images)
with either kind of classifier in the loop:

* an **image classifier**: any callable ``images [B, 3, H, W] in [-1, 1] -> logits [B, C]`` (or a
  binary margin ``[B]``), e.g. ConceptCNN or a torchvision model; every edit is rendered by the
  generator (clipped to [-1, 1], as the notebook's ``call_synthesis`` does) and classified;
* the **Ψ classifier** (:class:`~img2tab.tabular.ConceptClassifier`): the edit is applied to the Ψ
  row and the classifier reads it directly; no rendering, seconds instead of minutes.

Steps (official notebook defaults, all kept unless listed under *quirks*):

1. **Styles**: only the conv styles (``style_vector_calculator(...)[0]``); toRGB styles are opt-in
   (``include_torgb=True``). ``style_min`` / ``style_max`` per coordinate over the explained latents.
2. **Effect tensor** ``E[i, d, s, c]`` (``[N, 2, S, C]``): classifier *logits* (``use_softmax=False``)
   after minus before, where style ``s`` of image ``i`` moves by ``shift_size · (target − s_i)``
   towards its min (``d = 0``) or max (``d = 1``); ``shift_size = 1`` lands exactly on the extreme.
   "Before" is the classifier on the *reconstruction* (the generated image), not on the input.
3. **Unstable images**: an image with more than ``unstable_count`` entries ``|E| > unstable_threshold``
   (counted over ``(d, s, c)``) has its effects zeroed. The notebook *calls*
   ``filter_unstable_images(E, effect_threshold=2)``; the function's *signature default* is 0.3. We
   default to the call's 2 (the one that produced the paper's results) and expose the parameter. The
   count 750 is relative to the notebook's tensor: ``2 · S · C = 2 · 5,760 · 2 = 23,040`` entries at
   256 px (5,760 conv styles for the config-f channel widths at 256 px with 14 layers; the notebook's
   example style index 5300 is consistent with that). Our StyleSpace is smaller (1,440 conv styles on
   the embedded default), so the default keeps the same *fraction*: ``round(750 · S / 5760)``
   (188 for S = 1,440, 750 for S = 5,760). Pass ``unstable_count=750`` for the raw number.
4. **Classes** are split by the classifier's *prediction* on the reconstruction (argmax of the base
   logits), not by labels. Attributes of class ``c`` are searched on the images predicted ``1 − c``.
5. **Greedy selection** (``find_significant_styles``): ``P = max(0, E[..., c])`` over the ``2S``
   columns ``(d, s)``; repeatedly pick the column with the largest mean over the images whose
   accumulated effect is still below ``max_image_effect = 5 · effect_threshold = 1.0``, add it to the
   accumulator and zero it, until ``num_indices = 8`` are picked.
6. **Merge**: class-1 picks enter with the direction flipped unless their style was already picked
   for class 0; score ``(d, s) = mean_i E[i, d, s, 0] + mean_i E[i, 1 − d, s, 1]`` (means over *all*
   images, filtered ones included as zeros, as in the notebook); sorted descending. A concept
   ``(d, s)`` therefore means "moving s to its min (d = 0) / max (d = 1) pushes towards class 0", and
   the opposite move pushes towards class 1 (the notebook: "use the other direction to move from
   class 0 to 1").

Quirks of the official code, kept or fixed:

* *Kept*: before/after both on generated images; logits not softmax; split by prediction; filtered
  images still count (as zeros) in the merge means; class-1 picks whose style (either direction) is
  among the class-0 picks are dropped; both directions of one style may be picked.
* *Fixed — stopping at style index 0*: with a discriminator filter the notebook breaks out of the
  search when the picked style index is 0 (``if sindex == 0: break``), so the first style of the first
  layer can never be reported and ends the search early. Here index 0 is an ordinary style; the
  optional ``style_filter`` hook of :func:`find_significant_styles` (the place for a discriminator
  test) only ever skips the column it rejects.
* *Fixed — exhausted images*: once every image has reached ``max_image_effect`` the notebook takes
  the mean over an empty set (NaN) and ``argmax`` returns column 0, so it keeps "picking" (min, style
  0); it also picks an arbitrary column when no positive effect is left. Here the search stops and
  returns fewer picks (logged).
* *Fixed — in-place filtering*: the notebook zeroes unstable images in the caller's array; here the
  input is never modified.
* *Fixed — ties in the final ranking*: the sort is stable (ties keep the merge order) instead
  of ``argsort(...)[::-1]``, which reverses ties.
* *Binary margins*: a classifier that returns one margin ``m = l1 − l0`` per image (XGBoost, a
  ``logit()`` method) is given the two logits ``(−m/2, m/2)``: same softmax, same argmax, and
  ``E[..., 1] = −E[..., 0] = Δm/2``. Thresholds are in these per-class logit units.

CPU budget (an img2tab addition; ``mode="budget"``): the exact tensor costs ``N · 2 · S`` renders and
classifier passes (1,440 conv styles on the default: 2,880 per image). The budget mode first runs a
**first-order screen**, one forward and backward pass per image through generator and classifier,
``Ê[i, d, s, c] = ∂logit_c/∂s · shift_size · (target_d − s_i)``; it keeps the ``n_candidates`` styles
whose screened AttFind statistic (the greedy's column mean of ``max(0, Ê)`` on the opposite class,
best over ``(d, c)``) is largest and computes **exact** effects for both directions of those styles
only. The greedy search and the merge then run on exact numbers (other styles count as zero); the
unstable-image filter counts over exact entries for the candidates and screened ones elsewhere.
:func:`ranking_agreement` compares a budget ranking with the exact one.

Long runs show progress bars and are resumable: pass ``checkpoint=path.npz`` and the effect tensor is
saved atomically after every chunk of images; a rerun with the same inputs skips the chunks done.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .._atomic import atomic_save_npz
from ..errors import Img2TabInputError
from ._protocol import Concept, ConceptExplainer, Intervention, check_concept_indices, check_images

__all__ = [
    "AttFindExplainer",
    "AttFindResult",
    "OFFICIAL_CONV_STYLES",
    "OFFICIAL_UNSTABLE_COUNT",
    "attfind",
    "attfind_budget",
    "attfind_table",
    "explained_coordinates",
    "filter_unstable_images",
    "find_significant_styles",
    "first_order_effects",
    "format_table",
    "merge_class_picks",
    "plot_attfind_gallery",
    "ranking_agreement",
    "scaled_unstable_count",
    "screen_candidates",
    "style_effects",
]

logger = logging.getLogger(__name__)

#: Conv styles of the official 256 px StylEx generator (config-f widths, 14 layers; see module doc).
OFFICIAL_CONV_STYLES = 5760
#: ``num_indices_threshold`` of the notebook's ``filter_unstable_images``.
OFFICIAL_UNSTABLE_COUNT = 750

#: ``psi [B, D] -> logits [B, C]``: the classifier in the loop, seen from StyleSpace.
LogitsOfPsi = Callable[[torch.Tensor], torch.Tensor]


# ============================================================================ pure AttFind (numpy)
def scaled_unstable_count(n_styles: int, reference: int = OFFICIAL_UNSTABLE_COUNT,
                          reference_styles: int = OFFICIAL_CONV_STYLES) -> int:
    """The notebook's unstable-image count scaled to a StyleSpace of ``n_styles`` coordinates.

    Keeps the fraction ``750 / (2 · 5760 · C)`` of the ``(d, s, c)`` entries: ``round(750 · S / 5760)``
    (188 for the 1,440 conv styles of the embedded default).
    """
    if n_styles <= 0:
        raise Img2TabInputError(f"n_styles must be positive, got {n_styles}")
    return max(1, int(round(reference * n_styles / reference_styles)))


def _check_effects(effects: Any, name: str = "effects") -> np.ndarray:
    e = np.asarray(effects)
    if e.ndim != 4 or e.shape[1] != 2:
        raise Img2TabInputError(f"{name} must be [N, 2, S, C], got shape {e.shape}")
    if e.size and not np.all(np.isfinite(e)):
        raise Img2TabInputError(f"{name} contains NaN or inf")
    return e


def filter_unstable_images(
    effects: np.ndarray, effect_threshold: float = 2.0, num_indices_threshold: int = 750
) -> tuple[np.ndarray, np.ndarray]:
    """Zero the effects of images that too many style changes affect (notebook step 3).

    Args:
        effects: ``[N, 2, S, C]`` effect tensor.
        effect_threshold: ``|E|`` above which an entry counts. The notebook calls the function with
            2; its signature default is 0.3.
        num_indices_threshold: an image is unstable when more than this many of its ``2 · S · C``
            entries exceed the threshold (notebook: 750 of 23,040; see :func:`scaled_unstable_count`).

    Returns:
        ``(filtered copy [N, 2, S, C], unstable bool [N])``; the input is not modified.
    """
    e = _check_effects(effects)
    counts = (np.abs(e) > effect_threshold).reshape(e.shape[0], -1).sum(axis=1)
    unstable = counts > num_indices_threshold
    out = e.copy()
    out[unstable] = 0
    return out, unstable


def find_significant_styles(
    class_effects: np.ndarray,
    num_indices: int = 8,
    max_image_effect: float = 1.0,
    style_filter: Callable[[int, int], bool] | None = None,
) -> list[tuple[int, int]]:
    """Greedy AttFind search for one class (notebook ``find_significant_styles``).

    Args:
        class_effects: ``[n, 2, S]`` effects on the logit of the searched class ``c``, for the images
            predicted as the other class.
        num_indices: number of ``(direction, style)`` picks wanted.
        max_image_effect: an image stops voting once its accumulated positive effect over the
            picks so far reaches this (notebook: ``5 · effect_threshold = 1.0``).
        style_filter: optional ``(direction, style) -> keep?`` test (e.g. a discriminator check);
            a rejected column is zeroed and the search goes on (the notebook's stop at style 0 is
            not reproduced).

    Returns:
        Up to ``num_indices`` pairs ``(direction, style)``, in pick order; fewer when no image is
        left below the cap or no positive effect is left.
    """
    e = np.asarray(class_effects, dtype=np.float64)
    if e.ndim != 3 or e.shape[1] != 2:
        raise Img2TabInputError(f"class_effects must be [n, 2, S], got shape {e.shape}")
    n, _, s = e.shape
    if n == 0 or num_indices <= 0:
        return []
    pos = np.maximum(0.0, e.reshape(n, 2 * s))
    acc = np.zeros(n)
    picks: list[tuple[int, int]] = []
    while len(picks) < num_indices:
        active = acc < max_image_effect
        if not active.any():
            logger.info("AttFind: every image reached max_image_effect after %d picks", len(picks))
            break
        means = pos[active].mean(axis=0)
        j = int(np.argmax(means))
        if means[j] <= 0:
            logger.info("AttFind: no positive effect left after %d picks", len(picks))
            break
        d, k = divmod(j, s)
        if style_filter is not None and not style_filter(d, k):
            pos[:, j] = 0.0
            continue
        picks.append((d, k))
        acc += pos[:, j]
        pos[:, j] = 0.0
    return picks


def merge_class_picks(
    effects: np.ndarray, picks0: Sequence[tuple[int, int]], picks1: Sequence[tuple[int, int]]
) -> list[tuple[int, int, int, float]]:
    """Merge both classes' picks into one ranking towards class 0 (notebook "combined" cell).

    Args:
        effects: ``[N, 2, S, C>=2]`` effect tensor (all images).
        picks0: ``(direction, style)`` picks of class 0.
        picks1: picks of class 1 (their direction is flipped).

    Returns:
        ``(direction, style, origin_class, score)`` best first; ``direction`` moves towards class 0.
    """
    e = _check_effects(effects)
    if e.shape[3] < 2:
        raise Img2TabInputError(f"effects needs two classes, got C = {e.shape[3]}")
    styles0 = {s for _, s in picks0}
    joined = [(1 - d, s, 1) for d, s in picks1 if s not in styles0]
    joined += [(d, s, 0) for d, s in picks0]
    scored = []
    for d, s, origin in joined:
        score = float(e[:, d, s, 0].mean() + e[:, 1 - d, s, 1].mean()) if e.shape[0] else 0.0
        scored.append((int(d), int(s), int(origin), score))
    order = sorted(range(len(scored)), key=lambda i: -scored[i][3])  # stable
    return [scored[i] for i in order]


@dataclass(frozen=True)
class AttFindResult:
    """Output of :func:`attfind`.

    Attributes:
        ranking: ``(direction, style, origin_class, score)`` best first (direction towards class 0;
            ``style`` indexes the explained coordinates).
        picks: per class, the greedy picks ``(direction, style)`` in pick order.
        effects: the filtered effect tensor ``[N, 2, S, C]`` the search used.
        predicted: class predicted on each reconstruction, int64 ``[N]``.
        unstable: images whose effects were zeroed, bool ``[N]``.
    """

    ranking: tuple[tuple[int, int, int, float], ...]
    picks: dict[int, tuple[tuple[int, int], ...]]
    effects: np.ndarray
    predicted: np.ndarray
    unstable: np.ndarray


def attfind(
    effects: np.ndarray,
    base_logits: np.ndarray,
    num_indices: int = 8,
    effect_threshold: float = 0.2,
    image_effect_factor: float = 5.0,
    unstable_threshold: float = 2.0,
    unstable_count: int | None = None,
    style_filter: Callable[[int, int, int], bool] | None = None,
) -> AttFindResult:
    """AttFind's extraction step on a precomputed effect tensor (pure numpy; notebook steps 3–6).

    Args:
        effects: ``[N, 2, S, C]`` logits after minus before (C = 2 classes).
        base_logits: ``[N, C]`` classifier logits on the reconstructions (split by their argmax).
        num_indices: picks per class (8).
        effect_threshold: 0.2; the per-image cap is ``image_effect_factor · effect_threshold``.
        image_effect_factor: 5.
        unstable_threshold: ``|E|`` threshold of the unstable-image filter (the call's 2).
        unstable_count: count threshold; None scales 750 to S (:func:`scaled_unstable_count`).
        style_filter: optional ``(class, direction, style) -> keep?`` test for the greedy search.

    Returns:
        :class:`AttFindResult`.
    """
    e = _check_effects(effects)
    base = np.asarray(base_logits, dtype=np.float64)
    if base.shape != (e.shape[0], e.shape[3]):
        raise Img2TabInputError(f"base_logits must be [N, C] = {(e.shape[0], e.shape[3])}, got {base.shape}")
    if e.shape[3] != 2:
        raise Img2TabInputError(f"AttFind's merge needs C = 2 classes, got {e.shape[3]}")
    count = scaled_unstable_count(e.shape[2]) if unstable_count is None else int(unstable_count)
    filtered, unstable = filter_unstable_images(e, unstable_threshold, count)
    if unstable.any():
        logger.info("AttFind: %d of %d images unstable (zeroed)", int(unstable.sum()), e.shape[0])
    pred = np.argmax(base, axis=1).astype(np.int64)
    picks: dict[int, tuple[tuple[int, int], ...]] = {}
    for c in (0, 1):
        rows = filtered[pred == 1 - c][..., c]
        sf = None if style_filter is None else (lambda d, s, c=c: style_filter(c, d, s))
        cap = image_effect_factor * effect_threshold
        picks[c] = tuple(find_significant_styles(rows, num_indices, cap, sf))
    ranking = merge_class_picks(filtered, picks[0], picks[1])
    return AttFindResult(tuple(ranking), picks, filtered, pred, unstable)


def attfind_budget(
    screened: np.ndarray,
    candidate_effects: np.ndarray,
    candidates: np.ndarray,
    base_logits: np.ndarray,
    num_indices: int = 8,
    effect_threshold: float = 0.2,
    image_effect_factor: float = 5.0,
    unstable_threshold: float = 2.0,
    unstable_count: int | None = None,
) -> AttFindResult:
    """AttFind's extraction step in budget mode: exact effects on the candidate styles only.

    Args:
        screened: first-order effects ``[N, 2, S, C]`` (:func:`first_order_effects`).
        candidate_effects: exact effects of the candidates ``[N, 2, M, C]``.
        candidates: indices of the candidates among the S styles ``[M]``.
        base_logits: ``[N, C]``.
        num_indices, effect_threshold, image_effect_factor, unstable_threshold, unstable_count: as in
            :func:`attfind`.

    Returns:
        :class:`AttFindResult`; the greedy search and the merge see exact effects for the candidates
        and zeros elsewhere; the unstable-image filter counts exact entries for the candidates and
        screened ones elsewhere.
    """
    scr = _check_effects(screened, "screened")
    cand = np.asarray(candidates, dtype=np.int64)
    effects = np.zeros_like(scr)
    effects[:, :, cand] = candidate_effects
    hybrid = scr.copy()
    hybrid[:, :, cand] = candidate_effects
    count = scaled_unstable_count(scr.shape[2]) if unstable_count is None else int(unstable_count)
    _, unstable = filter_unstable_images(hybrid, unstable_threshold, count)
    effects[unstable] = 0
    res = attfind(effects, base_logits, num_indices, effect_threshold, image_effect_factor,
                  unstable_threshold, count)
    return AttFindResult(res.ranking, res.picks, res.effects, res.predicted, unstable | res.unstable)


def ranking_agreement(a: Sequence[tuple[int, int]], b: Sequence[tuple[int, int]], k: int) -> dict[str, float]:
    """How two AttFind rankings agree at the top: ``{"equal": 1.0 if the top-k lists are identical
    (same order) else 0.0, "same_set": same top-k sets, "overlap": |A∩B| / k}``. Items are
    ``(direction, style)`` pairs (extra tuple fields are ignored)."""
    ta = [tuple(x[:2]) for x in a[:k]]
    tb = [tuple(x[:2]) for x in b[:k]]
    denom = max(1, min(k, max(len(ta), len(tb))))
    return {
        "equal": float(ta == tb),
        "same_set": float(set(ta) == set(tb)),
        "overlap": len(set(ta) & set(tb)) / denom,
    }


# ============================================================================ effects (torch)
def explained_coordinates(layout: Any, include_torgb: bool = False) -> np.ndarray:
    """Flat Ψ indices AttFind explains: conv styles (the notebook's) or all styles, int64 ``[S]``."""
    if include_torgb:
        return np.arange(layout.total, dtype=np.int64)
    return np.flatnonzero(~layout.torgb_mask).astype(np.int64)


def _as_class_logits(out: Any) -> torch.Tensor:
    """Classifier output -> ``[B, C]`` logits; a binary margin ``[B]`` becomes ``(−m/2, m/2)``."""
    t = torch.as_tensor(out)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim == 1:
        t = torch.stack([-0.5 * t, 0.5 * t], dim=1)
    if t.ndim != 2:
        raise Img2TabInputError(
            f"the classifier must return logits [B, C] or a margin [B], got {tuple(t.shape)}")
    return t


def _targets(psi: torch.Tensor, coords: torch.Tensor, smin: torch.Tensor, smax: torch.Tensor,
             shift_size: float) -> torch.Tensor:
    """Shift ``[n, 2, S]``: ``shift_size · (target_d − s_i)``."""
    cur = psi[:, coords]
    return shift_size * torch.stack([smin[None] - cur, smax[None] - cur], dim=1)


def _fingerprint(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, torch.Tensor):
            p = p.detach().cpu().numpy()
        if isinstance(p, np.ndarray):
            h.update(str(p.shape).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(repr(p).encode())
    return h.hexdigest()


def _model_digest(model: Any) -> str:
    """Digest of a classifier's parameters (nn.Module) or its type (other callables)."""
    target = getattr(model, "__self__", model)  # bound methods: their module
    if isinstance(target, nn.Module):
        return _fingerprint(*[v for _, v in sorted(target.state_dict().items())])
    return type(target).__qualname__


@torch.no_grad()
def style_effects(
    logits_of_psi: LogitsOfPsi,
    psi: torch.Tensor,
    coords: Sequence[int] | np.ndarray,
    style_min: torch.Tensor | np.ndarray,
    style_max: torch.Tensor | np.ndarray,
    shift_size: float = 1.0,
    batch_size: int = 64,
    chunk_images: int = 4,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_key: str = "",
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact AttFind effect tensor (notebook "SSpace calculation").

    Args:
        logits_of_psi: ``Ψ [B, D] -> logits [B, C]`` (render + classify, or the Ψ classifier).
        psi: flat StyleSpace of the explained images ``[N, D]``.
        coords: flat Ψ indices of the explained styles ``[S]``.
        style_min: per-coordinate minimum ``[S]`` (over the explained latents).
        style_max: per-coordinate maximum ``[S]``.
        shift_size: ``Δ = shift_size · (target − s)`` (1 lands on the extreme).
        batch_size: edited Ψ rows per classifier call.
        chunk_images: images per checkpointed chunk.
        checkpoint: ``.npz`` file; after every chunk the tensor is written there atomically, and a
            run with the same inputs (same fingerprint) resumes from it.
        checkpoint_key: extra text in the fingerprint (e.g. the classifier's parameter digest); the
            fingerprint also holds Ψ, the coordinates, their extents, the shift and the classifier's
            logits on the unedited images.
        progress: tqdm progress bar over edited images.

    Returns:
        ``(effects float32 [N, 2, S, C], base logits float64 [N, C])``.
    """
    psi = psi.detach().float().cpu()
    idx = torch.as_tensor(np.asarray(coords, dtype=np.int64))
    smin = torch.as_tensor(np.asarray(style_min), dtype=torch.float32)
    smax = torch.as_tensor(np.asarray(style_max), dtype=torch.float32)
    n, s = psi.shape[0], idx.numel()
    if smin.shape != (s,) or smax.shape != (s,):
        raise Img2TabInputError(f"style_min/style_max must be [S] = [{s}], got {tuple(smin.shape)}")
    if n == 0 or s == 0:
        raise Img2TabInputError(f"nothing to explain: {n} images, {s} styles")
    chunks = [(a, min(n, a + chunk_images)) for a in range(0, n, chunk_images)]
    base_parts = [_as_class_logits(logits_of_psi(psi[a:a + batch_size])).double().cpu()
                  for a in range(0, n, batch_size)]
    base = torch.cat(base_parts).numpy()
    c = base.shape[1]
    # the classifier's logits on the unedited images join the fingerprint, so a checkpoint of another
    # classifier (or other weights) is never resumed, whatever kind of callable it is
    key = _fingerprint(psi, idx, smin, smax, float(shift_size), int(chunk_images), checkpoint_key,
                       base.astype(np.float32))
    effects = np.zeros((n, 2, s, c), dtype=np.float32)
    done = np.zeros(len(chunks), dtype=bool)
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) == key and z["effects"].shape == effects.shape:
                effects[...] = z["effects"]
                done[...] = z["done"]
                logger.info("AttFind: resuming %s (%d of %d chunks done)", path, int(done.sum()), len(chunks))
            else:
                logger.warning("AttFind: checkpoint %s belongs to other inputs; starting afresh", path)
    shift = _targets(psi, idx, smin, smax, shift_size)  # [N, 2, S]
    total = int(sum(b - a for (a, b), ok in zip(chunks, done) if not ok)) * 2 * s
    bar = tqdm(total=total, desc="AttFind effects", unit="edit", disable=not progress)
    for ci, (a, b) in enumerate(chunks):
        if done[ci]:
            continue
        rows = (b - a) * 2 * s
        out = torch.empty(rows, c, dtype=torch.float64)
        for r0 in range(0, rows, batch_size):
            r = torch.arange(r0, min(rows, r0 + batch_size))
            img, rem = r // (2 * s), r % (2 * s)
            d, k = rem // s, rem % s
            edited = psi[a + img].clone()
            edited[torch.arange(len(r)), idx[k]] += shift[a + img, d, k]
            out[r] = _as_class_logits(logits_of_psi(edited)).double().cpu()
            bar.update(len(r))
        effects[a:b] = (out.reshape(b - a, 2, s, c).numpy() - base[a:b, None, None, :]).astype(np.float32)
        done[ci] = True
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_save_npz(path, effects=effects, done=done, base=base, key=np.array(key))
    bar.close()
    return effects, base


def first_order_effects(
    logits_of_psi: LogitsOfPsi,
    psi: torch.Tensor,
    coords: Sequence[int] | np.ndarray,
    style_min: torch.Tensor | np.ndarray,
    style_max: torch.Tensor | np.ndarray,
    shift_size: float = 1.0,
    batch_size: int = 16,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """First-order screen of the effect tensor: ``Ê[i, d, s, c] = ∂logit_c/∂s_i · Δ_{i,d,s}``.

    One forward and one backward pass per image and class through generator and classifier
    (``logits_of_psi`` must be differentiable in Ψ).

    Returns:
        ``(screened effects float32 [N, 2, S, C], base logits float64 [N, C])``.
    """
    psi = psi.detach().float().cpu()
    idx = torch.as_tensor(np.asarray(coords, dtype=np.int64))
    smin = torch.as_tensor(np.asarray(style_min), dtype=torch.float32)
    smax = torch.as_tensor(np.asarray(style_max), dtype=torch.float32)
    shift = _targets(psi, idx, smin, smax, shift_size)
    out, bases = [], []
    for a in tqdm(range(0, psi.shape[0], batch_size), desc="AttFind screen", disable=not progress):
        p = psi[a:a + batch_size].clone().requires_grad_(True)
        with torch.enable_grad():
            logits = _as_class_logits(logits_of_psi(p))
            grads = []
            for c in range(logits.shape[1]):
                (g,) = torch.autograd.grad(logits[:, c].sum(), p, retain_graph=c < logits.shape[1] - 1)
                grads.append(g[:, idx])
        g = torch.stack(grads, dim=-1)  # [b, S, C]
        out.append((g[:, None] * shift[a:a + batch_size, :, :, None]).float().numpy())
        bases.append(logits.detach().double().cpu().numpy())
    return np.concatenate(out), np.concatenate(bases)


def screen_candidates(screened: np.ndarray, base_logits: np.ndarray, n_candidates: int) -> np.ndarray:
    """Styles (indices into the explained coordinates) worth an exact effect, best first.

    A style's screen score is the largest AttFind column statistic it could reach: over classes
    ``c`` and directions ``d``, the mean of ``max(0, Ê[i, d, s, c])`` over the images predicted
    ``1 − c`` (the greedy's first-pick statistic), or over all images for a class with no images.
    """
    e = _check_effects(screened, "screened")
    pred = np.argmax(np.asarray(base_logits), axis=1)
    score = np.zeros(e.shape[2])
    for c in range(e.shape[3]):
        rows = e[pred == 1 - c] if e.shape[3] == 2 else e[pred != c]
        if rows.shape[0] == 0:
            rows = e
        score = np.maximum(score, np.maximum(0.0, rows[..., c]).mean(axis=0).max(axis=0))
    m = min(int(n_candidates), e.shape[2])
    return np.argsort(-score, kind="stable")[:m]


# ============================================================================ tables
def attfind_table(
    result: AttFindResult, coords: Sequence[int] | np.ndarray, layout: Any
) -> list[dict[str, Any]]:
    """One row per ranked attribute: rank, feature (flat Ψ index), layer, channel, module, resolution,
    direction (``"min"``/``"max"``, the move towards class 0), score and class (whose search found it).
    """
    coords = np.asarray(coords, dtype=np.int64)
    rows = []
    for rank, (d, s, origin, score) in enumerate(result.ranking):
        info = layout.describe(int(coords[s]))
        rows.append({
            "rank": rank,
            "feature": int(coords[s]),
            "layer": int(info["layer"]),
            "channel": int(info["channel"]),
            "module": str(info["module"]),
            "resolution": int(info["resolution"]),
            "direction": "max" if d == 1 else "min",
            "score": float(score),
            "class": int(origin),
        })
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`attfind_table` rows."""
    cols = ["rank", "layer", "channel", "module", "resolution", "direction", "score", "class"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ============================================================================ adapter
class AttFindExplainer(ConceptExplainer):
    """AttFind as a :class:`ConceptExplainer` (benchmark adapter).

    A concept is a ``(style coordinate, direction)`` pair from the merged AttFind ranking; the
    direction is the move (to the coordinate's min or max over the explained latents) that pushes the
    classifier towards class 0, the opposite move pushes towards class 1.

    * ``t_c(x)`` = the standardized style value, signed so that it grows towards the concept's
      extreme (``+z`` for a ``max`` concept, ``−z`` for a ``min`` one);
    * ``w_c`` = the merged AttFind score;
    * evidence ``e(x) = |render(shifted) − render|`` (mean over RGB);
    * intervention: move the style(s) to their min/max, towards the class opposite to the
      reconstruction's prediction (``direction`` for images predicted 1, the other one for 0);
      ``logit_before`` is the classifier on the reconstruction so that the change is the edit's alone;
    * ``model_logit`` = the classifier in the loop on the input images (image mode) or
      encoder → Ψ → Ψ classifier (Ψ mode).

    Args:
        inverter: :class:`~img2tab.networks.Inverter` (encoder + generator), e.g. ``img2tab.load_default()``.
        classifier: image classifier ``images [B, 3, H, W] in [-1, 1] -> logits [B, C]`` or a binary
            margin ``[B]`` (ConceptCNN, a torchvision model, ...). Exactly one of ``classifier`` and
            ``psi_classifier``.
        psi_classifier: a fitted :class:`~img2tab.tabular.ConceptClassifier` on Ψ (fast mode: edits are
            applied to Ψ columns, nothing is rendered; its ``decision_function`` margin is the logit).
        mode: ``"exact"``, ``"budget"`` (first-order screen + exact effects on ``n_candidates`` styles;
            image classifiers only) or ``"auto"`` (exact for the Ψ classifier and whenever the exact run
            needs at most ``max_exact_edits`` renders, else budget).
        n_candidates: styles kept by the budget screen (both directions computed exactly).
        max_exact_edits: render budget under which ``"auto"`` runs exactly.
        num_indices: picks per class (notebook: 8).
        effect_threshold: notebook 0.2 (per-image cap 5 × 0.2).
        include_torgb: explain the toRGB styles too (notebook: conv styles only). On the concept world
            the background hue lives mostly in toRGB styles, so the conv-only default cannot name a
            background shortcut (benchmarks/RESULTS.md, AttFind section).
        shift_size: notebook ``s_shift_size`` = 1.
        unstable_threshold: unstable-image ``|E|`` threshold (the notebook's call: 2; signature: 0.3).
        unstable_count: count threshold; None = 750 scaled to S (:func:`scaled_unstable_count`).
        max_images: explain at most this many of the fit images (random subset; None = all).
        batch_size: renders per generator call.
        chunk_images: images per checkpointed chunk.
        checkpoint: optional ``.npz`` path making the effect computation resumable.
        random_state: seed of the image subset.
        progress: progress bars.

    Attributes (after ``fit``):
        concepts_, result_ (:class:`AttFindResult`), coords_ (flat Ψ indices ``[S]``),
        style_min_ / style_max_ ``[S]``, psi_mean_ / psi_std_ ``[D]``, base_logits_ ``[N, C]``,
        image_index_ (which fit images were explained), mode_, candidates_ (budget mode: style
        indices computed exactly, else None), screened_ (budget mode: ``[N, 2, S, C]``), n_edits_
        (classifier evaluations of edited styles), fit_seconds_.
    """

    def __init__(
        self,
        inverter: Any,
        classifier: Callable[[torch.Tensor], Any] | None = None,
        *,
        psi_classifier: Any = None,
        mode: str = "auto",
        n_candidates: int = 48,
        max_exact_edits: int = 20_000,
        num_indices: int = 8,
        effect_threshold: float = 0.2,
        include_torgb: bool = False,
        shift_size: float = 1.0,
        unstable_threshold: float = 2.0,
        unstable_count: int | None = None,
        max_images: int | None = 100,
        batch_size: int = 32,
        chunk_images: int = 4,
        checkpoint: str | os.PathLike[str] | None = None,
        random_state: int | None = 0,
        progress: bool = True,
    ) -> None:
        self.inverter = inverter
        self.classifier = classifier
        self.psi_classifier = psi_classifier
        self.mode = mode
        self.n_candidates = n_candidates
        self.max_exact_edits = max_exact_edits
        self.num_indices = num_indices
        self.effect_threshold = effect_threshold
        self.include_torgb = include_torgb
        self.shift_size = shift_size
        self.unstable_threshold = unstable_threshold
        self.unstable_count = unstable_count
        self.max_images = max_images
        self.batch_size = batch_size
        self.chunk_images = chunk_images
        self.checkpoint = checkpoint
        self.random_state = random_state
        self.progress = progress

    @property
    def name(self) -> str:  # type: ignore[override]
        return "attfind-psi" if self.psi_classifier is not None else "attfind"

    # ---------------------------------------------------------------- plumbing
    @property
    def generator(self) -> Any:
        return self.inverter.generator

    def _check_params(self) -> None:
        if (self.classifier is None) == (self.psi_classifier is None):
            raise Img2TabInputError("give exactly one of classifier (images -> logits) and psi_classifier")
        if self.mode not in ("auto", "exact", "budget"):
            raise Img2TabInputError(f"mode must be 'auto', 'exact' or 'budget', got {self.mode!r}")
        if self.mode == "budget" and self.psi_classifier is not None:
            raise Img2TabInputError("mode='budget' needs gradients: use mode='exact' with the Ψ classifier")
        if self.n_candidates < 1 or self.num_indices < 1:
            raise Img2TabInputError(
                f"n_candidates and num_indices must be >= 1, got {self.n_candidates}, {self.num_indices}")
        clf = getattr(self.classifier, "__self__", self.classifier)
        if isinstance(clf, nn.Module) and clf.training:
            logger.warning("AttFind: the classifier is in training mode; call .eval() for stable logits")

    @torch.no_grad()
    def _psi(self, images: torch.Tensor) -> torch.Tensor:
        """Ψ ``[N, D]`` of images (encoder + affine layers; no synthesis)."""
        parts = []
        for a in range(0, images.shape[0], 64):
            w = self.inverter.encode(images[a:a + 64])
            parts.append(self.generator.psi(w).float().cpu())
        return torch.cat(parts) if parts else torch.empty(0, self.generator.layout.total)

    def _render(self, psi: torch.Tensor) -> torch.Tensor:
        """Ψ ``[B, D]`` -> images ``[B, 3, H, W]`` clipped to [-1, 1] (the notebook clips too)."""
        p = next(self.generator.parameters())
        return self.generator.synthesize(psi.to(p.device, p.dtype)).clamp(-1.0, 1.0)

    def _classify_images(self, images: torch.Tensor) -> torch.Tensor:
        return _as_class_logits(self.classifier(images))  # type: ignore[misc]

    def _logits_of_psi(self, psi: torch.Tensor) -> torch.Tensor:
        """The classifier in the loop seen from Ψ: ``[B, D] -> [B, C]``."""
        if self.psi_classifier is not None:
            margin = self.psi_classifier.decision_function(psi.detach().cpu().numpy())
            return _as_class_logits(torch.as_tensor(np.asarray(margin, dtype=np.float64)))
        return self._classify_images(self._render(psi))

    def _logits_of_psi_batched(self, psi: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            parts = [self._logits_of_psi(psi[a:a + self.batch_size]).double().cpu()
                     for a in range(0, psi.shape[0], self.batch_size)]
        return torch.cat(parts).numpy() if parts else np.zeros((0, 2))

    # ---------------------------------------------------------------- fit
    def fit(self, images: torch.Tensor, y: np.ndarray | None = None) -> AttFindExplainer:
        """Run AttFind on (a subset of) ``images`` ``[N, 3, H, W]``; ``y`` is only checked (AttFind
        splits the classes by the classifier's prediction, as the notebook does)."""
        import time

        self._check_params()
        x = check_images(images)
        if y is not None and len(np.asarray(y)) != x.shape[0]:
            raise Img2TabInputError(f"y has {len(np.asarray(y))} labels for {x.shape[0]} images")
        t0 = time.perf_counter()
        n = x.shape[0]
        if n < 2:
            raise Img2TabInputError(f"AttFind needs at least 2 images, got {n}")
        index = np.arange(n)
        if self.max_images is not None and n > self.max_images:
            rng = np.random.default_rng(self.random_state)
            index = np.sort(rng.choice(n, size=int(self.max_images), replace=False))
        psi = self._psi(x[torch.as_tensor(index)])
        layout = self.generator.layout
        coords = explained_coordinates(layout, self.include_torgb)
        sub = psi[:, torch.as_tensor(coords)]
        smin, smax = sub.min(0).values, sub.max(0).values
        s = coords.size
        mode = self.mode
        if mode == "auto":
            exact_cost = psi.shape[0] * 2 * s
            cheap = self.psi_classifier is not None or exact_cost <= self.max_exact_edits
            mode = "exact" if cheap else "budget"
        key = _model_digest(self.psi_classifier if self.psi_classifier is not None else self.classifier)
        self.candidates_: np.ndarray | None = None
        self.screened_: np.ndarray | None = None
        if mode == "exact":
            effects, base = style_effects(
                self._logits_of_psi, psi, coords, smin, smax, self.shift_size,
                batch_size=self.batch_size if self.psi_classifier is None else 4096,
                chunk_images=self.chunk_images, checkpoint=self.checkpoint, checkpoint_key=key,
                progress=self.progress)
            self.n_edits_ = psi.shape[0] * 2 * s
        else:
            screened, base = first_order_effects(
                self._logits_of_psi, psi, coords, smin, smax, self.shift_size,
                batch_size=min(self.batch_size, 16), progress=self.progress)
            cand = screen_candidates(screened, base, self.n_candidates)
            exact_c, base = style_effects(
                self._logits_of_psi, psi, coords[cand], smin[torch.as_tensor(cand)],
                smax[torch.as_tensor(cand)], self.shift_size, batch_size=self.batch_size,
                chunk_images=self.chunk_images, checkpoint=self.checkpoint, checkpoint_key=key,
                progress=self.progress)
            self.candidates_, self.screened_ = cand, screened
            self.n_edits_ = psi.shape[0] * 2 * cand.size
        kw = dict(num_indices=self.num_indices, effect_threshold=self.effect_threshold,
                  unstable_threshold=self.unstable_threshold, unstable_count=self.unstable_count)
        if mode == "exact":
            self.result_ = attfind(effects, base, **kw)
        else:
            self.result_ = attfind_budget(screened, exact_c, cand, base, **kw)
        result = self.result_
        self.mode_ = mode
        self.coords_ = coords
        self.style_min_ = smin.numpy().astype(np.float64)
        self.style_max_ = smax.numpy().astype(np.float64)
        self.psi_mean_ = psi.mean(0).double().numpy()
        self.psi_std_ = psi.std(0).double().clamp_min(1e-8).numpy()
        self.base_logits_ = base
        self.image_index_ = index
        self.concepts_ = tuple(self._concept(d, st, origin, score) for d, st, origin, score in result.ranking)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _concept(self, d: int, s: int, origin: int, score: float) -> Concept:
        k = int(self.coords_[s])
        info = self.generator.layout.describe(k)
        name = f"L{info['layer']}c{info['channel']}{'+' if d == 1 else '-'}"
        return Concept(name=name, importance=float(score), info={
            "feature": k, "style": int(s), "layer": int(info["layer"]), "channel": int(info["channel"]),
            "module": str(info["module"]), "resolution": int(info["resolution"]),
            "direction": "max" if d == 1 else "min", "direction_index": int(d), "toward_class": 0,
            "class": int(origin),
        })

    # ---------------------------------------------------------------- outputs
    def table(self) -> list[dict[str, Any]]:
        """Ranked attributes as rows (see :func:`attfind_table`)."""
        self._check_fitted()
        return attfind_table(self.result_, self.coords_, self.generator.layout)

    def concept_scores(self, images: torch.Tensor) -> np.ndarray:
        """``t_c(x)`` = ±standardized style value, ``[N, K]`` (``+`` for ``max`` concepts)."""
        self._check_fitted()
        psi = self._psi(check_images(images)).double().numpy()
        out = np.zeros((psi.shape[0], len(self.concepts_)))
        for j, c in enumerate(self.concepts_):
            k = c.info["feature"]
            z = (psi[:, k] - self.psi_mean_[k]) / self.psi_std_[k]
            out[:, j] = z if c.info["direction_index"] == 1 else -z
        return out

    def model_logit(self, images: torch.Tensor) -> np.ndarray:
        """The classifier in the loop, margin of class 1 over class 0, ``[N]``."""
        self._check_params()
        x = check_images(images)
        if self.psi_classifier is not None:
            return np.asarray(self.psi_classifier.decision_function(self._psi(x).numpy()), dtype=np.float64)
        with torch.no_grad():
            parts = [self._classify_images(x[a:a + self.batch_size]).double().cpu()
                     for a in range(0, x.shape[0], self.batch_size)]
        lg = torch.cat(parts).numpy()
        return lg[:, 1] - lg[:, 0]

    def _shifted(self, psi: torch.Tensor, concepts: np.ndarray, base: np.ndarray) -> torch.Tensor:
        """Ψ with every given concept moved to its extreme, towards the other class per image."""
        out = psi.clone()
        pred1 = torch.as_tensor(np.argmax(base, axis=1) == 1)
        for j in concepts:
            c = self.concepts_[int(j)]
            k, s, d = c.info["feature"], c.info["style"], c.info["direction_index"]
            lo, hi = float(self.style_min_[s]), float(self.style_max_[s])
            to_max = pred1 if d == 1 else ~pred1  # d moves towards class 0 (used on class-1 images)
            target = torch.where(to_max, torch.tensor(hi), torch.tensor(lo)).to(out.dtype)
            out[:, k] = out[:, k] + self.shift_size * (target - out[:, k])
        return out

    def intervene(self, images: torch.Tensor, concepts: Sequence[int]) -> Intervention:
        """Move the concepts' styles to their extremes (towards the other class) and re-classify."""
        self._check_fitted()
        x = check_images(images)
        idx = check_concept_indices(concepts, len(self.concepts_))
        psi = self._psi(x)
        base = self._logits_of_psi_batched(psi)
        shifted = self._shifted(psi, idx, base)
        after = self._logits_of_psi_batched(shifted)
        with torch.no_grad():
            imgs = torch.cat([self._render(shifted[a:a + self.batch_size]).cpu()
                              for a in range(0, shifted.shape[0], self.batch_size)])
        return Intervention(idx, base[:, 1] - base[:, 0], after[:, 1] - after[:, 0], imgs)

    def evidence(self, images: torch.Tensor, concept: int | None = None) -> np.ndarray | None:
        """``|render(shifted) − render|`` averaged over RGB, ``[N, H, W]``; ``concept=None`` shifts the
        top-3 concepts together."""
        self._check_fitted()
        x = check_images(images)
        idx = (np.arange(min(3, len(self.concepts_))) if concept is None
               else check_concept_indices([concept], len(self.concepts_)))
        psi = self._psi(x)
        base = self._logits_of_psi_batched(psi)
        shifted = self._shifted(psi, idx, base)
        maps = []
        with torch.no_grad():
            for a in range(0, psi.shape[0], self.batch_size):
                before = self._render(psi[a:a + self.batch_size])
                after = self._render(shifted[a:a + self.batch_size])
                maps.append((after - before).abs().mean(1).double().cpu())
        return torch.cat(maps).numpy()


# ============================================================================ gallery
def plot_attfind_gallery(
    explainer: AttFindExplainer,
    images: torch.Tensor,
    concepts: Iterable[int] | None = None,
    n_images: int = 4,
    ax: Any = None,
) -> Any:
    """StylEx-style per-attribute gallery: for each attribute, the images it affects most, before and
    after moving the style towards the other class, with the classifier's probability of that class.

    Args:
        explainer: a fitted :class:`AttFindExplainer`.
        images: candidate images ``[N, 3, H, W]`` in [-1, 1].
        concepts: indices into ``explainer.concepts_`` (one row each); None = the top 4 (or fewer).
        n_images: before/after pairs per row.
        ax: matplotlib axes (None: a new figure).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    explainer._check_fitted()
    x = check_images(images)
    if concepts is None:
        concepts = range(min(4, len(explainer.concepts_)))
    rows = [int(c) for c in check_concept_indices(list(concepts), len(explainer.concepts_))]
    psi = explainer._psi(x)
    base = explainer._logits_of_psi_batched(psi)
    pred = np.argmax(base, axis=1)
    h = explainer.generator.size
    pad = max(2, h // 16)
    n_rows = max(1, len(rows))
    mosaic = np.ones((n_rows * (h + pad), n_images * (2 * h + pad), 3))
    labels = []
    for r, j in enumerate(rows):
        shifted = explainer._shifted(psi, np.array([j]), base)
        after = explainer._logits_of_psi_batched(shifted)
        target = 1 - pred  # each image is pushed towards the other class
        p_before = _softmax(base)[np.arange(len(pred)), target]
        p_after = _softmax(after)[np.arange(len(pred)), target]
        order = np.argsort(-(p_after - p_before), kind="stable")[:n_images]
        with torch.no_grad():
            b_img = explainer._render(psi[torch.as_tensor(order)]).cpu()
            a_img = explainer._render(shifted[torch.as_tensor(order)]).cpu()
        for col, i in enumerate(order):
            y0, x0 = r * (h + pad), col * (2 * h + pad)
            mosaic[y0:y0 + h, x0:x0 + h] = _to_unit(b_img[col])
            mosaic[y0:y0 + h, x0 + h:x0 + 2 * h] = _to_unit(a_img[col])
            labels.append((x0, y0, f"p{int(target[i])}={p_before[i]:.2f}"))
            labels.append((x0 + h, y0, f"{p_after[i]:.2f}"))
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.6 * n_images * 2, 1.7 * n_rows))
    else:
        fig = ax.figure
    ax.imshow(mosaic, interpolation="nearest")
    for x0, y0, text in labels:
        ax.text(x0 + 1, y0 + 1, text, fontsize=6, color="yellow", va="top",
                bbox={"facecolor": "black", "alpha": 0.5, "pad": 0.5, "linewidth": 0})
    ax.set_yticks([r * (h + pad) + h / 2 for r in range(len(rows))])
    ax.set_yticklabels([f"#{j} {explainer.concepts_[j].name}" for j in rows], fontsize=7)
    ax.set_xticks([])
    ax.set_title("AttFind attributes: before | after (probability of the other class)", fontsize=8)
    return fig


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _to_unit(img: torch.Tensor) -> np.ndarray:
    return ((img.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).double().numpy()
