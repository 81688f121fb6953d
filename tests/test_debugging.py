"""Concept-level debugging with fairness metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from img2tab.errors import Img2TabInputError
from img2tab.tabular._classifier import ConceptClassifier
from img2tab.tabular._debugging import METRICS, DebugReport, debug_classifier, evaluate, suggest_exclusions

SIGNAL, SHORTCUT = 7, 3
FAST = {"n_estimators": 30, "max_depth": 3, "n_jobs": 1}


def biased(n: int, seed: int, p_agree: float):
    """y carried by feature 7; protected group g carried strongly by feature 3.

    In training data y agrees with g with probability ``p_agree`` (a spurious shortcut); in
    the evaluation data y and g are independent (p_agree = 0.5).
    """
    rng = np.random.default_rng(seed)
    g = (rng.random(n) < 0.5).astype(np.int64)
    y = np.where(rng.random(n) < p_agree, g, 1 - g)
    X = rng.normal(size=(n, 16)).astype(np.float32)
    X[:, SIGNAL] += 1.2 * y
    X[:, SHORTCUT] += 3.0 * g
    return X, y, g


@pytest.fixture(scope="module")
def split():
    X, y, g = biased(600, 0, 0.95)
    Xe, ye, ge = biased(400, 1, 0.5)
    return X, y, g, Xe, ye, ge


@pytest.fixture(scope="module")
def fitted(split):
    X, y, *_ = split
    return ConceptClassifier(params=FAST, random_state=0).fit(X, y)


def test_suggest_exclusions_finds_protected_concept(split, fitted):
    X, _, g, *_ = split
    table = suggest_exclusions(fitted, X, g, k_important=5, n=2)
    assert len(table) == 2
    assert table["feature"][0] == SHORTCUT
    assert {"importance", "importance_rank", "w1_protected"} <= set(table.column_names)
    assert table["w1_protected"][0] >= table["w1_protected"][1]


def test_debug_removes_shortcut_and_improves_fairness(split, fitted):
    X, y, g, Xe, ye, ge = split
    copies = [a.copy() for a in (X, y, Xe, ye, ge)]
    proba_before = fitted.predict_proba(Xe)
    report = debug_classifier(fitted, X, y, Xe, ye, exclude=[SHORTCUT], protected_eval=ge)
    assert isinstance(report, DebugReport)
    assert set(report.before) == set(METRICS) == set(report.after)
    assert report.excluded == (SHORTCUT,)
    assert report.after["dp_difference"] < report.before["dp_difference"]
    assert report.after["dp_difference"] < 0.15
    assert report.after["eo_difference"] < report.before["eo_difference"]
    assert report.after["accuracy"] > report.before["accuracy"]
    assert report.classifier.feature_importances_[SHORTCUT] == 0
    assert report.excluded_concepts["feature"].tolist() == [SHORTCUT]
    # nothing the caller passed in changed
    for a, b in zip((X, y, Xe, ye, ge), copies):
        np.testing.assert_array_equal(a, b)
    assert fitted.masked_features is None
    np.testing.assert_array_equal(fitted.predict_proba(Xe), proba_before)
    assert report.baseline is fitted
    data = json.loads(json.dumps(report.to_dict()))
    assert data["excluded"] == [SHORTCUT] and data["strategy"] == "drop"
    assert data["delta"]["dp_difference"] < 0
    assert "| dp_difference |" in report.to_markdown()


def test_debug_mean_strategy_unfitted_and_suggestion_table(split):
    X, y, g, Xe, ye, ge = split
    clf = ConceptClassifier("logreg", masked_features=[0])
    sugg = suggest_exclusions(ConceptClassifier("logreg").fit(X, y), X, g, n=1)
    report = debug_classifier(clf, X, y, Xe, ye, sugg, strategy="mean")
    assert not hasattr(clf, "classes_")  # the caller's estimator stays unfitted
    assert report.masked == (0, SHORTCUT)
    assert report.classifier.mask_strategy == "mean"
    assert report.before["dp_difference"] is None  # no protected attribute given
    assert report.to_dict()["after"]["eo_difference"] is None


def test_evaluate_without_and_with_protected(split, fitted):
    _, _, _, Xe, ye, ge = split
    plain = evaluate(fitted, Xe, ye)
    assert plain["dp_difference"] is None and 0 <= plain["accuracy"] <= 1
    fair = evaluate(fitted, Xe, ye, ge)
    assert 0 <= fair["dp_difference"] <= 1
    with pytest.raises(Img2TabInputError, match="protected has 3 entries"):
        evaluate(fitted, Xe, ye, ge[:3])


@pytest.mark.parametrize(
    ("exclude", "match"),
    [
        ([], "exclude is empty"),
        ([16], "out of range for 16 features"),
        ([2, 2], "duplicates"),
    ],
)
def test_debug_bad_exclusions(split, fitted, exclude, match):
    X, y, _, Xe, ye, _ = split
    with pytest.raises(Img2TabInputError, match=match):
        debug_classifier(fitted, X, y, Xe, ye, exclude)


def test_debug_rejects_other_estimators(split):
    from sklearn.linear_model import LogisticRegression

    X, y, _, Xe, ye, _ = split
    with pytest.raises(Img2TabInputError, match="needs a ConceptClassifier"):
        debug_classifier(LogisticRegression(), X, y, Xe, ye, [1])


def test_flag_spurious_concepts_separates_nuisance_from_class():
    from img2tab.tabular import conditional_relevance, flag_spurious_concepts

    rng = np.random.default_rng(0)
    n = 2000
    y = rng.integers(0, 2, n)
    spur = np.where(rng.random(n) < 0.9, y, 1 - y)  # 90 % agreement with the class
    X = rng.normal(size=(n, 12)).astype(np.float32)
    X[:, 3] += 2.0 * y  # class concept
    X[:, 7] += 2.0 * spur  # nuisance concept
    X[:, 8] += 1.5 * spur
    before = X.copy()
    plain = np.abs(X[y == 1].mean(0) - X[y == 0].mean(0))
    assert plain[7] > 1.0  # unconditioned, the nuisance looks class-relevant
    cond = conditional_relevance(X, spur, y)
    assert cond[3] < 0.2 and cond[7] > 1.0
    table = flag_spurious_concepts(X, y, spur)
    assert list(table["feature"]) == [7, 8]
    assert (table["w1_spurious"] > table["w1_class"]).all()
    np.testing.assert_array_equal(X, before)


def leaky(n: int, seed: int, p_agree: float):
    """Class signal (cols 0, 3), a strong nuisance (col 1) and a column mixing both (col 2)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.where(rng.random(n) < p_agree, y, 1 - y)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    X[:, 0] += 3.0 * y
    X[:, 1] += 4.0 * s
    X[:, 2] += 2.0 * s + 0.8 * y  # nuisance-dominated mix: left in by loose ratios
    X[:, 3] += 3.0 * y
    return X, y, s


