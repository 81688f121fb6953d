"""The img2tab concept world: procedurally rendered cartoon faces with known generative factors.

Img2Tab's bundled StyleGAN2 + e4e pair is trained on these images, so concepts it discovers can be
checked against the true factors. Factors (see :data:`FACTORS`): ``smile`` (the default class
factor), ``eye_size``, ``face_width``, ``skin_tone``, ``hair_color``, ``glasses``,
``background_hue`` and ``head_tilt``.

Example:
    >>> from img2tab.world import ConceptWorld, make_spurious_splits
    >>> batch = ConceptWorld(size=64).sample(8, seed=0)
    >>> batch.images.shape, batch.to_tensor().shape
    ((8, 64, 64, 3), torch.Size([8, 3, 64, 64]))
    >>> train, test = make_spurious_splits(1000, 500, seed=0)  # background biased in train only
"""

from __future__ import annotations

from ._tasks import (
    BINARY_LABELS,
    TaskSplit,
    binarize,
    make_spurious_splits,
    make_task,
    sample_binary_conditional,
)
from ._world import (
    FACTOR_NAMES,
    FACTORS,
    SUPPORTED_SIZES,
    ConceptWorld,
    Factor,
    WorldSample,
    get_factor,
    image_grid,
    neutral_factors,
    render,
    sample_factors,
)

__all__ = [
    "BINARY_LABELS",
    "FACTORS",
    "FACTOR_NAMES",
    "SUPPORTED_SIZES",
    "ConceptWorld",
    "Factor",
    "TaskSplit",
    "WorldSample",
    "binarize",
    "get_factor",
    "image_grid",
    "make_spurious_splits",
    "make_task",
    "neutral_factors",
    "render",
    "sample_binary_conditional",
    "sample_factors",
]
