"""``img2tab evaluate --data``: known answers for its parts (offset reconstructions, a planted probe
signal, the stratified split), the whole command on a tiny random model over a folder of PNGs and a
CSV, the warning for concept-world bars on a model not trained there, and the figures' labels
inside the figure."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from img2tab.image_evaluation import _split, linear_probe, per_image_reconstruction


class _Offset:
    """An inverter stub whose reconstruction is its input plus a constant."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def reconstruct(self, x):
        return x + self.offset


def test_per_image_reconstruction_known_psnr():
    x = torch.rand(5, 3, 16, 16) - 0.5  # in [-0.5, 0.5], so x + 0.1 is not clamped
    p, s, rec = per_image_reconstruction(_Offset(0.1), x, batch_size=2)
    assert p.shape == s.shape == (5,)
    np.testing.assert_allclose(p, 10 * math.log10(4 / 0.01), atol=1e-3)  # 26.02 dB
    torch.testing.assert_close(rec, x + 0.1)
    from img2tab.metrics import ssim

    np.testing.assert_allclose(s, ssim(x + 0.1, x).numpy(), rtol=1e-5)
    p0, s0, _ = per_image_reconstruction(_Offset(0.0), x)  # identity: infinite PSNR, SSIM 1
    assert np.isinf(p0).all() and np.allclose(s0, 1.0, atol=1e-5)


def test_linear_probe_reads_a_planted_channel():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(60, int), np.ones(40, int)]
    psi = 0.3 * rng.normal(size=(100, 6))
    psi[:, 4] = 2 * y - 1 + 0.05 * rng.normal(size=100)
    tr, te = np.arange(0, 100, 2), np.arange(1, 100, 2)
    r = linear_probe(psi[tr], y[tr], psi[te], y[te], c=10.0)
    assert r["accuracy"] == 1.0 and r["balanced_accuracy"] == 1.0
    assert r["majority_baseline"] == 0.6 and (r["n_train"], r["n_test"]) == (50, 50)
    noise = linear_probe(rng.normal(size=(50, 30)), y[tr], rng.normal(size=(50, 30)), y[te])
    assert noise["accuracy"] < 0.8


def test_split_is_stratified_with_the_stated_sizes():
    y = np.r_[np.zeros(12, int), np.ones(8, int)]
    tr, te, stratified = _split(y, 0.25, 0)
    assert stratified and len(te) == 5 and len(tr) == 15
    assert sorted(np.r_[tr, te].tolist()) == list(range(20))
    assert np.bincount(y[te]).tolist() == [3, 2]
    _, te1, _ = _split(y, 0.25, 0)
    assert te1.tolist() == te.tolist()  # seeded


def _write_folder(tmp_path, n=24, size=32):
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    names = []
    for i in range(n):
        arr = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        name = f"img_{i:02d}.png"
        Image.fromarray(arr).save(folder / name)
        names.append(name)
    return folder, names


def _save_model(inv, path, opts):
    from img2tab.checkpoints import save_e4e

    save_e4e(inv, path, opts=opts)
    return path


