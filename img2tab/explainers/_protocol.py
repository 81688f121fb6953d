"""What every concept-explanation method returns, whatever its internals.

The ground-truth benchmark (:mod:`img2tab.world.benchmark`) scores Img2Tab, AttFind, ACE + TCAV,
FALCON and the correspondence classifiers on the same tasks with the same metrics. It can do so
because each method is wrapped in a :class:`ConceptExplainer` adapter that answers five questions:

1. **Which concepts, in which order?** :attr:`ConceptExplainer.concepts_` — a tuple of
   :class:`Concept`, best first, each with its global importance ``w_c``.
2. **How strongly does an image show concept c?** :meth:`ConceptExplainer.concept_scores` — the
   per-image score ``t_c(x)``, an array ``[N, K]``.
3. **Where in the image is the evidence?** :meth:`ConceptExplainer.evidence` — a non-negative map
   ``e(x)`` over pixels ``[N, H, W]``, or ``None`` for a method that has none.
4. **What does the method's own intervention do to the explained model?**
   :meth:`ConceptExplainer.intervene` — edit / delete / ablate the given concepts and return the
   explained model's logit before and after (and the changed images where the intervention
   produces images, so that an oracle can read what really changed).
5. **What is the explained model?** :meth:`ConceptExplainer.model_logit` — the logit of the model
   the method explains (Img2Tab: encoder → Ψ → classifier; the CNN-based methods: ConceptCNN), the
   quantity whose reliance on each factor is the ground truth.

Images are always float32 torch tensors ``[N, 3, H, W]`` in ``[-1, 1]`` (as
:meth:`img2tab.world.TaskSplit.to_tensor` gives them), on the CPU unless an adapter says otherwise.
The logit of a binary model is the margin of class 1 over class 0 (``log p1 - log p0``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import Img2TabInputError

__all__ = ["Concept", "ConceptExplainer", "Intervention", "check_images", "check_concept_indices"]


@dataclass(frozen=True)
class Concept:
    """One concept of a method, as the method names it.

    Attributes:
        name: Short unique label, e.g. ``"L3c79"`` (a StyleSpace channel), ``"L3c79-"`` (a channel
            and direction), ``"cluster 4"`` (an ACE cluster), ``"group 12"`` (a FALCON feature group)
            or ``"exemplar 103"`` (a training image of a correspondence classifier).
        importance: The method's global importance ``w_c`` (larger = more important).
        info: Method-specific details (layer, channel, direction, words, member ids, ...); plain
            JSON-able values only, so results can be written to ``results.json``.
    """

    name: str
    importance: float
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Intervention:
    """The explained model's response to a method's own intervention on some concepts.

    Attributes:
        concepts: Indices into :attr:`ConceptExplainer.concepts_` that were intervened on, ``[k]``.
        logit_before: Explained model's logit on the unchanged inputs, float64 ``[N]``.
        logit_after: Explained model's logit after the intervention, float64 ``[N]``.
        images_after: The changed images ``[N, 3, H, W]`` in ``[-1, 1]`` where the intervention
            produces images (generative edits, greyed-out patches); ``None`` where it acts on
            features only (e.g. a Ψ-column edit scored without rendering).
    """

    concepts: np.ndarray
    logit_before: np.ndarray
    logit_after: np.ndarray
    images_after: torch.Tensor | None = None

    @property
    def flipped(self) -> np.ndarray:
        """bool ``[N]``: the predicted class (sign of the logit) changed."""
        return (self.logit_before > 0) != (self.logit_after > 0)


def check_images(images: Any, name: str = "images") -> torch.Tensor:
    """Validate a batch of images for an explainer.

    Args:
        images: float tensor ``[N, 3, H, W]`` in ``[-1, 1]`` (a numpy array is converted).
        name: How the input is named in errors.

    Returns:
        float32 tensor ``[N, 3, H, W]``.

    Raises:
        Img2TabInputError: wrong rank / channel count, non-finite values or values outside [-1, 1].
    """
    x = torch.as_tensor(images) if not isinstance(images, torch.Tensor) else images
    if x.ndim != 4 or x.shape[1] != 3:
        raise Img2TabInputError(f"{name} must be [N, 3, H, W], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise Img2TabInputError(f"{name} must be a float tensor in [-1, 1], got dtype {x.dtype}")
    x = x.float()
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise Img2TabInputError(f"{name} contains NaN or inf")
    if x.numel() and (float(x.min()) < -1.0 - 1e-4 or float(x.max()) > 1.0 + 1e-4):
        raise Img2TabInputError(
            f"{name} must lie in [-1, 1], found [{float(x.min()):.3g}, {float(x.max()):.3g}]"
        )
    return x


def check_concept_indices(concepts: Any, n_concepts: int, name: str = "concepts") -> np.ndarray:
    """Validate indices into a ranked concept list; returns int64 ``[k]`` (unique, order kept)."""
    arr = np.atleast_1d(np.asarray(concepts))
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr.astype(float))) or not np.all(arr == np.round(arr)):
            raise Img2TabInputError(f"{name} must be integer indices, got {arr.tolist()}")
        arr = arr.astype(np.int64)
    arr = arr.astype(np.int64).ravel()
    bad = arr[(arr < 0) | (arr >= n_concepts)]
    if bad.size:
        raise Img2TabInputError(f"{name} {bad.tolist()} out of range for {n_concepts} concepts")
    _, first = np.unique(arr, return_index=True)
    return arr[np.sort(first)]


class ConceptExplainer(ABC):
    """Base class of every method adapter.

    Subclasses follow scikit-learn's conventions: ``__init__`` only stores parameters; ``fit``
    learns the concepts from a training split and returns ``self``; fitted attributes end in ``_``.

    Attributes set by ``fit``:
        concepts_: ranked concepts, best first (``len(concepts_) = K``).
    """

    #: Short method name used in reports (e.g. ``"img2tab-w1"``).
    name: str = "explainer"

    concepts_: tuple[Concept, ...]

    # ---------------------------------------------------------------- to implement
    @abstractmethod
    def fit(self, images: torch.Tensor, y: np.ndarray) -> ConceptExplainer:
        """Find and rank the concepts that explain the model on a labelled split.

        Args:
            images: ``[N, 3, H, W]`` in ``[-1, 1]``.
            y: int ``[N]`` class labels.

        Returns:
            ``self``.
        """

    @abstractmethod
    def concept_scores(self, images: torch.Tensor) -> np.ndarray:
        """Per-image concept scores ``t_c(x)``.

        Args:
            images: ``[N, 3, H, W]`` in ``[-1, 1]``.

        Returns:
            float64 ``[N, K]``, column ``c`` for ``concepts_[c]``.
        """

    @abstractmethod
    def model_logit(self, images: torch.Tensor) -> np.ndarray:
        """The explained model's logit (class 1 over class 0).

        Args:
            images: ``[N, 3, H, W]`` in ``[-1, 1]``.

        Returns:
            float64 ``[N]``.
        """

    @abstractmethod
    def intervene(self, images: torch.Tensor, concepts: Sequence[int]) -> Intervention:
        """Apply the method's own intervention to the given concepts of every image.

        Args:
            images: ``[N, 3, H, W]`` in ``[-1, 1]``.
            concepts: indices into ``concepts_`` (e.g. ``range(3)`` for the top-3).

        Returns:
            The explained model's logits before and after (and the changed images, if any).
        """

    # ---------------------------------------------------------------- optional
    def evidence(self, images: torch.Tensor, concept: int | None = None) -> np.ndarray | None:
        """Per-image evidence map ``e(x)`` over pixels.

        Args:
            images: ``[N, 3, H, W]`` in ``[-1, 1]``.
            concept: index into ``concepts_``; ``None`` = the method's evidence for its decision
                (typically the image's top concepts together).

        Returns:
            non-negative float64 ``[N, H, W]``, or ``None`` when the method has no evidence maps.
        """
        return None

    def predict(self, images: torch.Tensor) -> np.ndarray | None:
        """Class predictions of the method's own predictor, int64 ``[N]``; ``None`` when the method
        explains a model without predicting itself (the benchmark then reports the explained model's
        accuracy, from :meth:`model_logit`)."""
        return None

    # ---------------------------------------------------------------- shared helpers
    def importances(self) -> np.ndarray:
        """Global importances ``w_c`` of the ranked concepts, float64 ``[K]``."""
        self._check_fitted()
        return np.array([c.importance for c in self.concepts_], dtype=np.float64)

    def concept_names(self) -> list[str]:
        """Names of the ranked concepts, ``[K]``."""
        self._check_fitted()
        return [c.name for c in self.concepts_]

    def _evidence_weights(self, concept: int | None, top: int) -> tuple[np.ndarray, np.ndarray]:
        """Concepts and weights of an evidence map: ``concept`` alone (weight 1), or for ``None`` the
        top ``top`` concepts weighted by ``|w_c|`` (normalised; uniform when all are 0)."""
        if concept is not None:
            return check_concept_indices([concept], len(self.concepts_)), np.ones(1)
        idx = np.arange(min(int(top), len(self.concepts_)))
        w = np.abs(self.importances()[idx])
        return idx, (w / w.sum() if w.sum() > 0 else np.full(len(idx), 1.0 / len(idx)))

    def _check_fitted(self) -> None:
        if not hasattr(self, "concepts_"):
            raise Img2TabInputError(f"{type(self).__name__} is not fitted; call fit(images, y) first")

    def __repr__(self) -> str:
        k = len(self.concepts_) if hasattr(self, "concepts_") else "unfitted"
        return f"{type(self).__name__}(name={self.name!r}, concepts={k})"