def test_group_accuracies():
    from img2tab.tabular import group_accuracies

    class Const:
        def predict(self, X):
            return np.ones(len(X), dtype=np.int64)

    y = np.array([1, 1, 0, 0, 1, 0])
    g = np.array(["a", "a", "a", "b", "b", "b"])
    out = group_accuracies(Const(), np.zeros((6, 2)), y, g)
    assert out["accuracy"] == pytest.approx(0.5)
    assert out["group_a"] == pytest.approx(2 / 3) and out["group_b"] == pytest.approx(1 / 3)
    assert out["worst_group"] == pytest.approx(1 / 3)
    assert out["group_balanced"] == pytest.approx(0.5)
    with pytest.raises(Img2TabInputError, match="groups has 5 entries"):
        group_accuracies(Const(), np.zeros((6, 2)), y, g[:5])


def test_tune_spurious_exclusion_beats_baseline_on_decorrelated_data():
    from img2tab.tabular import ExclusionSearch, tune_spurious_exclusion

    X, y, s = leaky(3000, 0, 0.9)
    Xv, yv, sv = leaky(2000, 1, 0.9)
    Xd, yd, _ = leaky(4000, 2, 0.5)
    before = X.copy()
    clf = ConceptClassifier(params=FAST, random_state=0)
    res = tune_spurious_exclusion(clf, X, y, s, Xv, yv, sv, ratios=(4.0, 1.0, 0.3))
    assert isinstance(res, ExclusionSearch)
    np.testing.assert_array_equal(X, before)
    assert clf.masked_features is None and not hasattr(clf, "classes_")  # caller's object untouched
    assert res.scores[0]["ratio"] == float("inf") and res.scores[0]["n_flagged"] == 0
    assert {1, 2} <= set(res.excluded) and not {0, 3} & set(res.excluded)
    chosen = next(sc for sc in res.scores if sc["ratio"] == res.ratio)
    assert chosen["eligible"] == 1.0
    assert chosen["group_balanced"] == max(sc["group_balanced"] for sc in res.scores if sc["eligible"])
    acc = {name: float((c.predict(Xd) == yd).mean()) for name, c in
           (("before", res.baseline), ("after", res.classifier))}
    assert acc["after"] > acc["before"] + 0.01, acc
    assert res.classifier.masked_features == sorted(res.excluded)
    # masks the caller already had are kept in every candidate
    pre = tune_spurious_exclusion(clf.set_params(masked_features=[5]), X, y, s, Xv, yv, sv,
                                  ratios=(1.0,))
    assert pre.baseline.masked_features == [5]
    assert 5 in pre.classifier.masked_features and set(pre.excluded) <= set(pre.classifier.masked_features)
    clf.set_params(masked_features=None)
    # with no accuracy budget, only candidates at least as accurate in-distribution are eligible
    strict = tune_spurious_exclusion(clf, X, y, s, Xv, yv, sv, ratios=(4.0, 1.0, 0.3),
                                     max_accuracy_drop=0.0)
    chosen = next(sc for sc in strict.scores if sc["ratio"] == strict.ratio)
    assert chosen["accuracy"] >= strict.scores[0]["accuracy"]


