"""``img2tab demo``: the whole Img2Tab flow on the embedded default model, written as a report.

Sections follow the official demo notebook: concept-based prediction, measuring concept
importance, visualising important concepts, presenting concepts with top-5 Wasserstein-1, and
concept-based debugging — plus the paper's classifier choice by relevance and a fairness check.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._atomic import atomic_savefig, atomic_write_text
from ..networks.inverter import Inverter

__all__ = ["DemoConfig", "readme_snippet", "run_demo"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo.

    Attributes:
        n_train, n_test: concept-world images for the classification task (smile vs frown).
        n_spurious_train, n_spurious_test: sizes of the debugging experiment.
        spurious_correlation: P(background warm/cool == class) in its training split.
        top_k: concepts per table / gallery.
        n_explain: test images explained with edits.
        n_gallery: images in the top-W1 gallery.
        strength: edit strength in standard deviations of Ψ.
        xgb_trees: trees of the XGBoost classifiers.
        seed: base seed (the default model was trained on seed 0).
        max_accuracy_drop: classifiers within this accuracy of the best are eligible for the
            choice by relevance.
        n_candidates: concepts per classifier shuffled by the held-out permutation importance.
        debug_model: classifier of the spurious-concept experiment (``"logreg"``: ~1 s per fit, so
            the random controls and the budget curve fit in the demo's time; ``"xgboost"``).
        n_random: random draws of every debugging control.
        curve_budgets: budgets of the gain-versus-budget curve.
        n_edit_strength: test images of the edit-strength measurement (top-k W1, top-k
            importance of the chosen classifier, k random concepts; 0 skips it). Few images keep
            the demo's extra time small.
    """

    n_train: int = 3000
    n_test: int = 1000
    n_spurious_train: int = 3000
    n_spurious_test: int = 1000
    spurious_correlation: float = 0.9
    top_k: int = 5
    n_explain: int = 3
    n_gallery: int = 4
    strength: float = 10.0
    xgb_trees: int = 200
    seed: int = 5000
    max_accuracy_drop: float = 0.01
    n_candidates: int = 50
    debug_model: str = "logreg"
    n_random: int = 5
    curve_budgets: tuple[int, ...] = (2, 20, 200, 2000)
    n_edit_strength: int = 6


def _save(fig: Any, path: Path) -> str:
    atomic_savefig(fig, path, dpi=100, bbox_inches="tight")
    return path.name


