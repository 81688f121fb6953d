"""Edit strength: how much editing a concept changes the image and moves the classifier.

A concept is a flat Ψ index ``k``. For every image, Ψ is edited to ``Ψ_k ± λ · scale_k`` (both
signs) and rendered with the generator's fixed noise. Measured per concept, averaged over images
and both signs:

- ``mean_abs_dx``: mean ``|Δx|`` over pixels and channels in [0, 1] intensity units, against the
  unedited re-rendering (so reconstruction error does not count as an effect).
- ``frac_changed``: share of pixels where some channel moved by more than ``pixel_threshold``
  (default 2/255, one step of an 8-bit image counted twice).
- ``locality``: share of the total ``|Δx|`` (summed over channels) that falls in the
  ``locality_share`` (default 10 %) of pixels that changed most: ``locality_share`` means the change
  is spread evenly, 1.0 that it is confined to those pixels. NaN where nothing changed.
- ``mean_abs_dp`` and ``flip_rate`` (round trip, the honest measure): the edited image is
  re-encoded and classified, ``|p_c(E(render(Ψ')) ) - p_c(E(render(Ψ)))|`` for the class ``c``
  (default: the class predicted for the unedited round trip), and the share of edits whose
  predicted class differs from the unedited round trip's.
- ``dp_toward`` (binary, when ``directions`` are given): the signed change of the probability of
  the *other* class when each image is edited by ``+strength`` in the direction of the other
  class (``directions[k]`` is the sign of the class-1 minus class-0 mean of Ψ_k, see
  :func:`class_directions`), on the round trip. Averaging ``|Δp|`` over both signs halves an effect
  that only one direction can show (the other pushes an image deeper into its class); this metric
  does not.
- ``mean_abs_dp_psi``: the classifier applied directly to the edited Ψ (no rendering): what the
  classifier would do if the edit survived re-encoding exactly. Large ``mean_abs_dp_psi`` with small
  ``mean_abs_dp`` means the classifier reads the channel but the rendered edit does not carry it.

Concepts come in named groups (e.g. top-k by W1, top-k by importance, random concepts as the
control); :func:`concept_groups` builds the usual three.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from .edits import _concept_indices, edit_psi, render_psi
from .errors import Img2TabInputError

__all__ = ["EditStrength", "class_directions", "concept_groups", "measure_edit_strength", "psi_scale"]

logger = logging.getLogger("img2tab.edit_strength")

METRICS = ("mean_abs_dx", "frac_changed", "locality", "mean_abs_dp", "flip_rate", "dp_toward",
           "mean_abs_dp_psi")


class _ProbaModel(Protocol):
    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


def psi_scale(psi: np.ndarray, kind: str = "sd") -> np.ndarray:
    """Per-channel edit unit over a data set.

    Args:
        psi: ``[N, D]`` Ψ rows (N ≥ 2).
        kind: ``"sd"`` (standard deviation, ddof 0) or ``"range"`` (1st to 99th percentile span,
            robust to a few outliers).

    Returns:
        ``[D]`` float64 scale, 0 for constant channels.
    """
    x = np.asarray(psi, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise Img2TabInputError(f"psi must be [N, D] with N >= 2, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise Img2TabInputError("psi contains NaN or infinite values")
    if kind == "sd":
        return x.std(axis=0)
    if kind == "range":
        lo, hi = np.percentile(x, [1.0, 99.0], axis=0)
        return hi - lo
    raise Img2TabInputError(f"kind must be 'sd' or 'range', got {kind!r}")


def class_directions(psi: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sign of the class-1 minus class-0 mean of every Ψ column (binary labels).

    Args:
        psi: ``[N, D]`` Ψ rows.
        y: ``[N]`` binary labels (the larger value is class 1).

    Returns:
        ``[D]`` float64 in {-1, 0, +1}.
    """
    x = np.asarray(psi, dtype=np.float64)
    y = np.asarray(y).ravel()
    classes = np.unique(y)
    if x.ndim != 2 or len(y) != len(x):
        raise Img2TabInputError(f"psi [N, D] and y [N] must match, got {x.shape} and {y.shape}")
    if len(classes) != 2:
        raise Img2TabInputError(f"y must have exactly 2 classes, got {len(classes)}")
    return np.sign(x[y == classes[1]].mean(0) - x[y == classes[0]].mean(0))


