"""The one encoding path (Inverter.encode_psi), the pixel-value rule, and bad inputs on the torch
side (edits, checkpoints, devices) answered by one-line errors naming the input."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from img2tab import resolve_device
from img2tab.checkpoints import load_inverter, save_inverter
from img2tab.edits import edit, edit_psi
from img2tab.errors import CheckpointError, Img2TabInputError
from img2tab.metrics import psnr, ssim
from img2tab.networks.inverter import check_image_batch


def _images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def test_encode_psi_equals_per_image_encoding(tiny_inverter):
    inv = tiny_inverter
    x = _images(7)
    psi, w = inv.encode_psi(x, batch_size=3)
    with torch.no_grad():
        w_ref = torch.cat([inv.encode(x[i:i + 1]) for i in range(7)])
        psi_ref = inv.generator.psi(w_ref).numpy()
    assert psi.dtype == np.float32 and psi.shape == (7, inv.layout.total)
    assert tuple(w.shape) == (7, inv.generator.n_latent, inv.generator.style_dim)
    np.testing.assert_allclose(psi, psi_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w, w_ref, rtol=1e-5, atol=1e-5)
    # an iterable of single images and uneven batches, a numpy array: the same rows
    items = [x[0], x[1:4], x[4].numpy(), x[5:7]]
    psi2, w2 = inv.encode_psi(items, batch_size=2)
    np.testing.assert_allclose(psi2, psi_ref, rtol=1e-5, atol=1e-5)
    psi3, none = inv.encode_psi(x.numpy(), batch_size=4, with_w=False)
    assert none is None
    np.testing.assert_allclose(psi3, psi_ref, rtol=1e-5, atol=1e-5)
    empty, w0 = inv.encode_psi(x[:0])
    assert empty.shape == (0, inv.layout.total) and tuple(w0.shape) == (0, *w.shape[1:])
    # the channels-last default on CPU and the plain layout: the same Ψ
    nchw, _ = inv.encode_psi(x, batch_size=4, channels_last=False)
    nhwc, _ = inv.encode_psi(x, batch_size=4, channels_last=True)
    np.testing.assert_allclose(nhwc, nchw, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(nchw, psi_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [7, 8])
def test_subsample_shortcut_equals_the_official_maxpool(size):
    from img2tab.networks.e4e import Subsample

    x = torch.randn(2, 3, size, size)
    for stride in (1, 2):
        got = Subsample(stride)(x)
        torch.testing.assert_close(got, torch.nn.MaxPool2d(1, stride)(x), rtol=0, atol=0)
    assert Subsample(1)(x) is x  # no copy


def test_uint8_images_follow_the_rule(tiny_inverter):
    u8 = (torch.arange(3 * 32 * 32) % 256).to(torch.uint8).reshape(1, 3, 32, 32)
    as_float = u8.float() / 127.5 - 1
    torch.testing.assert_close(check_image_batch(u8), as_float)
    a, _ = tiny_inverter.encode_psi(u8)
    b, _ = tiny_inverter.encode_psi(as_float)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("bad", "match"), [
    (torch.full((2, 3, 32, 32), float("nan")), "NaN or infinite"),
    (torch.full((1, 3, 32, 32), float("inf")), "NaN or infinite"),
    (torch.full((1, 3, 32, 32), 200.0), r"\[200, 200\].*0\.\.255"),
    (torch.full((1, 3, 32, 32), -1.5), r"\[-1\.5, -1\.5\]"),
    (torch.zeros(1, 32, 32, 3), "channels-last"),
    (torch.zeros(1, 3, 32, 32, dtype=torch.int32), "dtype torch.int32"),
])
def test_bad_pixels_raise_naming_the_range(tiny_inverter, bad, match):
    for fn in (tiny_inverter.encode, tiny_inverter.psi, tiny_inverter.encode_psi):
        with pytest.raises(Img2TabInputError, match=match):
            fn(bad)


def test_slight_overshoot_is_clamped(tiny_inverter):
    x = _images(2)
    x[0, 0, 0, 0] = 1.0005
    torch.testing.assert_close(check_image_batch(x)[0, 0, 0, 0], torch.tensor(1.0))


def test_img2tab_encode_and_deprecated_wrapper(tiny_inverter):
    from img2tab import Img2Tab
    from img2tab.world.evaluation import encode_images

    x = _images(5)
    ref, w_ref = tiny_inverter.encode_psi(x)
    model = Img2Tab(tiny_inverter, batch_size=2, progress=False)
    np.testing.assert_allclose(model.encode(x), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.encode_w(x), w_ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(Img2TabInputError, match="NaN"):
        model.encode(torch.full((1, 3, 32, 32), float("nan")))
    with pytest.warns(DeprecationWarning, match="encode_psi"):
        psi, w = encode_images(tiny_inverter, x, batch_size=2)
    np.testing.assert_allclose(psi, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bs", [0, -1, 2.5])
def test_encode_psi_bad_batch_size(tiny_inverter, bs):
    with pytest.raises(Img2TabInputError, match="batch_size"):
        tiny_inverter.encode_psi(_images(1), batch_size=bs)


def test_encode_psi_bad_containers(tiny_inverter):
    with pytest.raises(Img2TabInputError, match="iterable of image tensors"):
        tiny_inverter.encode_psi("faces/")
    with pytest.raises(Img2TabInputError, match="item 1"):
        tiny_inverter.encode_psi([_images(1)[0], "x.png"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.gpu
def test_encode_psi_on_cuda(tiny_inverter):
    x = _images(5)
    ref, _ = tiny_inverter.encode_psi(x)
    inv = tiny_inverter.to("cuda")
    psi, w = inv.encode_psi(x.cuda(), batch_size=2)  # CUDA inputs, CUDA batches, CPU outputs
    assert w.device.type == "cpu"
    np.testing.assert_allclose(psi, ref, rtol=1e-3, atol=1e-3)


# ---------------------------------------------------------------------------- metrics
def test_psnr_and_ssim_known_values():
    x = torch.zeros(2, 3, 16, 16)
    y = x.clone()
    y[1] += 0.2  # MSE 0.04 on a range of 2 -> 10 log10(4 / 0.04) = 20 dB
    p = psnr(y, x, data_range=2.0)
    assert float(p[1]) == pytest.approx(20.0, abs=1e-4)
    assert float(p[0]) == float("inf")  # identical images
    assert float(ssim(x + 0.3, x + 0.3)[0]) == pytest.approx(1.0, abs=1e-6)
    from img2tab import metrics
    from img2tab.training.losses import ms_ssim as old_ms
    from img2tab.training.losses import ssim as old_ssim

    assert old_ssim is metrics.ssim and old_ms is metrics.ms_ssim  # one place per metric


# ---------------------------------------------------------------------------- edits
def test_edit_rejects_bad_values_and_accepts_numpy(tiny_generator):
    G = tiny_generator
    d = G.layout.total
    psi = np.random.default_rng(0).normal(size=(2, d)).astype(np.float32)
    res = edit(G, psi, [1], [1.0], scale=np.ones(d))  # numpy Ψ accepted
    assert res.edited_psi.shape == (2, 1, 1, d)
    assert float(res.edited_psi[0, 0, 0, 1] - psi[0, 1]) == pytest.approx(1.0)
    out = edit_psi(psi, np.array([3]), [2.0])
    assert float(out[1, 0, 0, 3] - psi[1, 3]) == pytest.approx(2.0)
    with pytest.raises(Img2TabInputError, match="finite"):
        edit_psi(psi, [1], [float("nan")])
    with pytest.raises(Img2TabInputError, match=r"2\.5 at position 1"):
        edit_psi(psi, [1, 2.5], [1.0])
    with pytest.raises(Img2TabInputError, match="True at position 0"):
        edit_psi(psi, [True], [1.0])
    with pytest.raises(Img2TabInputError, match=rf"\[D\] = \[{d}\].*\(5,\)"):
        edit_psi(psi, [1], [1.0], scale=np.ones(5))
    with pytest.raises(Img2TabInputError, match="NaN or infinite"):
        edit(G, np.full((1, d), np.nan, np.float32), [0])


def test_img2tab_top_k_must_be_non_negative():
    from img2tab import Img2Tab

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 6)).astype(np.float32)
    y = (X[:, 2] > 0).astype(int)
    from img2tab import ConceptClassifier

    m = Img2Tab(classifier=ConceptClassifier("logreg"), progress=False).fit(X, y)
    assert int(m.relevance(top_k=1)["feature"][0]) == 2
    for bad in (-1, 1.5):
        with pytest.raises(Img2TabInputError, match="top_k"):
            m.concepts(top_k=bad)
        with pytest.raises(Img2TabInputError, match="top_k"):
            m.relevance(top_k=bad)


# ---------------------------------------------------------------------------- files and devices
def test_corrupt_native_files_name_the_file(tmp_path, tiny_inverter):
    path = save_inverter(tiny_inverter, tmp_path / "model")
    w = path / "model.safetensors"
    raw = w.read_bytes()
    w.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors as safetensors"):
        load_inverter(path)
    w.write_bytes(raw)
    cfg = path / "config.json"
    text = cfg.read_text()
    cfg.write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match=r"config\.json is not valid JSON"):
        load_inverter(path)
    data = json.loads(text)
    data["encoder"] = {"input_size": "big"}
    cfg.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"config\.json has an invalid 'encoder' entry"):
        load_inverter(path)
    cfg.write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="not an img2tab config"):
        load_inverter(path)


def test_resolve_device():
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(Img2TabInputError, match="'gpu0' is not a torch device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(Img2TabInputError, match="no CUDA GPU"):
            resolve_device("cuda")
    else:
        with pytest.raises(Img2TabInputError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_no_warning_on_the_new_path(tiny_inverter):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_inverter.encode_psi(_images(2))


def test_encode_to_dataset_uses_encode_psi_and_names_a_corrupt_manifest(tmp_path, tiny_inverter):
    from img2tab.encode import encode_to_dataset

    x = _images(5, size=64)
    ds = encode_to_dataset(list(x), tiny_inverter, tmp_path / "a.psi", batch_size=2, shard_size=3,
                           progress=False)
    ref, _ = tiny_inverter.encode_psi(x)
    np.testing.assert_allclose(np.asarray(ds.psi), ref, rtol=1e-5, atol=1e-5)
    shards = tmp_path / "b.psi.shards"
    shards.mkdir()
    (shards / "manifest.json").write_text('{"n_images": 5,')
    with pytest.raises(Img2TabInputError, match=r"manifest\.json is not valid JSON"):
        encode_to_dataset(list(x), tiny_inverter, tmp_path / "b.psi", progress=False)
    with pytest.raises(Img2TabInputError, match="no CUDA GPU|CUDA device"):
        encode_to_dataset(list(x), tiny_inverter, tmp_path / "c.psi", progress=False,
                          device="cuda" if not torch.cuda.is_available() else "cuda:99")
