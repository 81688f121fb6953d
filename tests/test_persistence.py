"""Safe persistence: no pickles, atomic saves, tampered folders, corrupt files, bad Ψ inputs."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from img2tab import _atomic
from img2tab._atomic import atomic_dir, atomic_save_npz, atomic_write_json
from img2tab._json import jsonable, read_json
from img2tab.errors import Img2TabInputError
from img2tab.tabular import (
    ConceptClassifier,
    PsiDataset,
    _backends,
    _persistence,
    check_psi,
    load_classifier,
    rank_by_relevance,
    rank_descending,
    top_concepts,
)
from img2tab.tabular._table import Table

PLANTED = 3


def planted(n: int = 240, d: int = 12, seed: int = 0, n_classes: int = 2):
    """Ψ ~ N(0, 1); the class shifts feature PLANTED by 2.5 per class step."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.integers(0, n_classes, size=n)
    X[:, PLANTED] += 2.5 * y
    return X, y


FAMILIES = {
    "xgboost": {"params": {"n_estimators": 15, "max_depth": 3, "n_jobs": 1}, "device": "cpu"},
    "xgboost-scaled": {"model": "xgboost", "params": {"n_estimators": 10, "n_jobs": 1}, "device": "cpu",
                       "standardize": True, "masked_features": [1]},
    "xgboost-early": {"params": {"n_estimators": 200, "n_jobs": 1}, "device": "cpu",
                      "early_stopping_rounds": 3},
    "logreg": {"model": "logreg", "masked_features": [0, 5], "mask_strategy": "mean"},
    "mlp": {"model": "mlp", "params": {"hidden_layer_sizes": [8, 4], "max_iter": 400}},
    "random_forest": {"model": "random_forest", "params": {"n_estimators": 7, "max_depth": 4, "n_jobs": 1},
                      "masked_features": [2]},
    "lightgbm": {"model": "lightgbm", "params": {"n_estimators": 20, "n_jobs": 1, "verbose": -1},
                 "early_stopping_rounds": 3},
    "catboost": {"model": "catboost", "params": {"iterations": 20, "thread_count": 1}},
}


def _make(name: str) -> ConceptClassifier:
    kw = dict(FAMILIES[name])
    model = kw.pop("model", name if name in ("xgboost", "lightgbm", "catboost") else "xgboost")
    return ConceptClassifier(model, random_state=0, **kw)


def _importorskip(name: str) -> None:
    lib = name.split("-")[0]
    if lib in ("lightgbm", "catboost"):
        pytest.importorskip(lib)


def _no_pickle_anywhere(folder) -> None:
    """Every file is JSON, text, a native model, or an npz/npy that loads without pickles."""
    for root, _, files in os.walk(folder):
        for f in files:
            path = os.path.join(root, f)
            with open(path, "rb") as fh:
                head = fh.read(2)
            assert head[:1] != b"\x80", f"{path} looks like a pickle"
            if f.endswith(".npz"):
                with np.load(path, allow_pickle=False) as data:
                    for k in data.files:
                        assert not data[k].dtype.hasobject
            if f.endswith(".npy"):
                assert not np.load(path, allow_pickle=False).dtype.hasobject


# --------------------------------------------------------------------------- round trips
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("n_classes", [2, 3])
def test_every_family_round_trips_exactly_without_pickles(tmp_path, name, n_classes):
    _importorskip(name)
    X, y = planted(n_classes=n_classes)
    labels = np.asarray(["a", "b", "c"])[y]  # string classes survive too
    clf = _make(name).fit(X[:180], labels[:180])
    out = clf.save(tmp_path / "clf")
    _no_pickle_anywhere(out)
    back = load_classifier(out)
    Xt = X[180:]
    np.testing.assert_array_equal(back.predict_proba(Xt), clf.predict_proba(Xt))
    np.testing.assert_array_equal(back.predict(Xt), clf.predict(Xt))
    np.testing.assert_array_equal(back.classes_, clf.classes_)
    np.testing.assert_array_equal(back.feature_importances_, clf.feature_importances_)
    np.testing.assert_array_equal(back.masked_features_, clf.masked_features_)
    assert back.best_iteration_ == clf.best_iteration_
    assert back.get_params() == clf.get_params()
    if hasattr(clf, "decision_function"):
        np.testing.assert_array_equal(back.decision_function(Xt), clf.decision_function(Xt))
    # the planted concept is the most important one, before and after (masked ones are 0)
    assert int(np.argmax(back.feature_importances_)) == PLANTED
    assert np.all(back.feature_importances_[back.masked_features_] == 0)


