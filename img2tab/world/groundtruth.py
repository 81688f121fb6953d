"""Ground truth of the concept world for scoring concept explanations.

Every concept-world image is a pure function of 8 factors, so the benchmark knows

* **exact one-factor counterfactuals** ``x^{f<-v}``: the same factors with ``f`` replaced by ``v``,
  re-rendered (:func:`counterfactual`, :func:`render_counterfactuals`);
* **factor masks** ``M_f(x)``: the pixels of ``x`` that change by more than a threshold when ``f``
  alone takes ``n_values`` values across its range (:func:`factor_masks`);
* **the benchmark tasks** (:func:`benchmark_tasks`): ``"unbiased"`` (smile is the class, every other
  factor independent), ``"biased"`` (the background hue agrees with the class in 90 % of the
  training images) and ``"biased-glasses"`` (glasses instead of the background), each with a
  decorrelated test split (every factor independent of the class);
* **a factor oracle** for readings of images that were not rendered from known factors (generative
  edits): :func:`load_or_train_factor_oracle` caches
  :func:`img2tab.world.oracle.train_factor_oracle` on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Img2TabInputError
from ._tasks import TaskSplit, make_spurious_splits
from ._world import FACTOR_NAMES, _broadcast, _check_values, get_factor, render

__all__ = [
    "TASKS",
    "FactorLookup",
    "benchmark_tasks",
    "counterfactual",
    "factor_grid",
    "factor_masks",
    "load_or_train_factor_oracle",
    "render_counterfactuals",
    "task_splits",
]

logger = logging.getLogger(__name__)

TASKS: dict[str, dict[str, Any]] = {
    "unbiased": {"spurious": "background_hue", "train_correlation": 0.5},
    "biased": {"spurious": "background_hue", "train_correlation": 0.9},
    "biased-glasses": {"spurious": "glasses", "train_correlation": 0.9},
}
"""The benchmark tasks: class factor ``smile`` always; the spurious factor and its agreement with the
class in the training split. Test splits are always decorrelated (agreement 0.5). In ``"unbiased"``
the background is reported as the 'spurious' factor although it is independent of the class, so the
same spurious metrics can be read as a control."""


def _n_images(factors: Mapping[str, np.ndarray]) -> int:
    if not isinstance(factors, Mapping):
        raise Img2TabInputError("factors must be a dict of factor name -> array")
    missing = [f for f in FACTOR_NAMES if f not in factors]
    if missing:
        raise Img2TabInputError(f"factors lacks {missing}")
    lengths = {np.asarray(factors[f]).shape for f in FACTOR_NAMES}
    if len(lengths) != 1 or len(next(iter(lengths))) != 1:
        raise Img2TabInputError(f"every factor must be a 1-d array of one length, got {sorted(lengths)}")
    return int(next(iter(lengths))[0])


def counterfactual(factors: Mapping[str, np.ndarray], factor: str, value: Any) -> dict[str, np.ndarray]:
    """One-factor counterfactual: a copy of ``factors`` with ``factor`` set to ``value``.

    Pure: the input dict and its arrays are not changed.

    Args:
        factors: Dict factor name -> ``[N]`` values (as in :func:`~img2tab.world.sample_factors`).
        factor: Name of the factor to replace.
        value: Scalar or ``[N]`` array of new values (validated against the factor's range).

    Returns:
        New dict factor name -> ``[N]`` array.
    """
    n = _n_images(factors)
    f = get_factor(factor)
    out = {k: np.array(v, copy=True) for k, v in factors.items()}
    out[factor] = _check_values(f, _broadcast(factor, value, n))
    return out


def factor_grid(factor: str, n_values: int = 4) -> np.ndarray:
    """``n_values`` values spread over a factor's range.

    Continuous factors: ``linspace(low, high, n_values)``. Categorical factors: every category
    (``n_values`` is ignored, so ``glasses`` gives 2 values and ``hair_color`` 4).

    Returns:
        ``[V]`` float64 or int64 array.
    """
    f = get_factor(factor)
    if f.is_categorical:
        return np.arange(f.n_categories, dtype=np.int64)
    if int(n_values) < 2:
        raise Img2TabInputError(f"n_values must be >= 2, got {n_values}")
    return np.linspace(f.low, f.high, int(n_values))


def render_counterfactuals(
    factors: Mapping[str, np.ndarray], factor: str, values: Sequence[Any] | np.ndarray, size: int = 64
) -> np.ndarray:
    """Render ``x^{f<-v}`` for every image and every value.

    Args:
        factors: Dict factor name -> ``[N]`` values.
        factor: The factor that changes.
        values: ``[V]`` values (each a scalar applied to all images).
        size: Image size in pixels.

    Returns:
        uint8 ``[V, N, size, size, 3]``.
    """
    n = _n_images(factors)
    vals = list(np.asarray(values).ravel())
    out = np.empty((len(vals), n, size, size, 3), dtype=np.uint8)
    for i, v in enumerate(vals):
        out[i] = render(counterfactual(factors, factor, v), size)
    return out


def factor_masks(
    factors: Mapping[str, np.ndarray],
    size: int = 64,
    factors_to_mask: Sequence[str] | None = None,
    n_values: int = 4,
    threshold: float = 8 / 255,
) -> dict[str, np.ndarray]:
    """Pixel footprint ``M_f(x)`` of each factor in each image.

    A pixel of ``x`` belongs to ``M_f(x)`` when some colour channel of it differs by more than
    ``threshold`` (on the [0, 1] scale) between any two of the renders ``x`` and ``x^{f<-v}`` for
    ``v`` in :func:`factor_grid` ``(f, n_values)``; i.e. ``max_v - min_v > threshold`` over the
    ``V + 1`` renders.

    Args:
        factors: Dict factor name -> ``[N]`` values.
        size: Image size in pixels.
        factors_to_mask: Factors to compute (default: all 8).
        n_values: Values per continuous factor.
        threshold: Change threshold on the [0, 1] intensity scale.

    Returns:
        Dict factor name -> bool ``[N, size, size]``.
    """
    names = list(FACTOR_NAMES if factors_to_mask is None else factors_to_mask)
    for name in names:
        get_factor(name)
    if not 0.0 <= float(threshold) < 1.0:
        raise Img2TabInputError(f"threshold must be in [0, 1), got {threshold}")
    _n_images(factors)
    base = render(factors, size).astype(np.int16)
    limit = float(threshold) * 255.0
    masks = {}
    for name in names:
        lo, hi = base.copy(), base.copy()
        for v in factor_grid(name, n_values):
            img = render(counterfactual(factors, name, v), size).astype(np.int16)
            np.minimum(lo, img, out=lo)
            np.maximum(hi, img, out=hi)
        masks[name] = ((hi - lo) > limit).any(axis=-1)
    return masks


def task_splits(
    task: str, n_train: int, n_test: int, seed: int = 0, size: int = 64, **task_kwargs: Any
) -> tuple[TaskSplit, TaskSplit]:
    """Training split and decorrelated test split of one benchmark task (see :data:`TASKS`).

    Args:
        task: ``"unbiased"``, ``"biased"`` or ``"biased-glasses"``.
        n_train: Training-split size.
        n_test: Test-split size (spurious factor independent of the class).
        seed: Seed (the two splits use independent streams, see
            :func:`~img2tab.world.make_spurious_splits`).
        size: Image size.
        **task_kwargs: Further :func:`~img2tab.world.make_task` arguments (e.g. ``class_margin``).

    Returns:
        ``(train, test)``.
    """
    if task not in TASKS:
        raise Img2TabInputError(f"unknown task {task!r}; choose from {sorted(TASKS)}")
    spec = TASKS[task]
    return make_spurious_splits(
        n_train,
        n_test,
        seed=seed,
        train_correlation=spec["train_correlation"],
        test_correlation=0.5,
        size=size,
        spurious=spec["spurious"],
        **task_kwargs,
    )


def benchmark_tasks(
    n_train: int = 3000,
    n_test: int = 1000,
    seed: int = 0,
    size: int = 64,
    tasks: Sequence[str] = ("unbiased", "biased"),
    **task_kwargs: Any,
) -> dict[str, tuple[TaskSplit, TaskSplit]]:
    """The benchmark tasks, each as ``(train, decorrelated test)``; see :func:`task_splits`.

    Returns:
        Dict task name -> ``(train, test)`` :class:`~img2tab.world.TaskSplit` pair.
    """
    return {t: task_splits(t, n_train, n_test, seed, size, **task_kwargs) for t in tasks}


# ---------------------------------------------------------------------------- oracle cache
def load_or_train_factor_oracle(
    size: int = 64,
    n: int = 10000,
    epochs: int = 10,
    seed: int = 7,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Any:
    """:func:`img2tab.world.oracle.train_factor_oracle`, cached on disk (safetensors + JSON).

    The cache folder is ``cache_dir`` (default ``$IMG2TAB_CACHE/factor_oracle`` or
    ``~/.cache/img2tab/factor_oracle``) / sha256 of the arguments; written atomically.

    Returns:
        A :class:`~img2tab.world.oracle.FactorOracle` in eval mode (its held-out quality is
        stored beside it in ``quality.json``).
    """
    from safetensors.torch import load_file, save_file

    from .oracle import FactorOracle, train_factor_oracle

    args = {"size": int(size), "n": int(n), "epochs": int(epochs), "seed": int(seed), "version": 1}
    key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:32]
    root = Path(cache_dir) if cache_dir is not None else (
        Path(os.environ["IMG2TAB_CACHE"]) if os.environ.get("IMG2TAB_CACHE")
        else Path.home() / ".cache" / "img2tab") / "factor_oracle"
    folder = root / key
    if (folder / "model.safetensors").is_file():
        oracle = FactorOracle(int(size))
        try:
            oracle.load_state_dict(load_file(str(folder / "model.safetensors")))
            return oracle.eval()
        except RuntimeError as e:
            logger.warning("ignoring broken factor-oracle cache %s (%s)", folder, str(e).splitlines()[0])
    oracle, quality = train_factor_oracle(int(size), int(n), int(epochs), int(seed), progress=progress)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        save_file({k: v.detach().contiguous() for k, v in oracle.state_dict().items()},
                  str(tmp / "model.safetensors"))
        (tmp / "quality.json").write_text(json.dumps({"args": args, "quality": quality}, indent=1))
        with contextlib.suppress(OSError):  # a concurrent run stored it first
            os.replace(tmp, folder)
    finally:
        if tmp.exists():
            for p in tmp.iterdir():
                p.unlink()
            tmp.rmdir()
    return oracle.eval()


# ---------------------------------------------------------------------------- factor lookup
def _uint8_images(images: Any) -> np.ndarray:
    """uint8 ``[N, H, W, 3]`` from uint8 ``[N, H, W, 3]`` or float ``[N, 3, H, W]`` in [-1, 1]."""
    if isinstance(images, np.ndarray) and images.dtype == np.uint8:
        return images
    import torch

    x = torch.as_tensor(images).detach().float().cpu()
    if x.ndim != 4 or x.shape[1] != 3:
        raise Img2TabInputError(f"images must be float [N, 3, H, W] or uint8 [N, H, W, 3]: {tuple(x.shape)}")
    u = ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return u.permute(0, 2, 3, 1).contiguous().numpy()


class FactorLookup:
    """Factors of images the benchmark rendered itself, found again from the pixels.

    Rendering is deterministic and ``TaskSplit.to_tensor`` is exactly invertible (``x = u / 127.5 -
    1``), so a hash of the uint8 pixels identifies a rendered image. Used by the oracle-concepts row
    to know the exact factors of test images and of their counterfactuals.
    """

    def __init__(self) -> None:
        self._rows: dict[str, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._rows)

    @staticmethod
    def _key(img: np.ndarray) -> str:
        return hashlib.sha1(np.ascontiguousarray(img).tobytes()).hexdigest()

    def add(self, images: Any, factors: Mapping[str, np.ndarray]) -> None:
        """Remember ``factors`` (``[N]`` per name) for ``images`` (uint8 or float, ``N`` images)."""
        u = _uint8_images(images)
        n = _n_images(factors)
        if u.shape[0] != n:
            raise Img2TabInputError(f"{u.shape[0]} images but factors for {n}")
        for i in range(n):
            self._rows[self._key(u[i])] = {f: np.asarray(factors[f])[i] for f in FACTOR_NAMES}

    def get(self, images: Any) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Factors of ``images`` and a bool ``[N]`` of which were found (others hold neutral values)."""
        from ._world import neutral_factors

        u = _uint8_images(images)
        out = neutral_factors(u.shape[0])
        found = np.zeros(u.shape[0], dtype=bool)
        for i in range(u.shape[0]):
            row = self._rows.get(self._key(u[i]))
            if row is not None:
                found[i] = True
                for f, v in row.items():
                    out[f][i] = v
        return out, found
