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
