"""ConceptClassifier: planted signals, masking, persistence, official models, bad input, sklearn API."""

from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from img2tab.errors import Img2TabInputError
from img2tab.tabular._classifier import (
    PRESETS,
    ConceptClassifier,
    default_device,
    load_classifier,
)

PLANTED = 7
FAST_XGB = {"n_estimators": 30, "max_depth": 3, "n_jobs": 1}


def planted(n: int = 400, d: int = 32, seed: int = 0, shift: float = 2.0):
    """Ψ ~ N(0, 1); rows with y = 1 get +shift on feature PLANTED (the only signal)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (rng.random(n) < 0.5).astype(np.int64)
    X[y == 1, PLANTED] += shift
    return X, y


@pytest.fixture(scope="module")
def data():
    X, y = planted(600)
    return X[:400], y[:400], X[400:], y[400:]


@pytest.fixture(scope="module")
def xgb(data):
    X, y, _, _ = data
    return ConceptClassifier(params=FAST_XGB, random_state=0).fit(X, y)


def _model(name: str) -> ConceptClassifier:
    if name == "xgboost":
        return ConceptClassifier(params=FAST_XGB, random_state=0)
    if name == "random_forest":
        return ConceptClassifier("random_forest", params={"n_estimators": 50, "n_jobs": 1}, random_state=0)
    return ConceptClassifier(name, random_state=0)


# --------------------------------------------------------------------------- planted signal
@pytest.mark.parametrize("model", ["xgboost", "logreg", "random_forest"])
def test_planted_feature_in_top3(data, model):
    X, y, Xt, yt = data
    clf = _model(model).fit(X, y)
    assert clf.n_features_in_ == X.shape[1]
    assert clf.feature_importances_.shape == (X.shape[1],)
    assert PLANTED in np.argsort(-clf.feature_importances_, kind="stable")[:3]
    assert clf.score(Xt, yt) > 0.75


@pytest.mark.parametrize("strategy", ["drop", "mean"])
@pytest.mark.parametrize("model", ["xgboost", "logreg"])
def test_masking_planted_feature_drops_to_chance(data, model, strategy):
    X, y, Xt, yt = data
    base = _model(model).fit(X, y)
    before_pred = base.predict_proba(Xt)
    masked = clone(base).set_params(masked_features=[PLANTED], mask_strategy=strategy).fit(X, y)
    assert abs(masked.score(Xt, yt) - 0.5) <= 0.1
    assert masked.feature_importances_[PLANTED] == 0.0
    assert masked.masked_features_.tolist() == [PLANTED]
    # the original is untouched
    assert base.masked_features is None
    np.testing.assert_array_equal(base.predict_proba(Xt), before_pred)


def test_mask_strategy_mean_never_uses_raw_zero(data):
    X, y, _, _ = data
    clf = ConceptClassifier("logreg", masked_features=[PLANTED], mask_strategy="mean").fit(X, y)
    np.testing.assert_allclose(clf.mask_values_, [X[:, PLANTED].mean()], rtol=1e-6)
    assert clf.kept_features_.size == X.shape[1]
    drop = ConceptClassifier("logreg", masked_features=[PLANTED]).fit(X, y)
    assert PLANTED not in drop.kept_features_


def test_inputs_never_mutated(data):
    X, y, Xt, _ = data
    X0, y0, Xt0 = X.copy(), y.copy(), Xt.copy()
    mask = [PLANTED, 3]
    for strategy in ("drop", "mean"):
        clf = ConceptClassifier(params=FAST_XGB, masked_features=mask, mask_strategy=strategy)
        clf.fit(X, y)
        clf.predict(Xt)
        clf.predict_proba(Xt)
        clf.decision_function(Xt)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(Xt, Xt0)
    assert mask == [PLANTED, 3]


def test_decision_function_is_log_odds(xgb, data):
    _, _, Xt, _ = data
    margin = xgb.decision_function(Xt)
    assert margin.shape == (Xt.shape[0],)
    np.testing.assert_allclose(1 / (1 + np.exp(-margin)), xgb.predict_proba(Xt)[:, 1], atol=1e-6)


def test_multiclass_and_string_labels():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 8)).astype(np.float32)
    y = rng.integers(0, 3, 300)
    X[np.arange(300), y] += 3.0
    names = np.array(["cat", "dog", "fox"])[y]
    clf = ConceptClassifier(params=FAST_XGB).fit(X, names)
    assert clf.classes_.tolist() == ["cat", "dog", "fox"]
    assert clf.predict_proba(X).shape == (300, 3)
    assert clf.decision_function(X).shape == (300, 3)
    assert clf.score(X, names) > 0.9
    assert set(np.argsort(-clf.feature_importances_)[:3]) == {0, 1, 2}


# --------------------------------------------------------------------------- presets / config
def test_presets_resolve_to_official_hyperparameters(data):
    X, y, _, _ = data
    paper = ConceptClassifier(preset="paper", params={"n_estimators": 3, "n_jobs": 1}).fit(X, y)
    p = paper.estimator_.get_params()
    for key, val in PRESETS["paper"].items():
        if key != "n_estimators":
            assert p[key] == val, key
    assert p["tree_method"] == "hist" and p["device"] == "cpu"
    assert paper.best_iteration_ is None

    shipped = ConceptClassifier(preset="shipped", params={"n_estimators": 200, "n_jobs": 1}).fit(X, y)
    s = shipped.estimator_.get_params()
    assert (s["max_depth"], s["random_state"], s["early_stopping_rounds"]) == (6, 2022, 20)
    assert shipped.best_iteration_ is not None
    assert shipped.best_iteration_ < shipped.estimator_.get_booster().num_boosted_rounds()
    # constructor arguments override the preset
    own = ConceptClassifier(preset="shipped", random_state=5, early_stopping_rounds=3, params={"n_jobs": 1})
    own.fit(X, y)
    assert own.estimator_.get_params()["random_state"] == 5
    assert own.estimator_.get_params()["early_stopping_rounds"] == 3


def test_device_default_and_override(data):
    X, y, _, _ = data
    assert default_device() in ("cpu", "cuda")
    clf = ConceptClassifier(params={"n_estimators": 2, "n_jobs": 1}, device="cpu").fit(X, y)
    assert clf.device_ == "cpu" and clf.estimator_.get_params()["device"] == "cpu"


def test_eval_set_early_stopping(data):
    X, y, Xt, yt = data
    clf = ConceptClassifier(params={"n_estimators": 300, "n_jobs": 1}, early_stopping_rounds=5)
    clf.fit(X, y, eval_set=(Xt, yt))
    assert clf.best_iteration_ is not None
    assert clf.estimator_.get_booster().num_boosted_rounds() <= clf.best_iteration_ + 6


def test_missing_boosting_extra_names_extra(data):
    X, y, _, _ = data
    for name in ("lightgbm", "catboost"):
        try:
            __import__(name)
        except ImportError:
            with pytest.raises(ImportError, match=r"img2tab\[boosting\]"):
                ConceptClassifier(name).fit(X, y)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("lightgbm", {"n_estimators": 100, "n_jobs": 1, "verbose": -1}),
        ("catboost", {"iterations": 100, "thread_count": 1}),
    ],
)
def test_optional_boosting_models(tmp_path, data, name, params):
    pytest.importorskip(name)
    from img2tab.tabular._importance import concept_contributions

    X, y, Xt, yt = data
    clf = ConceptClassifier(name, params=params, early_stopping_rounds=5, masked_features=[3]).fit(X, y)
    assert clf.best_iteration_ is not None
    assert np.argmax(clf.feature_importances_) == PLANTED and clf.feature_importances_[3] == 0
    assert clf.score(Xt, yt) > 0.75
    con = concept_contributions(clf, Xt[:10])
    np.testing.assert_allclose(con.margin, clf.decision_function(Xt[:10]), atol=1e-6)
    back = load_classifier(clf.save(tmp_path / name))
    np.testing.assert_array_equal(back.predict_proba(Xt), clf.predict_proba(Xt))


def test_standardized_xgboost_saves_and_explains(tmp_path, data):
    from img2tab.tabular._importance import concept_contributions

    X, y, Xt, _ = data
    clf = ConceptClassifier(params=FAST_XGB, standardize=True).fit(X * 5 + 3, y)
    con = concept_contributions(clf, Xt[:10] * 5 + 3)
    np.testing.assert_allclose(con.margin, clf.decision_function(Xt[:10] * 5 + 3), atol=1e-5)
    back = load_classifier(clf.save(tmp_path / "scaled"))
    np.testing.assert_array_equal(back.predict_proba(Xt), clf.predict_proba(Xt))


# --------------------------------------------------------------------------- persistence
@pytest.mark.parametrize(
    "clf",
    [
        ConceptClassifier(params=FAST_XGB, masked_features=[PLANTED, 2]),
        ConceptClassifier(preset="shipped", params={"n_estimators": 100, "n_jobs": 1}),
        ConceptClassifier("logreg", masked_features=[1], mask_strategy="mean"),
    ],
    ids=["xgb-drop", "xgb-early-stopping", "logreg-mean"],
)
def test_save_load_roundtrip(tmp_path, data, clf):
    X, y, Xt, _ = data
    labels = np.where(y == 1, "yes", "no")
    clf = clone(clf).fit(X, labels)
    out = clf.save(tmp_path / "model")
    assert (out / "img2tab.json").is_file()
    back = load_classifier(out)
    np.testing.assert_array_equal(back.predict_proba(Xt), clf.predict_proba(Xt))
    np.testing.assert_array_equal(back.predict(Xt), clf.predict(Xt))
    np.testing.assert_array_equal(back.classes_, clf.classes_)
    np.testing.assert_allclose(back.feature_importances_, clf.feature_importances_)
    assert back.best_iteration_ == clf.best_iteration_
    assert back.get_params() == clf.get_params()
    # pickling works too
    again = pickle.loads(pickle.dumps(back))
    np.testing.assert_array_equal(again.predict_proba(Xt), clf.predict_proba(Xt))


@pytest.fixture(scope="module")
def official_like():
    """A small XGBoost model over the official 9088-feature layout with early stopping."""
    import xgboost

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 9088)).astype(np.float32)
    y = (X[:, 4614] + 0.5 * rng.normal(size=120) > 0).astype(np.int64)
    model = xgboost.XGBClassifier(
        n_estimators=40,
        max_depth=2,
        learning_rate=0.3,
        n_jobs=1,
        objective="binary:logistic",
        tree_method="hist",
        early_stopping_rounds=5,
    )
    model.fit(X[:90], y[:90], eval_set=[(X[90:], y[90:])], verbose=False)
    return model, X


def test_official_layout_xgboost_json_loads_and_predicts_the_same(tmp_path, official_like):
    model, X = official_like
    path = tmp_path / "Final_gender_XGBoost.json"
    model.save_model(path)
    clf = load_classifier(path)
    assert clf.n_features_in_ == 9088
    assert clf.classes_.tolist() == [0, 1]
    assert clf.best_iteration_ == model.best_iteration
    assert clf.best_iteration_ < model.get_booster().num_boosted_rounds() - 1
    np.testing.assert_array_equal(clf.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(clf.predict(X), model.predict(X))
    assert clf.feature_importances_.shape == (9088,)
    assert np.argmax(clf.feature_importances_) == 4614
    with pytest.raises(Img2TabInputError, match="expecting 9088 features"):
        clf.predict(X[:, :100])


def test_official_hyperparameters_restored_for_retraining(tmp_path, official_like):
    model, X = official_like
    n_rounds = model.get_booster().num_boosted_rounds()
    # emulate an xgboost 1.7 file: hyper-parameters in the "scikit_learn" attribute
    meta = {
        "n_estimators": 600,
        "objective": "binary:logistic",
        "max_depth": 6,
        "learning_rate": 0.1,
        "tree_method": "gpu_hist",
        "gpu_id": 1,
        "gamma": 0.3,
        "subsample": 0.74,
        "colsample_bytree": 0.6,
        "reg_alpha": 10,
        "reg_lambda": 0.1,
        "random_state": 2022,
        "missing": float("nan"),
        "early_stopping_rounds": None,
        "kwargs": {"eta": 0.1},
        "classes_": [0.0, 1.0],
        "evals_result_": {"validation_0": {"logloss": [0.5] * n_rounds}},
        "_estimator_type": "classifier",
    }
    booster = model.get_booster().copy()
    booster.set_attr(scikit_learn=json.dumps(meta))
    path = tmp_path / "old.json"
    booster.save_model(path)
    clf = ConceptClassifier.from_xgboost_json(path)
    assert clf.random_state == 2022
    assert clf.early_stopping_rounds == n_rounds - model.best_iteration - 1 == 5
    assert clf.params["max_depth"] == 6 and clf.params["subsample"] == 0.74
    assert "tree_method" not in clf.params and "gpu_id" not in clf.params
    assert clf.classes_.dtype.kind == "i"
    np.testing.assert_array_equal(clf.predict_proba(X), model.predict_proba(X))
    bare = ConceptClassifier.from_xgboost_json(path, restore_params=False)
    assert bare.params is None and bare.random_state is None
    # debugging retrains with the restored recipe (fewer rounds here), without xgboost warnings
    small = {**clf.params, "n_estimators": 5, "n_jobs": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        retrained = clone(clf).set_params(params=small, masked_features=[4614]).fit(X, model.predict(X))
    inner = retrained.estimator_.get_params()
    assert (inner["max_depth"], inner["random_state"], inner["tree_method"]) == (6, 2022, "hist")
    assert retrained.feature_importances_[4614] == 0


# --------------------------------------------------------------------------- bad input
def _fitted_small():
    X, y = planted(60, 10)
    return ConceptClassifier(params={"n_estimators": 3, "n_jobs": 1}).fit(X, y), X, y


@pytest.mark.parametrize(
    ("action", "match"),
    [
        ("nan_fit", r"1 NaN and 0 inf value\(s\) in 1 row"),
        ("inf_predict", r"0 NaN and 1 inf"),
        ("n_features", r"X has 9 features, but ConceptClassifier is expecting 10 features"),
        ("single_class", r"only one class"),
        ("length", r"X has 60 rows but y has 59 labels"),
        ("mask_range", r"masked_features index 10 out of range for 10 features"),
        ("mask_negative", r"masked_features index -1 out of range"),
        ("mask_dup", r"masked_features contains duplicates: \[3\]"),
        ("mask_all", r"masks all 10 features"),
        ("mask_float", r"integer feature indices"),
        ("preset", r"unknown preset 'fast'; valid presets: None, 'paper', 'shipped'"),
        ("model", r"unknown model 'svm'; valid models: xgboost, logreg"),
        ("preset_model", r"needs model='xgboost'"),
        ("esr_model", r"early stopping is built in for"),
        ("strategy", r"unknown mask_strategy 'zero'"),
        ("y_regression", r"Unknown label type"),
        ("one_d", r"Expected 2D array"),
    ],
)
def test_bad_input_raises_readable_error(action, match):
    clf, X, y = _fitted_small()
    base = ConceptClassifier(params={"n_estimators": 2, "n_jobs": 1})
    with pytest.raises(Img2TabInputError, match=match) as info:
        if action == "nan_fit":
            Xb = X.copy()
            Xb[4, 2] = np.nan
            base.fit(Xb, y)
        elif action == "inf_predict":
            Xb = X.copy()
            Xb[0, 0] = np.inf
            clf.predict(Xb)
        elif action == "n_features":
            clf.predict_proba(X[:, :9])
        elif action == "single_class":
            base.fit(X, np.ones_like(y))
        elif action == "length":
            base.fit(X, y[:-1])
        elif action == "mask_range":
            base.set_params(masked_features=[1, 10]).fit(X, y)
        elif action == "mask_negative":
            base.set_params(masked_features=[-1]).fit(X, y)
        elif action == "mask_dup":
            base.set_params(masked_features=[3, 3, 4]).fit(X, y)
        elif action == "mask_all":
            base.set_params(masked_features=list(range(10))).fit(X, y)
        elif action == "mask_float":
            base.set_params(masked_features=[1.5]).fit(X, y)
        elif action == "preset":
            ConceptClassifier(preset="fast").fit(X, y)
        elif action == "model":
            ConceptClassifier("svm").fit(X, y)
        elif action == "preset_model":
            ConceptClassifier("logreg", preset="paper").fit(X, y)
        elif action == "esr_model":
            ConceptClassifier("logreg", early_stopping_rounds=5).fit(X, y)
        elif action == "strategy":
            base.set_params(mask_strategy="zero").fit(X, y)
        elif action == "y_regression":
            base.fit(X, np.linspace(0, 1, X.shape[0]))
        elif action == "one_d":
            clf.predict(X[0])
    # one readable line, no numpy/xgboost internals
    assert "\n" not in str(info.value)
    assert "Traceback" not in str(info.value)


def test_unfitted_raises_not_fitted():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        ConceptClassifier().predict(np.zeros((2, 3)))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_classifier(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a saved img2tab classifier"):
        load_classifier(tmp_path / "empty")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(Img2TabInputError, match="not a loadable XGBoost model"):
        load_classifier(bad)


# --------------------------------------------------------------------------- sklearn API
def _expected_failed_checks(estimator):
    failed = {}
    if estimator.model in ("xgboost", "random_forest"):
        # XGBoost builds histogram bins from a weighted quantile sketch and the random forest
        # bootstraps rows, so integer weights are not exactly equivalent to repeated rows
        # (sklearn's own RandomForestClassifier is marked the same way).
        failed["check_sample_weight_equivalence_on_dense_data"] = (
            "weights are not exactly equivalent to repeated rows for histogram/bootstrap models"
        )
    return failed


@parametrize_with_checks(
    [
        ConceptClassifier(params={"n_estimators": 10, "n_jobs": 1}),
        ConceptClassifier(preset="shipped", params={"n_estimators": 20, "n_jobs": 1}),
        ConceptClassifier("logreg"),
        ConceptClassifier("random_forest", params={"n_estimators": 10, "n_jobs": 1}),
    ],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
