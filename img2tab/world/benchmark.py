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
from collections.abc import Callable, Mapping, Sequence
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
    n_eval: int = 128
    n_values: int = 4
    oracle_n: int = 10000
    oracle_epochs: int = 10
    cnn_epochs: int = 12

    @classmethod
    def for_mode(cls, quick: bool) -> BenchmarkSizes:
        """Full sizes, or the ``--quick`` ones (CI: one seed, small splits)."""
        if quick:
            return cls(n_train=600, n_test=300, n_eval=24, n_values=3, oracle_n=2000,
                       oracle_epochs=3, cnn_epochs=4)
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
        """:class:`~img2tab.world.oracle.FactorOracle` for readings (cached on disk)."""
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

    if inverter is None:
        from ..default import load_default

        inverter = load_default()
    sz = sizes or BenchmarkSizes.for_mode(quick)
    size = int(inverter.generator.size)
    train, test = task_splits(task, sz.n_train, sz.n_test, seed=1000 + int(seed), size=size)
    psi_tr, _ = inverter.encode_psi(train.to_tensor(), batch_size=128, progress=progress,
                                    desc=f"encode {task} train", with_w=False)
    psi_te, w_te = inverter.encode_psi(test.to_tensor(), batch_size=128, progress=progress,
                                       desc=f"encode {task} test")
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


def _ace(ctx: BenchmarkContext) -> ConceptExplainer:
    from ..explainers.ace import concept_cnn_ace

    return concept_cnn_ace(ctx.concept_cnn, quick=ctx.quick, seed=ctx.seed, progress=ctx.progress)


def _attfind(kind: str) -> ExplainerFactory:
    """AttFind with ConceptCNN in the loop (budget mode; ``"cnn-rgb"``: toRGB styles explained too) or
    with the Ψ classifier (exact)."""

    def factory(ctx: BenchmarkContext) -> ConceptExplainer:
        from ..explainers.attfind import AttFindExplainer

        n = 32 if ctx.quick else 100
        if kind in ("cnn", "cnn-rgb"):
            return AttFindExplainer(ctx.inverter, ctx.concept_cnn, mode="budget", max_images=n,
                                    include_torgb=kind == "cnn-rgb",
                                    n_candidates=24 if ctx.quick else 48, random_state=ctx.seed,
                                    progress=ctx.progress)
        return AttFindExplainer(ctx.inverter, psi_classifier=ctx.psi_classifier, mode="exact",
                                max_images=n, random_state=ctx.seed, progress=ctx.progress)

    return factory


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
        "ace": _ace,
        "attfind-cnn": _attfind("cnn"),
        "attfind-cnn-rgb": _attfind("cnn-rgb"),
        "attfind-psi": _attfind("psi"),
    }
    from ..explainers._correspondence_eval import correspondence_explainers  # kNN, EMD-Corr, CHM-Corr

    reg.update(correspondence_explainers(quick))
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


# ---------------------------------------------------------------------------- scoring
HEADLINE: tuple[str, ...] = ("accuracy", "cfa@1", "cfa@5", "spurious@5", "reliance_spearman",
                             "reliance_top1", "reveals_shortcut", "localisation", "pointing", "flip_rate@3",
                             "cpu_seconds")
"""The metrics of the main tables (all keys of results.json are listed in docs/benchmark.md)."""

_KS = (1, 3, 5)


@dataclass
class _EvalData:
    """What every explainer of one context is scored on (shared, computed once)."""

    x: torch.Tensor  # [n, 3, H, W]
    factors: dict[str, np.ndarray]
    counterfactuals: list[tuple[str, np.ndarray]]  # (factor, uint8 [n, H, W, 3]) per value
    class_mask: np.ndarray
    spurious_mask: np.ndarray | None
    class_reading: np.ndarray | None  # oracle reading of the class factor on x, [n] in [0, 1]


