"""Measured quality of an inverter on the concept world, where every generative factor is known.

Each function measures one thing and returns plain dicts / arrays, so the model card
(``img2tab evaluate``), the demo report and the tests share them:

* :func:`reconstruction_quality`: PSNR / SSIM of ``G(E(x))`` against ``x``;
* :func:`factor_probes`: held-out linear probes Ψ -> every ground-truth factor;
* :func:`pixel_cnn_accuracy`: a small CNN on the pixels, the baseline for Img2Tab's accuracy;
* concept validity (edit concepts, read the factors with a CNN oracle) from
  :mod:`img2tab.world.oracle`, re-exported here;
* :func:`spurious_debugging`: a classifier trained with a spurious factor, before / after
  excluding the concepts the library flags as spurious.

Encoding goes through the one encoding path, :meth:`Inverter.encode_psi
<img2tab.networks.inverter.Inverter.encode_psi>`; PSNR / SSIM come from :mod:`img2tab.metrics`.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .._atomic import atomic_savefig, atomic_write_json, atomic_write_text
from ..metrics import psnr, ssim
from ..networks.cnn import SmallCNN, fit_cnn
from ..networks.inverter import Inverter
from ._tasks import make_spurious_splits
from ._world import FACTORS, ConceptWorld, Factor
from .oracle import FactorOracle, concept_validity, train_factor_oracle

__all__ = [
    "EvaluationConfig",
    "FactorOracle",
    "concept_validity",
    "encode_images",
    "factor_probes",
    "pixel_cnn_accuracy",
    "reconstruction_quality",
    "debug_summary",
    "debugging_markdown",
    "spurious_debugging",
    "train_factor_oracle",
    "trained_on_concept_world",
]

logger = logging.getLogger(__name__)

# earlier private names of the small CNN and its training loop, now in img2tab.networks.cnn
_SmallCNN = SmallCNN
_train_cnn = fit_cnn


@dataclass(frozen=True)
class EvaluationConfig:
    """Sizes and seeds of the evaluation (all splits are disjoint from training seed 0).

    Attributes:
        n_recon: held-out images for reconstruction metrics.
        n_train, n_test: split sizes for probes, Img2Tab classifier and pixel CNN.
        n_oracle: rendered images the factor oracle is trained on.
        oracle_epochs, cnn_epochs: training epochs of the two CNNs.
        top_k: W1 concepts checked for validity.
        strength: edit size in standard deviations of Ψ.
        n_edit: images edited per concept.
        n_spurious_train, n_spurious_test: split sizes of the debugging experiment (smile task).
        spurious_correlation: P(spurious == y) in its training split.
        extra_debug_tasks: further ``(class_factor, n_train)`` debugging tasks reported beside
            the default one (a harder class factor and less data, where the shortcut costs more).
        seed: base seed of the evaluation data.
        batch_size: images per network call.
        n_edit_strength: held-out images of the edit-strength measurement (top-k W1, top-k
            XGBoost importance and k random concepts; 0 skips it).
        edit_strength: its edit size in standard deviations of Ψ.
    """

    n_recon: int = 1000
    n_train: int = 4000
    n_test: int = 1000
    n_oracle: int = 10000
    oracle_epochs: int = 10
    cnn_epochs: int = 6
    top_k: int = 5
    strength: float = 2.0
    n_edit: int = 200
    n_spurious_train: int = 4000
    n_spurious_test: int = 1000
    spurious_correlation: float = 0.9
    extra_debug_tasks: tuple[tuple[str, int], ...] = (("eye_size", 1000),)
    seed: int = 1000
    batch_size: int = 128
    n_edit_strength: int = 16
    edit_strength: float = 10.0

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------- provenance
def trained_on_concept_world(inv: Any) -> bool:
    """Whether an inverter's checkpoint options say it was trained on the concept world.

    True when ``inv.opts`` (kept by :func:`img2tab.load_inverter`) has ``concept_world: true``
    (written by img2tab's trainers), a ``dataset_type`` starting with ``concept_world`` (the
    embedded default) or a ``data`` spec starting with ``world`` (a trainer's config); False
    otherwise, including inverters built in memory without options.
    """
    opts = getattr(inv, "opts", None) or {}
    if opts.get("concept_world") is not None:
        return bool(opts["concept_world"])
    return (str(opts.get("dataset_type", "")).startswith("concept_world")
            or str(opts.get("data", "")).startswith("world"))


NOT_WORLD_WARNING = (
    "this model's options do not say it was trained on the concept world (no 'concept_world' "
    "flag, dataset_type 'concept_world_*' or data 'world:...'): the bars below measure it on "
    "rendered cartoon faces unlike its training data, so a low PSNR or accuracy here says nothing "
    "about its own images; measure those with `img2tab evaluate --data FOLDER`")


# ---------------------------------------------------------------------------- encoding
def encode_images(inv: Inverter, images: torch.Tensor, batch_size: int = 128,
                  progress: bool = False, desc: str = "encode") -> tuple[np.ndarray, torch.Tensor]:
    """Deprecated: use ``inv.encode_psi(images, batch_size=..., progress=...)``.

    Returns Ψ ``[N, D]`` (float32 numpy) and W+ ``[N, n_latent, style_dim]`` (CPU tensor).
    """
    warnings.warn("encode_images is deprecated; use Inverter.encode_psi(images, batch_size=..., "
                  "progress=...)", DeprecationWarning, stacklevel=2)
    return inv.encode_psi(images, batch_size=batch_size, progress=progress, desc=desc)


# ---------------------------------------------------------------------------- reconstruction
@torch.no_grad()
def reconstruction_quality(inv: Inverter, images: torch.Tensor, batch_size: int = 128,
                           progress: bool = False) -> tuple[dict[str, float], torch.Tensor]:
    """PSNR (dB, on [0, 1]) and SSIM of reconstructions ``G(E(x))``.

    Args:
        inv: the inverter.
        images: ``[N, 3, H, W]`` in [-1, 1] at the generator's resolution.

    Returns:
        ``({"psnr_mean", "psnr_std", "psnr_min", "ssim_mean", "n"}, reconstructions)``.
    """
    recs, psnrs, ssims = [], [], []
    for i in tqdm(range(0, len(images), batch_size), desc="reconstruct", disable=not progress,
                  leave=False):
        x = images[i:i + batch_size]
        y = inv.reconstruct(x).clamp(-1, 1).float().to(x.device)
        if y.shape[-1] != x.shape[-1]:
            y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False,
                              antialias=True)
        psnrs.append(psnr(y, x, data_range=2.0))
        ssims.append(ssim(y, x))
        recs.append(y)
    p, s = torch.cat(psnrs), torch.cat(ssims)
    stats = {"psnr_mean": float(p.mean()), "psnr_std": float(p.std()), "psnr_min": float(p.min()),
             "ssim_mean": float(s.mean()), "n": len(images)}
    return stats, torch.cat(recs)


# ---------------------------------------------------------------------------- factor probes
def _factor_target(f: Factor, values: np.ndarray) -> np.ndarray:
    return values.astype(np.int64) if f.is_categorical else values.astype(np.float64)


def factor_probes(
    psi_train: np.ndarray,
    factors_train: dict[str, np.ndarray],
    psi_test: np.ndarray,
    factors_test: dict[str, np.ndarray],
    r2_bar: float = 0.8,
    acc_bar: float = 0.9,
) -> list[dict[str, Any]]:
    """Held-out linear probes from Ψ to every ground-truth factor.

    Continuous factors: ridge regression, R² on the test split; categorical: multinomial logistic
    regression, accuracy. Ψ is z-scored with the training statistics.

    Returns:
        One dict per factor: ``factor, kind, metric, value, bar, passed``.
    """
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.metrics import accuracy_score, r2_score

    from ..tabular import standardize

    z_tr, mean, std = standardize(psi_train)
    z_te, _, _ = standardize(psi_test, mean, std)
    rows = []
    for f in FACTORS:
        ytr = _factor_target(f, factors_train[f.name])
        yte = _factor_target(f, factors_test[f.name])
        if f.is_categorical:
            model = LogisticRegression(C=0.1, max_iter=2000).fit(z_tr, ytr)
            value, metric, bar = accuracy_score(yte, model.predict(z_te)), "accuracy", acc_bar
        else:
            model = RidgeCV(alphas=np.logspace(-1, 4, 11)).fit(z_tr, ytr)
            value, metric, bar = r2_score(yte, model.predict(z_te)), "r2", r2_bar
        rows.append({"factor": f.name, "kind": f.kind, "metric": metric, "value": float(value),
                     "bar": bar, "passed": bool(value >= bar)})
    return rows


# ---------------------------------------------------------------------------- pixel baseline
def pixel_cnn_accuracy(x_train: torch.Tensor, y_train: np.ndarray, x_test: torch.Tensor,
                       y_test: np.ndarray, epochs: int = 6, batch_size: int = 64, seed: int = 0,
                       progress: bool = False) -> float:
    """Test accuracy of a :class:`~img2tab.networks.cnn.SmallCNN` trained on the pixels
    (``[N, 3, H, W]`` in [-1, 1]); the baseline for Img2Tab's accuracy."""
    yt = torch.as_tensor(np.asarray(y_train), dtype=torch.float32)
    with torch.random.fork_rng(devices=[]):  # seeded initialisation, caller's RNG untouched
        torch.manual_seed(seed)
        model = SmallCNN(x_train.shape[-1], 1)
    fit_cnn(model, x_train, lambda out, idx: F.binary_cross_entropy_with_logits(
        out[:, 0], yt[idx]), epochs, batch_size, seed, progress, "pixel CNN")
    with torch.no_grad():
        logits = torch.cat([model(x_test[i:i + 256])[:, 0] for i in range(0, len(x_test), 256)])
    return float(((logits > 0).numpy().astype(int) == np.asarray(y_test)).mean())


# ---------------------------------------------------------------------------- debugging
def spurious_debugging(
    inv: Inverter,
    size: int,
    n_train: int = 4000,
    n_test: int = 1000,
    correlation: float = 0.9,
    seed: int = 2000,
    classifier: Any = None,
    class_factor: str = "smile",
    n_val: int | None = None,
    batch_size: int = 128,
    progress: bool = False,
    ratios: tuple[float, ...] | None = None,
    spurious: str = "background_hue",
    max_accuracy_drop: float = 0.01,
    *,
    budget_fraction: float = 0.1,
    n_random: int = 5,
    curve_budgets: tuple[int, ...] | None = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
    erase: bool = True,
    random_state: int = 0,
) -> dict[str, Any]:
    """The spurious-concept debugging experiment, with controls.

    A classifier is trained on a split where the spurious factor (default background hue, warm /
    cool; any factor other than the class one) agrees with the class in ``correlation`` of the
    images, and tested in-distribution (same correlation) and on a decorrelated split
    (independent). Debugging variants, each retrained on the training split only:

    * ``after``: exclude the concepts flagged by :func:`~img2tab.tabular.flag_spurious_concepts`,
      strictness chosen by :func:`~img2tab.tabular.tune_spurious_exclusion` on a validation
      split from the training distribution (no test data), without a budget;
    * ``budget``: the same search with at most ``budget_fraction`` of the concepts excluded;
    * ``erase``: linear concept erasure (LEACE, within classes) of the nuisance from Ψ
      (:func:`~img2tab.tabular.erase_spurious`): one subspace, every concept kept;
    * ``fixed``: the library's fixed default flagging (``min_w1=0.25, ratio=1``).

    Every exclusion / erasure variant has a random control scored on the same test splits: the
    same number of random concepts excluded (or random subspaces of the same rank erased),
    ``n_random`` draws from a seeded local generator, mean ± sd. With ``curve_budgets`` the
    gain-versus-budget curve (flagged order against random order) is measured on the decorrelated
    test split. The *ceiling* is the same classifier trained on an equally large split where the
    spurious factor is already independent of the class: ``ceiling - before`` is the gain the
    task leaves on the table.

    Returns:
        ``before`` / ``fixed`` / ``after`` / ``budget`` / ``erase`` / ``ceiling`` accuracies
        (``decorrelated``, ``iid``, ``decorrelated_worst_group``), ``controls`` (per variant:
        mean / sd of the same accuracies over the random draws), ``n_features``, per variant the
        number of excluded and kept concepts, the gains, the search scores, the curve, the
        flagged concepts and the models.
    """
    from sklearn.base import clone

    from ..tabular import (
        DEFAULT_RATIOS,
        ConceptClassifier,
        erase_spurious,
        exclusion_curve,
        flag_spurious_concepts,
        group_accuracies,
        random_exclusions,
        tune_spurious_exclusion,
    )
    from ..tabular._debugging import _mean_sd
    from ._tasks import make_task

    n_val = n_val if n_val is not None else max(200, n_train // 2)
    task = {"size": size, "class_factor": class_factor, "spurious": spurious}
    train, test_dec = make_spurious_splits(n_train, n_test, seed=seed, train_correlation=correlation,
                                           test_correlation=0.5, **task)
    val, test_iid = make_spurious_splits(n_val, n_test, seed=seed + 1, train_correlation=correlation,
                                         test_correlation=correlation, **task)
    fair = make_task(n_train, seed=seed + 2, spurious_correlation=0.5, **task)
    splits = {"train": train, "val": val, "decorrelated": test_dec, "iid": test_iid, "fair": fair}
    psi = {name: inv.encode_psi(sp.to_tensor(), batch_size=batch_size, progress=progress,
                                desc=f"encode {name}", with_w=False)[0]
           for name, sp in splits.items()}
    d = int(psi["train"].shape[1])
    base = classifier if classifier is not None else ConceptClassifier(random_state=0)
    budget = max(1, int(budget_fraction * d))
    common = {"ratios": ratios or DEFAULT_RATIOS, "max_accuracy_drop": max_accuracy_drop,
              "layout": inv.layout, "progress": progress, "n_random": 0}
    search = tune_spurious_exclusion(base, psi["train"], train.y, train.spurious, psi["val"], val.y,
                                     val.spurious, **common)
    budgeted = tune_spurious_exclusion(base, psi["train"], train.y, train.spurious, psi["val"], val.y,
                                       val.spurious, max_excluded=budget, **common)
    fixed_table = flag_spurious_concepts(psi["train"], train.y, train.spurious, layout=inv.layout)
    fixed_ex = [int(k) for k in fixed_table.features]
    models = {
        "before": search.baseline,
        "fixed": (clone(base).set_params(masked_features=fixed_ex).fit(psi["train"], train.y)
                  if fixed_ex else search.baseline),
        "after": search.classifier,
        "budget": budgeted.classifier,
        "ceiling": clone(base).fit(psi["fair"], fair.y),
    }
    erasure = None
    if erase:
        erasure = erase_spurious(base, psi["train"], train.y, train.spurious, n_random=n_random,
                                 random_state=random_state, baseline=search.baseline)
        models["erase"] = erasure.classifier

    def scores(c: Any) -> dict[str, float]:
        dec = group_accuracies(c, psi["decorrelated"], test_dec.y, test_dec.groups)
        iid = float((c.predict(psi["iid"]) == test_iid.y).mean())
        return {"decorrelated": dec["accuracy"], "iid": iid, "decorrelated_worst_group": dec["worst_group"]}

    rng = np.random.default_rng(random_state)
    controls: dict[str, Any] = {}
    for name, excluded in (("after", search.excluded), ("budget", budgeted.excluded)):
        if not excluded or n_random <= 0:
            continue
        draws = [scores(clone(base).set_params(masked_features=r.tolist()).fit(psi["train"], train.y))
                 for r in random_exclusions(len(excluded), d, n_random, rng)]
        mean, sd = _mean_sd(draws)
        controls[name] = {"kind": f"{len(excluded)} random concepts excluded", "n_draws": n_random,
                          "mean": mean, "sd": sd}
    if erasure is not None and erasure.random_classifiers:
        mean, sd = _mean_sd([scores(c) for c in erasure.random_classifiers])
        controls["erase"] = {"kind": f"random rank-{erasure.rank} subspace erased",
                             "n_draws": len(erasure.random_classifiers), "mean": mean, "sd": sd}
    curve: list[dict[str, Any]] = []
    if curve_budgets:
        curve = exclusion_curve(base, psi["train"], train.y, search.order, psi["decorrelated"], test_dec.y,
                                test_dec.groups, tuple(curve_budgets), n_random=n_random, random_state=rng,
                                progress=progress)
        for row in curve:  # keep the plain accuracies; group_<g> keys are noise here
            for key in ("flagged", "random_mean", "random_sd"):
                if row[key] is not None:
                    row[key] = {k: v for k, v in row[key].items() if not k.startswith("group_")}

    out: dict[str, Any] = {
        "class_factor": class_factor,
        "spurious_factor": spurious,
        "n_train": int(n_train),
        "n_val": int(n_val),
        "n_features": d,
        "train_agreement": train.spurious_agreement,
        "test_decorrelated_agreement": test_dec.spurious_agreement,
        "test_iid_agreement": test_iid.spurious_agreement,
        **{name: scores(c) for name, c in models.items()},
        "controls": controls,
        "ratio": search.ratio,
        "search": search.scores,
        "n_excluded": len(search.excluded),
        "excluded": search.excluded,
        "n_excluded_fixed": len(fixed_ex),
        "max_excluded": budget,
        "ratio_budget": budgeted.ratio,
        "n_excluded_budget": len(budgeted.excluded),
        "erased_rank": erasure.rank if erasure is not None else None,
        "curve": curve,
        "flagged": search.flagged,
        "classifier_before": models["before"],
        "classifier_after": models["after"],
    }
    out["n_kept"] = d - out["n_excluded"]
    out["n_kept_budget"] = d - out["n_excluded_budget"]
    for split in ("decorrelated", "iid"):
        out[f"gain_{split}"] = out["after"][split] - out["before"][split]
    out["ceiling_gain_decorrelated"] = out["ceiling"]["decorrelated"] - out["before"]["decorrelated"]
    for name in ("budget", "erase"):
        if name in out:
            out[f"gain_decorrelated_{name}"] = out[name]["decorrelated"] - out["before"]["decorrelated"]
    out["passed"] = bool(out["gain_decorrelated"] >= 0.10 and out["gain_iid"] >= -0.02)
    return out


DEBUG_KEYS: tuple[str, ...] = (
    "class_factor", "spurious_factor", "n_train", "n_val", "n_features", "train_agreement",
    "test_decorrelated_agreement", "test_iid_agreement", "before", "fixed", "after", "budget", "erase",
    "ceiling", "controls", "ratio", "search", "n_excluded", "n_kept", "n_excluded_fixed", "max_excluded",
    "ratio_budget", "n_excluded_budget", "n_kept_budget", "erased_rank", "curve", "gain_decorrelated",
    "gain_iid", "gain_decorrelated_budget", "gain_decorrelated_erase", "ceiling_gain_decorrelated", "passed",
)
"""Keys of :func:`spurious_debugging`'s result that are plain data."""


def debug_summary(dbg: dict[str, Any], layout: Any = None) -> dict[str, Any]:
    """The plain-data part of a :func:`spurious_debugging` result, JSON-ready (``inf`` -> None)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float | np.floating):
            return float(v) if np.isfinite(v) else None
        if isinstance(v, np.integer):
            return int(v)
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    out = {k: clean(dbg[k]) for k in DEBUG_KEYS if k in dbg}
    if layout is not None:
        out["excluded_labels"] = [layout.label(k) for k in dbg["excluded"][:20]]
    return out


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``(fn(*args, **kwargs), seconds)``."""
    t = time.perf_counter()
    r = fn(*args, **kwargs)
    return r, time.perf_counter() - t


# ---------------------------------------------------------------------------- full run
def _fmt(v: float, nd: int = 3) -> str:
    return f"{v:.{nd}f}"


def run_evaluation(
    inv: Inverter,
    out_dir: str | Any,
    config: EvaluationConfig | None = None,
    progress: bool = True,
    classifier: Any = None,
) -> dict[str, Any]:
    """Measure every quality bar of the embedded model and write ``metrics.json``, ``report.md``,
    ``reconstructions.png`` and ``concept_effects.png`` into ``out_dir``.

    Args:
        inv: inverter whose generator renders concept-world images.
        out_dir: output folder.
        config: sizes and seeds.
        progress: progress bars.
        classifier: unfitted concept classifier (default ``ConceptClassifier(random_state=0)``).

    Returns:
        The metrics (also in ``metrics.json``).
    """
    from pathlib import Path

    from sklearn.base import clone

    from ..gallery import plot_effect_matrix, plot_reconstructions
    from ..tabular import ConceptClassifier, rank_by_relevance, wasserstein_relevance
    from ._tasks import make_task

    cfg = config or EvaluationConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    size = inv.generator.size
    world = ConceptWorld(size=size)
    metrics: dict[str, Any] = {"config": cfg.to_dict(), "size": size,
                               "trained_on_concept_world": trained_on_concept_world(inv)}
    if not metrics["trained_on_concept_world"]:
        warnings.warn(NOT_WORLD_WARNING, UserWarning, stacklevel=2)
        metrics["warning"] = NOT_WORLD_WARNING
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    # 1. reconstruction
    held = world.sample(cfg.n_recon, seed=cfg.seed)
    x_held = held.to_tensor()
    (rec_stats, recs), timings["reconstruction"] = timed(
        reconstruction_quality, inv, x_held, cfg.batch_size, progress)
    metrics["reconstruction"] = {**rec_stats, "bar_psnr": 24.0,
                                 "passed": rec_stats["psnr_mean"] >= 24.0}
    fig = plot_reconstructions(x_held[:16], recs[:16])
    atomic_savefig(fig, out / "reconstructions.png", dpi=100, bbox_inches="tight")

    # 2. probes and classification on a balanced task (spurious factor independent)
    tr = make_task(cfg.n_train, seed=cfg.seed + 1, size=size)
    te = make_task(cfg.n_test, seed=cfg.seed + 2, size=size)
    x_tr, x_te = tr.to_tensor(), te.to_tensor()
    (psi_tr, w_tr), timings["encode_train"] = timed(inv.encode_psi, x_tr, batch_size=cfg.batch_size,
                                                    progress=progress, desc="encode train")
    psi_te, w_te = inv.encode_psi(x_te, batch_size=cfg.batch_size, progress=progress,
                                  desc="encode test")
    probes, timings["probes"] = timed(factor_probes, psi_tr, tr.factors, psi_te, te.factors)
    metrics["probes"] = probes
    base = classifier if classifier is not None else ConceptClassifier(random_state=0)
    clf, timings["xgboost"] = timed(clone(base).fit, psi_tr, tr.y)
    img2tab_acc = float((clf.predict(psi_te) == te.y).mean())
    cnn_acc, timings["pixel_cnn"] = timed(pixel_cnn_accuracy, x_tr, tr.y, x_te, te.y,
                                          cfg.cnn_epochs, 64, 0, progress)
    metrics["classification"] = {"task": "smile > 0", "img2tab_xgboost": img2tab_acc,
                                 "pixel_cnn": cnn_acc, "bar": 0.95,
                                 "passed": img2tab_acc >= 0.95}

    # 3. concept validity of the top-k W1 concepts
    w1 = wasserstein_relevance(psi_tr, tr.y)
    top = [int(k) for k in rank_by_relevance(w1)[: cfg.top_k]]
    (oracle, oracle_q), timings["oracle"] = timed(train_factor_oracle, size, cfg.n_oracle,
                                                  cfg.oracle_epochs, cfg.seed + 3, 1000, progress)
    scale = psi_tr.std(0)
    val = concept_validity(inv, w_te[: cfg.n_edit], top, scale, oracle, "smile", cfg.strength,
                           cfg.batch_size)
    layout = inv.layout
    metrics["concept_validity"] = {
        "oracle_quality": oracle_q,
        "concepts": [{**layout.describe(k), "w1": float(w1[k])} for k in top],
        "factors": val["factors"],
        "effect": val["effect"].round(4).tolist(),
        "signed_class_shift": val["signed_class_shift"].round(4).tolist(),
        "moves_class_most": val["moves_class_most"].tolist(),
        "n_valid": val["n_valid"], "bar": 3, "passed": val["n_valid"] >= 3,
        "strength_std": cfg.strength,
    }
    fig = plot_effect_matrix(val["effect"], [layout.label(k) for k in top], val["factors"])
    atomic_savefig(fig, out / "concept_effects.png", dpi=100, bbox_inches="tight")

    # 3b. edit strength of the top-k W1 / importance concepts against random ones
    if cfg.n_edit_strength > 0:
        from ..image_evaluation import edit_strength_section

        n_es = min(cfg.n_edit_strength, len(x_te))
        (es, _, _), timings["edit_strength"] = timed(
            edit_strength_section, inv, x_te[:n_es], psi_tr, tr.y, clf, top_k=cfg.top_k,
            strength=cfg.edit_strength, seed=cfg.seed, batch_size=cfg.batch_size,
            progress=progress, psi=psi_te[:n_es])
        metrics["edit_strength"] = es

    # 4. debugging with a spurious factor
    dbg, timings["debugging"] = timed(spurious_debugging, inv, size, cfg.n_spurious_train,
                                      cfg.n_spurious_test, cfg.spurious_correlation,
                                      cfg.seed + 4, base, batch_size=cfg.batch_size, progress=progress)
    metrics["debugging"] = debug_summary(dbg, layout)
    metrics["debugging_extra"] = []
    for i, (factor, n) in enumerate(cfg.extra_debug_tasks):
        extra, timings[f"debugging_{factor}"] = timed(
            spurious_debugging, inv, size, int(n), cfg.n_spurious_test, cfg.spurious_correlation,
            cfg.seed + 10 + 3 * i, base, class_factor=factor, batch_size=cfg.batch_size,
            progress=progress)
        metrics["debugging_extra"].append(debug_summary(extra, layout))
    timings["total"] = time.perf_counter() - t0
    metrics["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    atomic_write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "report.md", evaluation_markdown(metrics))
    return metrics


def _pm(mean: float | None, sd: float | None) -> str:
    return "n/a" if mean is None else f"{mean:.3f} ± {sd:.3f}"


def debugging_markdown(results: list[dict[str, Any]]) -> list[str]:
    """Lines of markdown tables comparing the debugging variants of each task, with their controls.

    The first table is the decorrelated-test accuracy of every variant with the number of concepts
    it excludes out of ``n_features`` and its random control (same number of random concepts, or
    a random subspace of the same rank: mean ± sd over the draws); the second the accuracies of the
    original variants in detail; then the gain-versus-budget curve of the first task when measured.
    """
    first = results[0]
    d = first.get("n_features")
    lines = [
        "Debugging (the nuisance factor agrees with the class in "
        f"{100 * first['train_agreement']:.0f}% of the training images). Decorrelated-test "
        "accuracy, the number of concepts excluded out of "
        f"{d if d is not None else 'all'} and, in brackets, the same for random exclusions of the "
        "same size (mean ± sd over the draws):", "",
        "| class factor | nuisance | n train | before | tuned exclusion (excluded) [random] | "
        "budget ≤ 10 % (excluded) [random] | LEACE erasure (rank) [random] | ceiling | "
        "gain tuned / budget / LEACE / possible |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def ctl(r: dict[str, Any], name: str) -> str:
        c = r.get("controls", {}).get(name)
        return "" if c is None else f" [{_pm(c['mean']['decorrelated'], c['sd']['decorrelated'])}]"

    def gain(r: dict[str, Any], key: str) -> str:
        v = r.get(key)
        return "n/a" if v is None else f"{100 * v:+.1f}"

    for r in results:
        bud = (f"{r['budget']['decorrelated']:.3f} ({r['n_excluded_budget']}){ctl(r, 'budget')}"
               if "budget" in r else "n/a")
        era = (f"{r['erase']['decorrelated']:.3f} ({r['erased_rank']}){ctl(r, 'erase')}"
               if "erase" in r else "n/a")
        lines.append(
            f"| {r['class_factor']} | {r.get('spurious_factor', 'background_hue')} | {r['n_train']} | "
            f"{r['before']['decorrelated']:.3f} | {r['after']['decorrelated']:.3f} ({r['n_excluded']})"
            f"{ctl(r, 'after')} | {bud} | {era} | {r['ceiling']['decorrelated']:.3f} | "
            f"{gain(r, 'gain_decorrelated')} / {gain(r, 'gain_decorrelated_budget')} / "
            f"{gain(r, 'gain_decorrelated_erase')} / {gain(r, 'ceiling_gain_decorrelated')} points |")
    lines += [
        "", "Accuracy on the decorrelated test split / its worst (class, nuisance) group / the "
        "in-distribution test split:", "",
        "| class factor | nuisance | n train | before | fixed flagging (concepts) | tuned flagging "
        "(concepts, ratio) | ceiling: trained unbiased |",
        "|---|---|---|---|---|---|---|",
    ]

    def acc(r: dict[str, float]) -> str:
        return f"{r['decorrelated']:.3f} / {r['decorrelated_worst_group']:.3f} / {r['iid']:.3f}"

    for r in results:
        ratio = "none" if r["ratio"] is None else f"{r['ratio']:g}"
        lines.append(
            f"| {r['class_factor']} | {r.get('spurious_factor', 'background_hue')} | {r['n_train']} | "
            f"{acc(r['before'])} | {acc(r['fixed'])} ({r['n_excluded_fixed']}) | {acc(r['after'])} "
            f"({r['n_excluded']}, {ratio}) | {acc(r['ceiling'])} |")
    if first.get("curve"):
        lines += ["", f"Gain versus budget ({first['class_factor']} / {first.get('spurious_factor')}): "
                  "decorrelated-test accuracy after excluding the first n flagged concepts, against n "
                  "random ones:", "", "| excluded | flagged order | random order (mean ± sd) |",
                  "|---:|---:|---:|"]
        for row in first["curve"]:
            rm, rs = row.get("random_mean"), row.get("random_sd")
            lines.append(f"| {row['n_excluded']} | {row['flagged']['accuracy']:.3f} | "
                         f"{_pm(rm['accuracy'], rs['accuracy']) if rm else '—'} |")
    if first.get("excluded_labels"):
        lines += ["", f"Tuned exclusion for {first['class_factor']}: first flagged concepts "
                  + ", ".join(first["excluded_labels"][:8]) + "."]
    return lines


def evaluation_markdown(m: dict[str, Any]) -> str:
    """The model-card section for metrics from :func:`run_evaluation`."""
    r, c = m["reconstruction"], m["classification"]
    lines = [f"> **Warning:** {m['warning']}.", ""] if m.get("warning") else []
    lines += [
        f"### Quality bars (measured on held-out concept-world images, {m['size']} px)",
        "",
        "| bar | target | measured | met |",
        "|---|---|---|---|",
        f"| reconstruction PSNR, {r['n']} held-out images | >= 24 dB | {r['psnr_mean']:.2f} dB "
        f"(std {r['psnr_std']:.2f}, min {r['psnr_min']:.2f}); SSIM {r['ssim_mean']:.3f} | "
        f"{'yes' if r['passed'] else 'no'} |",
    ]
    for p in m["probes"]:
        tgt = f">= {p['bar']}"
        lines.append(f"| linear probe Ψ -> {p['factor']} ({p['metric']}) | {tgt} | "
                     f"{p['value']:.3f} | {'yes' if p['passed'] else 'no'} |")
    lines.append(f"| Img2Tab (XGBoost on Ψ) accuracy, {c['task']} | >= 0.95 | "
                 f"{c['img2tab_xgboost']:.3f} (pixel CNN on the same split: {c['pixel_cnn']:.3f}) | "
                 f"{'yes' if c['passed'] else 'no'} |")
    v = m["concept_validity"]
    lines.append(f"| top-5 W1 concepts moving the class factor most | >= 3 of 5 | {v['n_valid']} of "
                 f"{len(v['concepts'])} | {'yes' if v['passed'] else 'no'} |")
    d = m["debugging"]
    lines.append(
        f"| debugging: decorrelated-test accuracy gain | >= +10 points | "
        f"{100 * d['gain_decorrelated']:+.1f} points ({d['before']['decorrelated']:.3f} -> "
        f"{d['after']['decorrelated']:.3f}; a classifier trained without the bias reaches "
        f"{d['ceiling']['decorrelated']:.3f}) | {'yes' if d['gain_decorrelated'] >= 0.10 else 'no'} |")
    lines.append(
        f"| debugging: in-distribution accuracy change | >= -2 points | "
        f"{100 * d['gain_iid']:+.1f} points ({d['before']['iid']:.3f} -> {d['after']['iid']:.3f}) | "
        f"{'yes' if d['gain_iid'] >= -0.02 else 'no'} |")
    lines += ["", "Concept validity: effect of a ±{:.0f} std edit on the oracle's factor readings "
              "(mean |reading(+) - reading(-)|, 0..1 scale):".format(v["strength_std"]), "",
              "| concept | W1 | " + " | ".join(v["factors"]) + " |",
              "|---|---|" + "---|" * len(v["factors"])]
    for con, row in zip(v["concepts"], v["effect"]):
        label = (f"L{con['layer']}c{con['channel']}@{con['resolution']}"
                 f"{'rgb' if con['is_torgb'] else ''} (k={con['feature']})")
        lines.append(f"| {label} | {con['w1']:.2f} | " + " | ".join(f"{e:.3f}" for e in row) + " |")
    if m.get("edit_strength"):
        from ..image_evaluation import edit_strength_markdown

        k = m["config"]["top_k"]
        lines += ["", f"Edit strength (task smile > 0, the XGBoost above; groups: top-{k} W1, "
                  f"top-{k} importance, {k} random concepts):", "",
                  edit_strength_markdown(m["edit_strength"])]
    lines += ["", "Factor oracle quality on 1,000 held-out renders (R² or accuracy): "
              + ", ".join(f"{k} {val:.3f}" for k, val in v["oracle_quality"].items()) + ".",
              ""] + debugging_markdown([d, *m.get("debugging_extra", [])]) + [
              "", "Timings (s): " + ", ".join(f"{k} {val}" for k, val in m["timings_s"].items()) + "."]
    return "\n".join(lines) + "\n"