def run_demo(
    out_dir: str | Path = "demo_report",
    inverter: Inverter | None = None,
    config: DemoConfig | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the Img2Tab demo and write ``report.md``, ``metrics.json`` and PNG figures.

    Args:
        out_dir: report folder (created).
        inverter: defaults to :func:`img2tab.load_default`.
        config: sizes.
        progress: progress bars / log lines.

    Returns:
        The metrics written to ``metrics.json``.
    """
    from tqdm.auto import tqdm

    from ..default import load_default
    from ..edits import edit
    from ..gallery import concept_label, plot_edit_grid, plot_w1_gallery
    from ..image_evaluation import edit_strength_section
    from ..model import Img2Tab
    from ..tabular import (
        ConceptClassifier,
        compare_classifiers,
        debug_classifier,
        plot_classifier_comparison,
        plot_concept_density,
        plot_debug_report,
        plot_importance,
        plot_importance_vs_relevance,
        plot_relevance,
        rank_by_relevance,
        select_classifier,
        suggest_exclusions,
        top_concepts,
        wasserstein_relevance,
    )
    from ._tasks import make_task
    from .evaluation import debug_summary, spurious_debugging

    cfg = config or DemoConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    steps = tqdm(total=9, desc="img2tab demo", disable=not progress)

    def step(msg: str) -> None:
        logger.info("[%5.1fs] %s", time.perf_counter() - t0, msg)
        steps.set_postfix_str(msg)
        steps.update(1)

    inv = inverter if inverter is not None else load_default()
    inv.eval()
    size = inv.generator.size
    layout = inv.layout
    figs: dict[str, str] = {}
    m: dict[str, Any] = {"config": asdict(cfg), "size": size, "n_features": layout.total}

    # 1. data
    train = make_task(cfg.n_train, seed=cfg.seed, size=size)
    test = make_task(cfg.n_test, seed=cfg.seed + 1, size=size)
    x_te = test.to_tensor()
    step("rendered the concept world")
    psi_tr, w_tr = inv.encode_psi(train.to_tensor(), batch_size=128, progress=progress,
                                  desc="encode train")
    psi_te, w_te = inv.encode_psi(x_te, batch_size=128, progress=progress, desc="encode test")
    step(f"encoded Ψ ({len(psi_tr)} + {len(psi_te)} images x {layout.total} features)")

    # 2. classifiers and relevance
    xgb = {"n_estimators": cfg.xgb_trees, "max_depth": 6, "learning_rate": 0.1, "n_jobs": 2}
    candidates = {
        "xgboost": ConceptClassifier("xgboost", params=xgb, random_state=0, device="cpu"),
        "logreg": ConceptClassifier("logreg", params={"C": 0.05, "max_iter": 500}, random_state=0),
        "random_forest": ConceptClassifier("random_forest", params={"n_estimators": 200,
                                                                   "n_jobs": 2}, random_state=0),
        "mlp": ConceptClassifier("mlp", params={"hidden_layer_sizes": (128,), "max_iter": 60},
                                 random_state=0),
    }
    fitted = {}
    for name, clf in candidates.items():
        fitted[name] = clf.fit(psi_tr, train.y)
    step("fitted xgboost, logistic regression, random forest and MLP on Ψ")
    w1 = wasserstein_relevance(psi_tr, train.y)
    t_perm = time.perf_counter()
    comparison = compare_classifiers(fitted, psi_te, test.y, w1, k=20, n_candidates=cfg.n_candidates)
    m["permutation_seconds"] = round(time.perf_counter() - t_perm, 1)
    chosen, reason = select_classifier(comparison, max_accuracy_drop=cfg.max_accuracy_drop,
                                       return_reason=True)
    paper = compare_classifiers(fitted, psi_te, test.y, w1, k=20, preset="paper")
    m["comparison"] = comparison.to_dicts()
    m["selected_classifier"] = chosen
    m["selection_reason"] = reason
    m["comparison_paper"] = paper.to_dicts()
    m["selected_classifier_paper"] = select_classifier(paper, preset="paper")
    figs["classifier_comparison"] = _save(plot_classifier_comparison(comparison),
                                          out / "classifier_comparison.png")
    figs["importance_vs_w1"] = _save(plot_importance_vs_relevance(fitted, w1),
                                     out / "importance_vs_w1.png")
    step(f"compared classifiers by accuracy, then the W1 of their important concepts: chose {chosen}")

    # 3. Img2Tab object around the chosen classifier; importance
    model = Img2Tab(inv, candidates[chosen], progress=False).fit(psi_tr, train.y)
    top = top_concepts(model.classifier_, k=cfg.top_k * 4, layout=layout)
    top = top.with_columns(w1=w1[np.asarray(top["feature"])])
    m["accuracy"] = float((model.predict(psi_te) == test.y).mean())
    m["top_concepts"] = top.to_dicts()
    figs["importance"] = _save(plot_importance(top, top_k=20), out / "importance.png")
    step("measured concept importance")

    # 4. concept-based prediction with edits for a few test images
    ex = model.explain(w_te[: cfg.n_explain], top_k=cfg.top_k,
                       strengths=(-cfg.strength, cfg.strength), class_index=1)  # p(smile) throughout
    explain_rows = []
    for i in range(cfg.n_explain):
        t = ex.concepts[i]
        labels = [concept_label(layout, int(k)) for k in ex.rendered[i]]
        fig = plot_edit_grid(ex.edits.source[i], ex.edits.images[i], labels,
                             (-cfg.strength, cfg.strength), float(ex.source_proba_image[i]),
                             ex.edit_proba_image[i], class_name="p(smile)", original=x_te[i])
        figs[f"explain_{i}"] = _save(fig, out / f"explain_{i}.png")
        explain_rows.append({"image": i, "true": int(test.y[i]), "p_smile": float(ex.proba[i, 1]),
                             "rendered": [int(k) for k in ex.rendered[i]], "concepts": t.to_dicts()})
    m["explanations"] = explain_rows
    m["explained_distinct_concepts"] = int(np.unique(ex.rendered).size)
    step("explained test images and rendered concept edits")

    # 5. top-5 W1 gallery
    order = [int(k) for k in rank_by_relevance(w1)[: cfg.top_k]]
    g = edit(inv.generator, w_te[: cfg.n_gallery], order, (-cfg.strength, cfg.strength),
             scale=model.psi_std_)
    labels = [concept_label(layout, k, f"W1 = {w1[k]:.2f}") for k in order]
    figs["w1_gallery"] = _save(plot_w1_gallery(g.source, g.images, labels,
                                               (-cfg.strength, cfg.strength),
                                               originals=x_te[: cfg.n_gallery]),
                               out / "w1_gallery.png")
    figs["w1_ranking"] = _save(plot_relevance(w1, layout=layout, top_k=20), out / "w1_ranking.png")
    figs["density"] = _save(plot_concept_density(psi_tr, train.y, order[0], layout=layout),
                            out / "density_top_concept.png")
    m["top_w1"] = [{**layout.describe(k), "w1": float(w1[k])} for k in order]
    step("rendered the top-5 Wasserstein-1 concept gallery")

    # 5b. edit strength: do the top concepts' edits change the image and the classifier?
    if cfg.n_edit_strength > 0:
        t_es = time.perf_counter()
        n_es = min(cfg.n_edit_strength, len(x_te))
        m["edit_strength"], _, _ = edit_strength_section(
            inv, x_te[:n_es], psi_tr, train.y, model.classifier_, top_k=cfg.top_k,
            strength=cfg.strength, seed=cfg.seed, batch_size=64, progress=progress,
            psi=psi_te[:n_es])
        m["edit_strength_seconds"] = round(time.perf_counter() - t_es, 1)
    step("measured the edit strength of the top concepts against random ones")

    # 6. fairness w.r.t. a protected attribute (skin tone) and exclusion of its concepts
    sugg = suggest_exclusions(model.classifier_, psi_tr, train.protected, k_important=50,
                              n=cfg.top_k, layout=layout)
    rep = debug_classifier(model.classifier_, psi_tr, train.y, psi_te, test.y,
                           [int(k) for k in sugg["feature"]], protected_eval=test.protected,
                           layout=layout, n_random=cfg.n_random, random_state=0)
    m["fairness"] = rep.to_dict()
    figs["fairness_debug"] = _save(plot_debug_report(rep), out / "fairness_debug.png")
    step("checked fairness w.r.t. skin tone")

    # 7. spurious-concept debugging
    dbg = spurious_debugging(inv, size, cfg.n_spurious_train, cfg.n_spurious_test,
                             cfg.spurious_correlation, seed=cfg.seed + 10,
                             classifier=candidates[cfg.debug_model], progress=progress,
                             n_random=cfg.n_random, curve_budgets=cfg.curve_budgets)
    m["debugging"] = debug_summary(dbg, layout)
    m["debugging"]["flagged"] = dbg["flagged"].head(10).to_dicts()
    figs["spurious_debug"] = _save(_plot_spurious(dbg), out / "spurious_debug.png")
    step("debugged the spurious background concept")
    steps.close()
    m["figures"] = figs
    m["seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write_text(out / "metrics.json", json.dumps(m, indent=2, default=_json_default))
    atomic_write_text(out / "report.md", _report(m, comparison, top, sugg, rep, dbg))
    atomic_write_text(out / "readme_snippet.md", readme_snippet(m))
    return m


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    return str(o)


def _plot_spurious(dbg: dict) -> Any:
    from matplotlib.figure import Figure

    d = dbg["n_features"]
    variants = [("before", "before", None),
                ("after", f"tuned exclusion\n({dbg['n_excluded']} of {d})", "after"),
                ("budget", f"budget ≤ 10 %\n({dbg['n_excluded_budget']} of {d})", "budget")]
    if "erase" in dbg:
        variants.append(("erase", f"LEACE erasure\n(rank {dbg['erased_rank']}, all kept)", "erase"))
    variants.append(("ceiling", "ceiling: trained\non unbiased data", None))
    fig = Figure(figsize=(6.8, 3.4))
    ax = fig.subplots()
    x = np.arange(len(variants))
    ax.bar(x - 0.18, [dbg[v]["decorrelated"] for v, _, _ in variants], 0.36, label="method")
    ctl = dbg.get("controls", {})
    means = [ctl[c]["mean"]["decorrelated"] if c in ctl else np.nan for _, _, c in variants]
    sds = [ctl[c]["sd"]["decorrelated"] if c in ctl else 0.0 for _, _, c in variants]
    ax.bar(x + 0.18, means, 0.36, yerr=sds, color="0.7", capsize=3,
           label="random control (same size, mean ± sd)")
    ax.set_xticks(x, [lab for _, lab, _ in variants], fontsize=7)
    lo = min(min(dbg[v]["decorrelated"] for v, _, _ in variants), np.nanmin(means) if ctl else 1.0)
    ax.set_ylim(max(0.0, lo - 0.05), 1.0)
    ax.set_ylabel("decorrelated-test accuracy")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("spurious background: debugging variants against random controls", fontsize=9)
    fig.tight_layout()
    return fig


def readme_snippet(m: dict) -> str:
    """The README's sentences about a demo run, generated from its ``metrics.json`` (so the
    README's numbers can be checked against the run they come from)."""
    d = m["debugging"]
    by = {r["classifier"]: r for r in m["comparison"]}
    sel = by[m["selected_classifier"]]
    best = max(m["comparison"], key=lambda r: r["accuracy"])
    ctl = d.get("controls", {})

    def c(name: str) -> str:
        x = ctl.get(name)
        return "" if x is None else (f"; random control {x['mean']['decorrelated']:.3f} ± "
                                     f"{x['sd']['decorrelated']:.3f}")

    text = (
        f"In that run ({m['seconds']} s inside the demo) **{m['selected_classifier']}** was selected: "
        f"{100 * sel['accuracy']:.1f} % test accuracy (the most accurate, {best['classifier']}: "
        f"{100 * best['accuracy']:.1f} %), and its 20 most important concepts by held-out permutation "
        f"importance have mean W1 {sel['w1_mean']:.2f}. The paper's rule would have picked "
        f"{m['selected_classifier_paper']}. Spurious background ({m['config']['debug_model']}, "
        f"decorrelated-test accuracy): before {d['before']['decorrelated']:.3f}; tuned exclusion of "
        f"{d['n_excluded']} of {d['n_features']} concepts {d['after']['decorrelated']:.3f}{c('after')}; "
        f"at most 10 % excluded ({d['n_excluded_budget']}) {d['budget']['decorrelated']:.3f}{c('budget')}")
    if d.get("erase") is not None:
        text += (f"; LEACE erasure of one subspace, all concepts kept, {d['erase']['decorrelated']:.3f}"
                 f"{c('erase')}")
    text += f"; ceiling (trained unbiased) {d['ceiling']['decorrelated']:.3f}."
    return text + "\n"


def _report(m: dict, comparison: Any, top: Any, sugg: Any, rep: Any, dbg: dict) -> str:
    f = m["figures"]
    d = m["debugging"]
    cols = ["rank", "feature", "layer", "channel", "resolution", "is_torgb", "importance", "w1"]
    lines = [
        "# img2tab demo report",
        "",
        f"Embedded default model ({m['size']} px concept world, Ψ of {m['n_features']} StyleSpace "
        f"channels). Task: smile vs frown; {m['config']['n_train']} training and "
        f"{m['config']['n_test']} test images. Whole run: {m['seconds']} s.",
        "",
        "## 1. Choosing the classifier: accuracy first, then relevance",
        "",
        "Each classifier is fitted on Ψ. Its concepts are ranked by held-out permutation importance "
        "(the log-loss increase when one concept is shuffled on the test split; the same unit for "
        "every model family, unlike XGBoost gain, |coef| or impurity), and the W1 of its 20 most "
        "important concepts says whether it relies on class-relevant concepts (the paper's "
        f"criterion). Only classifiers within {100 * m['config']['max_accuracy_drop']:g} point(s) of "
        f"the most accurate are eligible ({m['permutation_seconds']} s for the permutation "
        "importances).",
        "",
        comparison.to_markdown(floatfmt=".3f"),
        "",
        f"Selected: **{m['selected_classifier']}** (test accuracy {m['accuracy']:.3f}). Why: "
        f"{m['selection_reason']}.",
        "",
        f"The paper's rule (each model's own importance, XGBoost's average gain; highest W1 wins, "
        f"accuracy only breaks ties) would pick **{m['selected_classifier_paper']}**.",
        "",
        f"![comparison]({f['classifier_comparison']}) ![importance vs W1]({f['importance_vs_w1']})",
        "",
        "*Left: accuracy and mean top-20 W1 per classifier. Right: importance against W1 for every "
        "concept; good classifiers put their importance on high-W1 concepts.*",
        "",
        "## 2. Measuring concept importance",
        "",
        top.select(*[c for c in cols if c in top.column_names]).to_markdown(max_rows=10,
                                                                            floatfmt=".3f"),
        "",
        f"![importance]({f['importance']})",
        "",
        "*The selected classifier's most important concepts (layer / channel / resolution).*",
        "",
        "## 3. Concept-based prediction and visualising important concepts",
        "",
        "For each test image: the probability of *smile* and, per top concept *of that image* "
        "(ranked by its contribution to this image's decision), the image re-rendered with that "
        f"StyleSpace channel moved by ±{m['config']['strength']:g} standard deviations, with the "
        f"classifier's new probability. The {len(m['explanations'])} images use "
        f"{m['explained_distinct_concepts']} distinct concepts between them.",
        "",
        "| image | true | p(smile) | its top concepts, rendered (label, contribution to p(smile), "
        "log-odds) |",
        "|---:|---|---:|---|",
    ]
    for i, row in enumerate(m["explanations"]):
        cons = ", ".join(f"{c['label']} ({c.get('contribution', float('nan')):+.2f})"
                         for c in row["concepts"])
        lines.append(f"| {i} | {'smile' if row['true'] else 'frown'} | {row['p_smile']:.3f} | {cons} |")
    lines.append("")
    for i in range(len(m["explanations"])):
        lines.append(f"![explain {i}]({f[f'explain_{i}']})")
    lines += [
        "",
        "## 4. Presenting concepts with top-5 Wasserstein-1",
        "",
        "| rank | feature | layer | channel | resolution | toRGB | W1 |",
        "|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r, c in enumerate(m["top_w1"], 1):
        lines.append(f"| {r} | {c['feature']} | {c['layer']} | {c['channel']} | {c['resolution']} "
                     f"| {c['is_torgb']} | {c['w1']:.3f} |")
    lines += [
        "",
        f"![gallery]({f['w1_gallery']})",
        "",
        "*Each row: one top-W1 concept edited down / up around the reconstruction of several test "
        "images (their inputs on top).*",
        "",
        f"![W1 ranking]({f['w1_ranking']}) ![density]({f['density']})",
        "",
        "*W1 ranking of all concepts, and the class-conditional densities of the top concept.*",
        "",
    ]
    if m.get("edit_strength"):
        from ..image_evaluation import edit_strength_markdown

        k = m["config"]["top_k"]
        lines += [
            "### Edit strength",
            "",
            f"How much the top-{k} W1 concepts and the selected classifier's top-{k} concepts "
            f"change the image and p(smile), against {k} random concepts "
            f"({m['edit_strength_seconds']} s):",
            "",
            edit_strength_markdown(m["edit_strength"]),
            "",
        ]
    lines += [
        "## 5. Concept-based debugging",
        "",
        "### Fairness with respect to skin tone",
        "",
        "Concepts among the 50 most important that are most W1-relevant to skin tone were excluded "
        "and the classifier retrained; the last column excludes the same number of random concepts "
        "instead:",
        "",
        sugg.select(*[c for c in ("feature", "layer", "channel", "resolution", "importance",
                                  "w1_protected") if c in sugg.column_names]).to_markdown(
            floatfmt=".3f"),
        "",
        rep.to_markdown(),
        "",
        f"![fairness]({f['fairness_debug']})",
        "",
        "### A spurious background concept",
        "",
        f"Training images have a warm/cool background that agrees with the class in "
        f"{100 * d['train_agreement']:.0f}% of them; the test split is decorrelated. Classifier: "
        f"{m['config']['debug_model']}. Variants: the library's tuned exclusion of flagged concepts "
        f"(`tune_spurious_exclusion`, strictness picked on a validation split from the training "
        f"distribution), the same with at most 10 % of the {d['n_features']} concepts excluded, and "
        f"linear erasure of the background (LEACE, `erase_spurious`: one subspace, every concept "
        f"kept). Each is compared with a random control of the same size ({m['config']['n_random']} "
        f"draws, mean ± sd). The ceiling is the same classifier trained on data where the background "
        f"is independent.",
        "",
        "| variant | concepts excluded (kept) | decorrelated | worst group | in-distribution | "
        "random control, decorrelated |",
        "|---|---|---:|---:|---:|---:|",
    ]
    nf = d["n_features"]
    rows = [("before", "before", f"0 ({nf})"),
            ("after", "tuned exclusion", f"{d['n_excluded']} ({d['n_kept']})"),
            ("budget", "budget ≤ 10 %", f"{d['n_excluded_budget']} ({d['n_kept_budget']})")]
    if d.get("erase") is not None:
        rows.append(("erase", f"LEACE erasure (rank {d['erased_rank']})", f"0 ({nf})"))
    rows.append(("ceiling", "ceiling: trained unbiased", f"0 ({nf})"))
    for key, name, counts in rows:
        r = d[key]
        c = d.get("controls", {}).get(key)
        ctl = "—" if c is None else f"{c['mean']['decorrelated']:.3f} ± {c['sd']['decorrelated']:.3f}"
        lines.append(f"| {name} | {counts} | {r['decorrelated']:.3f} | {r['decorrelated_worst_group']:.3f} | "
                     f"{r['iid']:.3f} | {ctl} |")
    if d.get("curve"):
        lines += ["", "Gain versus budget (decorrelated-test accuracy after excluding the first n "
                  "flagged concepts, against n random ones):", "",
                  "| excluded | flagged order | random order (mean ± sd) |", "|---:|---:|---:|"]
        for row in d["curve"]:
            rm, rs = row.get("random_mean"), row.get("random_sd")
            lines.append(f"| {row['n_excluded']} | {row['flagged']['accuracy']:.3f} | "
                         + (f"{rm['accuracy']:.3f} ± {rs['accuracy']:.3f}" if rm else "—") + " |")
    lines += [
        "",
        f"![spurious]({f['spurious_debug']})",
        "",
    ]
    return "\n".join(lines)