def _eval_data(ctx: BenchmarkContext, need_oracle: bool = True) -> _EvalData:
    from ._world import render
    from .groundtruth import factor_masks
    from .gt_metrics import counterfactual_sweep

    n = min(ctx.sizes.n_eval, len(ctx.test))
    factors = {k: np.asarray(v)[:n] for k, v in ctx.test.factors.items()}
    x = ctx.test.to_tensor()[:n]
    cfs = []
    for f, _, cf, imgs in counterfactual_sweep(factors, ctx.size, ctx.sizes.n_values, ctx.progress):
        u = render(cf, ctx.size)
        ctx.lookup.add(u, cf)
        cfs.append((f, u))
        del imgs
    names = [ctx.test.class_factor] + ([ctx.test.spurious_factor] if ctx.test.spurious_factor else [])
    masks = factor_masks(factors, ctx.size, names, n_values=ctx.sizes.n_values)
    reading = _class_reading(ctx, x) if need_oracle else None
    return _EvalData(x=x, factors=factors, counterfactuals=cfs, class_mask=masks[names[0]],
                     spurious_mask=masks.get(names[1]) if len(names) > 1 else None, class_reading=reading)


def _class_reading(ctx: BenchmarkContext, images: torch.Tensor) -> np.ndarray:
    return np.asarray(ctx.factor_oracle.read(images.float())[ctx.test.class_factor], dtype=np.float64)


