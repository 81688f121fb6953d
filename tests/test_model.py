"""The high-level Img2Tab object on a tiny random inverter with a planted concept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from img2tab.errors import Img2TabInputError
from img2tab.model import Img2Tab
from img2tab.tabular import ConceptClassifier, PsiDataset


@pytest.fixture
def planted(tiny_inverter):
    torch.manual_seed(0)
    images = torch.rand(120, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        psi = tiny_inverter.psi(images).numpy()
    k = int(np.argmax(psi.std(0)))
    y = (psi[:, k] > np.median(psi[:, k])).astype(int)
    return images, psi, y, k


def _clf():
    return ConceptClassifier(params={"n_estimators": 20, "max_depth": 2, "n_jobs": 1},
                             random_state=0, device="cpu")


def test_fit_predict_on_images_and_psi(tiny_inverter, planted):
    images, psi, y, k = planted
    model = Img2Tab(tiny_inverter, _clf(), batch_size=50, progress=False)
    enc = model.encode(images)
    np.testing.assert_allclose(enc, psi, rtol=1e-5, atol=1e-5)
    model.fit(images, y)
    assert model.score(psi, y) > 0.95
    np.testing.assert_array_equal(model.predict(images[:10]), model.predict(psi[:10]))
    assert model.predict_proba(psi).shape == (120, 2)
    top = model.concepts(5)
    assert int(top["feature"][0]) == k
    assert "w1" in top.column_names
    assert int(model.relevance(1)["feature"][0]) == k
    # a PsiDataset works too and carries its layout
    ds = PsiDataset(psi, y, layout=tiny_inverter.layout)
    m2 = Img2Tab(tiny_inverter, _clf(), progress=False).fit(ds)
    np.testing.assert_array_equal(m2.predict(ds), model.predict(psi))


def test_explain_and_edit(tiny_inverter, planted):
    images, psi, y, k = planted
    model = Img2Tab(tiny_inverter, _clf(), progress=False).fit(psi, y)
    ex = model.explain(images[:3], top_k=3, strengths=(-2.0, 2.0))
    assert ex.proba.shape == (3, 2)
    assert len(ex.concepts) == 3 and len(ex.concepts[0]) == 3
    np.testing.assert_allclose(ex.contributions.margin,
                               model.classifier_.decision_function(psi[:3]), rtol=1e-4, atol=1e-4)
    assert ex.edits.images.shape == (3, 3, 2, 3, 32, 32)
    assert ex.edit_proba.shape == (3, 3, 2)
    # editing the planted concept by +-3 std pushes the decision in the planted direction
    res = model.edit(psi[:8], [k], [-3.0, 3.0])
    p = model.predict_proba(res.edited_psi.reshape(-1, psi.shape[1]).numpy())[:, 1].reshape(8, 2)
    assert (p[:, 1] > p[:, 0]).all()


def test_explain_renders_each_images_own_top_concepts(tiny_inverter, planted):
    images, psi, _, _ = planted
    order = np.argsort(-psi.std(0))
    a, b = int(order[0]), int(order[1])
    z = (psi - psi.mean(0)) / psi.std(0)
    y = (z[:, a] + z[:, b] > 0).astype(int)  # two planted concepts of equal weight
    lr = ConceptClassifier("logreg", params={"C": 10.0})
    model = Img2Tab(tiny_inverter, lr, progress=False).fit(psi, y)
    # image 0 is extreme in concept a only, image 1 in concept b only: their top concepts differ
    rows = np.repeat(psi.mean(0, keepdims=True), 2, axis=0)
    rows[0, a] += 4 * psi[:, a].std()
    rows[1, b] -= 4 * psi[:, b].std()
    ex = model.explain(rows, top_k=2, strengths=(-2.0, 2.0))
    assert ex.rendered.shape == (2, 2)
    assert ex.rendered[0, 0] == a and ex.rendered[1, 0] == b
    np.testing.assert_array_equal(ex.rendered[0], ex.concepts[0]["feature"])
    np.testing.assert_array_equal(ex.rendered[1], ex.concepts[1]["feature"])
    # the explained class is the predicted one: 1 for image 0, 0 for image 1; contributions point to it
    assert ex.class_index.tolist() == [1, 0]
    assert ex.concepts[0]["contribution"][0] > 0 and ex.concepts[1]["contribution"][0] > 0
    # each image's edits move exactly its own concepts
    for i in range(2):
        for c in range(2):
            diff = (ex.edits.edited_psi[i, c] - torch.as_tensor(rows[i])).abs().sum(0)
            assert set(np.flatnonzero(diff.numpy() > 0).tolist()) == {int(ex.rendered[i, c])}
    # ... and are the same images as an edit of that image and concept alone
    solo = model.edit(rows[1:2], [b], (-2.0, 2.0))
    torch.testing.assert_close(ex.edits.images[1, 0], solo.images[0, 0])
    p_solo = model.predict_proba(solo.edited_psi.reshape(-1, psi.shape[1]).numpy())[:, 0]
    np.testing.assert_allclose(ex.edit_proba[1, 0], p_solo, rtol=1e-6)
    # the image round trip: the rendered edit re-encoded and classified, known by doing it by hand
    rt, _ = model.inverter.encode_psi(solo.images[0, 0].clamp(-1, 1), with_w=False)
    np.testing.assert_allclose(ex.edit_proba_image[1, 0], model.predict_proba(rt)[:, 0],
                               atol=1e-4)  # float noise of another batch size
    src_rt, _ = model.inverter.encode_psi(ex.edits.source[1:2].clamp(-1, 1), with_w=False)
    np.testing.assert_allclose(ex.source_proba_image[1], model.predict_proba(src_rt)[0, 0], atol=1e-4)
    # asking for class 1 everywhere flips image 1's contributions
    ex1 = model.explain(rows, top_k=2, render=False, class_index=1)
    assert ex1.class_index.tolist() == [1, 1] and ex1.edits is None
    assert ex1.concepts[1]["contribution"][0] == -ex.concepts[1]["contribution"][0]
    with pytest.raises(Img2TabInputError, match="class_index"):
        model.explain(rows, render=False, class_index=5)


def test_explain_multiclass(tiny_inverter, planted):
    _, psi, _, _ = planted
    order = np.argsort(-psi.std(0))
    z = (psi - psi.mean(0)) / psi.std(0)
    y = np.argmax(np.stack([z[:, order[0]], z[:, order[1]], z[:, order[2]]], 1), 1)
    lr = ConceptClassifier("logreg", params={"C": 10.0})
    model = Img2Tab(tiny_inverter, lr, progress=False).fit(psi, y)
    ex = model.explain(psi[:4], top_k=3, strengths=(-1.0, 1.0))
    assert ex.proba.shape == (4, 3) and ex.edit_proba.shape == (4, 3, 2)
    np.testing.assert_array_equal(ex.class_index, np.argmax(ex.proba, 1))
    for i in range(4):
        vals = ex.contributions.values[i, ex.class_index[i]]
        top = np.argsort(-np.abs(vals), kind="stable")[:3]
        np.testing.assert_array_equal(ex.rendered[i], top)


def test_debug_and_with_excluded(tiny_inverter, planted):
    _, psi, y, k = planted
    model = Img2Tab(tiny_inverter, _clf(), progress=False).fit(psi[:80], y[:80])
    prot = (psi[80:, k] > 0).astype(int)
    rep = model.debug([k], psi[80:], y[80:], protected=prot)
    assert rep.before["accuracy"] > rep.after["accuracy"]
    new = model.with_excluded([k])
    assert k not in set(int(f) for f in new.concepts(5)["feature"])
    assert model.concepts(1)["feature"][0] == k  # the original is unchanged


def test_save_load_roundtrip(tmp_path, tiny_inverter, planted):
    _, psi, y, _ = planted
    model = Img2Tab(tiny_inverter, _clf(), progress=False).fit(psi, y)
    model.save(tmp_path / "m")
    back = Img2Tab.load(tmp_path / "m", inverter=tiny_inverter)
    np.testing.assert_array_equal(back.predict_proba(psi), model.predict_proba(psi))
    np.testing.assert_array_equal(back.w1_, model.w1_)


def test_errors(tiny_inverter):
    model = Img2Tab(None, _clf(), progress=False)
    with pytest.raises(Img2TabInputError, match="not fitted"):
        model.predict(np.zeros((2, 5)))
    with pytest.raises(Img2TabInputError, match="no inverter"):
        model.encode(torch.zeros(1, 3, 64, 64))
    with pytest.raises(Img2TabInputError, match="labels"):
        model.fit(np.zeros((4, 5)))
