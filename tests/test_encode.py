"""Sharded, resumable encoding to a Ψ dataset; CSV and CelebA label parsers; encode CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import img2tab.encode as enc_mod
from img2tab.checkpoints import save_e4e
from img2tab.cli import main
from img2tab.encode import encode_to_dataset
from img2tab.errors import Img2TabInputError
from img2tab.labels import read_celeba_attributes, read_celeba_partition, read_label_csv
from img2tab.tabular import PsiDataset


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(11):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(d / f"{i:06d}.png")
    return d


def _expected(inv, folder):
    from img2tab.io import load_images

    x = load_images(folder, inv.input_size)
    with torch.no_grad():
        return inv.psi(x).numpy()


def test_encode_folder_in_shards(tmp_path, folder, tiny_inverter):
    ds = encode_to_dataset(folder, tiny_inverter, tmp_path / "out.psi", batch_size=3,
                           shard_size=4, progress=False)
    assert len(ds) == 11 and ds.layout == tiny_inverter.layout
    assert [p.rsplit("/", 1)[-1] for p in ds.ids] == [f"{i:06d}.png" for i in range(11)]
    np.testing.assert_allclose(ds.psi, _expected(tiny_inverter, folder), rtol=1e-5, atol=1e-5)
    assert not (tmp_path / "out.psi.shards").exists()


def test_interrupted_run_resumes_without_loss_or_duplicates(tmp_path, folder, tiny_inverter,
                                                            monkeypatch):
    real = enc_mod.iter_image_batches
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # die while encoding the third shard
            raise KeyboardInterrupt
        yield from real(*a, **k)

    monkeypatch.setattr(enc_mod, "iter_image_batches", flaky)
    with pytest.raises(KeyboardInterrupt):
        encode_to_dataset(folder, tiny_inverter, tmp_path / "o.psi", batch_size=2, shard_size=4,
                          progress=False)
    shards = sorted(p.name for p in (tmp_path / "o.psi.shards").iterdir() if p.suffix == ".psi")
    assert shards == ["shard-00000.psi", "shard-00001.psi"]
    assert not (tmp_path / "o.psi").exists()
    seen = []

    def counting(srcs, *a, **k):
        seen.append(len(list(srcs)))
        yield from real(srcs, *a, **k)

    monkeypatch.setattr(enc_mod, "iter_image_batches", counting)
    ds = encode_to_dataset(folder, tiny_inverter, tmp_path / "o.psi", batch_size=2, shard_size=4,
                           progress=False)
    assert seen == [3]  # only the unfinished last shard was encoded again
    assert len(ds) == 11 and len(set(ds.ids)) == 11
    np.testing.assert_allclose(ds.psi, _expected(tiny_inverter, folder), rtol=1e-5, atol=1e-5)


def test_resume_refuses_other_inputs(tmp_path, folder, tiny_inverter, monkeypatch):
    (tmp_path / "o.psi.shards").mkdir()
    (tmp_path / "o.psi.shards" / "manifest.json").write_text('{"n_images": 3}')
    with pytest.raises(Img2TabInputError, match="unfinished run"):
        encode_to_dataset(folder, tiny_inverter, tmp_path / "o.psi", progress=False)


def _interrupt_second_shard(monkeypatch):
    """Make encoding die on the second shard; return the real batch reader to restore."""
    real = enc_mod.iter_image_batches
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        yield from real(*a, **k)

    monkeypatch.setattr(enc_mod, "iter_image_batches", flaky)
    return real


def test_precision_is_recorded_and_a_resume_must_keep_it(tmp_path, folder, tiny_inverter, monkeypatch):
    import json

    real = _interrupt_second_shard(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        encode_to_dataset(folder, tiny_inverter, tmp_path / "o.psi", shard_size=4, progress=False,
                          precision="bfloat16")
    monkeypatch.setattr(enc_mod, "iter_image_batches", real)
    manifest = tmp_path / "o.psi.shards" / "manifest.json"
    assert json.loads(manifest.read_text())["model"]["precision"] == "bfloat16"
    with pytest.raises(Img2TabInputError, match="unfinished run"):  # float32 rows would mix in
        encode_to_dataset(folder, tiny_inverter, tmp_path / "o.psi", shard_size=4, progress=False)
    ds = encode_to_dataset(folder, tiny_inverter, tmp_path / "o.psi", shard_size=4, progress=False,
                           precision="bfloat16")
    assert ds.meta["encoder"]["precision"] == "bfloat16"
    exact = _expected(tiny_inverter, folder)
    err = np.abs(ds.psi - exact).max()
    assert 0 < err < 0.05 * np.abs(exact).max()  # bfloat16: close, not equal
    with pytest.raises(Img2TabInputError, match="precision must be"):
        encode_to_dataset(folder, tiny_inverter, tmp_path / "g.psi", progress=False, precision="fp16")


def test_old_manifest_without_precision_resumes_as_float32(tmp_path, folder, tiny_inverter, monkeypatch):
    import json

    real = _interrupt_second_shard(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        encode_to_dataset(folder, tiny_inverter, tmp_path / "o.psi", shard_size=4, progress=False)
    monkeypatch.setattr(enc_mod, "iter_image_batches", real)
    manifest = tmp_path / "o.psi.shards" / "manifest.json"
    old = json.loads(manifest.read_text())
    del old["model"]["precision"]
    manifest.write_text(json.dumps(old))
    ds = encode_to_dataset(folder, tiny_inverter, tmp_path / "o.psi", shard_size=4, progress=False)
    np.testing.assert_allclose(ds.psi, _expected(tiny_inverter, folder), rtol=1e-5, atol=1e-5)


def test_skip_errors_records_bad_files(tmp_path, folder, tiny_inverter):
    (folder / "zzz_broken.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = encode_to_dataset(folder, tiny_inverter, tmp_path / "o.psi", shard_size=5,
                               skip_errors=True, progress=False)
    assert len(ds) == 11
    assert ds.meta["skipped"][0][0].endswith("zzz_broken.png")


def test_label_parsers(tmp_path):
    (tmp_path / "a.txt").write_text(
        "3\n5_o_Clock_Shadow Male Smiling\n"
        "000001.jpg -1  1 1\n000002.jpg  1 -1 -1\n000003.jpg -1 -1  1\n")
    attrs = read_celeba_attributes(tmp_path / "a.txt")
    np.testing.assert_array_equal(attrs.columns["Smiling"], [1, 0, 1])
    np.testing.assert_array_equal(attrs.lookup(["x/000003.jpg", "000001.jpg"], "Male"), [0, 1])
    with pytest.raises(Img2TabInputError, match="no row"):
        attrs.lookup(["000009.jpg"], "Male")
    with pytest.raises(Img2TabInputError, match="not found"):
        attrs.lookup(["000001.jpg"], "Smile")
    (tmp_path / "p.txt").write_text("000001.jpg 0\n000002.jpg 1\n000003.jpg 2\n")
    part = read_celeba_partition(tmp_path / "p.txt")
    np.testing.assert_array_equal(part.columns["partition"], [0, 1, 2])
    (tmp_path / "bad.txt").write_text("2\nA B\n1.jpg 1 1\n2.jpg 1\n")
    with pytest.raises(Img2TabInputError, match="line 4"):
        read_celeba_attributes(tmp_path / "bad.txt")
    (tmp_path / "l.csv").write_text("file,label,group\n000001.jpg,1,a\n000002.jpg,0,b\n")
    t = read_label_csv(tmp_path / "l.csv")
    assert t.columns["label"].dtype.kind == "i" and list(t.columns["group"]) == ["a", "b"]


def test_encode_cli_with_celeba_labels(tmp_path, folder, tiny_inverter):
    model = save_e4e(tiny_inverter, tmp_path / "inv.pt")
    names = [f"{i:06d}.png" for i in range(11)]
    (tmp_path / "attr.txt").write_text(
        "11\nSmiling Male\n" + "".join(f"{n} {1 if i % 2 else -1} {1 if i % 3 else -1}\n"
                                       for i, n in enumerate(names)))
    (tmp_path / "part.txt").write_text("".join(f"{n} {0 if i < 8 else 2}\n"
                                               for i, n in enumerate(names)))
    rc = main(["encode", str(folder), "--model", str(model), "--out", str(tmp_path / "tr.psi"),
               "--celeba-attr", str(tmp_path / "attr.txt"), "--partition",
               str(tmp_path / "part.txt"), "--split", "train", "--label-column", "Smiling",
               "--protected-column", "Male", "--batch-size", "4", "--no-progress"])
    assert rc == 0
    ds = PsiDataset.load(tmp_path / "tr.psi")
    assert len(ds) == 8
    np.testing.assert_array_equal(ds.labels, [i % 2 for i in range(8)])
    np.testing.assert_array_equal(ds.protected, [int(i % 3 != 0) for i in range(8)])
    rc = main(["encode", str(folder), "--model", str(model), "--out", str(tmp_path / "x.psi"),
               "--celeba-attr", str(tmp_path / "attr.txt"), "--label-column", "Nope",
               "--no-progress"])
    assert rc == 2


def test_encode_labels_csv_missing_rows_counted_and_labeled_only(tmp_path, folder, tiny_inverter,
                                                                 capsys):
    """A CSV covering 7 of the 11 images: the error counts all 4 missing rows (not 1, as when
    only the first image was checked); --labeled-only encodes exactly the 7 labelled images."""
    model = save_e4e(tiny_inverter, tmp_path / "inv.pt")
    labelled = [0, 2, 3, 5, 7, 9, 10]  # 000000.png (the first image) is labelled, 000001.png not
    (tmp_path / "l.csv").write_text("file,digit\n" + "".join(f"{i:06d}.png,{i % 3}\n" for i in labelled))
    base = ["encode", str(folder), "--model", str(model), "--labels", str(tmp_path / "l.csv"),
            "--label-column", "digit", "--batch-size", "4", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "a.psi")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "4 of 11 image(s) have no row" in err[0] and "--labeled-only" in err[0]
    assert "000001.png" in err[0]
    assert main([*base, "--out", str(tmp_path / "b.psi"), "--labeled-only"]) == 0
    ds = PsiDataset.load(tmp_path / "b.psi")
    assert [str(i) for i in ds.ids] == [f"{i:06d}.png" for i in labelled] or \
        [str(i).rsplit("/", 1)[-1] for i in ds.ids] == [f"{i:06d}.png" for i in labelled]
    np.testing.assert_array_equal(ds.labels, [i % 3 for i in labelled])
    want = _expected(tiny_inverter, folder)[labelled]
    np.testing.assert_allclose(ds.psi, want, rtol=1e-4, atol=1e-4)
    # --labeled-only needs a label file
    assert main(["encode", str(folder), "--model", str(model), "--out", str(tmp_path / "c.psi"),
                 "--labeled-only", "--no-progress"]) == 2