class _Clock:
    """Accumulates process CPU seconds spent inside the explainer."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        import time

        t = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds += time.process_time() - t


def _batched(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, batch: int = 256) -> np.ndarray:
    parts = [np.asarray(fn(x[i:i + batch])) for i in range(0, len(x), batch)]
    return np.concatenate(parts) if parts else np.zeros(0)


def score_explainer(explainer: ConceptExplainer, ctx: BenchmarkContext, data: _EvalData | None = None,
                    fitted: bool = False) -> dict[str, Any]:
    """Every ground-truth metric of one explainer on one context.

    Args:
        explainer: The explainer (fitted when ``fitted`` is True or it has ``concepts_``).
        ctx: The benchmark context.
        data: Shared evaluation data (computed when None).
        fitted: Skip ``fit`` even when ``concepts_`` is missing (never needed normally).

    Returns:
        Flat dict metric -> value plus ``"true_reliance"``, ``"claimed_reliance"`` (``[8]``),
        ``"concepts"`` (top names), ``"concept_factors"`` (argmax factor of P per top concept).
    """
    from . import gt_metrics as gm
    from ._world import FACTOR_NAMES, _to_tensor

    data = data if data is not None else _eval_data(ctx)
    clock = _Clock()
    if not fitted and not hasattr(explainer, "concepts_"):
        clock(explainer.fit, ctx.train.to_tensor(), ctx.train.y)
    res: dict[str, Any] = {"method": getattr(explainer, "name", type(explainer).__name__)}
    k_all = len(explainer.concepts_)
    # accuracy of the method's predictor, else of the explained model
    x_test = ctx.test.to_tensor()
    pred = clock(explainer.predict, x_test)
    if pred is None:
        pred = (clock(_batched, explainer.model_logit, x_test) > 0).astype(np.int64)
    res["accuracy"] = float(np.mean(np.asarray(pred).ravel() == ctx.test.y))
    # reliance and concept responses from the counterfactual sweep
    x = data.x
    base_logit = np.asarray(clock(explainer.model_logit, x), dtype=np.float64)
    base_scores = np.asarray(clock(explainer.concept_scores, x), dtype=np.float64)
    cf_logit: dict[str, list[np.ndarray]] = {f: [] for f in FACTOR_NAMES}
    cf_score: dict[str, list[np.ndarray]] = {f: [] for f in FACTOR_NAMES}
    for f, u in data.counterfactuals:
        xi = _to_tensor(u)
        cf_logit[f].append(np.asarray(clock(explainer.model_logit, xi), dtype=np.float64))
        cf_score[f].append(np.asarray(clock(explainer.concept_scores, xi), dtype=np.float64))
    R = gm.reliance_from_logits(base_logit, {f: np.stack(v) for f, v in cf_logit.items()})
    P = gm.response_matrix(base_scores, {f: np.stack(v) for f, v in cf_score.items()})
    w = explainer.importances()
    cls, spur = ctx.test.class_factor, ctx.test.spurious_factor
    for k in _KS:
        res[f"cfa@{k}"] = gm.cfa_at_k(P, cls, k)
        res[f"spurious@{k}"] = gm.cfa_at_k(P, spur, k) if spur else float("nan")
    C = gm.claimed_reliance(P, w, 5)
    res.update(gm.reliance_agreement(C, R, spur if ctx.task != "unbiased" else None))
    res["true_reliance"] = R.tolist()
    res["claimed_reliance"] = C.tolist()
    top = min(5, k_all)
    res["concepts"] = explainer.concept_names()[:top]
    arg = np.where(P[:top].max(1) > 0, P[:top].argmax(1), -1)
    res["concept_factors"] = [FACTOR_NAMES[j] if j >= 0 else "none" for j in arg]
    # localisation of the decision evidence
    ev = clock(explainer.evidence, x, None)
    if ev is None:
        res.update(localisation=float("nan"), localisation_spurious=float("nan"), pointing=float("nan"),
                   class_area=float(data.class_mask.mean()), spurious_area=float("nan"),
                   pointing_area=float("nan"))
    else:
        res.update(gm.localisation(np.asarray(ev), data.class_mask, data.spurious_mask))
    # counterfactual faithfulness of the method's own intervention
    for k in _KS:
        iv = clock(explainer.intervene, x, list(range(min(k, k_all))))
        sem = None
        if iv.images_after is not None and data.class_reading is not None:
            after = _class_reading(ctx, iv.images_after)
            sem = gm.semantic_crossing(data.class_reading, after)
        f = gm.faithfulness(iv.logit_before, iv.logit_after, sem)
        for key, val in f.items():
            res[f"{key}@{k}"] = val
    res["cpu_seconds"] = clock.seconds
    return res


def _gallery_tiles(explainer: ConceptExplainer, data: _EvalData, n: int = 5) -> list[dict[str, Any]]:
    """For each top concept: the evaluation image scoring highest and the evidence map on it."""
    scores = np.asarray(explainer.concept_scores(data.x))
    tiles = []
    for c in range(min(n, scores.shape[1])):
        i = int(np.argmax(scores[:, c]))
        img = data.x[i:i + 1]
        ev = explainer.evidence(img, c)
        tiles.append({"name": explainer.concept_names()[c],
                      "image": ((img[0].permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1),
                      "evidence": None if ev is None else np.asarray(ev)[0]})
    return tiles


# ---------------------------------------------------------------------------- run + report
def _atomic_write_bytes(path: Any, data: bytes) -> None:
    from pathlib import Path

    from .._atomic import atomic_write_bytes

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


def _save_fig(fig: Any, path: Any) -> None:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    _atomic_write_bytes(path, buf.getvalue())


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, float)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, (np.integer, int)) and not isinstance(v, bool):
        return int(v)
    return v


def summarise(runs: list[dict[str, Any]]) -> tuple[dict, dict]:
    """Mean and sd over seeds of every numeric metric: ``(mean[method][task][metric], sd[...])``."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["method"], r["task"]), []).append(r)
    mean: dict[str, dict[str, dict[str, float]]] = {}
    sd: dict[str, dict[str, dict[str, float]]] = {}
    for (m, t), rs in groups.items():
        keys = [k for k, v in rs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                and k != "seed"]
        for k in keys:
            vals = np.array([r.get(k, np.nan) for r in rs], dtype=np.float64)
            ok = vals[np.isfinite(vals)]
            mean.setdefault(m, {}).setdefault(t, {})[k] = float(ok.mean()) if ok.size else float("nan")
            sd.setdefault(m, {}).setdefault(t, {})[k] = float(ok.std(ddof=1)) if ok.size > 1 else (
                0.0 if ok.size else float("nan"))
    return mean, sd


