"""Classifier choice by the W1 relevance of important concepts."""

from __future__ import annotations

import numpy as np
import pytest

from img2tab.errors import Img2TabInputError
from img2tab.tabular._classifier import ConceptClassifier
from img2tab.tabular._importance import Table
from img2tab.tabular._selection import (
    classification_metrics,
    compare_classifiers,
    held_out_permutation_importance,
    select_classifier,
)
from img2tab.tabular._wasserstein import wasserstein_relevance

SIGNAL = (7, 11)


def planted(n: int, seed: int, d: int = 24):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (rng.random(n) < 0.5).astype(np.int64)
    X[y == 1, SIGNAL[0]] += 2.0
    X[y == 1, SIGNAL[1]] += 1.0
    return X, y


@pytest.fixture(scope="module")
def setup():
    X, y = planted(400, 0)
    Xt, yt = planted(200, 1)
    w1 = wasserstein_relevance(X, y)
    fast = {"n_estimators": 30, "max_depth": 3, "n_jobs": 1}
    clfs = {
        "xgboost": ConceptClassifier(params=fast, random_state=0).fit(X, y),
        "logreg": ConceptClassifier("logreg").fit(X, y),
        # a classifier that may not use the relevant concepts
        "xgboost-masked": ConceptClassifier(params=fast, masked_features=list(SIGNAL)).fit(X, y),
    }
    return clfs, Xt, yt, w1


def test_compare_classifiers_table(setup):
    clfs, Xt, yt, w1 = setup
    table = compare_classifiers(clfs, Xt, yt, w1, k=2)
    assert isinstance(table, Table) and len(table) == 3
    assert table["classifier"].tolist() == list(clfs)
    for col in ("accuracy", "balanced_accuracy", "auc", "overlap_at_k"):
        assert np.all((table[col] >= 0) & (table[col] <= 1))
    row = {r["classifier"]: r for r in table}
    assert row["logreg"]["overlap_at_k"] == 1.0
    assert row["xgboost-masked"]["overlap_at_k"] == 0.0
    assert row["xgboost-masked"]["w1_mean"] < row["xgboost"]["w1_mean"]
    assert abs(row["xgboost-masked"]["accuracy"] - 0.5) < 0.12
    assert row["logreg"]["spearman"] > 0
    assert row["logreg"]["n_used"] == Xt.shape[1]
    assert row["xgboost"]["w1_q25"] <= row["xgboost"]["w1_median"] <= row["xgboost"]["w1_q75"]
    assert select_classifier(table) in ("xgboost", "logreg")
    assert select_classifier(clfs, Xt, yt, w1, k=2) == select_classifier(table)


def test_select_classifier_accuracy_first_then_relevance():
    t = Table(
        {
            "classifier": ["a", "b", "c"],
            "w1_mean": [0.5, 0.9, 0.9],
            "accuracy": [0.99, 0.80, 0.85],
        }
    )
    # default: only classifiers within 1 point of the best accuracy are eligible
    assert select_classifier(t) == "a"
    name, reason = select_classifier(t, return_reason=True)
    assert name == "a" and "not eligible: b, c" in reason and "1 point" in reason
    # a 15-point allowance: b and c are eligible, tie on W1 -> the more accurate c
    assert select_classifier(t, max_accuracy_drop=0.15) == "c"
    # the paper's rule: highest W1, accuracy only breaking ties
    assert select_classifier(t, max_accuracy_drop=None) == "c"
    assert select_classifier(t, preset="paper") == "c"
    t2 = Table({"classifier": ["a", "b"], "w1_mean": [0.9, 0.9], "accuracy": [0.8, 0.8]})
    assert select_classifier(t2) == "a"
    with pytest.raises(Img2TabInputError, match="max_accuracy_drop"):
        select_classifier(t, max_accuracy_drop=-1)
    with pytest.raises(Img2TabInputError, match="unknown preset"):
        select_classifier(t, preset="nope")


def test_permutation_importance_restricted_to_candidates_is_exact(setup):
    clfs, Xt, yt, _ = setup
    full = held_out_permutation_importance(clfs["logreg"], Xt, yt, n_repeats=2, random_state=3)
    cand = [1, 7, 11, 20]
    part = held_out_permutation_importance(clfs["logreg"], Xt, yt, candidates=cand, n_repeats=2,
                                           random_state=3)
    # sklearn draws each column's shuffles from the same seed: the candidates get identical values
    np.testing.assert_array_equal(part[cand], full[cand])
    assert np.count_nonzero(np.delete(part, cand)) == 0
    assert int(np.argmax(full)) == SIGNAL[0]  # the strongest planted concept matters most
    # the same numbers as sklearn's own call on the full matrix
    from sklearn.inspection import permutation_importance

    ref = permutation_importance(clfs["logreg"], Xt, yt, scoring="neg_log_loss", n_repeats=2,
                                 random_state=3)
    np.testing.assert_allclose(full, ref.importances_mean, rtol=1e-12, atol=1e-12)


def test_compare_classifiers_importance_methods(setup):
    clfs, Xt, yt, w1 = setup
    perm = compare_classifiers(clfs, Xt, yt, w1, k=2, n_candidates=None)
    assert set(perm["importance"].tolist()) == {"permutation"}
    row = {r["classifier"]: r for r in perm}
    # both models that may use the planted concepts rank exactly them first by permutation
    assert row["logreg"]["overlap_at_k"] == 1.0 and row["xgboost"]["overlap_at_k"] == 1.0
    assert row["xgboost-masked"]["overlap_at_k"] == 0.0
    paper = compare_classifiers(clfs, Xt, yt, w1, k=2, preset="paper")
    assert set(paper["importance"].tolist()) == {"feature_importances_"}
    rec = compare_classifiers(clfs, Xt, yt, w1, k=2, importance="recommended")
    assert set(rec["importance"].tolist()) == {"recommended"}
    with pytest.raises(Img2TabInputError, match="unknown importance"):
        compare_classifiers(clfs, Xt, yt, w1, importance="bogus")


def test_classification_metrics(setup):
    clfs, Xt, yt, _ = setup
    m = classification_metrics(clfs["logreg"], Xt, yt)
    assert set(m) == {"accuracy", "balanced_accuracy", "auc"}
    assert m["auc"] > 0.8
    single = classification_metrics(clfs["logreg"], Xt[yt == 1], yt[yt == 1])
    assert np.isnan(single["auc"])


def test_bad_input(setup):
    clfs, Xt, yt, w1 = setup
    with pytest.raises(Img2TabInputError, match="w1 has 5 scores"):
        compare_classifiers(clfs, Xt, yt, w1[:5])
    with pytest.raises(Img2TabInputError, match="non-empty dict"):
        compare_classifiers({}, Xt, yt, w1)
    with pytest.raises(Img2TabInputError, match="needs a compare_classifiers table"):
        select_classifier(clfs)
    with pytest.raises(Img2TabInputError, match="X_test has shape"):
        compare_classifiers(clfs, Xt[:, :5], yt, w1)
    with pytest.raises(Img2TabInputError, match="expecting 24 features"):
        compare_classifiers(clfs, Xt[:, :5], yt, w1, importance="native")
