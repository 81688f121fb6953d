"""Multi-class W1 (pairs, one-vs-rest, explicit aggregation), ``--classes``, and one classifier
format shared by ``img2tab fit``, :class:`Img2Tab` and ``load_classifier``."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from img2tab.cli import main
from img2tab.errors import Img2TabInputError
from img2tab.model import Img2Tab
from img2tab.tabular import ConceptClassifier, PsiDataset, load_classifier, wasserstein_relevance
from img2tab.tabular._wasserstein import relevance_columns

CLASSES = (3, 5, 8)
XGB = ["--param", "n_estimators=10", "--param", "max_depth=2", "--param", "n_jobs=1"]


def _planted(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three classes with the *same* sample in every column, except: class 8 is shifted by +2 in
    column 1 and class 5 by +1 in column 2. Raw W1 is then known exactly:

    - pairs: (3, 8) -> col 1: 2; (3, 5) -> col 2: 1; (5, 8) -> col 1: 2, col 2: 1; else 0;
    - one-vs-rest, col 1: 3 vs rest 1 (half the rest is shifted by 2), 5 vs rest 1, 8 vs rest 2;
      col 2: 3 vs rest 0.5, 5 vs rest 1, 8 vs rest 0.5.
    """
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 4))
    X = np.concatenate([base, base, base]).astype(np.float64)
    y = np.repeat(np.asarray(CLASSES), n)
    X[y == 8, 1] += 2.0
    X[y == 5, 2] += 1.0
    return X, y


def test_pair_w1_is_known_exactly():
    X, y = _planted()
    for pair, want in {(3, 8): [0, 2, 0, 0], (3, 5): [0, 0, 1, 0], (5, 8): [0, 2, 1, 0],
                       (8, 3): [0, 2, 0, 0]}.items():
        np.testing.assert_allclose(wasserstein_relevance(X, y, standardize=False, pair=pair), want,
                                   atol=1e-12)
    # labels given as text match the integer labels; the pair equals its "pairwise" row, std included
    pw, pairs = wasserstein_relevance(X, y, multiclass="pairwise", return_classes=True)
    np.testing.assert_array_equal(wasserstein_relevance(X, y, pair=("5", "8")), pw[pairs.index((5, 8))])
    w, info = wasserstein_relevance(X, y, pair=(3, 8), return_classes=True)
    assert info == (3, 8) and w.shape == (4,)


def test_one_vs_rest_columns_and_explicit_aggregation():
    X, y = _planted()
    ovr = wasserstein_relevance(X, y, standardize=False, multiclass="one-vs-rest")
    want = np.array([[0, 1, 0.5, 0], [0, 1, 1, 0], [0, 2, 0.5, 0]])
    np.testing.assert_allclose(ovr, want, atol=1e-12)
    np.testing.assert_allclose(wasserstein_relevance(X, y, standardize=False, aggregate="max"),
                               want.max(0), atol=1e-12)
    np.testing.assert_allclose(wasserstein_relevance(X, y, standardize=False, aggregate="mean"),
                               want.mean(0), atol=1e-12)
    rank, cols = relevance_columns(X, y, aggregate="mean", standardize=False)
    assert rank == "w1[mean of one-vs-rest]"
    assert list(cols) == ["w1[3 vs rest]", "w1[5 vs rest]", "w1[8 vs rest]", rank]
    np.testing.assert_allclose(cols["w1[8 vs rest]"], want[2], atol=1e-12)
    rank, cols = relevance_columns(X, y, mode="pairwise", aggregate="max", standardize=False)
    assert rank == "w1[max of pairwise]" and "w1[5 vs 8]" in cols
    np.testing.assert_allclose(cols[rank], [0, 2, 1, 0], atol=1e-12)
    with pytest.raises(Img2TabInputError, match="3 classes.*no implicit aggregation"):
        relevance_columns(X, y)
    for bad in ({"pair": (3, 4)}, {"pair": (3, 3)}, {"pair": (3, 8), "aggregate": "max"},
                {"aggregate": "sum"}, {"multiclass": "all"}):
        with pytest.raises(Img2TabInputError):
            wasserstein_relevance(X, y, **bad)


