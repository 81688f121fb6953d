"""PsiDataset, on-disk format (atomic save, mmap load), official importers, validation."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from img2tab.errors import Img2TabInputError
from img2tab.networks.layout import StyleSpaceLayout
from img2tab.tabular import _dataset
from img2tab.tabular._dataset import (
    PsiDataset,
    Standardizer,
    check_labels,
    check_psi,
    default_layout,
    load_official_psi,
    standardize,
)


class _Opaque:
    """A pickled object that ``torch.load(weights_only=True)`` must refuse."""


def _make(n=30, seed=0, with_layout=True):
    rng = np.random.default_rng(seed)
    layout = StyleSpaceLayout.from_generator_config(8, 1, channels={4: 6, 8: 4})
    d = layout.total
    return PsiDataset(
        psi=rng.normal(size=(n, d)).astype(np.float32),
        labels=rng.integers(0, 2, n),
        protected=rng.choice(np.array(["f", "m"]), n),
        ids=np.array([f"img_{i:03d}.png" for i in range(n)]),
        layout=layout if with_layout else None,
        label_names=("neg", "pos"),
        meta={"encoder": "e4e", "note": "tiny"},
    )


# --------------------------------------------------------------------------- validation
def test_check_psi_accepts_and_converts():
    x = np.arange(6, dtype=np.int32).reshape(2, 3)
    out = check_psi(x)
    assert out.dtype == np.float64 and out.shape == (2, 3)
    f = np.ones((2, 3), np.float32)
    assert check_psi(f) is f  # no copy for float input


def test_check_psi_errors():
    with pytest.raises(Img2TabInputError, match="2-D.*reshape"):
        check_psi(np.ones(5))
    with pytest.raises(Img2TabInputError, match="empty"):
        check_psi(np.ones((0, 3)))
    with pytest.raises(Img2TabInputError, match="numeric"):
        check_psi(np.array([["a", "b"]]))
    x = np.ones((10, 4))
    x[2, 1] = np.nan
    x[7, 1] = np.inf
    x[7, 3] = -np.inf
    with pytest.raises(Img2TabInputError) as info:
        check_psi(x, name="train_psi")
    msg = str(info.value)
    assert "3 NaN/inf" in msg and "2 rows (2, 7)" in msg and "2 columns (1, 3)" in msg
    assert "drop" in msg and "train_psi" in msg
    assert check_psi(x, allow_nan=True) is x


def test_check_labels():
    np.testing.assert_array_equal(check_labels([[0], [1], [1]], 3), [0, 1, 1])
    with pytest.raises(Img2TabInputError, match="3 entries but psi has 4 rows"):
        check_labels([0, 1, 1], 4)
    with pytest.raises(Img2TabInputError, match="at least 2 classes.*only \\[1\\]"):
        check_labels([1, 1, 1], 3)
    with pytest.raises(Img2TabInputError, match="NaN"):
        check_labels([0.0, np.nan, 1.0], 3)
    with pytest.raises(Img2TabInputError, match="1-D"):
        check_labels(np.zeros((3, 2)), 3)
    assert check_labels(["a", "b"], 2, min_classes=1).tolist() == ["a", "b"]


# --------------------------------------------------------------------------- standardisation
def test_standardize_basic_and_constant_column():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(50, 4)).astype(np.float32)
    x[:, 2] = 0.1
    x_copy = x.copy()
    z, mean, std = standardize(x)
    np.testing.assert_array_equal(x, x_copy)  # not mutated
    assert z.dtype == np.float64 and np.isfinite(z).all()
    np.testing.assert_allclose(z[:, [0, 1, 3]].mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(z[:, [0, 1, 3]].std(0), 1, atol=1e-12)
    assert std[2] == 1.0
    np.testing.assert_array_equal(z[:, 2], 0.0)
    # applying stored statistics to new data
    z2, m2, s2 = standardize(x[:5], mean, std)
    np.testing.assert_allclose(z2, z[:5])
    # a zero std passed in is treated as 1
    z3, _, s3 = standardize(x, mean, np.zeros(4))
    assert (s3 == 1).all() and np.isfinite(z3).all()
    assert standardize(x, dtype=np.float32)[0].dtype == np.float32
    with pytest.raises(Img2TabInputError, match="shape"):
        standardize(x, mean=np.zeros(3), std=np.ones(3))


def test_standardize_weighted():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3))
    w = rng.random(40)
    z, mean, std = standardize(x, sample_weight=w)
    np.testing.assert_allclose(mean, np.average(x, axis=0, weights=w))
    np.testing.assert_allclose(np.average(z**2, axis=0, weights=w), 1.0)
    # integer weights equal repeating rows
    wi = rng.integers(0, 4, 40)
    wi[0] = 1
    _, m_w, s_w = standardize(x, sample_weight=wi)
    _, m_r, s_r = standardize(np.repeat(x, wi, axis=0))
    np.testing.assert_allclose(m_w, m_r)
    np.testing.assert_allclose(s_w, s_r)


def test_standardizer_roundtrip():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20, 5)).astype(np.float32)
    x[:, 4] = -2.0
    s = Standardizer().fit(x)
    assert s.n_features_in_ == 5 and s.scale_[4] == 1.0
    z = s.transform(x)
    np.testing.assert_allclose(z, standardize(x)[0])
    np.testing.assert_allclose(s.inverse_transform(z), x, atol=1e-6)
    np.testing.assert_allclose(Standardizer().fit_transform(x), z)
    with pytest.raises(Img2TabInputError, match="not fitted"):
        Standardizer().transform(x)


# --------------------------------------------------------------------------- dataset object
def test_dataset_validation():
    x = np.zeros((4, 10), np.float32)
    with pytest.raises(Img2TabInputError, match="labels must have shape \\(4,\\)"):
        PsiDataset(x, labels=np.zeros(3))
    with pytest.raises(Img2TabInputError, match="2-D"):
        PsiDataset(np.zeros(10))
    with pytest.raises(Img2TabInputError, match="layout describes 9088.*10 columns"):
        PsiDataset(x, layout=StyleSpaceLayout.from_generator_config(1024, 2))
    with pytest.raises(Img2TabInputError, match="ids must have shape"):
        PsiDataset(x, ids=["a"])
    ds = PsiDataset(np.zeros((4, 10)), labels=[0, 1, 0, 1])
    assert ds.psi.dtype == np.float32 and len(ds) == 4 and ds.n_features == 10
    np.testing.assert_array_equal(ds.classes, [0, 1])
    assert "N=4" in repr(ds)


def test_subset_and_split():
    ds = _make(n=40)
    sub = ds.subset([3, 1, 2])
    assert len(sub) == 3 and sub.ids.tolist() == ["img_003.png", "img_001.png", "img_002.png"]
    np.testing.assert_array_equal(sub.psi, ds.psi[[3, 1, 2]])
    assert sub.layout is ds.layout and sub.meta == ds.meta
    mask = ds.labels == 1
    assert len(ds.subset(mask)) == int(mask.sum())
    assert len(ds.subset(slice(0, 5))) == 5
    with pytest.raises(Img2TabInputError, match="mask"):
        ds.subset(np.ones(3, bool))
    train, test = ds.split(0.25, random_state=0)
    assert len(train) + len(test) == 40 and len(test) == 10
    assert not set(train.ids) & set(test.ids)


# --------------------------------------------------------------------------- save / load
def _assert_same(a: PsiDataset, b: PsiDataset):
    np.testing.assert_array_equal(a.psi, b.psi)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.protected, b.protected)
    np.testing.assert_array_equal(a.ids, b.ids)
    assert a.layout == b.layout
    assert a.label_names == b.label_names and a.meta == b.meta


def test_save_load_roundtrip_mmap(tmp_path):
    ds = _make()
    path = ds.save(tmp_path / "faces.psi")
    assert sorted(os.listdir(path)) == sorted(
        ["psi.npy", "labels.npy", "protected.npy", "ids.npy", "meta.json"]
    )
    meta = json.loads((path / "meta.json").read_text())
    assert meta["n_samples"] == 30 and meta["n_features"] == ds.n_features
    assert meta["format_version"] == 1 and meta["dtype"] == "<f4"
    back = PsiDataset.load(path)
    assert isinstance(back.psi, np.memmap) and not back.psi.flags.writeable
    _assert_same(ds, back)
    assert back.layout.describe(7) == ds.layout.describe(7)
    eager = PsiDataset.load(path, mmap=False, verify=True)
    assert not isinstance(eager.psi, np.memmap)
    _assert_same(ds, eager)
    # no leftovers next to the target
    assert os.listdir(tmp_path) == ["faces.psi"]


def test_save_minimal(tmp_path):
    ds = PsiDataset(np.ones((3, 2), np.float32))
    back = PsiDataset.load(ds.save(tmp_path / "m.psi"))
    assert back.labels is None and back.layout is None and back.ids is None
    np.testing.assert_array_equal(back.psi, ds.psi)


def test_save_replaces_existing_dataset(tmp_path):
    target = tmp_path / "d.psi"
    _make(seed=0).save(target)
    new = _make(n=12, seed=1)
    new.save(target)
    _assert_same(new, PsiDataset.load(target))
    with pytest.raises(FileExistsError):
        new.save(target, overwrite=False)
    assert sorted(os.listdir(tmp_path)) == ["d.psi"]


def test_save_refuses_foreign_directory(tmp_path):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not an img2tab"):
        _make().save(foreign)
    assert (foreign / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("fail_on", ["labels.npy", "meta.json", "rename"])
def test_crash_mid_save_keeps_previous_dataset(tmp_path, monkeypatch, fail_on):
    target = tmp_path / "d.psi"
    old = _make(seed=0)
    old.save(target)

    real_write_npy, real_write_bytes, real_replace = (
        _dataset._write_npy,
        _dataset._write_bytes,
        os.replace,
    )

    def write_npy(path, arr):
        if path.name == fail_on:
            raise OSError("disk full (simulated)")
        real_write_npy(path, arr)

    def write_bytes(path, data):
        if path.name == fail_on:
            raise OSError("disk full (simulated)")
        real_write_bytes(path, data)

    calls = []

    def replace(src, dst):
        calls.append((src, dst))
        if fail_on == "rename" and len(calls) == 2:  # after moving the old one aside
            raise OSError("power cut (simulated)")
        real_replace(src, dst)

    monkeypatch.setattr(_dataset, "_write_npy", write_npy)
    monkeypatch.setattr(_dataset, "_write_bytes", write_bytes)
    monkeypatch.setattr(_dataset.os, "replace", replace)
    with pytest.raises(OSError, match="simulated"):
        _make(n=5, seed=3).save(target)
    monkeypatch.undo()
    _assert_same(old, PsiDataset.load(target, verify=True))
    assert os.listdir(tmp_path) == ["d.psi"]  # temporary directories cleaned up


def test_crash_on_first_save_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "new.psi"

    def boom(path, data):
        raise OSError("killed (simulated)")

    monkeypatch.setattr(_dataset, "_write_bytes", boom)
    with pytest.raises(OSError):
        _make().save(target)
    assert not target.exists() and os.listdir(tmp_path) == []


def test_incomplete_directories_do_not_load(tmp_path):
    ds = _make()
    path = ds.save(tmp_path / "d.psi")
    # missing meta.json
    broken = tmp_path / "broken.psi"
    broken.mkdir()
    np.save(broken / "psi.npy", ds.psi)
    with pytest.raises(Img2TabInputError, match="meta.json is missing"):
        PsiDataset.load(broken)
    # truncated array
    data = (path / "labels.npy").read_bytes()
    (path / "labels.npy").write_bytes(data[:-8])
    with pytest.raises(Img2TabInputError, match="truncated"):
        PsiDataset.load(path)
    # a shape that disagrees with meta.json
    path2 = ds.save(tmp_path / "e.psi")
    np.save(path2 / "psi.npy", np.zeros((29, ds.n_features), np.float32))
    meta = json.loads((path2 / "meta.json").read_text())
    meta["files"]["psi"]["bytes"] = (path2 / "psi.npy").stat().st_size
    (path2 / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(Img2TabInputError, match="shape"):
        PsiDataset.load(path2)
    # sha mismatch detected with verify=True
    path3 = ds.save(tmp_path / "f.psi")
    arr = np.load(path3 / "labels.npy")
    np.save(path3 / "labels.npy", 1 - arr)
    PsiDataset.load(path3)  # sizes match: only verify catches it
    with pytest.raises(Img2TabInputError, match="sha256"):
        PsiDataset.load(path3, verify=True)
    # newer format version
    (path3 / "meta.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(Img2TabInputError, match="upgrade"):
        PsiDataset.load(path3)
    with pytest.raises(FileNotFoundError):
        PsiDataset.load(tmp_path / "nope.psi")


def test_object_labels_are_stored_as_strings(tmp_path):
    ds = PsiDataset(np.zeros((3, 2)), labels=np.array(["a", "b", "a"], dtype=object))
    back = PsiDataset.load(ds.save(tmp_path / "o.psi"))
    assert back.labels.tolist() == ["a", "b", "a"]


# --------------------------------------------------------------------------- official files
def test_default_layout():
    assert default_layout(9088) == StyleSpaceLayout.from_generator_config(1024, 2)
    assert default_layout(8960) == StyleSpaceLayout.from_generator_config(512, 2)
    assert default_layout(8704) == StyleSpaceLayout.from_generator_config(256, 2)
    assert default_layout(7424) == StyleSpaceLayout.from_generator_config(256, 1)
    assert default_layout(17) == StyleSpaceLayout.flat(17)


def test_load_official_tensor(tmp_path):
    psi = torch.randn(6, 9088)
    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    torch.save(psi, tmp_path / "gender_train_Psi.pt")
    torch.save(labels, tmp_path / "gender_train_labels.pt")
    ds = load_official_psi(tmp_path / "gender_train_Psi.pt", tmp_path / "gender_train_labels.pt")
    assert ds.psi.shape == (6, 9088) and ds.psi.dtype == np.float32
    np.testing.assert_array_equal(ds.psi, psi.numpy())
    np.testing.assert_array_equal(ds.labels, labels.numpy())
    assert ds.layout == StyleSpaceLayout.from_generator_config(1024, 2)
    assert ds.meta["source"]["labels"].endswith("gender_train_labels.pt")


def test_load_official_containers(tmp_path):
    rows = [torch.randn(1, 40) for _ in range(5)]
    torch.save({"Psi": torch.cat(rows)}, tmp_path / "dict.pt")
    torch.save(rows, tmp_path / "list.pt")
    torch.save([r[0] for r in rows], tmp_path / "list1d.pt")
    torch.save({"labels": torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0]), "x": 3}, tmp_path / "lab.pt")
    ref = torch.cat(rows).numpy()
    for name in ("dict.pt", "list.pt", "list1d.pt"):
        ds = load_official_psi(tmp_path / name, tmp_path / "lab.pt")
        np.testing.assert_array_equal(ds.psi, ref)
        assert ds.labels.dtype == np.int64 and ds.labels.tolist() == [0, 1, 1, 0, 1]
        assert ds.layout == StyleSpaceLayout.flat(40)
    assert load_official_psi(tmp_path / "dict.pt", layout="flat").layout.n_layers == 1


def test_load_official_errors(tmp_path):
    torch.save(torch.randn(4, 10), tmp_path / "p.pt")
    torch.save(torch.tensor([0, 1, 0]), tmp_path / "l.pt")
    torch.save({"a": torch.zeros(4, 10), "b": torch.zeros(4, 10)}, tmp_path / "two.pt")
    with pytest.raises(Img2TabInputError, match="3 labels but"):
        load_official_psi(tmp_path / "p.pt", tmp_path / "l.pt")
    with pytest.raises(Img2TabInputError, match="exactly one tensor"):
        load_official_psi(tmp_path / "two.pt")
    with pytest.raises(FileNotFoundError):
        load_official_psi(tmp_path / "missing.pt")

    torch.save({"obj": _Opaque()}, tmp_path / "pickled.pt")
    with pytest.raises(Img2TabInputError, match="weights_only"):
        load_official_psi(tmp_path / "pickled.pt")
