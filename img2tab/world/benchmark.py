"""Ground-truth benchmark of concept explanations on the concept world.

Every registered explainer (:func:`default_explainers`) is fitted on the training split of each
benchmark task (:data:`img2tab.world.groundtruth.TASKS`) and scored on the decorrelated test split
with the metrics of :mod:`img2tab.world.gt_metrics`; :func:`run` repeats this over seeds and writes
``results.json`` and ``report.md`` (tables, one figure per metric and a gallery of each method's top
concepts). The protocol and every formula are documented in ``docs/benchmark.md``.

An explainer *factory* is a callable ``BenchmarkContext -> ConceptExplainer`` (fitted or not; the
benchmark calls ``fit(ctx.train.to_tensor(), ctx.train.y)`` on an unfitted one).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import Img2TabInputError
from ._tasks import TaskSplit
from .groundtruth import FactorLookup, task_splits

if TYPE_CHECKING:  # pragma: no cover
    from ..explainers import ConceptExplainer
    from ..networks.cnn import ConceptCNN, ConceptCNNConfig
    from ..networks.inverter import Inverter
    from ..tabular import ConceptClassifier

__all__ = [
    "EXPLAINERS",
    "BenchmarkContext",
    "BenchmarkSizes",
    "ExplainerFactory",
    "default_explainers",
    "make_context",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchmarkSizes:
    """Split sizes and effort of one benchmark run.

    Attributes:
        n_train: Training images per task.
        n_test: Decorrelated test images (accuracy).
        n_eval: Test images used for the counterfactual metrics (reliance, alignment, localisation,
            interventions).
        n_values: Values per continuous factor in counterfactual sweeps and factor masks.
        oracle_n, oracle_epochs: Training set and epochs of the factor oracle.
        cnn_epochs: ConceptCNN training epochs.
    """

    n_train: int = 3000
    n_test: int = 1000
    n_eval: int = 160
    n_values: int = 4
    oracle_n: int = 10000
    oracle_epochs: int = 10
    cnn_epochs: int = 8

    @classmethod
    def for_mode(cls, quick: bool) -> BenchmarkSizes:
        """Full sizes, or the ``--quick`` ones (CI: one seed, small splits)."""
        if quick:
            return cls(n_train=600, n_test=300, n_eval=24, n_values=3, oracle_n=3000,
                       oracle_epochs=4, cnn_epochs=4)
        return cls()


@dataclass
class BenchmarkContext:
    """Everything an explainer factory may use for one (task, seed).

    Attributes:
        task: Task name (``"unbiased"``, ``"biased"``, ``"biased-glasses"``).
        seed: Seed of the splits and of the models.
        train: Training split (biased for the biased tasks).
        test: Decorrelated test split.
        inverter: The encoder + generator (the embedded default unless given).
        psi_train: Ψ of the training images, float32 ``[N_train, D]``.
        psi_test: Ψ of the test images, float32 ``[N_test, D]``.
        w_test: W+ of the test images ``[N_test, n_latent, 512]``.
        psi_classifier: XGBoost :class:`~img2tab.tabular.ConceptClassifier` fitted on
            ``(psi_train, train.y)``.
        quick: Whether this is a ``--quick`` run (factories may pick smaller settings).
        sizes: Split sizes and effort.
        cnn_config: Recipe of :attr:`concept_cnn`.
        cache_dir: Cache folder of the ConceptCNN and factor oracle (None = default).
        progress: Progress bars.
        lookup: Factors of every image rendered for this context (train, test and the
            counterfactuals the benchmark renders), found again from the pixels.

    :attr:`concept_cnn` (the :class:`~img2tab.networks.cnn.ConceptCNN` trained on ``train``) and
    :attr:`factor_oracle` are trained (or loaded from the cache) on first access, so that methods
    that do not need them cost nothing; assign them to inject a model (tests).
    """

    task: str
    seed: int
    train: TaskSplit
    test: TaskSplit
    inverter: Inverter
    psi_train: np.ndarray
    psi_test: np.ndarray
    w_test: torch.Tensor
    psi_classifier: ConceptClassifier
    quick: bool = False
    sizes: BenchmarkSizes = field(default_factory=BenchmarkSizes)
    cnn_config: ConceptCNNConfig | None = None
    cache_dir: str | None = None
    progress: bool = True
    lookup: FactorLookup = field(default_factory=FactorLookup, repr=False)
    _concept_cnn: ConceptCNN | None = field(default=None, repr=False)
    _factor_oracle: Any = field(default=None, repr=False)

    @property
    def concept_cnn(self) -> ConceptCNN:
        """ConceptCNN trained on the training split (cached on disk by config and data)."""
        if self._concept_cnn is None:
            from ..networks.cnn import ConceptCNNConfig, load_or_train_concept_cnn

            cfg = self.cnn_config or ConceptCNNConfig(size=self.train.images.shape[1],
                                                      epochs=self.sizes.cnn_epochs, seed=self.seed)
            self._concept_cnn = load_or_train_concept_cnn(self.train.to_tensor(), self.train.y, cfg,
                                                          cache_dir=self._sub("concept_cnn"),
                                                          progress=self.progress)
        return self._concept_cnn

    @concept_cnn.setter
    def concept_cnn(self, model: ConceptCNN) -> None:
        self._concept_cnn = model

    @property
    def factor_oracle(self) -> Any:
        """:class:`~img2tab.world.evaluation.FactorOracle` for readings (cached on disk)."""
        if self._factor_oracle is None:
            from .groundtruth import load_or_train_factor_oracle

            self._factor_oracle = load_or_train_factor_oracle(
                self.train.images.shape[1], self.sizes.oracle_n, self.sizes.oracle_epochs, seed=7,
                cache_dir=self._sub("factor_oracle"), progress=self.progress)
        return self._factor_oracle

    @factor_oracle.setter
    def factor_oracle(self, oracle: Any) -> None:
        self._factor_oracle = oracle

    def _sub(self, name: str) -> str | None:
        from pathlib import Path

        return None if self.cache_dir is None else str(Path(self.cache_dir) / name)

    @property
    def size(self) -> int:
        """Image size in pixels."""
        return int(self.train.images.shape[1])


ExplainerFactory = Callable[[BenchmarkContext], "ConceptExplainer"]
"""Builds one explainer for a context (fitted, or unfitted for the benchmark to fit)."""


def make_context(
    task: str = "unbiased",
    seed: int = 0,
    quick: bool = False,
    inverter: Inverter | None = None,
    sizes: BenchmarkSizes | None = None,
    cache_dir: str | None = None,
    progress: bool = True,
) -> BenchmarkContext:
    """Build the :class:`BenchmarkContext` of one task and seed.

    Renders the splits, encodes them with the inverter and fits the XGBoost classifier on Ψ (the
    ConceptCNN and the factor oracle are trained lazily, on first use).

    Args:
        task: Benchmark task (see :data:`img2tab.world.groundtruth.TASKS`).
        seed: Seed of the splits (and of the classifier / CNN).
        quick: Use the quick sizes.
        inverter: Encoder + generator (default: :func:`img2tab.load_default`).
        sizes: Override the sizes.
        cache_dir: Cache folder for the ConceptCNN and the oracle (None = ``$IMG2TAB_CACHE`` or
            ``~/.cache/img2tab``).
        progress: Progress bars.
    """
    from ..tabular import ConceptClassifier
    from .evaluation import encode_images

    if inverter is None:
        from ..default import load_default

        inverter = load_default()
    sz = sizes or BenchmarkSizes.for_mode(quick)
    size = int(inverter.generator.size)
    train, test = task_splits(task, sz.n_train, sz.n_test, seed=1000 + int(seed), size=size)
    psi_tr, _ = encode_images(inverter, train.to_tensor(), progress=progress, desc=f"encode {task} train")
    psi_te, w_te = encode_images(inverter, test.to_tensor(), progress=progress, desc=f"encode {task} test")
    clf = ConceptClassifier(random_state=int(seed)).fit(psi_tr, train.y)
    lookup = FactorLookup()
    lookup.add(train.images, train.factors)
    lookup.add(test.images, test.factors)
    return BenchmarkContext(task=task, seed=int(seed), train=train, test=test, inverter=inverter,
                            psi_train=psi_tr, psi_test=psi_te, w_test=w_te, psi_classifier=clf,
                            quick=quick, sizes=sz, cache_dir=cache_dir, progress=progress, lookup=lookup)


# ---------------------------------------------------------------------------- registry
def _img2tab(ranking: str) -> ExplainerFactory:
    def factory(ctx: BenchmarkContext) -> ConceptExplainer:
        from ..explainers.img2tab_w1 import Img2TabExplainer

        exp = Img2TabExplainer(ctx.inverter, ctx.psi_classifier, ranking=ranking, prefitted=True,
                               random_state=ctx.seed)
        return exp.fit_psi(ctx.psi_train, ctx.train.y)

    return factory


def _oracle(ctx: BenchmarkContext) -> ConceptExplainer:
    from ..explainers.oracle import OracleConceptExplainer

    return OracleConceptExplainer.from_context(ctx)


def default_explainers(quick: bool = False) -> dict[str, ExplainerFactory]:
    """Every registered explainer, name -> factory (peer methods add their entries here).

    Args:
        quick: Whether the registry is for a ``--quick`` run (factories may choose smaller settings;
            they can also read ``ctx.quick``).
    """
    reg: dict[str, ExplainerFactory] = {
        "img2tab-w1": _img2tab("w1"),
        "img2tab-importance": _img2tab("importance"),
        "random-concepts": _img2tab("random"),
        "oracle-concepts": _oracle,
    }
    from ..explainers.falcon import falcon_for_context  # FALCON on ConceptCNN, two captioners

    reg["falcon-truth"] = lambda ctx: falcon_for_context(ctx, "truth")
    reg["falcon-worldclip"] = lambda ctx: falcon_for_context(ctx, "worldclip")
    return reg


EXPLAINERS: dict[str, ExplainerFactory] = default_explainers()
"""The default registry (full-run settings)."""


def image_key(image: np.ndarray) -> str:
    """sha1 of one uint8 ``[H, W, 3]`` image (lookup of rendered images' factors)."""
    return hashlib.sha1(np.ascontiguousarray(image, dtype=np.uint8).tobytes()).hexdigest()


def _check_tasks(tasks: Sequence[str]) -> None:
    from .groundtruth import TASKS

    bad = [t for t in tasks if t not in TASKS]
    if bad:
        raise Img2TabInputError(f"unknown task(s) {bad}; choose from {sorted(TASKS)}")
