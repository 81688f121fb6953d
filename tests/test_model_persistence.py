"""Img2Tab.save / load: training Ψ by reference or copy, atomic overwrite, corrupt folders."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import img2tab.model as model_mod
from img2tab.errors import Img2TabInputError
from img2tab.model import Img2Tab
from img2tab.tabular import ConceptClassifier, PsiDataset

PLANTED = 5


def _data(n: int = 160, d: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (rng.random(n) < 0.5).astype(np.int64)
    X[y == 1, PLANTED] += 3.0
    return X, y


def _model() -> Img2Tab:
    clf = ConceptClassifier(params={"n_estimators": 10, "max_depth": 2, "n_jobs": 1}, random_state=0,
                            device="cpu")
    return Img2Tab(None, clf, progress=False)


def test_fit_keeps_private_copies_of_the_callers_arrays(tmp_path):
    X, y = _data()
    X0, y0 = X.copy(), y.copy()
    m = _model().fit(X, y)
    X[:] = 0.0  # the caller reuses its buffers
    y[:] = 0
    out = m.save(tmp_path / "m")  # in-memory Ψ: always copied
    train = PsiDataset.load(out / "train.psi")
    np.testing.assert_array_equal(train.psi, X0)
    np.testing.assert_array_equal(train.labels, y0)
    meta = json.loads((out / "img2tab.json").read_text())
    assert meta["train"] == {"copy": "train.psi"} and meta["version"] == 2


def test_training_psi_by_reference_and_by_copy(tmp_path):
    X, y = _data()
    ds_path = PsiDataset(X, y).save(tmp_path / "train.psi")
    ds = PsiDataset.load(ds_path)
    m = _model().fit(ds)
    ref = m.save(tmp_path / "ref")
    assert sorted(p.name for p in ref.iterdir()) == ["classifier", "img2tab.json", "stats.npz"]
    meta = json.loads((ref / "img2tab.json").read_text())
    assert meta["train"]["path"] == os.fspath((ds_path / "psi.npy").resolve())
    assert len(meta["train"]["sha256"]) == 64
    copy = m.save(tmp_path / "copy", copy_data=True)
    assert (copy / "train.psi" / "psi.npy").is_file()

    Xt, _ = _data(seed=1)
    for folder in (ref, copy):
        back = Img2Tab.load(folder)
        np.testing.assert_array_equal(back.predict_proba(Xt), m.predict_proba(Xt))
        np.testing.assert_array_equal(back.w1_, m.w1_)
        assert int(back.concepts(1)["feature"][0]) == PLANTED
        # the training data is usable: excluding the planted concept drops accuracy to chance
        debugged = back.with_excluded([PLANTED])
        assert debugged.score(Xt, (Xt[:, PLANTED] > 1.5).astype(int)) < 0.75

    # the referenced dataset changes: the reference no longer matches
    PsiDataset(X + 1.0, y).save(ds_path)
    with pytest.raises(Img2TabInputError, match=r"changed since the Img2Tab was saved \(sha256 mismatch\)"):
        Img2Tab.load(ref)
    assert Img2Tab.load(copy).predict_proba(Xt).shape == (len(Xt), 2)  # the copy is independent
    # the referenced dataset is gone: predictions still work, debugging explains why it cannot
    import shutil

    shutil.rmtree(ds_path)
    back = Img2Tab.load(ref)
    np.testing.assert_array_equal(back.predict_proba(Xt), m.predict_proba(Xt))
    with pytest.raises(Img2TabInputError, match="training Ψ of this Img2Tab is not available"):
        back.with_excluded([PLANTED])


def test_overwrite_failing_half_way_keeps_the_previous_model(tmp_path, monkeypatch):
    X, y = _data()
    old = _model().fit(X, y)
    out = old.save(tmp_path / "m")
    new = _model().fit(X, 1 - y)

    def fail(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(model_mod, "atomic_save_npz", fail)  # after classifier/ and train.psi/
    with pytest.raises(OSError, match="disk full"):
        new.save(out)
    monkeypatch.undo()
    back = Img2Tab.load(out)
    np.testing.assert_array_equal(back.predict_proba(X), old.predict_proba(X))
    assert sorted(os.listdir(tmp_path)) == ["m"]


def test_corrupt_folders_raise_one_line_naming_the_file(tmp_path):
    X, y = _data()
    out = _model().fit(X, y).save(tmp_path / "m")
    stats = (out / "stats.npz").read_bytes()
    (out / "stats.npz").write_bytes(stats[:40])
    with pytest.raises(Img2TabInputError, match=r"stats.npz is not a readable img2tab array file") as info:
        Img2Tab.load(out)
    assert "\n" not in str(info.value)
    (out / "stats.npz").write_bytes(stats)
    header = (out / "img2tab.json").read_text()
    (out / "img2tab.json").write_text(header[:30])
    with pytest.raises(Img2TabInputError, match=r"Img2Tab header .*img2tab.json is not valid JSON"):
        Img2Tab.load(out)
    meta = json.loads(header)
    meta["train"] = {"copy": "../elsewhere"}
    (out / "img2tab.json").write_text(json.dumps(meta))
    with pytest.raises(Img2TabInputError, match="the training copy must be 'train.psi'"):
        Img2Tab.load(out)
    # stats of another width than the classifier
    (out / "img2tab.json").write_text(header)
    with np.load(out / "stats.npz") as s:
        arrays = {k: s[k] for k in s.files}
    arrays["psi_std"] = arrays["psi_std"][:3]
    np.savez(out / "stats.npz", **arrays)
    with pytest.raises(Img2TabInputError, match=r"psi_std must have shape \(10,\)"):
        Img2Tab.load(out)


@pytest.mark.parametrize("top_k", [0, -1, 1.5, None])
def test_bad_top_k(top_k):
    X, y = _data()
    m = _model().fit(X, y)
    with pytest.raises(Img2TabInputError, match="top_k must be a positive integer"):
        m.concepts(top_k)
    with pytest.raises(Img2TabInputError, match="top_k must be a positive integer"):
        m.relevance(top_k)


def test_bad_psi_given_to_predict():
    X, y = _data()
    m = _model().fit(X, y)
    bad = X[:4].copy()
    bad[2, 1] = np.inf
    with pytest.raises(Img2TabInputError, match=r"0 NaN and 1 inf value\(s\) in 1 rows \(2\)"):
        m.predict_proba(bad)
    with pytest.raises(Img2TabInputError, match="X has 9 features, but ConceptClassifier is expecting 10"):
        m.predict(X[:, :9])
    nan_train = X.copy()
    nan_train[0, 0] = np.nan
    with pytest.raises(Img2TabInputError, match=r"psi \(Ψ\) contains 1 NaN/inf values"):
        _model().fit(nan_train, y)


def test_corrupt_inverter_config_or_weights_referenced_by_a_saved_img2tab(tmp_path, tiny_inverter):
    from img2tab.checkpoints import load_inverter, save_inverter
    from img2tab.errors import CheckpointError

    inv_dir = save_inverter(tiny_inverter, tmp_path / "inv")
    inv = load_inverter(inv_dir)
    X, y = _data(d=inv.layout.total)
    m = Img2Tab(inv, _model().classifier, progress=False).fit(X, y)
    out = m.save(tmp_path / "m")
    assert Img2Tab.load(out).inverter is not None  # reloaded from the recorded path
    cfg = (inv_dir / "config.json").read_text()
    (inv_dir / "config.json").write_text(cfg[: len(cfg) // 2])
    with pytest.raises(CheckpointError, match=r"model config .*config.json is not valid JSON") as info:
        Img2Tab.load(out)
    assert "\n" not in str(info.value)
    (inv_dir / "config.json").write_text(cfg)
    weights = (inv_dir / "model.safetensors").read_bytes()
    (inv_dir / "model.safetensors").write_bytes(weights[: len(weights) // 3])
    with pytest.raises(CheckpointError, match=r"model.safetensors as safetensors") as info:
        Img2Tab.load(out)
    assert "\n" not in str(info.value)
    # passing the inverter explicitly skips the recorded path
    assert Img2Tab.load(out, inverter=tiny_inverter).inverter is tiny_inverter