def test_tune_spurious_exclusion_validates_inputs():
    from img2tab.tabular import tune_spurious_exclusion

    X, y, s = leaky(200, 0, 0.9)
    clf = ConceptClassifier(params=FAST, random_state=0)
    with pytest.raises(Img2TabInputError, match="X_val has 7 features"):
        tune_spurious_exclusion(clf, X, y, s, X[:, :7], y, s)
    with pytest.raises(Img2TabInputError, match="ratios is empty"):
        tune_spurious_exclusion(clf, X, y, s, X, y, s, ratios=())
    with pytest.raises(Img2TabInputError, match="needs a ConceptClassifier"):
        tune_spurious_exclusion(object(), X, y, s, X, y, s)


# --------------------------------------------------------------------------- honest reporting
def test_debug_report_counts_and_random_control(split, fitted):
    X, y, _, Xe, ye, ge = split
    state = np.random.get_state()  # noqa: NPY002 - checking that the global state is untouched
    rep = debug_classifier(fitted, X, y, Xe, ye, [SHORTCUT], protected_eval=ge, n_random=5, random_state=1)
    assert np.random.get_state()[1].tolist() == state[1].tolist()  # noqa: NPY002
    assert (rep.n_excluded, rep.n_features, rep.n_kept) == (1, 16, 15)
    c = rep.control
    assert c["n_draws"] == 5 and len(c["draws"]) == 5
    # the control's draws are the seeded random sets, each retrained and evaluated
    from img2tab.tabular import random_exclusions

    sets = random_exclusions(1, 16, 5, 1)
    for s_, d in zip(sets, c["draws"]):
        m = ConceptClassifier(params=FAST, random_state=0, masked_features=s_.tolist()).fit(X, y)
        assert d["accuracy"] == evaluate(m, Xe, ye, ge)["accuracy"]
    accs = [d["accuracy"] for d in c["draws"]]
    assert c["mean"]["accuracy"] == pytest.approx(np.mean(accs))
    assert c["sd"]["accuracy"] == pytest.approx(np.std(accs, ddof=1))
    md = rep.to_markdown()
    assert "Excluded 1 of 16 concepts (15 kept)" in md and "5 random exclusions of 1" in md
    js = rep.to_dict()
    assert js["n_excluded"] == 1 and js["n_kept"] == 15 and js["control"]["n_draws"] == 5
    json.dumps(js)
    with pytest.raises(Img2TabInputError, match="more than max_excluded=1"):
        debug_classifier(fitted, X, y, Xe, ye, [SHORTCUT, 4], max_excluded=1)
    none = debug_classifier(fitted, X, y, Xe, ye, [SHORTCUT], n_random=0)
    assert none.control is None and "random" not in none.to_markdown()


