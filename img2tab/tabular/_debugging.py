"""Concept-level debugging: exclude unwanted concepts, retrain, and measure accuracy and fairness.

Img2Tab debugs a classifier by excluding concepts (Ψ columns) that it should not rely on, e.g.
concepts strongly related to a protected attribute, and retraining. Here that is::

    report = debug_classifier(clf, X_train, y_train, X_eval, y_eval, exclude=[4614, 512],
                              protected_eval=groups)

which fits ``clone(clf).set_params(masked_features=...)`` (the caller's classifier and arrays
are never modified) and reports accuracy, balanced accuracy, AUC, demographic-parity and
equalised-odds differences before and after on the evaluation split.
:func:`suggest_exclusions` proposes candidates: the classifier's important concepts whose
distribution differs most between protected groups (highest W1 w.r.t. the protected attribute).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sklearn.base import clone

from img2tab.errors import Img2TabInputError
from img2tab.networks.layout import StyleSpaceLayout

from ._classifier import ConceptClassifier, _check_masked
from ._importance import (
    ConceptTable,
    concept_table,
    importance_vector,
    rank_descending,
    resolve_layout,
)
from ._selection import classification_metrics

__all__ = [
    "METRICS",
    "DEFAULT_RATIOS",
    "DebugReport",
    "ExclusionSearch",
    "conditional_relevance",
    "debug_classifier",
    "evaluate",
    "flag_spurious_concepts",
    "group_accuracies",
    "suggest_exclusions",
    "tune_spurious_exclusion",
]

logger = logging.getLogger(__name__)

#: Metric keys of :attr:`DebugReport.before` / :attr:`DebugReport.after`.
METRICS: tuple[str, ...] = (
    "accuracy",
    "balanced_accuracy",
    "auc",
    "dp_difference",
    "eo_difference",
)


def _is_fitted(clf: Any) -> bool:
    return hasattr(clf, "classes_") and hasattr(clf, "n_features_in_")


def evaluate(clf: Any, X: Any, y: Any, protected: Any = None) -> dict[str, float | None]:
    """Accuracy, balanced accuracy, AUC and (with ``protected``) fairness gaps of ``clf``.

    Args:
        clf: fitted classifier.
        X: ``(N, D)`` Ψ rows.
        y: ``(N,)`` true labels.
        protected: optional ``(N,)`` protected attribute (group per row).

    Returns:
        Dict with the keys of :data:`METRICS`. ``dp_difference`` (demographic parity:
        largest gap in positive-prediction rate between groups) and ``eo_difference``
        (equalised odds: largest gap in TPR or FPR) are None without ``protected`` or for more
        than two classes; "positive" is ``clf.classes_[1]``.
    """
    out: dict[str, float | None] = dict(classification_metrics(clf, X, y))
    out["dp_difference"] = None
    out["eo_difference"] = None
    if protected is None:
        return out
    y_arr = np.asarray(y).reshape(-1)
    prot = np.asarray(protected).reshape(-1)
    if prot.shape[0] != y_arr.shape[0]:
        raise Img2TabInputError(
            f"protected has {prot.shape[0]} entries but the evaluation split has {y_arr.shape[0]} rows"
        )
    classes = np.asarray(clf.classes_)
    if classes.size != 2:
        logger.warning("fairness metrics need a binary classifier; skipped for %d classes", classes.size)
        return out
    from ._fairness import demographic_parity_difference, equalized_odds_difference

    pos = classes[1]
    pred = (np.asarray(clf.predict(X)) == pos).astype(np.int64)
    true = (y_arr == pos).astype(np.int64)
    out["dp_difference"] = float(demographic_parity_difference(pred, prot))
    out["eo_difference"] = float(equalized_odds_difference(true, pred, prot))
    return out


@dataclass(frozen=True, eq=False)
class DebugReport:
    """Result of :func:`debug_classifier`.

    Attributes:
        excluded: flat Ψ indices excluded by this debugging step (sorted).
        masked: every masked index of the retrained classifier (``excluded`` plus masks the
            original classifier already had).
        strategy: ``"drop"`` or ``"mean"``.
        before: metrics of the original classifier on the evaluation split (keys
            :data:`METRICS`; fairness entries None without a protected attribute).
        after: the same metrics for the retrained classifier.
        n_eval: number of evaluation rows.
        excluded_concepts: :class:`ConceptTable` describing ``excluded`` (with the original
            classifier's ``importance``).
        classifier: the retrained :class:`ConceptClassifier`.
        baseline: the classifier the "before" metrics come from (the caller's own object when
            it was already fitted).
    """

    excluded: tuple[int, ...]
    masked: tuple[int, ...]
    strategy: str
    before: dict[str, float | None]
    after: dict[str, float | None]
    n_eval: int
    excluded_concepts: ConceptTable
    classifier: ConceptClassifier = field(repr=False)
    baseline: Any = field(repr=False)

    @property
    def delta(self) -> dict[str, float | None]:
        """``after - before`` per metric (None where either is missing)."""
        out: dict[str, float | None] = {}
        for key in self.before:
            b, a = self.before[key], self.after.get(key)
            out[key] = None if a is None or b is None else float(a) - float(b)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (everything except the classifier objects; NaN -> None)."""

        def clean(d: dict[str, float | None]) -> dict[str, float | None]:
            return {k: (None if v is None or not np.isfinite(v) else float(v)) for k, v in d.items()}

        params = self.classifier.get_params(deep=False)
        return {
            "excluded": [int(i) for i in self.excluded],
            "masked": [int(i) for i in self.masked],
            "strategy": self.strategy,
            "n_eval": int(self.n_eval),
            "before": clean(self.before),
            "after": clean(self.after),
            "delta": clean(self.delta),
            "excluded_concepts": self.excluded_concepts.to_dicts(),
            "classifier": {
                "model": params["model"],
                "preset": params["preset"],
                "mask_strategy": params["mask_strategy"],
            },
        }

    def to_markdown(self) -> str:
        """A small before/after markdown table."""
        lines = ["| metric | before | after | delta |", "|---|---:|---:|---:|"]
        delta = self.delta

        def f(v: float | None) -> str:
            return "n/a" if v is None or not np.isfinite(v) else f"{v:.4f}"

        for key in self.before:
            lines.append(f"| {key} | {f(self.before[key])} | {f(self.after[key])} | {f(delta[key])} |")
        return "\n".join(lines)


def _as_indices(exclude: Any) -> Any:
    if isinstance(exclude, ConceptTable):
        return exclude.features
    return exclude


def debug_classifier(
    clf: ConceptClassifier,
    X_train: Any,
    y_train: Any,
    X_eval: Any,
    y_eval: Any,
    exclude: Any,
    protected_eval: Any = None,
    strategy: Literal["drop", "mean"] = "drop",
    *,
    layout: StyleSpaceLayout | None = None,
    refit_baseline: bool = False,
) -> DebugReport:
    """Exclude concepts, retrain, and compare accuracy and fairness before and after.

    Args:
        clf: a :class:`ConceptClassifier`, fitted or not (an official model loaded with
            :func:`~img2tab.tabular._classifier.load_classifier` works: its stored
            hyper-parameters are reused for retraining). Never modified.
        X_train: ``(N_train, D)`` Ψ rows for retraining. Never modified.
        y_train: ``(N_train,)`` labels.
        X_eval: ``(N_eval, D)`` Ψ rows of the split the metrics are computed on.
        y_eval: ``(N_eval,)`` labels.
        exclude: flat Ψ indices to exclude (or a :class:`ConceptTable`, e.g. from
            :func:`suggest_exclusions`). Added to masks ``clf`` already has.
        protected_eval: optional ``(N_eval,)`` protected attribute for the fairness metrics.
        strategy: ``"drop"`` the columns or neutralise them to the training ``"mean"``.
        layout: layout for describing the excluded concepts (None: guessed from D).
        refit_baseline: also refit an unmasked copy of ``clf`` on ``X_train`` for the
            "before" metrics, even when ``clf`` is already fitted (use it when ``clf`` was
            trained on other data). An unfitted ``clf`` is always fitted on a clone.

    Returns:
        :class:`DebugReport`.
    """
    if not isinstance(clf, ConceptClassifier):
        raise Img2TabInputError(
            f"debug_classifier needs a ConceptClassifier, got {type(clf).__name__}; wrap your "
            "model with ConceptClassifier(model=...)"
        )
    if strategy not in ("drop", "mean"):
        raise Img2TabInputError(f"unknown strategy {strategy!r}; valid: 'drop', 'mean'")
    if _is_fitted(clf) and not refit_baseline:
        baseline = clf
    else:
        baseline = clone(clf).fit(X_train, y_train)
    n_features = int(baseline.n_features_in_)
    excl = _check_masked(_as_indices(exclude), n_features)
    if excl.size == 0:
        raise Img2TabInputError("exclude is empty; pass at least one concept index")
    already = (
        _check_masked(clf.masked_features, n_features)
        if clf.masked_features is not None
        else np.zeros(0, dtype=np.int64)
    )
    masked = np.union1d(already, excl).astype(np.int64)
    if masked.size >= n_features:
        raise Img2TabInputError(f"excluding {excl.size} concepts would mask all {n_features} features")
    retrained = clone(clf).set_params(masked_features=masked.tolist(), mask_strategy=strategy)
    retrained.fit(X_train, y_train)

    before = evaluate(baseline, X_eval, y_eval, protected_eval)
    after = evaluate(retrained, X_eval, y_eval, protected_eval)
    imp = importance_vector(baseline)
    table = concept_table(
        excl, resolve_layout(layout, n_features), n_features, rank=False, importance=imp[excl]
    )
    logger.info(
        "debug: excluded %d concepts; accuracy %.4f -> %.4f",
        excl.size,
        before["accuracy"],
        after["accuracy"],
    )
    return DebugReport(
        excluded=tuple(int(i) for i in excl),
        masked=tuple(int(i) for i in masked),
        strategy=strategy,
        before=before,
        after=after,
        n_eval=int(np.asarray(y_eval).reshape(-1).shape[0]),
        excluded_concepts=table,
        classifier=retrained,
        baseline=baseline,
    )


def suggest_exclusions(
    clf: Any,
    X: Any,
    protected: Any,
    k_important: int = 50,
    n: int = 5,
    layout: StyleSpaceLayout | None = None,
    *,
    importance_type: str | None = None,
) -> ConceptTable:
    """Important concepts that are most related to a protected attribute.

    Takes the classifier's ``k_important`` most important concepts (non-zero importance only)
    and ranks them by the Wasserstein-1 distance between the protected groups (z-scored, as
    :func:`~img2tab.tabular._wasserstein.wasserstein_relevance`). With more than two groups the
    largest one-vs-rest W1 is used.

    Args:
        clf: fitted classifier.
        X: ``(N, D)`` Ψ rows (e.g. the training set). Never modified.
        protected: ``(N,)`` protected attribute.
        k_important: how many top important concepts to consider.
        n: how many to return.
        layout: StyleSpace layout (None: guessed from D).
        importance_type: see :func:`~img2tab.tabular._importance.importance_vector`.

    Returns:
        :class:`ConceptTable` with ``n`` rows (fewer if fewer concepts are used), columns
        ``rank, feature, layer, channel, module, resolution, is_torgb, label, importance,
        importance_rank, w1_protected``. Pass it (or its ``features``) as ``exclude`` to
        :func:`debug_classifier`.
    """
    from ._dataset import check_psi
    from ._wasserstein import wasserstein_relevance

    if int(k_important) < 1 or int(n) < 1:
        raise Img2TabInputError(f"k_important and n must be >= 1, got {k_important}, {n}")
    x = check_psi(X, "X")
    imp = importance_vector(clf, importance_type)
    if imp.shape[0] != x.shape[1]:
        raise Img2TabInputError(
            f"X has {x.shape[1]} features, but the classifier is expecting {imp.shape[0]} features as input"
        )
    order = rank_descending(imp)[: int(k_important)]
    order = order[imp[order] > 0]
    if order.size == 0:
        raise Img2TabInputError("the classifier uses no feature (all importances are zero)")
    w = np.asarray(wasserstein_relevance(x[:, order], protected), dtype=np.float64)
    if w.ndim == 2:  # more than two groups: one-vs-rest rows
        w = w.max(axis=0)
    pick = rank_descending(w)[: int(n)]
    feats = order[pick]
    return concept_table(
        feats,
        resolve_layout(layout, x.shape[1]),
        x.shape[1],
        importance=imp[feats],
        importance_rank=(pick + 1).astype(np.int64),
        w1_protected=w[pick],
    )


def conditional_relevance(X: Any, attribute: Any, given: Any, *, standardize: bool = True) -> np.ndarray:
    """W1 relevance of every concept to a binary ``attribute`` *within* each stratum of ``given``.

    For each value ``g`` of ``given`` (e.g. the class), the per-feature W1 between the two groups of
    ``attribute`` is computed on the rows with ``given == g`` (on Ψ z-scored over all rows); the
    result is the row-weighted mean over strata. Conditioning removes the part of the relevance
    that only reflects a correlation between ``attribute`` and ``given``: with a spurious factor
    correlated with the class, class concepts score ~0 here while nuisance concepts keep their score.

    Args:
        X: ``(N, D)`` Ψ. Never modified.
        attribute: ``(N,)`` binary attribute.
        given: ``(N,)`` stratifying variable (e.g. labels).
        standardize: z-score the columns over all rows first.

    Returns:
        ``(D,)`` float64.
    """
    from ._dataset import check_labels, check_psi
    from ._dataset import standardize as _standardize
    from ._wasserstein import wasserstein_relevance

    x = check_psi(X, "X")
    a = check_labels(attribute, x.shape[0], name="attribute")
    g = np.asarray(given)
    if g.shape != (x.shape[0],):
        raise Img2TabInputError(f"given has shape {g.shape}, expected ({x.shape[0]},)")
    z = _standardize(x)[0] if standardize else x
    total = np.zeros(x.shape[1])
    weight = 0
    for value in np.unique(g):
        m = g == value
        if len(np.unique(a[m])) < 2:
            continue  # this stratum has one group only: no information
        total += m.sum() * np.asarray(wasserstein_relevance(z[m], a[m], standardize=False))
        weight += m.sum()
    if weight == 0:
        raise Img2TabInputError("attribute takes a single value within every stratum of given")
    return total / weight


def flag_spurious_concepts(
    X: Any,
    y: Any,
    spurious: Any,
    *,
    min_w1: float = 0.25,
    ratio: float = 1.0,
    layout: StyleSpaceLayout | None = None,
) -> ConceptTable:
    """Concepts that encode a nuisance attribute rather than the class.

    A concept ``k`` is flagged when, with confounding removed by conditioning,
    ``W1(k; spurious | y) > max(min_w1, ratio * W1(k; y | spurious))`` — it separates the nuisance
    groups within each class more than it separates the classes within each nuisance group.

    Args:
        X: ``(N, D)`` Ψ (e.g. the biased training set).
        y: ``(N,)`` class labels.
        spurious: ``(N,)`` binary nuisance attribute.
        min_w1: minimum conditional W1 (in standard deviations) to flag.
        ratio: how much more nuisance- than class-relevant a flagged concept must be.
        layout: StyleSpace layout for the table.

    Returns:
        :class:`ConceptTable` of flagged concepts, most nuisance-relevant first, with columns
        ``w1_spurious`` and ``w1_class`` (both conditional).
    """
    from ._dataset import check_psi

    x = check_psi(X, "X")
    w_sp = conditional_relevance(x, spurious, y)
    w_cl = conditional_relevance(x, y, spurious)
    return _flag_table(w_sp, w_cl, min_w1, ratio, layout)


def _flag_table(w_sp: np.ndarray, w_cl: np.ndarray, min_w1: float, ratio: float,
                layout: StyleSpaceLayout | None) -> ConceptTable:
    if not ratio >= 0 or not min_w1 >= 0:
        raise Img2TabInputError(f"ratio and min_w1 must be >= 0, got ratio={ratio}, min_w1={min_w1}")
    flagged = np.flatnonzero((w_sp > min_w1) & (w_sp > ratio * w_cl))
    order = flagged[rank_descending(w_sp[flagged])]
    d = w_sp.shape[0]
    return concept_table(order, resolve_layout(layout, d), d, w1_spurious=w_sp[order], w1_class=w_cl[order])


def group_accuracies(clf: Any, X: Any, y: Any, groups: Any) -> dict[str, float]:
    """Accuracy overall, per group, worst-group and group-balanced (mean over groups).

    With groups ``(class, spurious attribute)``, the group-balanced accuracy is what the
    classifier scores on a test split where the attribute is independent of the class and the
    classes are balanced, which is why :func:`tune_spurious_exclusion` maximises it on a
    validation split drawn from the (biased) training distribution.

    Args:
        clf: fitted classifier.
        X: ``(N, D)`` Ψ rows.
        y: ``(N,)`` true labels.
        groups: ``(N,)`` group of each row (any hashable labels, e.g. ``2 * y + spurious``).

    Returns:
        ``{"accuracy", "worst_group", "group_balanced", "group_<g>": ...}``.
    """
    y = np.asarray(y).reshape(-1)
    g = np.asarray(groups).reshape(-1)
    if g.shape != y.shape:
        raise Img2TabInputError(f"groups has {g.shape[0]} entries but y has {y.shape[0]}")
    correct = np.asarray(clf.predict(X)).reshape(-1) == y
    if correct.shape != y.shape:
        raise Img2TabInputError(f"X has {correct.shape[0]} rows but y has {y.shape[0]} labels")
    per = {f"group_{v}": float(correct[g == v].mean()) for v in np.unique(g)}
    vals = list(per.values())
    return {"accuracy": float(correct.mean()), "worst_group": float(min(vals)),
            "group_balanced": float(np.mean(vals)), **per}


@dataclass(frozen=True, eq=False)
class ExclusionSearch:
    """Result of :func:`tune_spurious_exclusion`.

    Attributes:
        ratio: the chosen ``ratio`` of :func:`flag_spurious_concepts` (``inf`` = exclude nothing).
        flagged: the concepts flagged at that ratio (empty table for ``inf``).
        scores: one dict per candidate ratio: ``ratio``, ``n_flagged`` and the validation
            metrics of :func:`group_accuracies`, plus ``eligible`` (within the accuracy budget).
        classifier: the classifier retrained without the flagged concepts (the baseline when
            nothing is excluded).
        baseline: the classifier trained on all concepts (except those ``clf`` already masked).
    """

    ratio: float
    flagged: ConceptTable
    scores: list[dict[str, float]]
    classifier: ConceptClassifier = field(repr=False)
    baseline: ConceptClassifier = field(repr=False)

    @property
    def excluded(self) -> list[int]:
        """Flat Ψ indices excluded by the chosen setting."""
        return [int(k) for k in self.flagged.features]


DEFAULT_RATIOS: tuple[float, ...] = (2.0, 1.0, 0.7, 0.5, 0.35, 0.25)


def tune_spurious_exclusion(
    clf: ConceptClassifier,
    X_train: Any,
    y_train: Any,
    spurious_train: Any,
    X_val: Any,
    y_val: Any,
    spurious_val: Any,
    *,
    ratios: tuple[float, ...] = DEFAULT_RATIOS,
    min_w1: float = 0.0,
    max_accuracy_drop: float = 0.01,
    layout: StyleSpaceLayout | None = None,
    progress: bool = False,
) -> ExclusionSearch:
    """Pick how many nuisance concepts to exclude, on a validation split with group labels.

    Nuisance information is spread over many StyleSpace channels, so the strictness of
    :func:`flag_spurious_concepts` matters: a loose threshold leaves channels through which the
    retrained classifier still takes the shortcut, a strict one drops class information. For each
    candidate ``ratio`` (plus "exclude nothing") the classifier is retrained on the training
    split without the flagged concepts and scored on a validation split drawn from the *same*
    (biased) distribution; the winner has the highest group-balanced accuracy (the estimate of
    accuracy once the nuisance is decorrelated, see :func:`group_accuracies`) among the
    candidates whose plain validation accuracy is at most ``max_accuracy_drop`` below the
    baseline's. Ties go to the candidate that excludes less. No test data is used.

    Args:
        clf: an unfitted (or fitted: only its parameters are used) :class:`ConceptClassifier`.
            Never modified. Concepts it already masks stay masked in every candidate.
        X_train, y_train, spurious_train: ``(N, D)`` Ψ, ``(N,)`` labels and binary nuisance
            attribute of the training split. Never modified.
        X_val, y_val, spurious_val: the same for a validation split from the same distribution.
        ratios: candidate ``ratio`` values of :func:`flag_spurious_concepts`.
        min_w1: passed to :func:`flag_spurious_concepts`.
        max_accuracy_drop: in-distribution accuracy the search may give up (0.01 = 1 point).
        layout: StyleSpace layout for the tables.
        progress: show a ``tqdm.auto`` bar over the candidates.

    Returns:
        :class:`ExclusionSearch`.
    """
    from ._dataset import check_labels, check_psi

    if not isinstance(clf, ConceptClassifier):
        raise Img2TabInputError(
            f"tune_spurious_exclusion needs a ConceptClassifier, got {type(clf).__name__}")
    x = check_psi(X_train, "X_train")
    xv = check_psi(X_val, "X_val")
    if xv.shape[1] != x.shape[1]:
        raise Img2TabInputError(f"X_val has {xv.shape[1]} features but X_train has {x.shape[1]}")
    y = check_labels(y_train, x.shape[0], name="y_train")
    yv = check_labels(y_val, xv.shape[0], name="y_val")
    sp = check_labels(spurious_train, x.shape[0], name="spurious_train")
    spv = check_labels(spurious_val, xv.shape[0], name="spurious_val")
    cand = sorted({float(r) for r in ratios}, reverse=True)
    if not cand:
        raise Img2TabInputError("ratios is empty; give at least one candidate ratio")
    w_sp = conditional_relevance(x, sp, y)
    w_cl = conditional_relevance(x, y, sp)
    groups_v = np.char.add(yv.astype(str), np.char.add("|", spv.astype(str)))
    already = (_check_masked(clf.masked_features, x.shape[1]) if clf.masked_features is not None
               else np.zeros(0, dtype=np.int64))  # the caller's own masks stay in every candidate
    base = clone(clf)
    baseline = clone(base).fit(x, y)
    scores = [{"ratio": float("inf"), "n_flagged": 0, **group_accuracies(baseline, xv, yv, groups_v)}]
    nothing = _flag_table(w_sp, w_cl, np.inf, 1.0, layout)
    fitted: list[tuple[ConceptTable, ConceptClassifier]] = [(nothing, baseline)]
    iterator: Any = cand
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(cand, desc="exclusion ratios")
    for ratio in iterator:
        table = _flag_table(w_sp, w_cl, min_w1, ratio, layout)
        n_flag = len(table.features)
        masked = np.union1d(already, table.features).astype(np.int64)
        if n_flag == 0 or masked.size >= x.shape[1]:
            continue  # nothing to exclude, or nothing left to train on
        model = clone(base).set_params(masked_features=masked.tolist()).fit(x, y)
        scores.append({"ratio": ratio, "n_flagged": n_flag, **group_accuracies(model, xv, yv, groups_v)})
        fitted.append((table, model))
    floor = scores[0]["accuracy"] - float(max_accuracy_drop)
    for s in scores:
        s["eligible"] = float(s["accuracy"] >= floor - 1e-12)
    best = max(range(len(scores)),
               key=lambda i: (scores[i]["eligible"], scores[i]["group_balanced"], -scores[i]["n_flagged"]))
    logger.info("exclusion search: ratio %s (%d concepts), validation group-balanced accuracy %.4f -> %.4f",
                scores[best]["ratio"], scores[best]["n_flagged"], scores[0]["group_balanced"],
                scores[best]["group_balanced"])
    table, model = fitted[best]
    return ExclusionSearch(ratio=scores[best]["ratio"], flagged=table, scores=scores, classifier=model,
                           baseline=baseline)