def test_saved_folder_layout_and_header(tmp_path):
    X, y = planted()
    clf = _make("random_forest").fit(X, y)
    out = clf.save(tmp_path / "rf")
    assert sorted(p.name for p in out.iterdir()) == ["img2tab.json", "model.npz"]
    side = json.loads((out / "img2tab.json").read_text())
    assert side["format_version"] == 2 and side["model_file"] == "model.npz"
    assert side["params"]["model"] == "random_forest" and side["scaler_file"] is None
    # a random forest is stored as its trees' node tables: 7 trees, no other objects
    with np.load(out / "model.npz", allow_pickle=False) as data:
        assert int(data["n_trees"]) == 7
        assert {k.split("_")[0] for k in data.files} == {"n", "nodes", "values", "max"}


# --------------------------------------------------------------------------- tampering
class _Trap:
    """Unpickling this object creates a marker file: proof that code from the folder ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("named", ["model.pkl", "model.joblib", "../outside.pkl", "model.json"])
def test_tampered_header_naming_another_file_never_runs_it(tmp_path, named):
    X, y = planted()
    out = _make("logreg").fit(X, y).save(tmp_path / "clf")
    marker = tmp_path / "PWNED"
    (out / "model.pkl").write_bytes(pickle.dumps(_Trap(str(marker))))
    (out / "model.joblib").write_bytes(pickle.dumps(_Trap(str(marker))))
    side = json.loads((out / "img2tab.json").read_text())
    side["model_file"] = named
    (out / "img2tab.json").write_text(json.dumps(side))
    match = r"names the model file .* img2tab reads only 'model.npz'"
    with pytest.raises(Img2TabInputError, match=match) as info:
        load_classifier(out)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_pickles_in_the_expected_files_are_refused(tmp_path):
    X, y = planted()
    marker = tmp_path / "PWNED"
    # an npz holding a pickled object array
    out = _make("mlp").fit(X, y).save(tmp_path / "mlp")
    trap = np.empty(1, dtype=object)
    trap[0] = _Trap(str(marker))
    with open(out / "model.npz", "wb") as f:
        np.savez(f, n_layers=np.asarray(3), out_activation=np.asarray("logistic"), n_iter=trap)
    with pytest.raises(Img2TabInputError, match=r"model.npz is not a readable img2tab array file"):
        load_classifier(out)
    # a pickle where XGBoost's JSON should be
    out = _make("xgboost").fit(X, y).save(tmp_path / "xgb")
    (out / "model.json").write_bytes(pickle.dumps(_Trap(str(marker))))
    with pytest.raises(Img2TabInputError, match=r"model.json is not a loadable XGBoost model"):
        load_classifier(out)
    # a pickle as a bare model file
    bare = tmp_path / "model.json"
    bare.write_bytes(pickle.dumps(_Trap(str(marker))))
    with pytest.raises(Img2TabInputError, match="not a loadable XGBoost model"):
        load_classifier(bare)
    assert not marker.exists()


def test_old_joblib_folders_are_refused_with_advice(tmp_path):
    X, y = planted()
    out = _make("logreg").fit(X, y).save(tmp_path / "old")
    side = json.loads((out / "img2tab.json").read_text())
    side.update(format_version=1, model_file="model.joblib")
    (out / "img2tab.json").write_text(json.dumps(side))
    with pytest.raises(Img2TabInputError, match="pickles, which img2tab no longer loads: re-fit"):
        load_classifier(out)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: s["params"].update(model="svm"), r"'params' must be a dict with a model"),
        (lambda s: s["params"].update(evil=1), r"unknown classifier parameters \['evil'\]"),
        (lambda s: s["fitted"].update(masked_features=[99]), r"masked_features index 99 out of range"),
        (lambda s: s["fitted"].update(classes={"values": [0, 1], "dtype": "|O"}), r"invalid 'classes'"),
        (lambda s: s["fitted"].update(n_features_in="many"), r"invalid fitted attributes"),
        (lambda s: s.update(format_version=99), r"format version 99; this img2tab reads 1 to 2"),
        (lambda s: s.update(scaler_file="../x.npz"), r"names the scaler file"),
    ],
)
def test_inconsistent_headers_raise_one_line(tmp_path, edit, match):
    X, y = planted()
    out = _make("logreg").fit(X, y).save(tmp_path / "clf")
    side = json.loads((out / "img2tab.json").read_text())
    edit(side)
    (out / "img2tab.json").write_text(json.dumps(side))
    with pytest.raises(Img2TabInputError, match=match) as info:
        load_classifier(out)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- corrupt files
def test_corrupt_or_truncated_files_name_the_file(tmp_path):
    X, y = planted()
    out = _make("random_forest").fit(X, y).save(tmp_path / "clf")
    good_header = (out / "img2tab.json").read_bytes()
    (out / "img2tab.json").write_bytes(good_header[: len(good_header) // 2])
    match = r"classifier header .*img2tab.json is not valid JSON"
    with pytest.raises(Img2TabInputError, match=match) as info:
        load_classifier(out)
    assert "\n" not in str(info.value)
    (out / "img2tab.json").write_bytes(good_header)
    data = (out / "model.npz").read_bytes()
    (out / "model.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(Img2TabInputError, match=r"model.npz is not a readable img2tab array file") as info:
        load_classifier(out)
    assert "\n" not in str(info.value)
    (out / "model.npz").unlink()
    with pytest.raises(Img2TabInputError, match=r"model.npz is missing"):
        load_classifier(out)


def test_read_json_errors(tmp_path):
    p = tmp_path / "cfg.json"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(Img2TabInputError, match=r"cannot read config .*cfg.json"):
        read_json(p, "config")
    with pytest.raises(Img2TabInputError, match=r"config .*nope.json does not exist"):
        read_json(tmp_path / "nope.json", "config")
    p.write_text('{"a": [1, 2')
    with pytest.raises(Img2TabInputError, match=r"is not valid JSON \(corrupt or truncated\)"):
        read_json(p, "config")


def test_psi_dataset_corrupt_header_and_array(tmp_path):
    X, y = planted()
    path = PsiDataset(X, y).save(tmp_path / "d.psi")
    meta = (path / "meta.json").read_text()
    (path / "meta.json").write_text(meta[:20])
    with pytest.raises(Img2TabInputError, match=r"Ψ dataset header .*meta.json is not valid JSON"):
        PsiDataset.load(path)


# --------------------------------------------------------------------------- atomic writes
def test_atomic_file_writers_keep_the_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    atomic_write_json(target, {"v": 1, "x": np.float32(0.5), "bad": float("nan")})
    assert json.loads(target.read_text()) == {"v": 1, "x": 0.5, "bad": "nan"}

    def power_cut(src, dst):
        raise OSError("power cut (simulated)")

    monkeypatch.setattr(_atomic.os, "replace", power_cut)
    with pytest.raises(OSError, match="power cut"):
        atomic_write_json(target, {"v": 2})
    with pytest.raises(OSError, match="power cut"):
        atomic_save_npz(tmp_path / "a.npz", x=np.arange(3))
    monkeypatch.undo()
    assert json.loads(target.read_text())["v"] == 1
    assert sorted(os.listdir(tmp_path)) == ["report.json"]  # no temporaries left
    with pytest.raises(ValueError, match="dtype object"):
        atomic_save_npz(tmp_path / "o.npz", x=np.asarray([{}], dtype=object))
    assert not (tmp_path / "o.npz").exists()


def test_atomic_dir_restores_the_old_folder(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError, match="half-way"), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("new")
        raise RuntimeError("half-way")
    assert (target / "a.txt").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["out"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a directory"), atomic_dir(tmp_path / "file"):
        pass
    with pytest.raises(FileExistsError, match="not a folder img2tab wrote"), atomic_dir(
        target, replaceable=lambda p: False
    ):
        pass


def test_classifier_overwrite_failing_half_way_keeps_the_old_model(tmp_path, monkeypatch):
    X, y = planted()
    old = _make("logreg").fit(X, y)
    out = old.save(tmp_path / "clf")
    new = _make("random_forest").fit(X, 1 - y)

    backend = _backends.get_backend("random_forest")
    real_save = type(backend).save

    def save_then_fail(self, inner, folder):
        real_save(self, inner, folder)  # the new model file is fully written ...
        raise OSError("disk full (simulated)")  # ... then the header write fails

    monkeypatch.setattr(type(backend), "save", save_then_fail)
    with pytest.raises(OSError, match="disk full"):
        new.save(out)
    monkeypatch.undo()
    back = load_classifier(out)
    assert back.model == "logreg"
    np.testing.assert_array_equal(back.predict_proba(X), old.predict_proba(X))
    assert sorted(os.listdir(tmp_path)) == ["clf"]


def test_saving_over_a_foreign_folder_is_refused(tmp_path):
    X, y = planted()
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "me.jpg").write_bytes(b"jpeg")
    with pytest.raises(FileExistsError, match="refusing to replace"):
        _make("logreg").fit(X, y).save(foreign)
    assert (foreign / "me.jpg").read_bytes() == b"jpeg"


def test_table_csv_is_written_atomically(tmp_path, monkeypatch):
    t = Table({"feature": np.arange(3), "w1": np.asarray([0.5, 0.25, 0.125])})
    path = tmp_path / "t.csv"
    t.to_csv(path)
    assert path.read_text() == "feature,w1\n0,0.5\n1,0.25\n2,0.125\n"
    monkeypatch.setattr(_atomic.os, "replace", lambda a, b: (_ for _ in ()).throw(OSError("full")))
    with pytest.raises(OSError):
        t.head(1).to_csv(path)
    monkeypatch.undo()
    assert path.read_text() == "feature,w1\n0,0.5\n1,0.25\n2,0.125\n"


# --------------------------------------------------------------------------- validation and ranking
def test_one_ranking_rule_with_deterministic_ties():
    v = np.asarray([1.0, 3.0, np.nan, 3.0, 1.0, -np.inf, np.inf])
    np.testing.assert_array_equal(rank_descending(v), [6, 1, 3, 0, 4, 5, 2])
    np.testing.assert_array_equal(rank_by_relevance(np.stack([v, -v])), np.stack([
        rank_descending(v), rank_descending(-v)]))
    t = Table({"name": np.asarray(["b", "a", "b", "c"]), "i": np.arange(4)})
    np.testing.assert_array_equal(t.sort_by("name")["i"], [3, 0, 2, 1])  # ties keep order
    np.testing.assert_array_equal(t.sort_by("name", descending=False)["i"], [1, 0, 2, 3])


@pytest.mark.parametrize("k", [0, -2, 2.5, True, "3", float("nan")])
def test_bad_top_k_raises(k):
    X, y = planted()
    clf = _make("logreg").fit(X, y)
    with pytest.raises(Img2TabInputError, match="must be a positive integer"):
        top_concepts(clf, k)


def test_top_k_integral_float_is_accepted():
    X, y = planted()
    clf = _make("logreg").fit(X, y)
    assert len(top_concepts(clf, 3.0)) == 3 and int(top_concepts(clf, 1)["feature"][0]) == PLANTED


def test_bad_psi_values_and_width():
    X, y = planted()
    clf = _make("xgboost").fit(X, y)
    bad = X[:5].copy()
    bad[1, 4] = np.nan
    bad[3, 0] = -np.inf
    match = r"X \(Ψ\) contains 2 NaN/inf values: 1 NaN and 1 inf"
    with pytest.raises(Img2TabInputError, match=match) as info:
        clf.predict_proba(bad)
    assert "2 rows (1, 3)" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(Img2TabInputError, match="X has 11 features, but ConceptClassifier is expecting 12"):
        clf.predict(X[:, :11])
    with pytest.raises(Img2TabInputError, match="psi has 11 columns but 12 are expected"):
        check_psi(X[:, :11], n_features=12)


def test_jsonable_is_strict():
    obj = {"a": (np.int64(1), np.float32(np.inf)), 2: np.arange(2)}
    assert jsonable(obj) == {"a": [1, "inf"], "2": [0, 1]}
    with pytest.raises(TypeError, match="object value"):
        jsonable({"x": object()})


def test_tabular_imports_without_torch():
    code = (
        "import sys; import img2tab.tabular, img2tab.networks.layout, img2tab.tabular._persistence; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "False"


def test_layout_flatten_works_on_numpy():
    from img2tab.networks.layout import StyleSpaceLayout

    lay = StyleSpaceLayout.from_generator_config(16, 1)
    styles = [np.full((2, c), i, dtype=np.float32) for i, c in enumerate(lay.dims)]
    psi = lay.flatten(styles)
    assert psi.shape == (2, lay.total) and isinstance(psi, np.ndarray)
    back = lay.unflatten(psi)
    for i, s in enumerate(back):
        np.testing.assert_array_equal(s, styles[i])


def test_npz_helper_refuses_non_zip(tmp_path):
    p = tmp_path / "scaler.npz"
    p.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(Img2TabInputError, match="scaler.npz is not a readable"):
        _backends.load_npz(p)
    assert not zipfile.is_zipfile(p)
    assert _persistence.SIDECAR == "img2tab.json"
