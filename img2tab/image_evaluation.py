"""Measure an inverter on the user's own images: ``img2tab evaluate --data FOLDER``.

Where :mod:`img2tab.world.evaluation` measures a model against the concept world's known factors,
this module measures any model on any labelled (or unlabelled) image set:

* reconstruction: PSNR / SSIM of ``G(E(x))`` against ``x`` per image, summarised, with the worst
  images listed by id;
* linear probe: held-out accuracy of a logistic regression on z-scored Ψ for the labels (stratified
  split, its sizes and the majority-class baseline reported beside it);
* edit strength (:mod:`img2tab.edit_strength`): the pixel and classifier effect of ±``strength``
  sd edits of the top-k W1 concepts and the top-k importance concepts of an XGBoost fitted on the
  training split, against random concepts as the control, on held-out images;
* figures: inputs above their reconstructions (the worst included) and one held-out image with its
  top concepts edited, input beside reconstruction.

:func:`evaluate_images` writes ``metrics.json``, ``report.md`` and the figures atomically.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ._atomic import atomic_savefig, atomic_write_json, atomic_write_text
from ._json import jsonable
from .errors import Img2TabInputError
from .metrics import psnr, ssim
from .networks.inverter import Inverter

__all__ = [
    "ImageEvaluationConfig",
    "edit_strength_markdown",
    "edit_strength_section",
    "evaluate_images",
    "image_evaluation_markdown",
    "linear_probe",
    "per_image_reconstruction",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageEvaluationConfig:
    """Sizes and seeds of an own-data evaluation.

    Attributes:
        test_size: share of the labelled images held out (stratified split) for the probe, the
            XGBoost accuracy and the edit-strength images.
        seed: seed of the split, of the random control concepts and of the classifier.
        probe_c: inverse L2 strength of the logistic-regression probe (on z-scored Ψ).
        top_k: concepts per group (top-k W1, top-k importance, k random).
        strength: edit strength in standard deviations of Ψ (over the training split).
        n_edit: held-out images edited per concept for the edit strength.
        n_worst: worst reconstructions listed and shown.
        n_show: further images shown in the reconstruction figure.
        xgb_trees: trees of the XGBoost fitted on Ψ for the importance group.
        batch_size: images per network call.
    """

    test_size: float = 0.25
    seed: int = 0
    probe_c: float = 0.1
    top_k: int = 5
    strength: float = 10.0
    n_edit: int = 16
    n_worst: int = 5
    n_show: int = 8
    xgb_trees: int = 100
    batch_size: int = 32

    def __post_init__(self) -> None:
        if not 0.0 < self.test_size < 1.0:
            raise Img2TabInputError(f"test_size must lie in (0, 1), got {self.test_size}")
        for name in ("top_k", "n_edit", "batch_size", "xgb_trees"):
            if int(getattr(self, name)) < 1:
                raise Img2TabInputError(f"{name} must be >= 1, got {getattr(self, name)}")


# ---------------------------------------------------------------------------- reconstruction
@torch.no_grad()
def per_image_reconstruction(
    inv: Inverter, images: torch.Tensor, batch_size: int = 32, progress: bool = False
) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """PSNR (dB, images in [-1, 1]) and SSIM of ``G(E(x))`` against ``x``, per image.

    Args:
        inv: the inverter.
        images: ``[N, 3, H, W]`` in [-1, 1]; reconstructions are resized to ``H x W`` when the
            generator renders another size.
        batch_size: images per call.

    Returns:
        ``(psnr [N], ssim [N], reconstructions [N, 3, H, W] on the CPU)``.
    """
    recs, ps, ss = [], [], []
    for i in tqdm(range(0, len(images), batch_size), desc="reconstruct", disable=not progress,
                  leave=False):
        x = images[i:i + batch_size].float()
        y = inv.reconstruct(x).clamp(-1, 1).float().cpu()
        if y.shape[-2:] != x.shape[-2:]:
            y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False,
                              antialias=True)
        ps.append(psnr(y, x, data_range=2.0))
        ss.append(ssim(y, x))
        recs.append(y)
    return torch.cat(ps).numpy(), torch.cat(ss).numpy(), torch.cat(recs)


# ---------------------------------------------------------------------------- probe
def _split(y: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Indices of a (stratified when possible) train / test split; whether it is stratified."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    _, counts = np.unique(y, return_counts=True)
    n_test = int(np.ceil(test_size * len(y)))
    stratify = counts.min() >= 2 and n_test >= len(counts) and len(y) - n_test >= len(counts)
    tr, te = train_test_split(idx, test_size=test_size, random_state=seed,
                              stratify=y if stratify else None)
    return np.sort(tr), np.sort(te), bool(stratify)


def linear_probe(psi_train: np.ndarray, y_train: np.ndarray, psi_test: np.ndarray,
                 y_test: np.ndarray, c: float = 0.1) -> dict[str, Any]:
    """Held-out accuracy of a logistic regression on Ψ z-scored with the training statistics.

    Args:
        psi_train, psi_test: ``(N, D)`` Ψ rows.
        y_train, y_test: ``(N,)`` integer class codes.
        c: inverse L2 regularisation strength.

    Returns:
        ``accuracy``, ``balanced_accuracy``, ``majority_baseline`` (accuracy of always predicting
        the most frequent training class), ``n_train``, ``n_test``, ``c``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score

    from .tabular import standardize

    z_tr, mean, std = standardize(psi_train)
    z_te, _, _ = standardize(psi_test, mean, std)
    model = LogisticRegression(C=c, max_iter=2000).fit(z_tr, y_train)
    pred = model.predict(z_te)
    vals, counts = np.unique(y_train, return_counts=True)
    majority = vals[np.argmax(counts)]
    return {"accuracy": float((pred == y_test).mean()),
            "balanced_accuracy": float(balanced_accuracy_score(y_test, pred)),
            "majority_baseline": float((y_test == majority).mean()),
            "n_train": len(y_train), "n_test": len(y_test), "c": c}