def test_binary_behaviour_unchanged():
    X, y = _planted()
    keep = y != 5
    w = wasserstein_relevance(X[keep], y[keep])
    rank, cols = relevance_columns(X[keep], y[keep])
    assert rank == "w1" and list(cols) == ["w1"]
    np.testing.assert_array_equal(cols["w1"], w)
    np.testing.assert_array_equal(wasserstein_relevance(X[keep], y[keep], pair=(8, 3)), w)


def test_img2tab_relevance_multiclass():
    X, y = _planted()
    model = Img2Tab(None, ConceptClassifier("logreg"), progress=False).fit(X.astype(np.float32), y)
    assert model.w1_ is None
    with pytest.raises(Img2TabInputError, match="pair=.*aggregate="):
        model.relevance()
    t = model.relevance(2, pair=(3, 8))
    assert t.column_names[-1] == "w1[3 vs 8]" and int(t["feature"][0]) == 1
    t = model.relevance(2, pair=(3, 5))
    assert int(t["feature"][0]) == 2
    t = model.relevance(4, aggregate="max")
    assert "w1[8 vs rest]" in t.column_names and "w1[max of one-vs-rest]" in t.column_names
    assert [int(f) for f in t["feature"][:2]] == [1, 2]
    want = wasserstein_relevance(X.astype(np.float32), y, aggregate="max")
    np.testing.assert_allclose(t["w1[max of one-vs-rest]"], np.sort(want)[::-1])
    # binary: the cached w1 column, as before
    keep = y != 5
    binary = Img2Tab(None, ConceptClassifier("logreg"), progress=False).fit(X[keep], y[keep])
    t = binary.relevance(4)
    assert t.column_names[-1] == "w1" and int(t["feature"][0]) == 1
    np.testing.assert_array_equal(binary.relevance(4, pair=(3, 8))["w1"], t["w1"])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("mc")
    X, y = _planted(80)
    rng = np.random.default_rng(1)
    X = (X + 0.3 * rng.normal(size=X.shape)).astype(np.float32)
    train = PsiDataset(X, y).save(root / "train.psi")
    assert main(["fit", str(train), "-o", str(root / "clf38"), "--classes", "3,8", *XGB,
                 "--no-progress"]) == 0
    return root, train


