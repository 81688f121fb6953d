"""Img2Tab on a Dask LocalCluster (2 workers x 1 thread): encode, zarr Ψ, W1, xgboost.dask."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("distributed", reason="needs the img2tab[distributed] extra")
pytest.importorskip("zarr", reason="needs the img2tab[distributed] extra")

from img2tab.distributed import (  # noqa: E402
    encode_distributed,
    fit_classifier_dask,
    open_zarr,
    predict_proba_dask,
    save_zarr,
    wasserstein_relevance_dask,
    zarr_to_dataset,
)
from img2tab.encode import encode_to_dataset  # noqa: E402
from img2tab.errors import Img2TabInputError  # noqa: E402
from img2tab.tabular import ConceptClassifier, PsiDataset, load_classifier, wasserstein_relevance  # noqa: E402


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           memory_limit="2GB")
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(10):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(d / f"{i:06d}.png")
    return d


def _labels(ids):
    return np.array([int(i.rsplit("/", 1)[-1][:6]) % 2 for i in ids])


def test_distributed_encode_equals_local_and_resumes_after_a_failed_shard(tmp_path, folder, tiny_inverter,
                                                                          client):
    torch.set_num_threads(1)
    local = encode_to_dataset(folder, tiny_inverter, tmp_path / "local.psi", batch_size=2, shard_size=3,
                              labels=_labels, progress=False)
    # a broken image in shard 1 makes that task fail; the other shards are kept
    good = (folder / "000004.png").read_bytes()
    (folder / "000004.png").write_bytes(b"not a png")
    out = tmp_path / "dist.psi"
    with pytest.raises(Img2TabInputError, match="1 shard"):
        encode_distributed(folder, tiny_inverter, out, client, batch_size=2, shard_size=3, labels=_labels,
                           retries=0, progress=False)
    shards = tmp_path / "dist.psi.shards"
    kept = {p.name: (p / "meta.json").stat().st_mtime_ns for p in shards.glob("shard-*.psi")}
    assert sorted(kept) == ["shard-00000.psi", "shard-00002.psi", "shard-00003.psi"]
    (folder / "000004.png").write_bytes(good)
    ds = encode_distributed(folder, tiny_inverter, out, client, batch_size=2, shard_size=3, labels=_labels,
                            progress=False)
    np.testing.assert_array_equal(ds.ids, local.ids)  # no lost or duplicated rows, same order
    np.testing.assert_array_equal(ds.labels, local.labels)
    np.testing.assert_allclose(ds.psi, local.psi, rtol=0, atol=1e-6)
    assert not shards.exists()


def test_distributed_encode_survives_a_killed_worker(tmp_path, folder, tiny_inverter, client):
    local = encode_to_dataset(folder, tiny_inverter, tmp_path / "local.psi", batch_size=1, shard_size=1,
                              progress=False)
    pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    result = {}

    def run():
        result["ds"] = encode_distributed(folder, tiny_inverter, tmp_path / "d.psi", client, batch_size=1,
                                          shard_size=1, progress=False)

    t = threading.Thread(target=run)
    t.start()
    shards = tmp_path / "d.psi.shards"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(shards.glob("shard-*.psi/meta.json")):
        time.sleep(0.01)
    os.kill(victim, signal.SIGKILL)  # the nanny restarts it; its running shard is rescheduled
    t.join(120)
    client.wait_for_workers(2, timeout=60)  # the nanny brought a fresh process up
    assert victim not in client.run(os.getpid).values()
    ds = result["ds"]
    np.testing.assert_array_equal(ds.ids, local.ids)
    np.testing.assert_allclose(ds.psi, local.psi, rtol=0, atol=1e-6)


def _psi(n=600, d=70, seed=0):
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=(n, d)), 2).astype(np.float32)  # ties
    y3 = rng.integers(0, 3, n)
    x[:, 5] += y3.astype(np.float32)
    x[:, 9] = 1.5  # constant column: exactly 0
    return x, y3


def test_zarr_round_trip_and_dask_w1_equals_single_process(tmp_path, client):
    x, y3 = _psi()
    ds = PsiDataset(x, labels=y3, ids=np.array([f"im{i}" for i in range(len(x))]), meta={"k": 1})
    store = save_zarr(ds, tmp_path / "psi.zarr", chunk_rows=128, chunk_cols=16)
    dz = open_zarr(store)
    assert dz.psi.chunks[0][0] == 128 and dz.psi.chunks[1][0] == 16 and dz.meta == {"k": 1}
    np.testing.assert_array_equal(dz.ids, ds.ids)
    back = zarr_to_dataset(store, tmp_path / "back.psi")
    np.testing.assert_array_equal(np.asarray(back.psi), x)
    np.testing.assert_array_equal(back.labels, y3)
    yb = (y3 == 1).astype(int)
    for labels, kw in ((yb, {}), (y3, {"multiclass": "pairwise"}), (y3, {"multiclass": "ovr"}),
                       (yb, {"sample_weight": np.linspace(0.5, 2, len(x)), "standardize": False})):
        ref = wasserstein_relevance(x, labels, **kw)
        got = wasserstein_relevance_dask(dz.psi, labels, client=client, block_cols=35, **kw)
        assert got.shape == ref.shape
        assert np.max(np.abs(got - ref)) <= 1e-12
        if labels is yb:
            assert got[9] == 0.0 and np.argmax(got) == 5  # constant column; the planted one


def test_xgboost_dask_fit_predict_and_save_format(tmp_path, client):
    import dask.array as da

    rng = np.random.default_rng(3)
    x = rng.normal(size=(800, 24)).astype(np.float32)
    y = (x[:, 3] + 0.3 * rng.normal(size=800) > 0).astype(int)
    x[:, 7] = y + 0.01 * rng.normal(size=800)  # a leak, masked below
    X = da.from_array(x, chunks=(200, 24))
    params = {"n_estimators": 30, "max_depth": 3, "learning_rate": 0.3, "n_jobs": 1}
    clf = ConceptClassifier(params=params, masked_features=[7], mask_strategy="mean", random_state=0,
                            early_stopping_rounds=5, device="cpu")
    clf.fit(X, y, client=client)
    assert clf.feature_importances_[7] == 0 and np.argmax(clf.feature_importances_) == 3
    assert clf.best_iteration_ is not None and abs(clf.mask_values_[0] - x[:, 7].mean()) < 1e-6
    proba = clf.predict_proba(x)
    np.testing.assert_allclose(predict_proba_dask(clf, X, client=client).compute(), proba, atol=1e-6)
    assert (clf.predict(x) == y).mean() > 0.85
    values, bias = clf.contributions(x[:5])
    np.testing.assert_allclose(values.sum(1) + bias, clf.decision_function(x[:5]), atol=1e-4)
    # same folder format as a local fit; loads and predicts identically
    local = ConceptClassifier(params=params, masked_features=[7], mask_strategy="mean", random_state=0,
                              early_stopping_rounds=5, device="cpu").fit(x, y)
    clf.save(tmp_path / "dask_clf")
    local.save(tmp_path / "local_clf")
    assert sorted(p.name for p in (tmp_path / "dask_clf").iterdir()) == sorted(
        p.name for p in (tmp_path / "local_clf").iterdir())
    np.testing.assert_array_equal(load_classifier(tmp_path / "dask_clf").predict_proba(x), proba)


def test_xgboost_dask_engine_still_fits(client):
    import dask.array as da

    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 12)).astype(np.float32)
    y = (x[:, 2] > 0).astype(int)
    clf = ConceptClassifier(params={"n_estimators": 5, "max_depth": 2, "n_jobs": 1}, random_state=0,
                            device="cpu")
    fit_classifier_dask(clf, da.from_array(x, chunks=(100, 12)), y, client=client, streaming=False)
    assert np.argmax(clf.feature_importances_) == 2 and (clf.predict(x) == y).mean() > 0.9


def _tied(n=900, d=16, seed=7):
    """Ψ-like rows with at most 101 distinct values per column (XGBoost's sketch is then exact)."""
    rng = np.random.default_rng(seed)
    x = np.clip(np.round(rng.normal(size=(n, d)), 1), -5, 5).astype(np.float32)
    return x, rng


@pytest.mark.parametrize("case", ["mean-mask+early-stop+weights", "drop-mask", "three-classes", "eval-set",
                                  "paged+weights", "paged+eval-set"])
def test_streaming_fit_equals_the_single_process_fit(case, client):
    """The bounded-memory engine builds the same cuts and trees as a local fit: same predictions,
    importances, best round and contributions (tied data, so both use exact quantile cuts), with
    the workers' matrices in memory or paged to disk (``external_memory=True``)."""
    import dask.array as da

    x, rng = _tied()
    y = (x[:, 3] + 0.5 * rng.normal(size=len(x)) > 0).astype(int)
    x[:, 9] = np.round(y + 0.1 * rng.normal(size=len(x)), 1)  # a leak, masked in the first two cases
    params = {"n_estimators": 25, "max_depth": 3, "learning_rate": 0.3, "n_jobs": 1}
    kw: dict = {"params": params, "random_state": 0, "device": "cpu"}
    fit_kw: dict = {}
    paged = case.startswith("paged")
    if paged:
        case = {"paged+weights": "mean-mask+early-stop+weights", "paged+eval-set": "eval-set"}[case]
    if case == "mean-mask+early-stop+weights":
        kw.update(masked_features=[9], mask_strategy="mean", early_stopping_rounds=4)
        fit_kw["sample_weight"] = rng.uniform(0.5, 2.0, len(x))
    elif case == "drop-mask":
        kw.update(masked_features=[9, 0], mask_strategy="drop")
    elif case == "three-classes":
        y = np.digitize(x[:, 3] + 0.3 * rng.normal(size=len(x)), [-0.5, 0.5])
        kw.update(early_stopping_rounds=3)
    else:
        kw.update(early_stopping_rounds=3)
        xv, _ = _tied(300, seed=8)
        yv = (xv[:, 3] > 0).astype(int)
    X = da.from_array(x, chunks=(250, 8))  # 2-D chunks, as a zarr store
    local = ConceptClassifier(**kw)
    dist = ConceptClassifier(**kw)
    if case == "eval-set":
        local.fit(x, y, eval_set=(xv, yv))
        fit_classifier_dask(dist, X, y, client=client, eval_set=(da.from_array(xv, chunks=(100, 16)), yv),
                            batch_rows=60, external_memory=paged)
    else:
        local.fit(x, y, **fit_kw)  # 16 batches over 2 workers:
        fit_classifier_dask(dist, X, y, client=client, batch_rows=60, external_memory=paged, **fit_kw)
    if paged:  # the page files are gone with the fit
        left = client.run(lambda dask_worker: [f for f in os.listdir(dask_worker.local_directory)
                                               if f.startswith("img2tab-xgb-")])
        assert left and all(v == [] for v in left.values())
    np.testing.assert_allclose(dist.predict_proba(x), local.predict_proba(x), rtol=0, atol=1e-6)
    np.testing.assert_allclose(dist.feature_importances_, local.feature_importances_, rtol=1e-5, atol=1e-9)
    assert dist.best_iteration_ == local.best_iteration_
    if case == "mean-mask+early-stop+weights":
        assert dist.best_iteration_ is not None and dist.feature_importances_[9] == 0
        assert abs(dist.mask_values_[0] - np.average(x[:, 9], weights=fit_kw["sample_weight"])) < 1e-5
    if case == "drop-mask":
        assert dist.feature_importances_[[0, 9]].tolist() == [0.0, 0.0]
        assert np.argmax(dist.feature_importances_) == 3
    v_d, b_d = dist.contributions(x[:20])
    v_l, b_l = local.contributions(x[:20])
    np.testing.assert_allclose(v_d, v_l, atol=1e-5)
    np.testing.assert_allclose(b_d, b_l, atol=1e-5)


def test_streaming_helpers_known_answers():
    from img2tab.distributed._stream import _split, batch_bounds, block_summary

    # batches split every row chunk evenly and never straddle two chunks
    assert batch_bounds(10, 4, 3, batch_rows=3) == [(0, 3), (3, 4), (4, 7), (7, 8), (8, 10)]
    # 96 MB batches of a 9,088-column store in 8,192-row chunks: 3 batches per chunk
    assert batch_bounds(8192, 8192, 9088)[:2] == [(0, 2731), (2731, 5462)]
    keep = np.array([1, 1, 0, 0, 1, 1, 1, 1, 0, 0], bool)
    b = batch_bounds(10, 10, 1, batch_rows=2)
    assert _split(b, keep, 2) == [[(0, 2), (2, 4), (4, 6)], [(6, 8), (8, 10)]]
    assert _split(b, None, 3) == [[(0, 2), (2, 4)], [(4, 6), (6, 8)], [(8, 10)]]
    # a column with few distinct values keeps them all (padded with its maximum); rows masked out
    col = np.array([[3.0], [1.0], [1.0], [2.0], [9.0]], np.float32)
    got = block_summary(col, np.array([1, 1, 1, 1, 0], bool), max_bin=4)
    np.testing.assert_array_equal(got[:, 0], [1, 2, 3, 3, 3])
    # 1,001 distinct values, 10 bins: XGBoost's pruning of the exact ranks keeps every 100th value
    got = block_summary(np.arange(1001, dtype=np.float32)[:, None], None, max_bin=10)
    np.testing.assert_array_equal(got[:, 0], np.arange(0, 1001, 100))
    # integer weights summarise like rows repeated that many times (XGBoost's weighted sketch)
    rng = np.random.default_rng(3)
    vals = rng.normal(size=(400, 3)).astype(np.float32)
    vals[:, 2] = np.round(vals[:, 2])  # a tied column too
    w = rng.integers(0, 5, size=400)
    np.testing.assert_array_equal(block_summary(vals, None, 16, weights=w.astype(float)),
                                  block_summary(np.repeat(vals, w, axis=0), None, 16))
    # weight on the top half moves the cuts up: ranks are weight sums
    heavy = block_summary(np.arange(100, dtype=np.float32)[:, None], None, 4,
                          weights=np.r_[np.ones(50), np.full(50, 9.0)])
    light = block_summary(np.arange(100, dtype=np.float32)[:, None], None, 4)
    np.testing.assert_array_equal(light[:, 0], [0, 25, 50, 74, 99])
    assert (heavy[1:4, 0] > light[1:4, 0]).all() and heavy[0, 0] == 0 and heavy[-1, 0] == 99
    with pytest.raises(Img2TabInputError, match="weights has 3 rows"):
        block_summary(vals, None, 16, weights=np.ones(3))


def test_external_memory_auto_pages_only_what_would_not_fit(client):
    from img2tab.distributed._xgboost import _use_external_memory

    # two workers of 2 GB: "auto" pages when 2.25 bytes x rows x columns / 2 > 0.5 GB
    assert _use_external_memory("auto", client, 1000, 9088) is False  # 10 MB per worker
    assert _use_external_memory("auto", client, 40_000, 9088) is False  # 409 MB per worker
    assert _use_external_memory("auto", client, 60_000, 9088) is True  # 613 MB per worker
    assert _use_external_memory(True, client, 10, 10) is True
    assert _use_external_memory(False, client, 10**7, 9088) is False
    with pytest.raises(Img2TabInputError, match="external_memory must be"):
        _use_external_memory("yes", client, 10, 10)


def test_cli_relevance_and_fit_on_a_scheduler(tmp_path, client, capsys):
    from img2tab.cli import main

    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 40)).astype(np.float32)
    y = (rng.random(300) < 0.5).astype(int)
    x[:, 11] += 2.0 * y
    PsiDataset(x, labels=y).save(tmp_path / "d.psi")
    addr = client.scheduler.address
    ds = str(tmp_path / "d.psi")
    assert main(["relevance", ds, "-o", str(tmp_path / "local.csv"), "--no-progress"]) == 0
    rc = main(["relevance", ds, "-o", str(tmp_path / "dask.csv"), "--no-progress", "--scheduler", addr])
    assert rc == 0
    assert (tmp_path / "dask.csv").read_text() == (tmp_path / "local.csv").read_text()
    assert (tmp_path / "dask.csv").read_text().splitlines()[1].split(",")[1] == "11"
    assert main(["fit", ds, "-o", str(tmp_path / "clf"), "--no-progress", "--device", "cpu",
                 "--param", "n_estimators=10", "--param", "max_depth=2", "--scheduler", addr]) == 0
    assert np.argmax(load_classifier(tmp_path / "clf").feature_importances_) == 11
    # the other engine, and the streaming engine paged to disk: the same planted concept, and the
    # paged fit the same model as the in-memory one
    fit = ["fit", ds, "--no-progress", "--device", "cpu", "--param", "n_estimators=10", "--param",
           "max_depth=2", "--scheduler", addr]
    assert main([*fit, "-o", str(tmp_path / "xd"), "--dask-engine", "xgboost.dask"]) == 0
    assert np.argmax(load_classifier(tmp_path / "xd").feature_importances_) == 11
    assert main([*fit, "-o", str(tmp_path / "paged"), "--external-memory", "yes"]) == 0
    np.testing.assert_allclose(load_classifier(tmp_path / "paged").predict_proba(x),
                               load_classifier(tmp_path / "clf").predict_proba(x), rtol=0, atol=1e-6)
    capsys.readouterr()
    assert main(["fit", ds, "-o", str(tmp_path / "no"), "--external-memory", "yes"]) == 2
    assert "--dask-engine / --external-memory need --scheduler or --workers" in capsys.readouterr().err
    assert main([*fit, "-o", str(tmp_path / "no"), "--dask-engine", "xgboost.dask",
                 "--external-memory", "no"]) == 2
    assert "--external-memory applies to --dask-engine streaming only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["relevance", str(tmp_path / "d.psi"), "--scheduler", addr, "--workers", "2"])
    # three classes: the same named one-vs-rest columns and explicit aggregate as the local path
    PsiDataset(x, labels=y + (x[:, 5] > 1).astype(int) * 2).save(tmp_path / "m.psi")
    for where, extra in (("local", []), ("dask", ["--scheduler", addr])):
        assert main(["relevance", str(tmp_path / "m.psi"), "-o", str(tmp_path / f"m_{where}.csv"),
                     "--aggregate", "mean", "--no-progress", *extra]) == 0
    assert (tmp_path / "m_dask.csv").read_text() == (tmp_path / "m_local.csv").read_text()
    assert "w1[mean of one-vs-rest]" in (tmp_path / "m_dask.csv").read_text().splitlines()[0]