# ---------------------------------------------------------------------------- full run
def _label_codes(labels: Any) -> tuple[np.ndarray, list[Any]]:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise Img2TabInputError(f"labels must be 1-D, got shape {arr.shape}")
    classes, codes = np.unique(arr, return_inverse=True)
    if len(classes) < 2:
        raise Img2TabInputError(f"labels have a single class ({classes[0]!r}); a probe needs two or more")
    return codes.astype(np.int64), [c.item() if isinstance(c, np.generic) else c for c in classes]


def evaluate_images(
    inv: Inverter,
    images: torch.Tensor,
    out_dir: str | Path,
    labels: Any = None,
    ids: list[str] | None = None,
    config: ImageEvaluationConfig | None = None,
    *,
    label_name: str = "label",
    classifier: Any = None,
    progress: bool = True,
    world_note: str | None = None,
) -> dict[str, Any]:
    """Evaluate an inverter on images; write ``metrics.json``, ``report.md`` and figures.

    Args:
        inv: the inverter.
        images: ``[N, 3, H, W]`` in [-1, 1] (load with ``img2tab.load_images(folder,
            size=inv.generator.size)``).
        out_dir: output folder (created).
        labels: ``(N,)`` class labels (any values ``np.unique`` sorts), or ``None`` (or entries
            are ``None``) for images without one: reconstruction only uses every image, the probe
            and the edit strength the labelled ones.
        ids: one name per image for the report (default ``image[i]``).
        config: sizes and seeds.
        label_name: what the labels are, for the report.
        classifier: unfitted concept classifier for the importance group (default XGBoost,
            ``config.xgb_trees`` trees).
        progress: progress bars.
        world_note: a sentence about the concept-world bars (run or skipped) for the report.

    Returns:
        The metrics written to ``metrics.json``.
    """
    from sklearn.base import clone

    from .edits import edit
    from .gallery import concept_label, plot_edit_grid, plot_reconstructions

    cfg = config or ImageEvaluationConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = len(images)
    if n == 0:
        raise Img2TabInputError("no images to evaluate")
    ids = [f"image[{i}]" for i in range(n)] if ids is None else [str(i) for i in ids]
    if len(ids) != n:
        raise Img2TabInputError(f"{len(ids)} ids for {n} images")
    inv.eval()
    layout = inv.layout
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    m: dict[str, Any] = {"config": asdict(cfg), "n_images": n, "size": int(images.shape[-1]),
                         "generator_size": int(inv.generator.size), "n_features": layout.total,
                         "model": (Path(inv.source_path).name
                                   if getattr(inv, "source_path", None) else None)}

    # 1. reconstruction
    t = time.perf_counter()
    p, s, recs = per_image_reconstruction(inv, images, cfg.batch_size, progress)
    timings["reconstruction"] = time.perf_counter() - t
    worst = np.argsort(p, kind="stable")[: cfg.n_worst]
    m["reconstruction"] = {
        "psnr_mean": float(p.mean()), "psnr_std": float(p.std()), "psnr_median": float(np.median(p)),
        "psnr_min": float(p.min()), "ssim_mean": float(s.mean()), "ssim_min": float(s.min()),
        "n": n,
        "worst": [{"id": ids[i], "psnr": float(p[i]), "ssim": float(s[i])} for i in worst],
    }

    # 2. labels: which images have one
    has_labels = labels is not None
    if has_labels:
        raw = list(labels)
        if len(raw) != n:
            raise Img2TabInputError(f"{len(raw)} labels for {n} images")
        keep = np.array([v is not None for v in raw])
        m["n_labelled"] = int(keep.sum())
        has_labels = keep.sum() >= 4
        if not has_labels:
            m["labels_note"] = f"only {int(keep.sum())} labelled image(s): probe and edit strength skipped"
    if has_labels:
        lab_idx = np.flatnonzero(keep)
        codes, classes = _label_codes(np.asarray([raw[i] for i in lab_idx]))
        m["label"] = {"name": label_name, "classes": classes,
                      "counts": np.bincount(codes, minlength=len(classes)).tolist()}
        t = time.perf_counter()
        psi, w = inv.encode_psi(images[lab_idx], batch_size=cfg.batch_size, progress=progress,
                                desc="encode")
        timings["encode"] = time.perf_counter() - t
        tr, te, stratified = _split(codes, cfg.test_size, cfg.seed)
        m["split"] = {"n_train": len(tr), "n_test": len(te), "test_size": cfg.test_size,
                      "stratified": stratified, "seed": cfg.seed,
                      "how": f"{'stratified ' if stratified else ''}random split of the "
                             f"{len(codes)} labelled images (sklearn train_test_split, "
                             f"test_size={cfg.test_size:g}, random_state={cfg.seed})"}
        t = time.perf_counter()
        m["probe"] = linear_probe(psi[tr], codes[tr], psi[te], codes[te], cfg.probe_c)
        timings["probe"] = time.perf_counter() - t

        # 3. XGBoost on Ψ, concept groups and edit strength
        from .tabular import ConceptClassifier

        base = classifier if classifier is not None else ConceptClassifier(
            params={"n_estimators": cfg.xgb_trees, "max_depth": 4, "learning_rate": 0.1,
                    "n_jobs": 1}, random_state=cfg.seed, device="cpu")
        t = time.perf_counter()
        clf = clone(base).fit(psi[tr], codes[tr])
        timings["classifier"] = time.perf_counter() - t
        m["classifier"] = {"accuracy": float((clf.predict(psi[te]) == codes[te]).mean()),
                           "model": str(getattr(base, "model", type(base).__name__))}
        t = time.perf_counter()
        es, groups, scale = edit_strength_section(
            inv, images[lab_idx][te[: cfg.n_edit]], psi[tr], codes[tr], clf, top_k=cfg.top_k,
            strength=cfg.strength, seed=cfg.seed, batch_size=cfg.batch_size, progress=progress,
            psi=psi[te[: cfg.n_edit]])
        timings["edit_strength"] = time.perf_counter() - t
        m["edit_strength"] = es

        # 4. figure: one held-out image, its top concepts (W1 first, then importance) edited
        i0 = int(lab_idx[te[0]])
        shown = list(dict.fromkeys([int(k) for k in groups["w1"]] + [int(k) for k in
                                                                        groups["importance"]]))
        shown = shown[: 2 * cfg.top_k]
        g = edit(inv.generator, w[te[:1]], shown, (-cfg.strength, cfg.strength), scale=scale)
        cls = int(clf.predict(psi[te[:1]])[0])
        p_src = float(clf.predict_proba(g.psi.numpy())[0, cls])
        p_ed = clf.predict_proba(g.edited_psi.reshape(-1, layout.total).numpy())[:, cls]
        top_w1, top_imp = set(groups["w1"]), set(groups["importance"])
        tags = ["+".join(t for t, member in (("W1", k in top_w1), ("imp.", k in top_imp)) if member)
                for k in shown]
        fig = plot_edit_grid(g.source[0], g.images[0], [concept_label(layout, k, tg)
                                                         for k, tg in zip(shown, tags)],
                             (-cfg.strength, cfg.strength), p_src,
                             p_ed.reshape(len(shown), 2),
                             class_name=f"p({label_name}={classes[cls]})",
                             original=images[i0])
        atomic_savefig(fig, out / "edits.png", dpi=100)
        m["edits_figure"] = {"image": ids[i0], "concepts": shown, "class": classes[cls]}
    elif labels is None:
        m["labels_note"] = "no labels given: probe and edit strength skipped"

    # reconstruction figure: the worst images, then the first others
    order = list(worst) + [i for i in range(n) if i not in set(worst.tolist())][: cfg.n_show]
    fig = plot_reconstructions(images[order], recs[order], ncols=min(8, len(order)),
                               titles=[f"{'worst ' if j < len(worst) else ''}{p[i]:.1f} dB"
                                       for j, i in enumerate(order)])
    atomic_savefig(fig, out / "reconstructions.png", dpi=100)
    m["world"] = world_note
    timings["total"] = time.perf_counter() - t0
    m["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    atomic_write_json(out / "metrics.json", m)
    atomic_write_text(out / "report.md", image_evaluation_markdown(m))
    return m


def image_evaluation_markdown(m: dict[str, Any]) -> str:
    """The markdown report of :func:`evaluate_images` metrics."""
    r = m["reconstruction"]
    lines = [f"# Evaluation on {m['n_images']} images ({m['size']} px)", ""]
    if m.get("model"):
        lines += [f"Model: `{m['model']}`; Ψ has {m['n_features']} StyleSpace channels.", ""]
    if m.get("world"):
        lines += [f"> {m['world']}", ""]
    lines += [
        "## Reconstruction", "",
        f"PSNR {r['psnr_mean']:.2f} dB (sd {r['psnr_std']:.2f}, median {r['psnr_median']:.2f}, "
        f"min {r['psnr_min']:.2f}); SSIM {r['ssim_mean']:.3f} (min {r['ssim_min']:.3f}), over "
        f"{r['n']} images.", "",
        "| worst images | PSNR (dB) | SSIM |", "|---|---:|---:|",
    ]
    lines += [f"| {w['id']} | {w['psnr']:.2f} | {w['ssim']:.3f} |" for w in r["worst"]]
    lines += ["", "![reconstructions](reconstructions.png)", ""]
    if "probe" not in m:
        lines += [f"Probe and edit strength: {m.get('labels_note', 'skipped')}.", ""]
        return "\n".join(lines)
    pr, sp, lab = m["probe"], m["split"], m["label"]
    lines += [
        "## Linear probe of Ψ", "",
        f"Labels `{lab['name']}`: classes " + ", ".join(f"{c} ({k})" for c, k in
                                                        zip(lab["classes"], lab["counts"]))
        + f". Split: {sp['how']}: {sp['n_train']} training, {sp['n_test']} held-out images.", "",
        "| measure | held-out value |", "|---|---:|",
        f"| logistic regression on z-scored Ψ (C = {pr['c']:g}), accuracy | {pr['accuracy']:.3f} |",
        f"| the same, balanced accuracy | {pr['balanced_accuracy']:.3f} |",
        f"| always the majority class | {pr['majority_baseline']:.3f} |",
        f"| XGBoost on Ψ (the importance group's classifier), accuracy | "
        f"{m['classifier']['accuracy']:.3f} |", "",
    ]
    es = m["edit_strength"]
    lines += ["## Edit strength", "", edit_strength_markdown(es), "",
              "![edits](edits.png)", "",
              f"*Held-out image {m['edits_figure']['image']}: input, reconstruction, and its top "
              f"concepts edited by ±{m['config']['strength']:g} sd, with the XGBoost's "
              f"p({m['label']['name']}={m['edits_figure']['class']}) on the edited Ψ.*", ""]
    if m.get("labels_note"):
        lines += [m["labels_note"], ""]
    lines.append("Timings (s): " + ", ".join(f"{k} {v}" for k, v in m["timings_s"].items()) + ".")
    return "\n".join(lines) + "\n"


def edit_strength_section(
    inv: Inverter,
    images: torch.Tensor,
    psi_train: np.ndarray,
    y_train: np.ndarray,
    classifier: Any,
    *,
    top_k: int = 5,
    strength: float = 10.0,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool = False,
    psi: np.ndarray | None = None,
) -> tuple[dict[str, Any], dict[str, list[int]], np.ndarray]:
    """Edit strength of the top-k W1, top-k importance and k random concepts, as plain data.

    W1 is measured on the training split (for three or more classes, each concept's largest
    one-vs-rest W1); importance is the fitted classifier's recommended importance (total gain for
    XGBoost); the random control draws ``top_k`` other concepts with ``seed``. Edits are
    ``±strength`` standard deviations of Ψ over the training split, on ``images``.

    Args:
        inv: the inverter.
        images: ``[n, 3, H, W]`` held-out images to edit.
        psi_train, y_train: ``[N, D]`` training Ψ and ``[N]`` labels (for W1 and the scale).
        classifier: fitted classifier on Ψ (``predict_proba``).
        psi: Ψ of ``images`` when already encoded.

    Returns:
        ``(EditStrength.to_dict() with each concept's layout description under "layout" and its
        W1 under "w1", as plain JSON data (NaN as "nan"), groups, scale [D])``.
    """
    from .edit_strength import concept_groups, measure_edit_strength, psi_scale
    from .tabular import importance_vector, wasserstein_relevance

    w1 = np.asarray(wasserstein_relevance(psi_train, y_train))
    if w1.ndim == 2:
        w1 = w1.max(0)
    imp = importance_vector(classifier, "recommended")
    groups = concept_groups(w1, imp, top_k=top_k, n_random=top_k, seed=seed)
    scale = psi_scale(psi_train)
    es = measure_edit_strength(inv, images, classifier, groups, scale=scale, strength=strength,
                               batch_size=batch_size, progress=progress, psi=psi)
    d = es.to_dict()
    d["scale"] = "sd of Ψ over the training split"
    layout = inv.layout
    for row in d["concepts"]:
        row["layout"] = layout.describe(int(row["concept"]))
        row["w1"] = float(w1[row["concept"]])
    return jsonable(d), groups, scale


def _num(v: Any, fmt: str) -> str:
    return format(v, fmt) if isinstance(v, int | float) and np.isfinite(v) else "n/a"


def edit_strength_markdown(es: dict[str, Any]) -> str:
    """Markdown tables of an edit-strength result (``EditStrength.to_dict()``, as written to
    ``metrics.json``): the per-group summary, then every concept."""
    lines = [f"Edits at ±{es['strength']:g} sd (scale: {es['scale']}) on {es['n_images']} "
             "images, averaged over both signs. |Δx| in [0, 1] units against the unedited "
             "re-rendering; locality = share of the change in the 10 % most-changed pixels (0.1 = "
             "spread evenly); |Δp| and flip rate on the round trip (render, re-encode, classify); "
             "|Δp| Ψ = the classifier on the edited Ψ directly.", "",
             "| group | concepts | mean abs dx | pixels > 2/255 | locality | mean abs dp | "
             "flip rate | mean abs dp (Ψ) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for g, s in es["summary"].items():
        lines.append(f"| {g} | {int(s['n_concepts'])} | {_num(s['mean_abs_dx'], '.4f')} | "
                     f"{_num(s['frac_changed'], '.3f')} | {_num(s['locality'], '.2f')} | "
                     f"{_num(s['mean_abs_dp'], '.3f')} | {_num(s['flip_rate'], '.3f')} | "
                     f"{_num(s['mean_abs_dp_psi'], '.3f')} |")
    lines += ["", "| concept | groups | W1 | mean abs dx | pixels > 2/255 | mean abs dp | "
              "mean abs dp (Ψ) |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in es["concepts"]:
        name = r.get("name", str(r["concept"]))
        lines.append(f"| {name} (k={r['concept']}) | {', '.join(r['groups'])} | "
                     f"{_num(r.get('w1', float('nan')), '.2f')} | {_num(r['mean_abs_dx'], '.4f')} | "
                     f"{_num(r['frac_changed'], '.3f')} | {_num(r['mean_abs_dp'], '.3f')} | "
                     f"{_num(r['mean_abs_dp_psi'], '.3f')} |")
    return "\n".join(lines)