def _csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_cli_relevance_multiclass(saved, capsys):
    root, train = saved
    assert main(["relevance", str(train), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "3 classes" in err and "pair=" in err and len(err.splitlines()) == 1
    assert main(["relevance", str(train), "--pair", "3,8", "--no-progress"]) == 0
    rows = _csv(capsys.readouterr().out)
    assert list(rows[0])[-1] == "w1[3 vs 8]" and rows[0]["feature"] == "1"
    assert main(["relevance", str(train), "--aggregate", "mean", "--no-progress"]) == 0
    rows = _csv(capsys.readouterr().out)
    assert list(rows[0])[6:] == ["w1[3 vs rest]", "w1[5 vs rest]", "w1[8 vs rest]",
                                 "w1[mean of one-vs-rest]"]
    assert main(["relevance", str(train), "--aggregate", "max", "--mode", "pairwise", "--no-progress"]) == 0
    rows = _csv(capsys.readouterr().out)
    assert list(rows[0])[-1] == "w1[max of pairwise]" and "w1[3 vs 5]" in rows[0]
    # --classes 3,8: a binary problem, the classic w1 column, column 1 on top
    assert main(["relevance", str(train), "--classes", "3,8", "--no-progress"]) == 0
    rows = _csv(capsys.readouterr().out)
    assert list(rows[0])[-1] == "w1" and rows[0]["feature"] == "1"
    assert main(["relevance", str(train), "--classes", "3,4", "--no-progress"]) == 2
    assert "class '4' is not a label" in capsys.readouterr().err


def test_fit_classes_and_one_format_both_ways(saved, capsys):
    root, train = saved
    out = root / "clf38b"
    assert main(["fit", str(train), "-o", str(out), "--classes", "3,8", *XGB, "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["classes"] == [3, 8] and summary["n_train"] == 160
    ds = PsiDataset.load(train)
    keep = np.isin(ds.labels, (3, 8))
    X = np.asarray(ds.psi)
    # what `img2tab fit` writes: Img2Tab.load, load_classifier and Img2Tab(inv, clf) all read it
    clf = load_classifier(out)
    model = Img2Tab.load(out)
    wrapped = Img2Tab(None, clf, progress=False)
    np.testing.assert_array_equal(clf.classes_, [3, 8])
    np.testing.assert_array_equal(model.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(wrapped.predict_proba(X), clf.predict_proba(X))
    assert set(np.unique(model.predict(X[keep]))) <= {3, 8}
    assert model.score(X[keep], ds.labels[keep]) > 0.9
    assert int(model.relevance(1)["feature"][0]) == 1  # W1 and Ψ statistics came with the folder
    np.testing.assert_allclose(model.psi_std_, X[keep].std(0), rtol=1e-5)
    # the other way round: Img2Tab.save -> load_classifier and the CLI
    fitted = Img2Tab(None, ConceptClassifier("logreg"), progress=False).fit(ds)
    fitted.save(root / "py")
    back = load_classifier(root / "py")
    np.testing.assert_array_equal(back.predict_proba(X), fitted.predict_proba(X))
    assert main(["concepts", str(root / "py"), "--top", "2", "--no-progress"]) == 0
    assert len(_csv(capsys.readouterr().out)) == 2
    assert main(["concepts", str(root / "py"), "--dataset", str(train), "--pair", "5,8",
                 "--no-progress"]) == 0
    rows = _csv(capsys.readouterr().out)
    assert "w1[5 vs 8]" in rows[0] and "w1" not in rows[0]
    assert main(["concepts", str(root / "py"), "--dataset", str(train), "--no-progress"]) == 2
    assert "3 classes" in capsys.readouterr().err
    # an old bare classifier folder (ConceptClassifier.save) still loads as an Img2Tab
    old = fitted.classifier_.save(root / "old")
    legacy = Img2Tab.load(old)
    np.testing.assert_array_equal(legacy.predict_proba(X), fitted.predict_proba(X))
    with pytest.raises(Img2TabInputError, match="training Ψ"):
        legacy.relevance(aggregate="max")


def test_debug_classes(saved, capsys):
    root, train = saved
    out = root / "dbg"
    rc = main(["debug", str(root / "clf38"), "--train", str(train), "--classes", "3,8",
               "--exclude", "1", "-o", str(out), "--no-progress"])
    assert rc == 0
    np.testing.assert_array_equal(load_classifier(out / "classifier").classes_, [3, 8])
    report = json.loads((out / "report.json").read_text())
    assert report["before"]["accuracy"] > report["after"]["accuracy"]  # column 1 was the signal


def test_adopted_classifier_explains_and_names_the_class(tiny_inverter):
    import torch

    torch.manual_seed(0)
    images = torch.rand(60, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        psi = tiny_inverter.psi(images).numpy()
    order = np.argsort(-psi.std(0))
    z = (psi - psi.mean(0)) / psi.std(0)
    y = np.asarray(["a", "b", "c"])[np.argmax(z[:, order[:3]], 1)]
    lr = ConceptClassifier("logreg", params={"C": 10.0})
    model = Img2Tab(tiny_inverter, lr, progress=False).fit(psi, y)
    ex = model.explain(psi[:3], top_k=2, strengths=(-1.0, 1.0))
    np.testing.assert_array_equal(ex.class_index, np.argmax(ex.proba, 1))  # default: predicted class
    fig = model.plot_explanation(ex, 1)
    c = model.classes_[ex.class_index[1]]
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == f"source\np({c})={ex.source_proba_image[1]:.2f}"
    assert titles[1] == f"-1 sd\np({c})={ex.edit_proba_image[1, 0, 0]:.2f}"
    # a fitted classifier passed in is used as it is; edits in sd units say what they need
    wrapped = Img2Tab(tiny_inverter, model.classifier_, progress=False)
    np.testing.assert_array_equal(wrapped.predict_proba(psi), model.predict_proba(psi))
    assert wrapped.explain(psi[:2], render=False).concepts[0].column_names
    with pytest.raises(Img2TabInputError, match="from_fitted"):
        wrapped.explain(psi[:2], render=True)
    same = Img2Tab.from_fitted(model.classifier_, psi, y, inverter=tiny_inverter, progress=False)
    np.testing.assert_array_equal(same.psi_std_, model.psi_std_)