def concept_groups(
    w1: np.ndarray | None,
    importance: np.ndarray | None = None,
    *,
    top_k: int = 5,
    n_random: int = 5,
    seed: int = 0,
    candidates: np.ndarray | Sequence[int] | None = None,
) -> dict[str, list[int]]:
    """The usual concept groups: top-k by W1, top-k by importance, and random concepts.

    Args:
        w1: ``[D]`` relevance per concept (higher = more class-relevant), or None to skip.
        importance: ``[D]`` classifier importance, or None to skip.
        top_k: concepts per ranked group.
        n_random: random control concepts, drawn with ``numpy.random.default_rng(seed)`` from the
            candidates not in the ranked groups (0 = no control group).
        seed: seed of the random draw.
        candidates: flat indices allowed in every group (e.g. without toRGB channels); None = all.

    Returns:
        ``{"w1": [...], "importance": [...], "random": [...]}`` (only the groups asked for).
    """
    vecs = [("w1", w1), ("importance", importance)]
    d = next((len(np.asarray(v)) for _, v in vecs if v is not None), None)
    if d is None:
        raise Img2TabInputError("give w1 or importance (or both) to build concept groups")
    if not isinstance(top_k, int) or top_k < 1:
        raise Img2TabInputError(f"top_k must be a positive int, got {top_k!r}")
    if not isinstance(n_random, int) or n_random < 0:
        raise Img2TabInputError(f"n_random must be a non-negative int, got {n_random!r}")
    allowed = (np.arange(d) if candidates is None
               else np.unique(np.asarray(_concept_indices(candidates), dtype=np.int64)))
    if allowed.size and (allowed.min() < 0 or allowed.max() >= d):
        raise Img2TabInputError(f"candidates must lie in [0, {d})")
    groups: dict[str, list[int]] = {}
    for name, v in vecs:
        if v is None:
            continue
        v = np.asarray(v, dtype=np.float64)
        if v.shape != (d,):
            raise Img2TabInputError(f"{name} must be a [D] = [{d}] vector, got shape {v.shape}")
        if not np.isfinite(v).all():
            raise Img2TabInputError(f"{name} contains NaN or infinite values")
        sub = v[allowed]
        order = np.lexsort((allowed, -sub))  # descending value, ties by index
        groups[name] = [int(allowed[i]) for i in order[:top_k]]
    if n_random:
        taken = {c for g in groups.values() for c in g}
        pool = np.array([c for c in allowed.tolist() if c not in taken], dtype=np.int64)
        rng = np.random.default_rng(seed)
        pick = rng.choice(pool, size=min(n_random, pool.size), replace=False) if pool.size else []
        groups["random"] = sorted(int(c) for c in pick)
    return groups