def test_evaluate_data_cli_on_a_tiny_random_model(tmp_path, tiny_inverter):
    from img2tab.cli import main
    from img2tab.io import load_images

    folder, names = _write_folder(tmp_path)
    csv = tmp_path / "labels.csv"
    # 20 of 24 images labelled (the last four have no row), classes 12 / 8
    rows = ["file,y"] + [f"{n},{int(i % 5 < 2)}" for i, n in enumerate(names[:20])]
    csv.write_text("\n".join(rows) + "\n")
    model = _save_model(tiny_inverter, tmp_path / "tiny.pt", {"dataset_type": "img2tab"})
    out = tmp_path / "eval"
    rc = main(["evaluate", "--data", str(folder), "--labels", str(csv), "--label-column", "y",
               "--model", str(model), "--out", str(out), "--top-k", "2", "--n-edit", "3",
               "--no-progress"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text(),
                   parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    assert m["n_images"] == 24 and m["n_labelled"] == 20
    assert m["label"] == {"name": "y", "classes": [0, 1], "counts": [12, 8]}
    assert (m["split"]["n_train"], m["split"]["n_test"]) == (15, 5) and m["split"]["stratified"]
    # the worst images are the lowest per-image PSNRs of the same images, named by file
    from img2tab import load_inverter

    inv = load_inverter(model)
    x = load_images(folder, size=inv.generator.size)
    p, _, _ = per_image_reconstruction(inv, x)
    worst = np.argsort(p, kind="stable")[:5]
    assert [w["id"] for w in m["reconstruction"]["worst"]] == [names[i] for i in worst]
    np.testing.assert_allclose([w["psnr"] for w in m["reconstruction"]["worst"]], p[worst],
                               rtol=1e-4)
    np.testing.assert_allclose(m["reconstruction"]["psnr_mean"], p.mean(), rtol=1e-4)
    es = m["edit_strength"]
    assert set(es["summary"]) == {"w1", "importance", "random"}
    assert es["n_images"] == 3 and es["strength"] == 10.0
    random_ = {r["concept"] for r in es["concepts"] if "random" in r["groups"]}
    ranked = {r["concept"] for r in es["concepts"] if set(r["groups"]) & {"w1", "importance"}}
    assert len(random_) == 2 and not random_ & ranked
    report = (out / "report.md").read_text()
    assert "Concept-world bars skipped" in report and not (out / "world").exists()
    assert "stratified random split of the 20 labelled images" in report
    for name in ("reconstructions.png", "edits.png"):
        assert (out / name).stat().st_size > 0


def test_evaluate_data_without_labels_measures_reconstruction_only(tmp_path, tiny_inverter):
    from img2tab.cli import main

    folder, _ = _write_folder(tmp_path, n=6)
    model = _save_model(tiny_inverter, tmp_path / "tiny.pt", {})
    out = tmp_path / "eval"
    assert main(["evaluate", "--data", str(folder), "--model", str(model), "--out", str(out),
                 "--no-progress"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["reconstruction"]["n"] == 6 and "probe" not in m and "edit_strength" not in m
    assert "no labels given" in (out / "report.md").read_text()


def test_concept_world_provenance_from_the_checkpoint_opts(tmp_path, tiny_inverter):
    from img2tab import load_inverter
    from img2tab.world.evaluation import trained_on_concept_world

    assert not trained_on_concept_world(tiny_inverter)  # built in memory: no options
    for opts, expected in (({"concept_world": True}, True), ({"dataset_type": "concept_world_64"}, True),
                           ({"data": "world:50000:0"}, True), ({"data": "digits/"}, False),
                           ({"dataset_type": "img2tab"}, False),
                           ({"concept_world": False, "dataset_type": "concept_world_64"}, False)):
        inv = load_inverter(_save_model(tiny_inverter, tmp_path / "m.pt", opts))
        assert trained_on_concept_world(inv) is expected, opts


def test_world_evaluation_warns_for_a_model_not_trained_on_the_world(tmp_path, tiny_inverter):
    from img2tab.tabular import ConceptClassifier
    from img2tab.world.evaluation import EvaluationConfig, run_evaluation

    cfg = EvaluationConfig(n_recon=8, n_train=60, n_test=30, n_oracle=60, oracle_epochs=1,
                           cnn_epochs=1, n_edit=2, n_spurious_train=60, n_spurious_test=30,
                           extra_debug_tasks=(), batch_size=32, top_k=2, n_edit_strength=2)
    clf = ConceptClassifier(params={"n_estimators": 5, "max_depth": 2, "n_jobs": 1}, device="cpu")
    with pytest.warns(UserWarning, match="not say it was trained on the concept world"):
        m = run_evaluation(tiny_inverter, tmp_path, cfg, progress=False, classifier=clf)
    assert m["trained_on_concept_world"] is False
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("> **Warning:** this model's options do not say")
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert set(saved["edit_strength"]["summary"]) == {"w1", "importance", "random"}
    assert saved["edit_strength"]["n_images"] == 2
    assert "| random | 2 |" in report


# ---------------------------------------------------------------------------- figures
def _inside(fig, texts):
    """Every non-empty text's drawn extent lies inside the figure (1 px tolerance)."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    box = fig.bbox
    for t in texts:
        if not t.get_text():
            continue
        e = t.get_window_extent(r)
        assert e.x0 >= box.x0 - 1 and e.y0 >= box.y0 - 1, t.get_text()
        assert e.x1 <= box.x1 + 1 and e.y1 <= box.y1 + 1, t.get_text()


def test_edit_grid_shows_the_input_and_keeps_long_labels_inside(tiny_generator):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from img2tab.gallery import concept_label, plot_edit_grid

    layout = tiny_generator.layout
    k = layout.index(3, 7)
    assert concept_label(layout, k, "W1 1.46") == f"L3 c7 @8 px\n(k={k})\nW1 1.46"
    src, orig = torch.zeros(3, 16, 16), torch.ones(3, 24, 24) * 0.5
    edits = torch.rand(3, 2, 3, 16, 16) * 2 - 1
    labels = ["a very long concept label that would be clipped\n(second line)", "b", "c"]
    labels[1] = concept_label(layout, k, "W1 1.46")
    fig = plot_edit_grid(src, edits, labels, (-3, 3), 0.4, np.full((3, 2), 0.5), original=orig)
    FigureCanvasAgg(fig)
    assert len(fig.axes) == 3 * 4
    # column 0 is the input, column 1 the reconstruction
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), np.full((24, 24, 3), 0.75))
    np.testing.assert_allclose(fig.axes[1].images[0].get_array(), np.full((16, 16, 3), 0.5))
    assert fig.axes[0].get_title() == "input" and fig.axes[1].get_title().startswith("reconstruction")
    _inside(fig, [ax.yaxis.label for ax in fig.axes] + [ax.title for ax in fig.axes])
    assert fig.axes[0].yaxis.label.get_text() == labels[0]


def test_w1_gallery_and_reconstructions_keep_labels_inside():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from img2tab.gallery import plot_reconstructions, plot_w1_gallery

    labels = [f"L{i} c{100 + i} @8 px toRGB\n(k={900 + i})\nW1=1.{i}" for i in range(5)]
    fig = plot_w1_gallery(torch.rand(4, 3, 32, 32), torch.rand(4, 5, 2, 3, 32, 32), labels,
                          (-3, 3), originals=torch.rand(4, 3, 32, 32))
    FigureCanvasAgg(fig)
    assert len(fig.axes) == 6 * 12
    w, h = fig.get_size_inches()
    assert w / 12 >= 1.2 and h / 6 >= 1.2  # cells of at least 1.2 inches: readable at 100 dpi
    _inside(fig, [ax.yaxis.label for ax in fig.axes] + [ax.title for ax in fig.axes]
            + [fig._suptitle])
    fig = plot_reconstructions(torch.rand(5, 3, 16, 16), torch.rand(5, 3, 32, 32),
                               titles=[f"{i} dB" for i in range(5)])
    FigureCanvasAgg(fig)
    _inside(fig, [ax.yaxis.label for ax in fig.axes] + [ax.title for ax in fig.axes])
    with pytest.raises(Exception, match="titles has 2 entries for 5 images"):
        plot_reconstructions(torch.rand(5, 3, 16, 16), torch.rand(5, 3, 16, 16), titles=["a", "b"])
