"""Group fairness metrics on hand-computed examples."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from img2tab.errors import Img2TabInputError
from img2tab.tabular._fairness import (
    demographic_parity_difference,
    equalized_odds_difference,
    fairness_report,
    group_rates,
)

# group a: 4 samples, group b: 4 samples
Y_TRUE = np.array([1, 1, 0, 0, 1, 0, 0, 0])
Y_PRED = np.array([1, 0, 1, 0, 1, 1, 1, 0])
GROUP = np.array(["a", "a", "a", "a", "b", "b", "b", "b"])
# a: selection 2/4, TPR 1/2, FPR 1/2, acc 2/4
# b: selection 3/4, TPR 1/1, FPR 2/3, acc 2/4


def test_demographic_parity_hand_computed():
    assert demographic_parity_difference(Y_PRED, GROUP) == pytest.approx(0.25)
    assert demographic_parity_difference(Y_PRED, np.zeros(8)) == 0.0
    assert demographic_parity_difference([1, 1, 0, 0], [0, 0, 1, 1]) == 1.0
    # pos_label: selection rate of "no"
    assert demographic_parity_difference(
        np.array(["yes", "no", "no", "no"]), [0, 0, 1, 1], pos_label="no"
    ) == pytest.approx(0.5)


def test_equalized_odds_hand_computed():
    # TPR gap 0.5, FPR gap 2/3 - 1/2 = 1/6 -> 0.5
    assert equalized_odds_difference(Y_TRUE, Y_PRED, GROUP) == pytest.approx(0.5)
    # FPR gap dominates
    y_true = np.array([1, 0, 0, 1, 0, 0])
    y_pred = np.array([1, 0, 0, 1, 1, 1])
    g = np.array([0, 0, 0, 1, 1, 1])
    assert equalized_odds_difference(y_true, y_pred, g) == pytest.approx(1.0)


def test_group_rates_table():
    rates = group_rates(Y_TRUE, Y_PRED, GROUP)
    assert list(rates) == ["a", "b"]
    a, b = rates["a"], rates["b"]
    assert a["n"] == 4 and a["selection_rate"] == 0.5 and a["tpr"] == 0.5 and a["fpr"] == 0.5
    assert b["tpr"] == 1.0 and b["fpr"] == pytest.approx(2 / 3) and b["accuracy"] == 0.5
    assert a["base_rate"] == 0.5 and b["base_rate"] == 0.25


def test_undefined_rate_is_skipped_with_warning():
    # group 1 has no positives: its TPR is undefined
    y_true = np.array([1, 0, 1, 0, 0, 0])
    y_pred = np.array([1, 0, 0, 1, 1, 0])
    g = np.array([0, 0, 0, 1, 1, 1])
    with pytest.warns(RuntimeWarning, match="true positive rate is undefined"):
        eo = equalized_odds_difference(y_true, y_pred, g)
    # TPR: only group 0 (1/2) -> gap 0; FPR: 0/1 vs 2/3 -> 2/3
    assert eo == pytest.approx(2 / 3)
    assert math.isnan(group_rates(y_true, y_pred, g)[1]["tpr"])


def test_report_contents_and_json():
    score = np.array([0.9, 0.4, 0.6, 0.1, 0.8, 0.7, 0.55, 0.2])
    rep = fairness_report(Y_TRUE, Y_PRED, score, GROUP)
    assert rep["n"] == 8
    assert rep["accuracy"] == pytest.approx(4 / 8)
    # recall on positives 2/3, on negatives 2/5
    assert rep["balanced_accuracy"] == pytest.approx((2 / 3 + 2 / 5) / 2)
    # AUC by counting pairs: positives {.9,.4,.8} vs negatives {.6,.1,.7,.55,.2}
    pos, neg = score[Y_TRUE == 1], score[Y_TRUE == 0]
    auc = np.mean([p > q for p in pos for q in neg])
    assert rep["roc_auc"] == pytest.approx(auc)
    assert rep["demographic_parity_difference"] == pytest.approx(0.25)
    assert rep["equalized_odds_difference"] == pytest.approx(0.5)
    assert set(rep["groups"]) == {"a", "b"}
    json.dumps(rep)  # serialisable
    # predict_proba-shaped scores give the same AUC
    rep2 = fairness_report(Y_TRUE, Y_PRED, np.c_[1 - score, score], GROUP)
    assert rep2["roc_auc"] == pytest.approx(auc)


def test_report_without_optional_inputs():
    rep = fairness_report(Y_TRUE, Y_PRED)
    assert math.isnan(rep["roc_auc"]) and "groups" not in rep
    rep = fairness_report(np.ones(4), np.array([1, 0, 1, 1]), np.arange(4.0))
    assert math.isnan(rep["roc_auc"]) and math.isnan(rep["balanced_accuracy"])


def test_validation():
    with pytest.raises(Img2TabInputError, match="expected 8"):
        demographic_parity_difference(Y_PRED, GROUP[:-1])
    with pytest.raises(Img2TabInputError, match="expected 8"):
        equalized_odds_difference(Y_TRUE[:-1], Y_PRED, GROUP)
    with pytest.raises(Img2TabInputError, match="binary"):
        demographic_parity_difference(np.array([0, 1, 2, 1]), [0, 0, 1, 1])
    with pytest.raises(Img2TabInputError, match="pos_label"):
        demographic_parity_difference(np.array([0, 2, 2, 0]), [0, 0, 1, 1])
    with pytest.raises(Img2TabInputError, match="NaN"):
        fairness_report(Y_TRUE, Y_PRED, np.full(8, np.nan), GROUP)
