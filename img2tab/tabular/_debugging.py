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
    "DEFAULT_BUDGETS",
    "DebugReport",
    "ErasureSearch",
    "ExclusionSearch",
    "conditional_relevance",
    "debug_classifier",
    "erase_spurious",
    "evaluate",
    "flag_spurious_concepts",
    "exclusion_curve",
    "group_accuracies",
    "random_exclusions",
    "spurious_order",
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
        n_features: total number of concepts ``D`` (``n_excluded`` of them were excluded,
            ``n_kept`` remain).
        control: the random-exclusion control: the same number of concepts drawn at random
            (``n_draws`` times, a seeded local generator) and excluded instead; ``mean`` and
            ``sd`` of every metric after retraining, and ``draws`` (one dict per draw). None when
            ``n_random=0``.
        max_excluded: the exclusion budget the step was held to (None: none).
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
    n_features: int = 0
    control: dict[str, Any] | None = None
    max_excluded: int | None = None

    @property
    def n_excluded(self) -> int:
        """How many concepts this debugging step excluded."""
        return len(self.excluded)

    @property
    def n_kept(self) -> int:
        """How many concepts the retrained classifier still uses (``n_features - len(masked)``)."""
        return int(self.n_features) - len(self.masked)

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
        control = None
        if self.control is not None:
            control = {"n_draws": int(self.control["n_draws"]), "mean": clean(self.control["mean"]),
                       "sd": clean(self.control["sd"]), "random_state": self.control.get("random_state")}
        return {
            "excluded": [int(i) for i in self.excluded],
            "masked": [int(i) for i in self.masked],
            "n_excluded": self.n_excluded,
            "n_features": int(self.n_features),
            "n_kept": self.n_kept,
            "max_excluded": self.max_excluded,
            "control": control,
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
        """A before / after / random-control markdown table, headed by the exclusion counts."""
        delta = self.delta

        def f(v: float | None) -> str:
            return "n/a" if v is None or not np.isfinite(v) else f"{v:.4f}"

        head = (f"Excluded {self.n_excluded} of {self.n_features} concepts ({self.n_kept} kept"
                + (f"; budget {self.max_excluded}" if self.max_excluded is not None else "") + ").")
        if self.control is None:
            lines = [head, "", "| metric | before | after | delta |", "|---|---:|---:|---:|"]
            for key in self.before:
                lines.append(f"| {key} | {f(self.before[key])} | {f(self.after[key])} | {f(delta[key])} |")
            return "\n".join(lines)
        n = self.control["n_draws"]
        lines = [head, "", f"| metric | before | after | delta | {n} random exclusions of "
                 f"{self.n_excluded} (mean ± sd) |", "|---|---:|---:|---:|---:|"]
        for key in self.before:
            m, sd = self.control["mean"].get(key), self.control["sd"].get(key)
            ctrl = "n/a" if m is None or not np.isfinite(m) else f"{m:.4f} ± {sd:.4f}"
            lines.append(f"| {key} | {f(self.before[key])} | {f(self.after[key])} | {f(delta[key])} "
                         f"| {ctrl} |")
        return "\n".join(lines)


def _mean_sd(draws: list[dict[str, Any]]) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """Per-key mean and sample sd over dicts of metrics (None where a draw has None)."""
    mean: dict[str, float | None] = {}
    sd: dict[str, float | None] = {}
    for key in draws[0]:
        vals = [d[key] for d in draws]
        if any(v is None for v in vals):
            mean[key] = sd[key] = None
            continue
        arr = np.asarray(vals, dtype=np.float64)
        mean[key] = float(arr.mean())
        sd[key] = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return mean, sd


def random_exclusions(n_exclude: int, n_features: int, n_draws: int, random_state: Any = 0,
                      already: Any = None) -> list[np.ndarray]:
    """``n_draws`` random sets of ``n_exclude`` concepts, each drawn without replacement from the
    concepts not in ``already`` (a seeded local generator; the global RNG is not touched)."""
    rng = np.random.default_rng(random_state)
    pool = np.setdiff1d(np.arange(int(n_features)), np.asarray([] if already is None else already, np.int64))
    if n_exclude > pool.size:
        raise Img2TabInputError(f"cannot draw {n_exclude} random concepts out of {pool.size} available")
    return [np.sort(rng.choice(pool, size=int(n_exclude), replace=False)) for _ in range(int(n_draws))]


def _check_budget(max_excluded: Any) -> int | None:
    if max_excluded is None:
        return None
    if not isinstance(max_excluded, int | np.integer) or max_excluded < 1:
        raise Img2TabInputError(f"max_excluded must be a positive int or None, got {max_excluded!r}")
    return int(max_excluded)


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
    max_excluded: int | None = None,
    n_random: int = 5,
    random_state: int | None = 0,
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
        max_excluded: budget: raise if ``exclude`` holds more concepts than this.
        n_random: random-exclusion control: retrain this many times with the same number of
            random concepts excluded instead (5 or more for a mean ± sd; 0 skips the control).
        random_state: seed of the control's local generator.

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
    budget = _check_budget(max_excluded)
    if budget is not None and excl.size > budget:
        raise Img2TabInputError(f"exclude holds {excl.size} concepts, more than max_excluded={budget}")
    if int(n_random) < 0:
        raise Img2TabInputError(f"n_random must be >= 0, got {n_random}")
    retrained = clone(clf).set_params(masked_features=masked.tolist(), mask_strategy=strategy)
    retrained.fit(X_train, y_train)

    before = evaluate(baseline, X_eval, y_eval, protected_eval)
    after = evaluate(retrained, X_eval, y_eval, protected_eval)
    control = None
    if int(n_random) > 0:
        draws = []
        for rand in random_exclusions(excl.size, n_features, int(n_random), random_state, already):
            m = clone(clf).set_params(masked_features=np.union1d(already, rand).tolist(),
                                      mask_strategy=strategy).fit(X_train, y_train)
            draws.append(evaluate(m, X_eval, y_eval, protected_eval))
        mean, sd = _mean_sd(draws)
        control = {"n_draws": int(n_random), "mean": mean, "sd": sd, "draws": draws,
                   "random_state": random_state}
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
        n_features=n_features,
        control=control,
        max_excluded=budget,
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
        flagged: the concepts excluded at that ratio (its first ``max_excluded`` flagged concepts
            under a budget; empty table for ``inf``).
        scores: one dict per candidate: ``ratio``, ``n_flagged`` (excluded), the validation
            metrics of :func:`group_accuracies`, plus ``eligible`` (within the accuracy budget).
        classifier: the classifier retrained without the flagged concepts (the baseline when
            nothing is excluded).
        baseline: the classifier trained on all concepts (except those ``clf`` already masked).
        n_features: total number of concepts ``D``.
        max_excluded: the exclusion budget (None: none).
        control: random-exclusion control on the validation split for the chosen number of
            concepts: ``n_draws``, ``mean`` / ``sd`` of the :func:`group_accuracies` metrics
            (None when nothing is excluded or ``n_random=0``).
        order: every concept flagged at the loosest candidate ratio, most nuisance-relevant first
            (the "flagged order" of :func:`exclusion_curve`).
        curve: the gain-versus-budget curve on the validation split (:func:`exclusion_curve`),
            empty unless ``budgets`` was given.
    """

    ratio: float
    flagged: ConceptTable
    scores: list[dict[str, float]]
    classifier: ConceptClassifier = field(repr=False)
    baseline: ConceptClassifier = field(repr=False)
    n_features: int = 0
    max_excluded: int | None = None
    control: dict[str, Any] | None = None
    order: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)
    curve: list[dict[str, Any]] = field(default_factory=list)

    @property
    def excluded(self) -> list[int]:
        """Flat Ψ indices excluded by the chosen setting."""
        return [int(k) for k in self.flagged.features]

    @property
    def n_excluded(self) -> int:
        """How many concepts the chosen setting excludes."""
        return len(self.flagged.features)

    def summary(self) -> str:
        """One line: how many concepts were excluded out of how many, against the random control."""
        best = next(sc for sc in self.scores if sc["ratio"] == self.ratio)
        line = (f"excluded {self.n_excluded} of {self.n_features} concepts"
                + (f" (budget {self.max_excluded})" if self.max_excluded is not None else "")
                + f": validation group-balanced accuracy {self.scores[0]['group_balanced']:.4f} -> "
                f"{best['group_balanced']:.4f}")
        if self.control is not None:
            c = self.control
            line += (f"; {c['n_draws']} random exclusions of {self.n_excluded}: "
                     f"{c['mean']['group_balanced']:.4f} ± {c['sd']['group_balanced']:.4f}")
        return line


DEFAULT_RATIOS: tuple[float, ...] = (2.0, 1.0, 0.7, 0.5, 0.35, 0.25)

#: Exclusion budgets of the gain-versus-budget curves.
DEFAULT_BUDGETS: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


def spurious_order(w_spurious: Any, w_class: Any, ratio: float = 0.25, min_w1: float = 0.0) -> np.ndarray:
    """Concepts flagged as nuisance at ``ratio`` (see :func:`flag_spurious_concepts`), most
    nuisance-relevant (highest conditional W1 to the nuisance) first, as int64 indices."""
    w_sp = np.asarray(w_spurious, dtype=np.float64)
    w_cl = np.asarray(w_class, dtype=np.float64)
    flagged = np.flatnonzero((w_sp > min_w1) & (w_sp > ratio * w_cl))
    return flagged[rank_descending(w_sp[flagged])].astype(np.int64)


def exclusion_curve(
    clf: ConceptClassifier,
    X_train: Any,
    y_train: Any,
    order: Any,
    X_eval: Any,
    y_eval: Any,
    groups_eval: Any,
    budgets: tuple[int, ...] = DEFAULT_BUDGETS,
    *,
    n_random: int = 5,
    random_state: int | None = 0,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Gain versus exclusion budget: the first ``b`` concepts of ``order`` against ``b`` random ones.

    For every budget ``b`` (those above ``len(order)`` or leaving nothing to train on are
    skipped) the classifier is retrained on ``X_train`` without the first ``b`` concepts of
    ``order``, and ``n_random`` times without ``b`` random concepts (a seeded local generator),
    and scored with :func:`group_accuracies` on the evaluation split.

    Args:
        clf: :class:`ConceptClassifier` (its own masks stay masked). Never modified.
        X_train, y_train: ``(N, D)`` Ψ and labels to retrain on.
        order: concepts in exclusion order (e.g. :func:`spurious_order`).
        X_eval, y_eval, groups_eval: the evaluation split and its groups.
        budgets: numbers of excluded concepts.
        n_random: random draws per budget.
        random_state: seed.
        progress: a ``tqdm.auto`` bar over the budgets.

    Returns:
        One dict per budget: ``n_excluded``, ``flagged`` (the metrics of
        :func:`group_accuracies`), ``random_mean`` / ``random_sd`` (the same, over the draws)
        and ``n_draws``; plus a first row with ``n_excluded=0`` (nothing excluded).
    """
    from ._dataset import check_psi

    x = check_psi(X_train, "X_train")
    d = x.shape[1]
    order = np.asarray(order, dtype=np.int64).reshape(-1)
    already = (_check_masked(clf.masked_features, d) if clf.masked_features is not None
               else np.zeros(0, dtype=np.int64))
    order = order[~np.isin(order, already)]
    rng = np.random.default_rng(random_state)
    base = clone(clf)
    full = clone(base).fit(x, y_train)
    rows: list[dict[str, Any]] = [{"n_excluded": 0, "random_mean": None, "random_sd": None, "n_draws": 0,
                                   "flagged": group_accuracies(full, X_eval, y_eval, groups_eval)}]
    todo = [int(b) for b in sorted(set(int(b) for b in budgets))
            if 0 < int(b) <= order.size and already.size + int(b) < d]
    iterator: Any = todo
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(todo, desc="exclusion budgets")
    for b in iterator:
        m = clone(base).set_params(masked_features=np.union1d(already, order[:b]).tolist()).fit(x, y_train)
        flagged = group_accuracies(m, X_eval, y_eval, groups_eval)
        draws = []
        for rand in random_exclusions(b, d, int(n_random), rng, already):
            mr = clone(base).set_params(masked_features=np.union1d(already, rand).tolist()).fit(x, y_train)
            draws.append(group_accuracies(mr, X_eval, y_eval, groups_eval))
        mean, sd = _mean_sd(draws) if draws else (None, None)
        rows.append({"n_excluded": b, "flagged": flagged, "random_mean": mean, "random_sd": sd,
                     "n_draws": int(n_random)})
    return rows


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
    max_excluded: int | None = None,
    n_random: int = 5,
    budgets: tuple[int, ...] | None = None,
    random_state: int | None = 0,
    layout: StyleSpaceLayout | None = None,
    progress: bool = False,
) -> ExclusionSearch:
    """Pick how many nuisance concepts to exclude, on a validation split with group labels.

    Nuisance information is spread over many StyleSpace channels, so the strictness of
    :func:`flag_spurious_concepts` matters: a loose threshold leaves channels through which the
    retrained classifier still takes the shortcut, a strict one drops class information. For each
    candidate ``ratio`` (plus "exclude nothing") the classifier is retrained on the training
    split without the flagged concepts (at most ``max_excluded`` of them, the most
    nuisance-relevant first) and scored on a validation split drawn from the *same* (biased)
    distribution; the winner has the highest group-balanced accuracy (the estimate of accuracy
    once the nuisance is decorrelated, see :func:`group_accuracies`) among the candidates whose
    plain validation accuracy is at most ``max_accuracy_drop`` below the baseline's. Ties go to
    the candidate that excludes less. No test data is used.

    The result says how many concepts were excluded out of how many and carries a control:
    the same number of *random* concepts excluded ``n_random`` times. Without a budget the best
    ratio often excludes almost every concept, which a random exclusion of the same size may
    match; ``budgets`` adds the gain-versus-budget curve (flagged order against random order).

    Args:
        clf: an unfitted (or fitted: only its parameters are used) :class:`ConceptClassifier`.
            Never modified. Concepts it already masks stay masked in every candidate.
        X_train, y_train, spurious_train: ``(N, D)`` Ψ, ``(N,)`` labels and binary nuisance
            attribute of the training split. Never modified.
        X_val, y_val, spurious_val: the same for a validation split from the same distribution.
        ratios: candidate ``ratio`` values of :func:`flag_spurious_concepts`.
        min_w1: passed to :func:`flag_spurious_concepts`.
        max_accuracy_drop: in-distribution accuracy the search may give up (0.01 = 1 point).
        max_excluded: exclusion budget (None: no budget).
        n_random: draws of the random-exclusion control (0: no control).
        budgets: budgets of the curve on the validation split (None: no curve).
        random_state: seed of the random draws (a local generator).
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
    budget = _check_budget(max_excluded)
    if int(n_random) < 0:
        raise Img2TabInputError(f"n_random must be >= 0, got {n_random}")
    d = x.shape[1]
    w_sp = conditional_relevance(x, sp, y)
    w_cl = conditional_relevance(x, y, sp)
    groups_v = np.char.add(yv.astype(str), np.char.add("|", spv.astype(str)))
    already = (_check_masked(clf.masked_features, d) if clf.masked_features is not None
               else np.zeros(0, dtype=np.int64))  # the caller's own masks stay in every candidate
    base = clone(clf)
    baseline = clone(base).fit(x, y)
    scores = [{"ratio": float("inf"), "n_flagged": 0, **group_accuracies(baseline, xv, yv, groups_v)}]
    nothing = _flag_table(w_sp, w_cl, np.inf, 1.0, layout)
    fitted: list[tuple[ConceptTable, ConceptClassifier]] = [(nothing, baseline)]
    seen: set[tuple[int, ...]] = set()
    iterator: Any = cand
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(cand, desc="exclusion ratios")
    for ratio in iterator:
        table = _flag_table(w_sp, w_cl, min_w1, ratio, layout)
        if budget is not None and len(table) > budget:
            table = table.head(budget)
        n_flag = len(table.features)
        key = tuple(int(k) for k in table.features)
        masked = np.union1d(already, table.features).astype(np.int64)
        if n_flag == 0 or masked.size >= d or key in seen:
            continue  # nothing to exclude, nothing left to train on, or a candidate already scored
        seen.add(key)
        model = clone(base).set_params(masked_features=masked.tolist()).fit(x, y)
        scores.append({"ratio": ratio, "n_flagged": n_flag, **group_accuracies(model, xv, yv, groups_v)})
        fitted.append((table, model))
    floor = scores[0]["accuracy"] - float(max_accuracy_drop)
    for sc in scores:
        sc["eligible"] = float(sc["accuracy"] >= floor - 1e-12)
    best = max(range(len(scores)),
               key=lambda i: (scores[i]["eligible"], scores[i]["group_balanced"], -scores[i]["n_flagged"]))
    table, model = fitted[best]
    n_best = len(table.features)
    rng = np.random.default_rng(random_state)
    control = None
    if n_best and int(n_random) > 0:
        draws = []
        for rand in random_exclusions(n_best, d, int(n_random), rng, already):
            mr = clone(base).set_params(masked_features=np.union1d(already, rand).tolist()).fit(x, y)
            draws.append(group_accuracies(mr, xv, yv, groups_v))
        mean, sd = _mean_sd(draws)
        control = {"n_draws": int(n_random), "mean": mean, "sd": sd, "random_state": random_state}
    order = spurious_order(w_sp, w_cl, min(cand), min_w1)
    curve = (exclusion_curve(base, x, y, order, xv, yv, groups_v, tuple(budgets), n_random=n_random,
                             random_state=rng, progress=progress) if budgets else [])
    logger.info("exclusion search: ratio %s (%d of %d concepts), validation group-balanced accuracy "
                "%.4f -> %.4f", scores[best]["ratio"], n_best, d, scores[0]["group_balanced"],
                scores[best]["group_balanced"])
    return ExclusionSearch(ratio=scores[best]["ratio"], flagged=table, scores=scores, classifier=model,
                           baseline=baseline, n_features=d, max_excluded=budget, control=control,
                           order=order, curve=curve)


@dataclass(frozen=True, eq=False)
class ErasureSearch:
    """Result of :func:`erase_spurious`: LEACE of the nuisance from Ψ, then retraining.

    Attributes:
        classifier: the :class:`~img2tab.tabular._erasure.ErasedClassifier` (takes raw Ψ).
        baseline: the classifier trained on raw Ψ.
        rank: dimension of the erased subspace (1 for a binary nuisance); no concept is dropped,
            so ``n_kept == n_features``.
        n_features: ``D``.
        scores: validation :func:`group_accuracies` of ``baseline`` (``"before"``) and of the
            erased classifier (``"after"``).
        control: the same classifier after erasing ``n_random`` random subspaces of the same rank
            (LEACE fitted to Gaussian noise instead of the nuisance): ``n_draws``, ``mean`` /
            ``sd`` of the validation metrics.
        random_classifiers: the control's classifiers (for scoring them on other splits).
    """

    classifier: Any = field(repr=False)
    baseline: Any = field(repr=False)
    rank: int
    n_features: int
    scores: dict[str, dict[str, float]]
    control: dict[str, Any] | None
    random_classifiers: list[Any] = field(default_factory=list, repr=False)

    def summary(self) -> str:
        """One line: what was erased and the validation effect against the random control."""
        line = (f"erased a rank-{self.rank} subspace, all {self.n_features} concepts kept: validation "
                f"group-balanced accuracy {self.scores['before']['group_balanced']:.4f} -> "
                f"{self.scores['after']['group_balanced']:.4f}")
        if self.control is not None:
            c = self.control
            line += (f"; {c['n_draws']} random rank-{self.rank} erasures: {c['mean']['group_balanced']:.4f}"
                     f" ± {c['sd']['group_balanced']:.4f}")
        return line


def erase_spurious(
    clf: Any,
    X_train: Any,
    y_train: Any,
    spurious_train: Any,
    X_val: Any = None,
    y_val: Any = None,
    spurious_val: Any = None,
    *,
    conditional: bool = True,
    shrinkage: str | float | None = "ledoit_wolf",
    n_random: int = 5,
    random_state: int | None = 0,
    baseline: Any = None,
) -> ErasureSearch:
    """Debug by linear concept erasure: LEACE of the nuisance from Ψ before the classifier.

    The eraser (:class:`~img2tab.tabular._erasure.LinearErasure`) is fitted in closed form on
    the training split's Ψ and nuisance labels; with ``conditional=True`` on data centred within
    each class, so only the nuisance direction within classes is removed and the class signal
    correlated with it in a biased split stays. The classifier is then retrained on erased Ψ.
    No concept is dropped; the control erases random subspaces of the same rank instead.

    Args:
        clf: unfitted (or fitted: only its parameters are used) classifier. Never modified.
        X_train, y_train, spurious_train: training Ψ ``(N, D)``, labels and nuisance.
        X_val, y_val, spurious_val: optional validation split for the scores / control.
        conditional: fit the eraser within classes (``given=y_train``).
        shrinkage: covariance shrinkage of the eraser.
        n_random: random-erasure draws (0: no control).
        random_state: seed of the control (a local generator).
        baseline: an already fitted classifier on raw Ψ (else ``clone(clf)`` is fitted).

    Returns:
        :class:`ErasureSearch`.
    """
    from ._dataset import check_labels, check_psi
    from ._erasure import ErasedClassifier, LinearErasure

    x = check_psi(X_train, "X_train")
    y = check_labels(y_train, x.shape[0], name="y_train")
    sp = check_labels(spurious_train, x.shape[0], name="spurious_train")
    given = y if conditional else None
    if baseline is None:
        baseline = clone(clf).fit(x, y)
    eraser = LinearErasure(shrinkage=shrinkage).fit(x, sp, given=given)
    erased = ErasedClassifier(eraser, clone(clf).fit(eraser.transform(x), y))
    have_val = X_val is not None
    scores: dict[str, dict[str, float]] = {}
    if have_val:
        xv = check_psi(X_val, "X_val")
        yv = check_labels(y_val, xv.shape[0], name="y_val")
        spv = check_labels(spurious_val, xv.shape[0], name="spurious_val")
        groups_v = np.char.add(yv.astype(str), np.char.add("|", spv.astype(str)))
        scores = {"before": group_accuracies(baseline, xv, yv, groups_v),
                  "after": group_accuracies(erased, xv, yv, groups_v)}
    rng = np.random.default_rng(random_state)
    control = None
    randoms: list[Any] = []
    if int(n_random) > 0:
        draws = []
        for _ in range(int(n_random)):
            noise = rng.normal(size=(x.shape[0], eraser.rank_))
            er = LinearErasure(shrinkage=shrinkage).fit(x, noise, given=given)
            mr = ErasedClassifier(er, clone(clf).fit(er.transform(x), y))
            randoms.append(mr)
            if have_val:
                draws.append(group_accuracies(mr, xv, yv, groups_v))
        if draws:
            mean, sd = _mean_sd(draws)
            control = {"n_draws": int(n_random), "mean": mean, "sd": sd, "random_state": random_state}
    logger.info("erasure: rank %d of %d dimensions", eraser.rank_, x.shape[1])
    return ErasureSearch(classifier=erased, baseline=baseline, rank=eraser.rank_, n_features=x.shape[1],
                         scores=scores, control=control, random_classifiers=randoms)
