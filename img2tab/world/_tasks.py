"""Binary classification tasks on the concept world, with a protected and a spurious attribute.

A task fixes three roles:

* the **class factor** (default ``smile``): ``y = 1`` when it lies in the upper half of its range
  (smiling), ``0`` otherwise (frowning);
* the **protected attribute** (default ``skin_tone``): the binarised value of another factor
  (dark vs light skin), drawn independently of everything else;
* the **spurious factor** (default ``background_hue``: cool vs warm background): drawn conditional
  on ``y`` so that ``P(spurious == y) = spurious_correlation``. With 0.5 it is independent of the
  label; with 0.9 a classifier can take a shortcut through it. The background is the largest,
  most visible region of the picture, which makes it an easy shortcut (like the backgrounds of
  Waterbirds); ``spurious="glasses"`` is a smaller, in-face alternative.

All other factors stay independent and uniform, exactly as in :func:`~img2tab.world.sample_factors`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import Img2TabInputError
from ._world import (
    FACTOR_NAMES,
    Factor,
    WorldSample,
    _rng,
    _to_tensor,
    get_factor,
    render,
    sample_factors,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "BINARY_LABELS",
    "TaskSplit",
    "binarize",
    "make_spurious_splits",
    "make_task",
    "sample_binary_conditional",
]

BINARY_LABELS: dict[str, tuple[str, str]] = {
    "smile": ("frown", "smile"),
    "eye_size": ("small eyes", "large eyes"),
    "face_width": ("narrow face", "wide face"),
    "skin_tone": ("light skin", "dark skin"),
    "hair_color": ("black/brown hair", "blond/red hair"),
    "glasses": ("no glasses", "glasses"),
    "background_hue": ("warm background", "cool background"),
    "head_tilt": ("tilted left", "tilted right"),
}
"""Meaning of the 0 / 1 values of :func:`binarize` for each factor."""

if set(BINARY_LABELS) != set(FACTOR_NAMES):  # pragma: no cover - guards future edits
    raise RuntimeError("BINARY_LABELS must describe every factor")


def binarize(name: str, values: np.ndarray) -> np.ndarray:
    """Binary version of a factor.

    Continuous factors: 1 above the middle of the range (e.g. ``smile > 0``, dark skin, cool
    background). Categorical factors: 1 for the upper half of the categories (glasses on;
    blond/red hair). See :data:`BINARY_LABELS`.

    Args:
        name: Factor name.
        values: Factor values, shape ``[N]``.

    Returns:
        int64 array ``[N]`` of 0/1.
    """
    factor = get_factor(name)
    values = np.asarray(values)
    if factor.is_categorical:
        return (values >= factor.n_categories // 2).astype(np.int64)
    return (values > factor.midpoint).astype(np.int64)


def sample_binary_conditional(
    name: str, bits: np.ndarray, rng: np.random.Generator, *, margin: float = 0.0
) -> np.ndarray:
    """Draw factor values whose :func:`binarize` equals ``bits``.

    Continuous factors are uniform on the matching half of their range (minus a ``margin``
    fraction of the half next to the midpoint); categorical factors are uniform over the matching
    categories.

    Args:
        name: Factor name.
        bits: 0/1 array ``[N]``.
        rng: Random generator (consumed).
        margin: Fraction in ``[0, 1)`` of each half-range, next to the midpoint, left out (only
            for continuous factors; makes the binary attribute unambiguous in the picture).

    Returns:
        ``[N]`` float64 (continuous) or int64 (categorical) values.
    """
    factor: Factor = get_factor(name)
    bits = np.asarray(bits).astype(bool)
    if not 0.0 <= margin < 1.0:
        raise Img2TabInputError(f"margin must be in [0, 1), got {margin}")
    n = bits.shape[0]
    if factor.is_categorical:
        half = factor.n_categories // 2
        n_hi = factor.n_categories - half
        hi = half + rng.integers(0, n_hi, size=n)
        lo = rng.integers(0, half, size=n)
        return np.where(bits, hi, lo).astype(np.int64)
    half_range = 0.5 * (factor.high - factor.low)
    span = (1.0 - margin) * half_range
    t = rng.random(n)  # [0, 1)
    # upper half: (mid + margin, high]; lower half: [low, mid - margin)
    return np.where(bits, factor.high - t * span, factor.low + t * span)


@dataclass(frozen=True)
class TaskSplit:
    """One split of a binary concept-world task.

    Attributes:
        images: uint8 ``[N, H, W, 3]`` RGB images.
        factors: Dict factor name -> ``[N]`` ground-truth values.
        y: int64 ``[N]`` class labels (binarised class factor).
        protected: int64 ``[N]`` binary protected attribute (binarised protected factor).
        spurious: int64 ``[N]`` binary spurious attribute (binarised spurious factor; all zeros
            when the task has no spurious factor).
        class_factor: Name of the factor that defines ``y``.
        protected_factor: Name of the factor behind ``protected``.
        spurious_factor: Name of the factor behind ``spurious`` (``None`` if none).
        spurious_correlation: Requested ``P(spurious == y)``.
    """

    images: np.ndarray
    factors: dict[str, np.ndarray]
    y: np.ndarray
    protected: np.ndarray
    spurious: np.ndarray
    class_factor: str = "smile"
    protected_factor: str = "skin_tone"
    spurious_factor: str | None = "background_hue"
    spurious_correlation: float = 0.5
    class_names: tuple[str, str] = field(default=("frown", "smile"))

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def groups(self) -> np.ndarray:
        """Group index ``2 * y + spurious`` in 0..3 (for worst-group accuracy), int64 ``[N]``."""
        return 2 * self.y + self.spurious

    @property
    def spurious_agreement(self) -> float:
        """Empirical fraction of samples with ``spurious == y``."""
        return float(np.mean(self.spurious == self.y)) if len(self) else float("nan")

    def to_tensor(self) -> torch.Tensor:
        """Images as float32 torch ``[N, 3, H, W]`` in ``[-1, 1]``."""
        return _to_tensor(self.images)

    def as_world_sample(self) -> WorldSample:
        """The images and factors as a :class:`~img2tab.world.WorldSample`."""
        return WorldSample(images=self.images, factors=self.factors)


def make_task(
    n: int,
    seed: int | np.random.Generator | None = 0,
    *,
    size: int = 64,
    class_factor: str = "smile",
    protected: str = "skin_tone",
    spurious: str | None = "background_hue",
    spurious_correlation: float = 0.5,
    class_margin: float = 0.0,
    spurious_margin: float = 0.0,
) -> TaskSplit:
    """Sample a binary classification task from the concept world.

    ``y`` is a fair coin per sample; the class factor is then drawn uniformly on the half of its
    range that ``y`` selects (so marginally it is still uniform when ``class_margin == 0``). The
    spurious factor is drawn on the half selected by a bit that equals ``y`` with probability
    ``spurious_correlation``. Every other factor, the protected one included, is drawn
    independently.

    Args:
        n: Number of samples.
        seed: Integer seed or a ``numpy.random.Generator``; the same seed gives identical splits.
        size: Image size in pixels (32, 64 or 128).
        class_factor: Factor defining ``y`` (default ``smile``: 1 = smiling, 0 = frowning).
        protected: Factor defining the binary protected attribute (default ``skin_tone``:
            1 = dark, 0 = light).
        spurious: Factor correlated with ``y`` (default ``background_hue``: 1 = cool / blue-green,
            0 = warm / red-yellow), or ``None`` for no spurious factor.
        spurious_correlation: ``P(binarize(spurious) == y)``: 0.5 independent, 0.9 strongly
            biased, 0.1 anti-correlated.
        class_margin: Fraction of each half-range of a continuous class factor, next to the
            decision boundary, left out (0 keeps ambiguous near-straight mouths).
        spurious_margin: Same for a continuous spurious factor.

    Returns:
        A :class:`TaskSplit`.

    Raises:
        Img2TabInputError: On unknown or repeated factor names or out-of-range parameters.
    """
    n = int(n)
    if n < 0:
        raise Img2TabInputError(f"n must be >= 0, got {n}")
    roles = [class_factor, protected] + ([spurious] if spurious is not None else [])
    for name in roles:
        get_factor(name)
    if len(set(roles)) != len(roles):
        raise Img2TabInputError(f"class, protected and spurious factors must differ, got {roles}")
    p = float(spurious_correlation)
    if not 0.0 <= p <= 1.0:
        raise Img2TabInputError(f"spurious_correlation must be in [0, 1], got {p}")

    rng = _rng(seed)
    factors = sample_factors(n, rng)
    y = rng.integers(0, 2, size=n, dtype=np.int64)
    factors[class_factor] = sample_binary_conditional(class_factor, y, rng, margin=class_margin)
    if spurious is not None:
        agree = rng.random(n) < p
        bits = np.where(agree, y, 1 - y)
        factors[spurious] = sample_binary_conditional(spurious, bits, rng, margin=spurious_margin)
        spurious_bits = binarize(spurious, factors[spurious])
    else:
        spurious_bits = np.zeros(n, dtype=np.int64)
    images = render(factors, size)
    return TaskSplit(
        images=images,
        factors=factors,
        y=binarize(class_factor, factors[class_factor]),
        protected=binarize(protected, factors[protected]),
        spurious=spurious_bits,
        class_factor=class_factor,
        protected_factor=protected,
        spurious_factor=spurious,
        spurious_correlation=p,
        class_names=BINARY_LABELS[class_factor],
    )


def make_spurious_splits(
    n_train: int,
    n_test: int,
    seed: int = 0,
    train_correlation: float = 0.9,
    test_correlation: float = 0.5,
    **task_kwargs: object,
) -> tuple[TaskSplit, TaskSplit]:
    """A biased training split and a decorrelated test split of the same task.

    The two splits use independent random streams derived from ``seed``
    (``numpy.random.SeedSequence(seed).spawn(2)``).

    Args:
        n_train: Training-split size.
        n_test: Test-split size.
        seed: Integer seed.
        train_correlation: ``spurious_correlation`` of the training split.
        test_correlation: ``spurious_correlation`` of the test split.
        **task_kwargs: Further keyword arguments of :func:`make_task` (``size``,
            ``class_factor``, ``protected``, ``spurious``, margins).

    Returns:
        ``(train, test)`` :class:`TaskSplit` objects.
    """
    if "spurious_correlation" in task_kwargs:
        raise Img2TabInputError("give train_correlation / test_correlation instead of spurious_correlation")
    train_ss, test_ss = np.random.SeedSequence(int(seed)).spawn(2)
    train = make_task(
        n_train,
        np.random.default_rng(train_ss),
        spurious_correlation=train_correlation,
        **task_kwargs,  # type: ignore[arg-type]
    )
    test = make_task(
        n_test,
        np.random.default_rng(test_ss),
        spurious_correlation=test_correlation,
        **task_kwargs,  # type: ignore[arg-type]
    )
    return train, test