def _fmt(m: float, s: float | None) -> str:
    if m is None or not np.isfinite(m):
        return "–"
    if s is None or not np.isfinite(s):
        return f"{m:.2f}"
    return f"{m:.2f} ± {s:.2f}"


def _tables(mean: dict, sd: dict, methods: Sequence[str], tasks: Sequence[str], keys: Sequence[str]
            ) -> list[str]:
    lines = []
    for t in tasks:
        lines += [f"### task: {t}", "", "| method | " + " | ".join(keys) + " |",
                  "|---|" + "---|" * len(keys)]
        for m in methods:
            if t not in mean.get(m, {}):
                continue
            cells = [_fmt(mean[m][t].get(k, float("nan")), sd[m][t].get(k)) for k in keys]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _metric_figure(mean: dict, sd: dict, methods: Sequence[str], tasks: Sequence[str], key: str) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(methods), 3.0))
    width = 0.8 / max(1, len(tasks))
    for j, t in enumerate(tasks):
        vals = [mean.get(m, {}).get(t, {}).get(key, np.nan) for m in methods]
        errs = [sd.get(m, {}).get(t, {}).get(key, np.nan) for m in methods]
        xs = np.arange(len(methods)) + (j - (len(tasks) - 1) / 2) * width
        ax.bar(xs, np.nan_to_num(vals), width, yerr=np.nan_to_num(errs), label=t, capsize=2)
    ax.set_xticks(np.arange(len(methods)))
    ax.set_xticklabels(methods, rotation=30, ha="right", fontsize=8)
    ax.set_title(key)
    ax.legend(fontsize=7)
    return fig


def _gallery_figure(galleries: dict[str, list[dict[str, Any]]], title: str) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = list(galleries)
    ncol = max([len(v) for v in galleries.values()] + [1])
    fig, axes = plt.subplots(len(names), ncol, figsize=(1.6 * ncol, 1.8 * len(names)), squeeze=False)
    for r, m in enumerate(names):
        for c in range(ncol):
            ax = axes[r, c]
            ax.axis("off")
            if c >= len(galleries[m]):
                continue
            tile = galleries[m][c]
            ax.imshow(tile["image"])
            if tile["evidence"] is not None and float(np.max(tile["evidence"])) > 0:
                ax.imshow(tile["evidence"] / np.max(tile["evidence"]), cmap="inferno", alpha=0.5)
            ax.set_title(f"{tile['name']}\n→ {tile.get('factor', '?')}", fontsize=6)
            if c == 0:
                ax.text(-0.1, 0.5, m, transform=ax.transAxes, rotation=90, va="center", ha="right",
                        fontsize=7)
    fig.suptitle(title, fontsize=8)
    return fig