def test_random_exclusions_are_seeded_and_avoid_masked():
    from img2tab.tabular import random_exclusions

    a = random_exclusions(3, 10, 6, 7, already=[0, 1])
    b = random_exclusions(3, 10, 6, 7, already=[0, 1])
    assert len(a) == 6
    for x, x2 in zip(a, b):
        np.testing.assert_array_equal(x, x2)
        assert x.size == 3 and np.unique(x).size == 3 and not {0, 1} & set(x.tolist())
    with pytest.raises(Img2TabInputError, match="cannot draw 9"):
        random_exclusions(9, 10, 1, 0, already=[0, 1])


def test_budget_order_and_curve():
    from img2tab.tabular import exclusion_curve, group_accuracies, spurious_order, tune_spurious_exclusion

    X, y, s = leaky(3000, 0, 0.9)
    Xv, yv, sv = leaky(2000, 1, 0.9)
    clf = ConceptClassifier(params=FAST, random_state=0)
    res = tune_spurious_exclusion(clf, X, y, s, Xv, yv, sv, ratios=(4.0, 1.0, 0.3), max_excluded=1,
                                  n_random=5, budgets=(1, 2, 50))
    # feature 1 carries only the nuisance: first in the flagged order, the only one a budget of 1 allows
    assert res.order[0] == 1 and res.excluded == [1]
    assert res.n_excluded == 1 and res.n_features == 8 and res.max_excluded == 1
    assert res.control["n_draws"] == 5
    assert "excluded 1 of 8 concepts (budget 1)" in res.summary()
    budgets = [r["n_excluded"] for r in res.curve]
    assert budgets == [0, 1, 2]  # 50 > the number of flagged concepts: skipped
    groups = np.char.add(yv.astype(str), np.char.add("|", sv.astype(str)))
    m2 = ConceptClassifier(params=FAST, random_state=0, masked_features=res.order[:2].tolist()).fit(X, y)
    assert res.curve[2]["flagged"] == group_accuracies(m2, Xv, yv, groups)
    assert res.curve[0]["flagged"] == group_accuracies(res.baseline, Xv, yv, groups)
    # excluding the two nuisance concepts beats excluding two random ones
    assert res.curve[2]["flagged"]["group_balanced"] > res.curve[2]["random_mean"]["group_balanced"]
    direct = exclusion_curve(clf, X, y, spurious_order([0, 3, 1], [1, 0, 0], 1.0), Xv, yv, groups, (1,),
                             n_random=5)
    assert direct[1]["n_excluded"] == 1
    np.testing.assert_array_equal(spurious_order([0.5, 3.0, 1.0], [1.0, 0.0, 0.1], 1.0), [1, 2])


def test_erase_spurious_removes_the_shortcut_with_a_control():
    from img2tab.tabular import ErasureSearch, erase_spurious

    X, y, s = leaky(3000, 0, 0.9)
    Xv, yv, sv = leaky(2000, 1, 0.9)
    Xd, yd, sd = leaky(4000, 2, 0.5)
    clf = ConceptClassifier(params=FAST, random_state=0)
    res = erase_spurious(clf, X, y, s, Xv, yv, sv, n_random=5)
    assert isinstance(res, ErasureSearch) and res.rank == 1 and res.n_features == 8
    # within classes, the erased Ψ has no linear trace of the nuisance
    xe = res.classifier.eraser.transform(X.astype(np.float64))
    pooled = sum((xe[y == c] - xe[y == c].mean(0)).T @ (s[y == c] - s[y == c].mean()) for c in (0, 1))
    assert np.abs(pooled).max() < 1e-6
    acc = {name: float((c.predict(Xd) == yd).mean()) for name, c in
           (("before", res.baseline), ("after", res.classifier))}
    assert acc["after"] > acc["before"] + 0.01, acc
    assert res.control["n_draws"] == 5 and len(res.random_classifiers) == 5
    assert res.scores["after"]["group_balanced"] > res.control["mean"]["group_balanced"]
    assert "rank-1 subspace, all 8 concepts kept" in res.summary()
