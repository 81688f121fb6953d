"""Accuracy of the correspondence classifiers in distribution and under a world shift.

A *world shift* redraws one factor of a split from a range (or categories) that the training split
never showed, re-renders the images and keeps the labels (the class factor is untouched): e.g.
training on black/brown hair and testing on blond/red hair, the concept world's analogue of the
official ImageNet-R / Sketch out-of-distribution sets.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Img2TabInputError
from ..world import TaskSplit, binarize, get_factor, make_task, render

__all__ = ["classifier_accuracy", "correspondence_explainers", "restrict_factor", "world_shift_experiment"]


def restrict_factor(split: TaskSplit, factor: str, values: Sequence[float] | tuple[float, float],
                    seed: int = 0) -> TaskSplit:
    """Redraw one (non-class) factor of a split and re-render.

    Args:
        split: a :class:`~img2tab.world.TaskSplit`.
        factor: the factor to redraw (not the class factor).
        values: categories to draw uniformly from (categorical factor), or ``(low, high)`` for a
            continuous one.
        seed: seed of the redraw.

    Returns:
        A new split with the same labels and other factors (the input is not modified).
    """
    f = get_factor(factor)
    if factor == split.class_factor:
        raise Img2TabInputError(f"{factor!r} is the class factor; a shift must keep the labels")
    rng = np.random.default_rng(seed)
    n = len(split)
    factors = {k: np.array(v, copy=True) for k, v in split.factors.items()}
    if f.is_categorical:
        factors[factor] = rng.choice(np.asarray(values, dtype=np.int64), size=n)
    else:
        lo, hi = (float(v) for v in values)
        factors[factor] = rng.uniform(lo, hi, size=n)
    images = render(factors, split.images.shape[1])
    spurious = split.spurious
    if split.spurious_factor == factor:
        spurious = binarize(factor, factors[factor])
    return replace(split, images=images, factors=factors, spurious=spurious)


def classifier_accuracy(classifiers: Mapping[str, Any], train: TaskSplit, tests: Mapping[str, TaskSplit],
                        cnn: Any | None = None) -> dict[str, dict[str, float]]:
    """Fit each classifier on ``train`` and score it on every test split, with CPU seconds.

    Args:
        classifiers: name -> unfitted classifier with ``fit(images, y)`` and ``predict(images)``.
        train: training split.
        tests: name -> test split.
        cnn: optional ConceptCNN (``logit``) reported as ``"concept-cnn"``.

    Returns:
        ``{classifier: {test name: accuracy, ..., "cpu_s": process seconds for fit + predictions}}``.
    """
    out: dict[str, dict[str, float]] = {}
    x_train = train.to_tensor()
    tensors = {k: v.to_tensor() for k, v in tests.items()}
    if cnn is not None:
        t0 = time.process_time()
        row = {}
        for k, x in tensors.items():
            logit = cnn.predict_logit(x) if hasattr(cnn, "predict_logit") else cnn.logit(x).detach().numpy()
            row[k] = float(np.mean((np.asarray(logit) > 0).astype(int) == tests[k].y))
        row["cpu_s"] = time.process_time() - t0
        out["concept-cnn"] = row
    for name, clf in classifiers.items():
        t0 = time.process_time()
        clf.fit(x_train, train.y)
        row = {k: float(np.mean(clf.predict(x) == tests[k].y)) for k, x in tensors.items()}
        row["cpu_s"] = time.process_time() - t0
        out[name] = row
    return out


def world_shift_experiment(
    make_classifiers: Callable[[Any, TaskSplit, Sequence[TaskSplit]], Mapping[str, Any]],
    *,
    n_train: int = 2000,
    n_test: int = 300,
    seed: int = 0,
    factor: str = "hair_color",
    train_values: Sequence[float] = (0, 1),
    shift_values: Sequence[float] = (2, 3),
    cnn_config: Any = None,
    cache_dir: Any = None,
    figures_dir: Any = None,
) -> dict[str, Any]:
    """Train ConceptCNN on a restricted world, then score it and the correspondence classifiers
    in distribution and under the shift.

    Args:
        make_classifiers: ``(cnn, train, [test_in, test_shift]) -> {name: unfitted classifier}``.
        n_train, n_test: split sizes (unbiased smile task).
        seed: seed of the splits (train ``seed``, tests ``seed + 1``).
        factor, train_values, shift_values: the shifted factor and its training / shifted values
            (categories, or ``(low, high)`` for a continuous factor).
        cnn_config: :class:`~img2tab.networks.cnn.ConceptCNNConfig` (default one).
        cache_dir: ConceptCNN cache folder.
        figures_dir: if given, ``<name>_in.png`` / ``<name>_shift.png`` explanation figures of the
            first test image of each split are written there.

    Returns:
        ``{"factor", "train_values", "shift_values", "accuracy": {name: {"in_distribution",
        "shifted", "cpu_s"}}}``.
    """
    from ..networks.cnn import ConceptCNNConfig, load_or_train_concept_cnn

    train = restrict_factor(make_task(n_train, seed, spurious=None), factor, train_values, seed)
    base = make_task(n_test, seed + 1, spurious=None)
    test_in = restrict_factor(base, factor, train_values, seed + 2)
    test_shift = restrict_factor(base, factor, shift_values, seed + 2)
    cnn = load_or_train_concept_cnn(train.to_tensor(), train.y, cnn_config or ConceptCNNConfig(),
                                    cache_dir=cache_dir)
    clfs = make_classifiers(cnn, train, [test_in, test_shift])
    acc = classifier_accuracy(clfs, train, {"in_distribution": test_in, "shifted": test_shift}, cnn=cnn)
    if figures_dir is not None:
        import matplotlib.pyplot as plt

        from .correspondence import plot_correspondences

        folder = Path(figures_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for name, clf in clfs.items():
            for tag, split in (("in", test_in), ("shift", test_shift)):
                fig = plot_correspondences(clf, split.to_tensor()[:1], train.to_tensor(), k=3,
                                           class_names=train.class_names)
                tmp = folder / f".{name}_{tag}.png.tmp"
                fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
                os.replace(tmp, folder / f"{name}_{tag}.png")
                plt.close(fig)
    return {"factor": factor, "train_values": list(train_values), "shift_values": list(shift_values),
            "n_train": n_train, "n_test": n_test, "accuracy": acc}


class _LookupEmbed:
    """An embedding that returns stored rows for known images (by pixel digest) and computes the
    others with ``fn`` (e.g. Ψ of the benchmark's splits, encoded once by the benchmark)."""

    def __init__(self, fn: Callable[[Any], Any], images: Sequence[np.ndarray], values: Sequence[np.ndarray]):
        from ._face_geometry import _digest

        self.fn = fn
        self.table = {_digest(img): row for imgs, vals in zip(images, values)
                      for img, row in zip(imgs, np.asarray(vals))}

    def __call__(self, x: Any) -> np.ndarray:
        from ._face_geometry import _digest, _to_u8

        u8 = _to_u8(x)
        rows: list[Any] = [self.table.get(_digest(img)) for img in u8]
        missing = [i for i, r in enumerate(rows) if r is None]
        if missing:
            computed = np.asarray(self.fn(x[missing]))
            for j, i in enumerate(missing):
                rows[i] = computed[j]
        return np.stack(rows).astype(np.float64)


def correspondence_explainers(quick: bool = False) -> dict[str, Callable[[Any], Any]]:
    """Benchmark factories ``ctx -> CorrespondenceExplainer`` for kNN (ConceptCNN and Ψ), EMD-Corr
    and both CHM-Corr variants (see :mod:`img2tab.explainers.correspondence`).

    ``ctx`` is a :class:`~img2tab.world.benchmark.BenchmarkContext` (``concept_cnn``, ``train``,
    ``test``, ``inverter``, ``psi_train``, ``psi_test``, ``lookup``). The oracle's geometry is exact
    for the train and test splits and for every image ``ctx.lookup`` knows (the counterfactuals
    the benchmark renders); any other image's geometry is read off its pixels.
    """
    from .correspondence import (
        CHMCorrClassifier,
        CorrespondenceExplainer,
        EMDCorrClassifier,
        FaceGeometry,
        KNNClassifier,
    )

    n_probe = 100 if quick else 300

    def knn(ctx: Any) -> Any:
        cnn = ctx.concept_cnn
        clf = KNNClassifier(cnn.pooled, maps=cnn.features)
        return CorrespondenceExplainer(clf, n_probe=n_probe, name="knn")

    def knn_psi(ctx: Any) -> Any:
        from ..world.evaluation import encode_images

        embed = _LookupEmbed(lambda x: encode_images(ctx.inverter, x)[0],
                             [ctx.train.images, ctx.test.images], [ctx.psi_train, ctx.psi_test])
        clf = KNNClassifier(embed, standardize=True)
        return CorrespondenceExplainer(clf, n_probe=n_probe, name="knn-psi")

    def emd(ctx: Any) -> Any:
        return CorrespondenceExplainer(EMDCorrClassifier(ctx.concept_cnn), n_probe=n_probe, name="emd-corr")

    def chm_mnn(ctx: Any) -> Any:
        clf = CHMCorrClassifier(ctx.concept_cnn, matcher="mutual-nn")
        return CorrespondenceExplainer(clf, n_probe=n_probe, name="chm-corr-mnn")

    def chm_oracle(ctx: Any) -> Any:
        geo = FaceGeometry(lookup=getattr(ctx, "lookup", None))
        geo.register(ctx.train.images, ctx.train.factors).register(ctx.test.images, ctx.test.factors)
        clf = CHMCorrClassifier(ctx.concept_cnn, matcher="oracle", geometry=geo)
        return CorrespondenceExplainer(clf, n_probe=n_probe, name="chm-corr-oracle")

    return {"knn": knn, "knn-psi": knn_psi, "emd-corr": emd, "chm-corr-mnn": chm_mnn,
            "chm-corr-oracle": chm_oracle}