def run(
    explainers: Mapping[str, ExplainerFactory] | Sequence[str] | None = None,
    tasks: Sequence[str] = ("unbiased", "biased"),
    seeds: Sequence[int] = (0, 1, 2),
    quick: bool = False,
    out: Any = None,
    inverter: Inverter | None = None,
    sizes: BenchmarkSizes | None = None,
    cache_dir: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Score every explainer on every task and seed; write ``results.json``, ``report.md`` and figures.

    Args:
        explainers: name -> factory, a list of names from :func:`default_explainers`, or None (all).
        tasks: Benchmark tasks.
        seeds: Seeds (each gives new splits, classifier, CNN and random concepts).
        quick: Small splits (CI).
        out: Output folder (None: nothing written).
        inverter: Encoder + generator (default: the embedded default).
        sizes: Override the sizes of the mode.
        cache_dir: Cache folder for the ConceptCNN and factor oracle.
        progress: Progress bars.

    Returns:
        ``{"summary": mean[method][task][metric], "summary_sd": ..., "runs": [...], "config": ...}``.
    """
    import time

    from tqdm.auto import tqdm

    from ._world import FACTOR_NAMES

    _check_tasks(tasks)
    registry = default_explainers(quick)
    if explainers is None:
        chosen = dict(registry)
    elif isinstance(explainers, Mapping):
        chosen = dict(explainers)
    else:
        unknown = [e for e in explainers if e not in registry]
        if unknown:
            raise Img2TabInputError(f"unknown explainer(s) {unknown}; registered: {sorted(registry)}")
        chosen = {e: registry[e] for e in explainers}
    if not chosen or not seeds:
        raise Img2TabInputError("need at least one explainer and one seed")
    if inverter is None:
        from ..default import load_default

        inverter = load_default()
    sz = sizes or BenchmarkSizes.for_mode(quick)
    t_start = time.perf_counter()
    runs: list[dict[str, Any]] = []
    galleries: dict[str, dict[str, list[dict[str, Any]]]] = {}
    context_seconds: list[float] = []
    bar = tqdm(total=len(tasks) * len(seeds) * len(chosen), desc="benchmark", disable=not progress)
    config = {"tasks": list(tasks), "seeds": [int(s) for s in seeds], "quick": bool(quick),
              "sizes": sz.__dict__, "methods": list(chosen), "factors": list(FACTOR_NAMES)}

    def assemble() -> dict[str, Any]:
        mean, sd = summarise(runs)
        done = sorted({(r["task"], r["seed"]) for r in runs})
        return {"config": config, "summary": mean, "summary_sd": sd, "runs": runs,
                "context_cpu_seconds": context_seconds, "completed": [list(d) for d in done],
                "wall_seconds": time.perf_counter() - t_start}

    # seed-major order, results written after every (seed, task): a cut-short run keeps whole seeds
    for seed in seeds:
        for task in tasks:
            t0 = time.process_time()
            ctx = make_context(task, seed, quick, inverter=inverter, sizes=sz, cache_dir=cache_dir,
                               progress=progress)
            data = _eval_data(ctx)
            context_seconds.append(time.process_time() - t0)
            for name, factory in chosen.items():
                bar.set_postfix_str(f"{task} seed {seed} {name}")
                try:
                    clock = _Clock()
                    exp = clock(factory, ctx)
                    res = score_explainer(exp, ctx, data)
                    res["cpu_seconds"] += clock.seconds
                    res["method"] = name
                    if seed == seeds[0]:
                        tiles = _gallery_tiles(exp, data)
                        for tile, fac in zip(tiles, res["concept_factors"]):
                            tile["factor"] = fac
                        galleries.setdefault(task, {})[name] = tiles
                except Exception as exc:  # one broken method must not sink the whole benchmark
                    logger.exception("explainer %s failed on %s seed %s", name, task, seed)
                    res = {"method": name, "error": f"{type(exc).__name__}: {exc}"}
                res.update(task=task, seed=int(seed))
                runs.append(res)
                bar.update(1)
            if out is not None:
                new = {task: galleries[task]} if task in galleries and seed == seeds[0] else None
                write_report(assemble(), out, new, figures=False)
    bar.close()
    result = assemble()
    if out is not None:
        write_report(result, out, galleries)
    return result


def write_report(result: dict[str, Any], out: Any, galleries: dict[str, Any] | None = None,
                 figures: bool = True) -> None:
    """Write ``results.json``, ``report.md`` and (``figures``) the metric figures of a :func:`run`
    result into ``out``; ``galleries`` (task -> method -> tiles) adds the gallery figures. Atomic."""
    import json
    from pathlib import Path

    outp = Path(out)
    (outp / "figures").mkdir(parents=True, exist_ok=True)
    cfg = result["config"]
    if figures:
        for key in HEADLINE:
            fig = _metric_figure(result["summary"], result["summary_sd"], cfg["methods"], cfg["tasks"], key)
            _save_fig(fig, outp / "figures" / f"{key.replace('@', '_at_')}.png")
    for task, gal in (galleries or {}).items():
        title = f"top concepts, task {task}, seed {cfg['seeds'][0]} (evidence overlaid)"
        _save_fig(_gallery_figure(gal, title), outp / "figures" / f"gallery_{task}.png")
    gallery_tasks = [t for t in cfg["tasks"] if (outp / "figures" / f"gallery_{t}.png").is_file()]
    _atomic_write_bytes(outp / "results.json", json.dumps(_jsonable(result), indent=1).encode())
    _atomic_write_bytes(outp / "report.md", report_markdown(result, gallery_tasks).encode())


def report_markdown(result: dict[str, Any], gallery_tasks: Sequence[str] = ()) -> str:
    """The markdown report of a :func:`run` result."""
    cfg = result["config"]
    methods, tasks = cfg["methods"], cfg["tasks"]
    mean, sd = result["summary"], result["summary_sd"]
    lines = ["# Ground-truth benchmark of concept explanations", "",
             f"Tasks {', '.join(tasks)}; seeds {cfg['seeds']}; {'quick' if cfg['quick'] else 'full'} sizes "
             f"{cfg['sizes']}. Mean ± sd over seeds. Wall time {result['wall_seconds']:.0f} s. "
             "Definitions: docs/benchmark.md.", ""]
    done = result.get("completed")
    if done is not None and len(done) < len(tasks) * len(cfg["seeds"]):
        lines += [f"**Partial run**: {len(done)} of {len(tasks) * len(cfg['seeds'])} (task, seed) pairs "
                  f"completed: {', '.join(f'{t}/{s}' for t, s in done)}.", ""]
    lines += ["## Headline", ""]
    lines += _tables(mean, sd, methods, tasks, HEADLINE)
    lines += ["## Faithfulness of each method's own intervention", ""]
    keys = [f"{a}@{k}" for k in _KS for a in ("flip_rate", "semantic_flip_rate", "shortcut_flip_rate")]
    lines += _tables(mean, sd, methods, tasks, keys + ["delta_logit@3"])
    lines += ["## Alignment and localisation details", ""]
    lines += _tables(mean, sd, methods, tasks, ["cfa@1", "cfa@3", "spurious@1", "spurious@3",
                                                 "localisation_spurious", "class_area", "spurious_area",
                                                 "pointing_area"])
    lines += ["## True vs claimed reliance (first seed)", "",
              "| method | task | R (true) | Ĉ (claimed) | top concepts → factor |", "|---|---|---|---|---|"]
    first = cfg["seeds"][0]
    factors = cfg["factors"]
    for r in result["runs"]:
        if r["seed"] != first or "true_reliance" not in r:
            continue
        fmt = lambda v: ", ".join(f"{f[:6]} {x:.2f}" for f, x in zip(factors, v))  # noqa: E731
        tops = ", ".join(f"{c}→{f}" for c, f in zip(r["concepts"], r["concept_factors"]))
        lines.append(f"| {r['method']} | {r['task']} | {fmt(r['true_reliance'])} | "
                     f"{fmt(r['claimed_reliance'])} | {tops} |")
    errors = [r for r in result["runs"] if "error" in r]
    if errors:
        lines += ["", "## Failures", ""] + [f"- {r['method']} / {r['task']} / seed {r['seed']}: {r['error']}"
                                            for r in errors]
    lines += ["", "## Figures", ""]
    lines += [f"![{k}](figures/{k.replace('@', '_at_')}.png)" for k in HEADLINE]
    lines += [f"![gallery {t}](figures/gallery_{t}.png)" for t in gallery_tasks]
    return "\n".join(lines) + "\n"