@dataclass(frozen=True)
class EditStrength:
    """Edit strength per concept (see the module docstring for the metrics).

    Attributes:
        concepts: ``[C]`` flat Ψ indices measured (each once, in first-seen group order).
        groups: group name -> the concepts in it.
        strength: edit strength λ (edits at ``+λ`` and ``-λ``), in units of the scale.
        scale_kind: how the scale was obtained (``"sd"``, ``"range"``, ``"raw"`` or ``"given"``).
        n_images: images averaged over.
        metrics: metric name -> ``[C]`` values (``mean_abs_dx``, ``frac_changed``, ``locality``,
            ``mean_abs_dp``, ``flip_rate``, ``mean_abs_dp_psi``).
        layer_names: ``[C]`` "layer/channel @ resolution" labels when a layout was known.
    """

    concepts: tuple[int, ...]
    groups: dict[str, tuple[int, ...]]
    strength: float
    scale_kind: str
    n_images: int
    metrics: dict[str, np.ndarray]
    layer_names: tuple[str, ...] = field(default=())

    def value(self, metric: str, concept: int) -> float:
        """One metric of one concept."""
        return float(self.metrics[metric][self.concepts.index(int(concept))])

    def summary(self) -> dict[str, dict[str, float]]:
        """Group -> metric -> mean over the group's concepts (NaN-aware for ``locality``)."""
        out: dict[str, dict[str, float]] = {}
        for name, members in self.groups.items():
            pos = [self.concepts.index(c) for c in members]
            row: dict[str, float] = {"n_concepts": float(len(pos))}
            for m in METRICS:
                vals = self.metrics[m][pos]
                row[m] = float(np.nanmean(vals)) if len(vals) and np.isfinite(vals).any() else float("nan")
            out[name] = row
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: settings, the per-group summary and every concept's metrics."""
        rows = []
        for i, c in enumerate(self.concepts):
            row: dict[str, Any] = {"concept": int(c),
                                   "groups": [g for g, m in self.groups.items() if c in m]}
            if self.layer_names:
                row["name"] = self.layer_names[i]
            row.update({m: float(self.metrics[m][i]) for m in METRICS})
            rows.append(row)
        return {"strength": self.strength, "scale": self.scale_kind, "n_images": self.n_images,
                "summary": self.summary(), "concepts": rows}

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON, atomically."""
        from ._atomic import atomic_write_json

        return atomic_write_json(path, self.to_dict())

    def markdown(self) -> str:
        """A small markdown table of the per-group summary."""
        lines = [f"Edits at ±{self.strength:g} × {self.scale_kind} on {self.n_images} images, "
                 "averaged over both signs; |Δp| and flips on the round trip (render, re-encode, "
                 "classify), "
                 "dp toward = signed change of the other class's probability when edited toward it "
                 "(NaN without directions), |Δp| Ψ directly on the edited Ψ.",
                 "",
                 "| group | concepts | mean abs dx | pixels > 2/255 | locality | mean abs dp | "
                 "flip rate | dp toward other class | mean abs dp (Ψ) |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for g, s in self.summary().items():
            lines.append(f"| {g} | {int(s['n_concepts'])} | {s['mean_abs_dx']:.4f} | "
                         f"{s['frac_changed']:.3f} | {s['locality']:.2f} | {s['mean_abs_dp']:.3f} | "
                         f"{s['flip_rate']:.3f} | {s['dp_toward']:.3f} | {s['mean_abs_dp_psi']:.3f} |")
        return "\n".join(lines)


def _locality(per_pixel: torch.Tensor, share: float) -> torch.Tensor:
    """``[E, P]`` non-negative change per pixel -> ``[E]`` share of it in the top ``share`` pixels."""
    k = max(1, int(round(share * per_pixel.shape[1])))
    top = per_pixel.topk(k, dim=1).values.sum(1)
    tot = per_pixel.sum(1)
    return torch.where(tot > 0, top / tot.clamp_min(1e-30), torch.full_like(tot, float("nan")))


def _proba(classifier: _ProbaModel, psi: np.ndarray) -> np.ndarray:
    p = np.asarray(classifier.predict_proba(np.asarray(psi, dtype=np.float32)), dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != len(psi):
        raise Img2TabInputError(
            f"classifier.predict_proba must return [N, n_classes], got shape {p.shape}")
    return p


@torch.no_grad()
def measure_edit_strength(
    inverter: Any,
    images: Any,
    classifier: _ProbaModel,
    groups: Mapping[str, Sequence[int]],
    *,
    scale: np.ndarray | str | None = "sd",
    strength: float = 10.0,
    class_index: int | None = None,
    pixel_threshold: float = 2.0 / 255.0,
    locality_share: float = 0.1,
    batch_size: int = 16,
    progress: bool = True,
    psi: np.ndarray | None = None,
    directions: np.ndarray | None = None,
) -> EditStrength:
    """Measure how strongly each concept's edit changes the image and the classifier.

    Args:
        inverter: an :class:`img2tab.Inverter` (encoder + generator).
        images: ``[N, C, H, W]`` images (float in [-1, 1] or uint8), as for
            :meth:`~img2tab.Inverter.encode_psi`.
        classifier: anything with ``predict_proba(Ψ [N, D]) -> [N, n_classes]`` (a fitted
            :class:`~img2tab.ConceptClassifier`, an :class:`~img2tab.Img2Tab`, ...).
        groups: group name -> flat Ψ indices, e.g. from :func:`concept_groups`.
        scale: the edit unit: ``"sd"`` or ``"range"`` of Ψ over ``images`` (:func:`psi_scale`;
            use a ``[D]`` array computed on the training set when ``images`` are few), None for
            raw style units.
        strength: edits at ``+strength`` and ``-strength`` units.
        class_index: class whose probability change is measured; None = per image, the class
            predicted for its unedited round trip.
        pixel_threshold: ``|Δx|`` (in [0, 1] units) above which a pixel counts as changed.
        locality_share: share of most-changed pixels used by the locality score.
        batch_size: images per generator / encoder call.
        progress: ``tqdm.auto`` bar over concepts.
        psi: Ψ ``[N, D]`` of ``images`` if already encoded (skips one encoding pass).
        directions: ``[D]`` signs of the class-1 direction of every concept
            (:func:`class_directions` on the training set) for ``dp_toward``; binary classifiers
            only. None = ``dp_toward`` is NaN.

    Returns:
        :class:`EditStrength`.
    """
    if not np.isfinite(strength) or strength <= 0:
        raise Img2TabInputError(f"strength must be a positive finite number, got {strength!r}")
    if not 0 < locality_share < 1:
        raise Img2TabInputError(f"locality_share must lie in (0, 1), got {locality_share!r}")
    if not groups:
        raise Img2TabInputError("groups is empty: give at least one named list of concepts")
    clean_groups = {str(g): tuple(_concept_indices(list(c))) for g, c in groups.items()}
    concepts: list[int] = []
    for members in clean_groups.values():
        concepts.extend(c for c in members if c not in concepts)
    gen = inverter.generator
    if psi is None:
        psi, _ = inverter.encode_psi(images, batch_size=batch_size, with_w=False)
    psi = np.asarray(psi, dtype=np.float32)
    n, d = psi.shape
    if n < 1:
        raise Img2TabInputError("images is empty")
    if max(concepts) >= d or min(concepts) < 0:
        raise Img2TabInputError(f"concept indices must lie in [0, {d}), got {concepts}")
    if isinstance(scale, str):
        if n < 2:
            raise Img2TabInputError(f"scale={scale!r} needs at least 2 images; pass a [D] array")
        unit, scale_kind = psi_scale(psi, scale), scale
    elif scale is None:
        unit, scale_kind = None, "raw"
    else:
        unit, scale_kind = np.asarray(scale, dtype=np.float64), "given"

    psi_t = torch.from_numpy(psi)
    base = render_psi(gen, psi_t, batch_size=batch_size).clamp(-1, 1)
    base_rt, _ = inverter.encode_psi(base, batch_size=batch_size, with_w=False)
    p_rt = _proba(classifier, base_rt)
    p_psi = _proba(classifier, psi)
    n_classes = p_rt.shape[1]
    if class_index is None:
        cls = p_rt.argmax(1)
    else:
        if not isinstance(class_index, (int, np.integer)) or not 0 <= class_index < n_classes:
            raise Img2TabInputError(f"class_index must be an int in [0, {n_classes}), got {class_index!r}")
        cls = np.full(n, int(class_index))
    if directions is not None:
        directions = np.asarray(directions, dtype=np.float64)
        if directions.shape != (d,) or n_classes != 2:
            raise Img2TabInputError(f"directions must be a [D] = [{d}] vector of signs for a binary "
                                    f"classifier, got shape {directions.shape} with {n_classes} classes")
    pred = p_rt.argmax(1)
    other = 1 - pred
    cls2 = np.concatenate([cls, cls])  # edits are ordered [-λ for all images, +λ for all images]
    rows2 = np.arange(2 * n)
    pred_rt2 = np.concatenate([p_rt.argmax(1)] * 2)
    p_rt2, p_psi2 = np.concatenate([p_rt, p_rt]), np.concatenate([p_psi, p_psi])
    base2 = torch.cat([base, base])

    out = {m: np.full(len(concepts), np.nan) for m in METRICS}
    for j, c in enumerate(tqdm(concepts, desc="edit strength", unit="concept", disable=not progress)):
        edited = edit_psi(psi_t, [c], [-strength, strength], unit)  # [N, 1, 2, D]
        edited = edited[:, 0].transpose(0, 1).reshape(2 * n, d)
        imgs = render_psi(gen, edited, batch_size=batch_size).clamp(-1, 1)
        dx = (imgs - base2).abs() / 2.0  # [2N, C, H, W] in [0, 1] units
        out["mean_abs_dx"][j] = float(dx.mean())
        out["frac_changed"][j] = float((dx.amax(1) > pixel_threshold).float().mean())
        loc = _locality(dx.sum(1).flatten(1), locality_share)
        out["locality"][j] = float(loc.nanmean()) if torch.isfinite(loc).any() else float("nan")
        rt, _ = inverter.encode_psi(imgs, batch_size=batch_size, with_w=False)
        p = _proba(classifier, rt)
        out["mean_abs_dp"][j] = float(np.abs(p[rows2, cls2] - p_rt2[rows2, cls2]).mean())
        out["flip_rate"][j] = float((p.argmax(1) != pred_rt2).mean())
        if directions is not None and directions[c] != 0:
            # toward class 1 is sign directions[c]: the "+" half for images predicted 0 when the
            # sign is +, the "-" half otherwise
            toward_plus = (other == 1) == (directions[c] > 0)
            rows = np.where(toward_plus, np.arange(n) + n, np.arange(n))
            out["dp_toward"][j] = float((p[rows, other] - p_rt[np.arange(n), other]).mean())
        pd_ = _proba(classifier, edited.numpy())
        out["mean_abs_dp_psi"][j] = float(np.abs(pd_[rows2, cls2] - p_psi2[rows2, cls2]).mean())

    names: tuple[str, ...] = ()
    layout = getattr(gen, "layout", None)
    if layout is not None and layout.total == d:
        names = tuple(layout.label(c) for c in concepts)
    return EditStrength(concepts=tuple(concepts), groups=clean_groups, strength=float(strength),
                        scale_kind=scale_kind, n_images=n, metrics=out, layer_names=names)
