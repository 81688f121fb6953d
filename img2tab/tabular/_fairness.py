"""Group fairness metrics for binary classifiers over Ψ (demographic parity, equalized odds).

Definitions follow fairlearn's ``demographic_parity_difference`` and
``equalized_odds_difference`` (``method="between_groups"``, ``agg="worst_case"``):

- selection rate of group ``g``: ``P(ŷ = pos | A = g)``;
- demographic parity difference: max minus min selection rate over groups;
- equalized odds difference: the larger of the between-group gaps (max minus min) of the true
  positive rate ``P(ŷ = pos | y = pos, A = g)`` and of the false positive rate
  ``P(ŷ = pos | y ≠ pos, A = g)``.

Undefined rates: a group without positive (negative) samples has no TPR (FPR). Such a rate is
reported as NaN in the per-group table, left out of the gap, and a ``RuntimeWarning`` says which
groups were skipped. A gap is NaN only when no group defines the rate (it is 0 when exactly one
group does). fairlearn instead counts such a rate as 0 (sklearn's ``zero_division``), which can
inflate the gap; pass groups with both classes to get identical numbers.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

from img2tab.errors import Img2TabInputError

__all__ = [
    "demographic_parity_difference",
    "equalized_odds_difference",
    "fairness_report",
    "group_rates",
]

logger = logging.getLogger(__name__)


def _as_1d(values: Any, name: str, n: int | None = None) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr.ravel()
    if arr.ndim != 1:
        raise Img2TabInputError(f"{name} must be 1-D with shape (n_samples,), got {arr.shape}")
    if arr.shape[0] == 0:
        raise Img2TabInputError(f"{name} is empty")
    if n is not None and arr.shape[0] != n:
        raise Img2TabInputError(f"{name} has {arr.shape[0]} entries, expected {n} to match y_pred")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise Img2TabInputError(f"{name} contains {int(np.isnan(arr).sum())} NaN entries")
    return arr


def _check_binary(y: np.ndarray, name: str, pos_label: Any) -> np.ndarray:
    values = np.unique(y)
    if values.size > 2:
        raise Img2TabInputError(f"{name} must be binary, found {values.size} values {values[:6].tolist()}")
    if values.size == 2 and pos_label not in values.tolist():
        raise Img2TabInputError(
            f"pos_label={pos_label!r} is not one of the values of {name} {values.tolist()}"
        )
    return y == pos_label


def _rate(hits: np.ndarray, mask: np.ndarray) -> float:
    total = int(mask.sum())
    return float(hits[mask].mean()) if total else float("nan")


def _gap(rates: dict[Any, float], what: str) -> float:
    defined = {g: r for g, r in rates.items() if not np.isnan(r)}
    skipped = [g for g in rates if g not in defined]
    if skipped:
        warnings.warn(
            f"{what} is undefined for groups {skipped} (no samples of the conditioning class); "
            "they are left out of the gap",
            RuntimeWarning,
            stacklevel=3,
        )
    if not defined:
        return float("nan")
    values = list(defined.values())
    return float(max(values) - min(values))


def group_rates(
    y_true: Any | None, y_pred: Any, protected: Any, *, pos_label: Any = 1
) -> dict[Any, dict[str, float]]:
    """Per-group counts and rates.

    Args:
        y_true: ``(N,)`` true binary labels, or None (then only ``n`` and ``selection_rate``).
        y_pred: ``(N,)`` predicted binary labels.
        protected: ``(N,)`` group membership (any sortable values).
        pos_label: the positive class.

    Returns:
        ``{group: {"n", "selection_rate", "base_rate", "accuracy", "tpr", "fpr"}}`` in
        ``np.unique(protected)`` order; groups are Python scalars, rates floats (NaN when
        undefined).
    """
    pred = _as_1d(y_pred, "y_pred")
    n = pred.shape[0]
    groups_arr = _as_1d(protected, "protected", n)
    pred_pos = _check_binary(pred, "y_pred", pos_label)
    true_pos = None
    if y_true is not None:
        true_pos = _check_binary(_as_1d(y_true, "y_true", n), "y_true", pos_label)
    out: dict[Any, dict[str, float]] = {}
    for g in np.unique(groups_arr).tolist():
        m = groups_arr == g
        row: dict[str, float] = {"n": int(m.sum()), "selection_rate": _rate(pred_pos, m)}
        if true_pos is not None:
            row["base_rate"] = _rate(true_pos, m)
            row["accuracy"] = _rate(pred_pos == true_pos, m)
            row["tpr"] = _rate(pred_pos, m & true_pos)
            row["fpr"] = _rate(pred_pos, m & ~true_pos)
        out[g] = row
    return out


def demographic_parity_difference(y_pred: Any, protected: Any, *, pos_label: Any = 1) -> float:
    """Max minus min over groups of the selection rate ``P(ŷ = pos | group)``.

    Args:
        y_pred: ``(N,)`` predicted binary labels.
        protected: ``(N,)`` group membership.
        pos_label: the positive class.

    Returns:
        A float in ``[0, 1]``; 0 means equal selection rates (and with a single group).

    Raises:
        Img2TabInputError: length mismatch, NaN, non-binary predictions.
    """
    rates = group_rates(None, y_pred, protected, pos_label=pos_label)
    return _gap({g: r["selection_rate"] for g, r in rates.items()}, "selection rate")


def equalized_odds_difference(y_true: Any, y_pred: Any, protected: Any, *, pos_label: Any = 1) -> float:
    """Larger of the between-group TPR gap and FPR gap (fairlearn's definition).

    Args:
        y_true: ``(N,)`` true binary labels.
        y_pred: ``(N,)`` predicted binary labels.
        protected: ``(N,)`` group membership.
        pos_label: the positive class.

    Returns:
        A float in ``[0, 1]``; NaN only if neither rate is defined for any group. Groups with
        an undefined rate are skipped with a ``RuntimeWarning`` (see the module docstring).

    Raises:
        Img2TabInputError: length mismatch, NaN, non-binary labels.
    """
    rates = group_rates(y_true, y_pred, protected, pos_label=pos_label)
    tpr_gap = _gap({g: r["tpr"] for g, r in rates.items()}, "true positive rate")
    fpr_gap = _gap({g: r["fpr"] for g, r in rates.items()}, "false positive rate")
    gaps = [g for g in (tpr_gap, fpr_gap) if not np.isnan(g)]
    return float(max(gaps)) if gaps else float("nan")


def fairness_report(
    y_true: Any,
    y_pred: Any,
    y_score: Any | None = None,
    protected: Any | None = None,
    *,
    pos_label: Any = 1,
) -> dict[str, Any]:
    """Accuracy and group-fairness summary of binary predictions, JSON-serialisable.

    Args:
        y_true: ``(N,)`` true binary labels.
        y_pred: ``(N,)`` predicted labels.
        y_score: ``(N,)`` score or probability of ``pos_label`` (or ``(N, 2)``
            ``predict_proba`` output, column 1 used) for ROC AUC; None skips it.
        protected: ``(N,)`` group membership; None skips the group metrics.
        pos_label: the positive class.

    Returns:
        ``{"n", "accuracy", "balanced_accuracy", "roc_auc", "demographic_parity_difference",
        "equalized_odds_difference", "groups"}``; ``roc_auc`` is NaN without scores or when
        ``y_true`` has one class; ``groups`` maps ``str(group)`` to :func:`group_rates` rows.
        Group entries are absent when ``protected`` is None.
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

    pred = _as_1d(y_pred, "y_pred")
    n = pred.shape[0]
    true = _as_1d(y_true, "y_true", n)
    true_pos = _check_binary(true, "y_true", pos_label)
    pred_pos = _check_binary(pred, "y_pred", pos_label)
    report: dict[str, Any] = {
        "n": int(n),
        "accuracy": float(accuracy_score(true_pos, pred_pos)),
        "balanced_accuracy": float("nan"),
        "roc_auc": float("nan"),
    }
    if np.unique(true_pos).size == 2:
        report["balanced_accuracy"] = float(balanced_accuracy_score(true_pos, pred_pos))
    if y_score is not None:
        score = np.asarray(y_score, dtype=np.float64)
        if score.ndim == 2 and score.shape[1] == 2:
            score = score[:, 1]
        score = _as_1d(score, "y_score", n)
        if np.unique(true_pos).size == 2:
            report["roc_auc"] = float(roc_auc_score(true_pos, score))
        else:
            logger.warning("ROC AUC is undefined: y_true has a single class")
    if protected is not None:
        rates = group_rates(true, pred, protected, pos_label=pos_label)
        report["demographic_parity_difference"] = demographic_parity_difference(
            pred, protected, pos_label=pos_label
        )
        report["equalized_odds_difference"] = equalized_odds_difference(
            true, pred, protected, pos_label=pos_label
        )
        report["groups"] = {str(g): row for g, row in rates.items()}
    return report
