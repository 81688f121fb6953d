"""Concept importance tables, deterministic ranking and per-image contributions."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from img2tab.errors import Img2TabInputError
from img2tab.networks.layout import StyleSpaceLayout
from img2tab.tabular._classifier import ConceptClassifier
from img2tab.tabular._importance import (
    ConceptTable,
    Table,
    concept_contributions,
    concept_table,
    global_importance,
    importance_vector,
    rank_descending,
    top_concepts,
)

PLANTED = 7


def planted(n: int = 400, d: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (rng.random(n) < 0.5).astype(np.int64)
    X[y == 1, PLANTED] += 2.0
    return X, y


@pytest.fixture(scope="module")
def data():
    return planted()


@pytest.fixture(scope="module")
def early_stopped(data):
    """XGBoost with early stopping, so best_iteration_ < number of trees."""
    X, y = data
    rng = np.random.default_rng(1)
    Xv = rng.normal(size=(150, X.shape[1])).astype(np.float32)
    yv = (rng.random(150) < 0.5).astype(np.int64)
    Xv[yv == 1, PLANTED] += 2.0
    clf = ConceptClassifier(
        params={"n_estimators": 200, "max_depth": 4, "learning_rate": 0.3, "n_jobs": 1},
        early_stopping_rounds=10,
        masked_features=[3],
    )
    clf.fit(X, y, eval_set=(Xv, yv))
    assert clf.best_iteration_ + 1 < clf.estimator_.get_booster().num_boosted_rounds()
    return clf


def test_rank_descending_ties_are_distinct_and_ascending():
    vals = np.array([1.0, 3.0, 3.0, 0.0, 3.0, np.nan, 0.0])
    order = rank_descending(vals)
    assert order.tolist() == [1, 2, 4, 0, 3, 6, 5]
    assert np.unique(order).size == vals.size


def test_global_importance_ranks_planted_feature(data, early_stopped):
    table = global_importance(early_stopped)
    assert isinstance(table, ConceptTable)
    assert len(table) == data[0].shape[1]
    assert table["feature"][0] == PLANTED
    assert table["rank"].tolist() == list(range(1, len(table) + 1))
    assert sorted(table.features.tolist()) == list(range(len(table)))
    imp = table["importance"]
    assert np.all(np.diff(imp) <= 0)
    # ties (many zero importances, the masked feature among them) are in ascending index order
    zeros = table.features[imp == 0]
    assert 3 in zeros
    assert zeros.tolist() == sorted(zeros.tolist())
    for col in ("feature", "layer", "channel", "module", "resolution", "is_torgb", "label"):
        assert col in table


@pytest.mark.parametrize("kind", ["gain", "weight", "cover", "total_gain", "total_cover"])
def test_xgboost_importance_types(early_stopped, kind):
    vec = importance_vector(early_stopped, kind)
    assert vec.shape == (32,)
    assert vec[3] == 0.0  # masked
    assert np.argmax(vec) == PLANTED
    top = top_concepts(early_stopped, 3, kind)
    assert len(top) == 3 and top["feature"][0] == PLANTED


def test_importance_uses_prediction_trees_unless_all_trees(early_stopped):
    used = importance_vector(early_stopped, "weight")
    every = importance_vector(early_stopped, "weight", all_trees=True)
    assert used.sum() < every.sum()
    booster = early_stopped.estimator_.get_booster()
    expected = booster[: early_stopped.best_iteration_ + 1].get_score(importance_type="weight")
    assert used.sum() == sum(expected.values())


def test_all_trees_gives_xgboost_feature_importances_of_a_loaded_early_stopped_model(tmp_path):
    import xgboost

    from img2tab.tabular import load_classifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 12))
    y = (X[:, 0] + 0.6 * X[:, 1] + rng.normal(size=400) > 0).astype(int)
    est = xgboost.XGBClassifier(n_estimators=200, max_depth=3, learning_rate=0.3, early_stopping_rounds=5,
                                n_jobs=1)
    est.fit(X[:300], y[:300], eval_set=[(X[300:], y[300:])], verbose=False)
    assert est.best_iteration < est.get_booster().num_boosted_rounds() - 1  # trees after the best one
    est.save_model(tmp_path / "official.json")
    clf = load_classifier(tmp_path / "official.json")
    every = global_importance(clf, all_trees=True)
    used = global_importance(clf)
    official = xgboost.XGBClassifier()
    official.load_model(tmp_path / "official.json")
    expected = official.feature_importances_  # xgboost's own numbers: every tree
    got = np.zeros(12)
    got[every.features] = every["importance"]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    got_used = np.zeros(12)
    got_used[used.features] = used["importance"]
    assert np.abs(got_used - expected).max() > 1e-3  # the prediction trees alone differ


def test_recommended_importance_type(early_stopped):
    from img2tab.tabular import recommended_importance_type

    assert recommended_importance_type(early_stopped) == "total_gain"
    assert recommended_importance_type(ConceptClassifier(preset="paper")) == "gain"
    assert recommended_importance_type(ConceptClassifier("logreg")) is None
    np.testing.assert_array_equal(importance_vector(early_stopped, "recommended"),
                                  importance_vector(early_stopped, "total_gain"))


def test_non_tree_and_permutation_importance(data):
    X, y = data
    lr = ConceptClassifier("logreg").fit(X, y)
    assert global_importance(lr)["feature"][0] == PLANTED
    rf = ConceptClassifier("random_forest", params={"n_estimators": 30, "n_jobs": 1}, random_state=0)
    rf.fit(X, y)
    perm = global_importance(rf, "permutation", X=X[:200], y=y[:200], n_repeats=3)
    assert perm["feature"][0] == PLANTED
    with pytest.raises(Img2TabInputError, match="not available for model='logreg'"):
        importance_vector(lr, "gain")
    with pytest.raises(Img2TabInputError, match="needs X and y"):
        importance_vector(rf, "permutation")


def test_unknown_importance_type(early_stopped):
    with pytest.raises(Img2TabInputError, match="unknown importance_type 'magic'"):
        global_importance(early_stopped, "magic")


def test_contributions_sum_to_margin_and_match_predict_proba(data, early_stopped):
    X, _ = data
    Xt = X[:50]
    con = concept_contributions(early_stopped, Xt)
    assert con.values.shape == (50, 32) and con.bias.shape == (50,)
    assert np.all(con.values[:, 3] == 0.0)  # masked concept contributes nothing
    margin = early_stopped.estimator_.predict(Xt[:, early_stopped.kept_features_], output_margin=True)
    np.testing.assert_allclose(con.margin, margin, atol=1e-4)
    np.testing.assert_allclose(con.margin, early_stopped.decision_function(Xt), atol=1e-4)
    proba = early_stopped.predict_proba(Xt)[:, 1]
    np.testing.assert_allclose(1 / (1 + np.exp(-con.margin)), proba, atol=1e-5)
    top = con.top(0, 5)
    assert len(top) == 5 and "contribution" in top
    assert np.all(np.diff(np.abs(top["contribution"])) <= 0)
    pos = con.top(0, 3, by="positive")["contribution"]
    assert np.all(np.diff(pos) <= 0)


def test_contributions_logreg_exact(data):
    X, y = data
    clf = ConceptClassifier("logreg", masked_features=[0, 1]).fit(X, y)
    con = concept_contributions(clf, X[:20])
    np.testing.assert_allclose(con.margin, clf.decision_function(X[:20]), atol=1e-5)
    assert np.all(con.values[:, :2] == 0)


def test_contributions_unsupported_model(data):
    X, y = data
    rf = ConceptClassifier("random_forest", params={"n_estimators": 5, "n_jobs": 1}).fit(X, y)
    with pytest.raises(Img2TabInputError, match="not 'random_forest'"):
        concept_contributions(rf, X[:5])


def test_concept_table_official_layout():
    t = concept_table([4614, 512, 0, 9087], n_features=9088)
    row = t[0]
    assert (row["layer"], row["channel"], row["module"], row["resolution"]) == (9, 6, "convs.5", 32)
    assert row["label"] == "L9c6@32"
    assert t[1]["layer"] == 1 and t[1]["channel"] == 0 and t[1]["is_torgb"]
    assert t[3]["module"] == "to_rgbs.7" and t[3]["resolution"] == 1024
    with pytest.raises(Img2TabInputError, match="out of range"):
        concept_table([9088], n_features=9088)
    with pytest.raises(Img2TabInputError, match="layout describes 9088"):
        concept_table([1], StyleSpaceLayout.from_generator_config(1024, 2), 100)


def test_table_api(tmp_path):
    t = concept_table([5, 2, 9], n_features=12, importance=[0.5, 0.25, 0.25])
    assert len(t) == 3 and t.column_names[0] == "rank"
    assert t["label"].tolist() == ["f5", "f2", "f9"]
    with pytest.raises(KeyError, match="no column 'w2'"):
        t["w2"]
    assert isinstance(t[1:], ConceptTable) and len(t.head(2)) == 2
    assert t[np.array([False, True, True])]["feature"].tolist() == [2, 9]
    # columns are read-only copies
    with pytest.raises(ValueError):
        t["importance"][0] = 1.0
    rec = t.to_records()
    assert rec["feature"].tolist() == [5, 2, 9] and rec.dtype.names[0] == "rank"
    text = t.to_csv(tmp_path / "t.csv")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "t.csv").read_text())))
    assert text == (tmp_path / "t.csv").read_text()
    assert rows[0]["feature"] == "5" and float(rows[1]["importance"]) == 0.25
    md = t.to_markdown()
    assert md.splitlines()[0].startswith("| rank | feature")
    assert "ConceptTable(3 rows" in repr(t)
    s = t.sort_by("importance", descending=False)
    assert s["feature"].tolist() == [2, 9, 5]  # stable among ties
    assert t.to_dicts()[0]["importance"] == 0.5
    assert isinstance(t.to_dicts()[0]["feature"], int)
    plain = Table({"a": [1, 2], "b": ["x", "y"]})
    assert plain.row(1) == {"a": 2, "b": "y"}
    with pytest.raises(Img2TabInputError, match="has 1 rows, expected 2"):
        Table({"a": [1, 2], "b": [1]})
