"""Loading official-layout checkpoints (rosinality, e4e) and img2tab's own format."""

from __future__ import annotations

import argparse
import copy
import os

import pytest
import torch

import img2tab
from img2tab.checkpoints import (
    infer_encoder_config,
    infer_generator_config,
    load_checkpoint,
    load_discriminator,
    load_generator,
    load_inverter,
    save_e4e,
    save_generator,
    save_inverter,
    save_rosinality,
)
from img2tab.errors import CheckpointError
from img2tab.networks.e4e import Encoder4Editing, EncoderConfig
from img2tab.networks.stylegan2 import Discriminator, Generator, GeneratorConfig


def _styles_and_image(G, w_plus):
    with torch.no_grad():
        styles = G.styles(w_plus)
        return G.layout.flatten(styles), G.synthesize(styles)


def test_rosinality_roundtrip(tmp_path, tiny_generator):
    G = tiny_generator
    latent_avg = torch.randn(G.style_dim)
    path = save_rosinality(G, tmp_path / "g.pt", latent_avg=latent_avg)
    G2 = img2tab.load_generator(path)
    assert G2.config == G.config
    torch.testing.assert_close(G2.latent_avg, latent_avg)
    w = torch.randn(2, G.n_latent, G.style_dim)
    psi, img = _styles_and_image(G, w)
    psi2, img2 = _styles_and_image(G2, w)
    assert torch.equal(psi, psi2) and torch.equal(img, img2)
    assert torch.equal(G.mapping(w[:, 0]), G2.mapping(w[:, 0]))


def test_training_checkpoint_with_namespace_args(tmp_path, tiny_generator):
    D = Discriminator(32, channels={4: 32, 8: 32, 16: 16, 32: 8})
    args = argparse.Namespace(size=32, latent=32, n_mlp=2, lr_mlp=0.01)
    torch.save({"g": tiny_generator.state_dict(), "g_ema": tiny_generator.state_dict(),
                "d": D.state_dict(), "args": args, "ada_aug_p": 0.0}, tmp_path / "train.pt")
    G2 = load_generator(tmp_path / "train.pt")
    assert G2.config.size == 32 and G2.latent_avg is None
    D2 = load_discriminator(tmp_path / "train.pt")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(D2(x), D.eval()(x))


def test_bare_state_dict_and_old_files_without_noise(tmp_path, tiny_generator):
    sd = {k: v for k, v in tiny_generator.state_dict().items() if not k.startswith("noises.")}
    torch.save(sd, tmp_path / "bare.pt")
    with pytest.warns(UserWarning, match="noise"):
        G = load_generator(tmp_path / "bare.pt")
    assert G.config == tiny_generator.config


@pytest.mark.parametrize("size", [32, 64, 256, 1024])
@pytest.mark.parametrize("cm", [1, 2])
def test_infer_generator_config_standard(size, cm):
    with torch.device("meta"):
        G = Generator(GeneratorConfig(size, style_dim=512, n_mlp=8, channel_multiplier=cm))
    cfg = infer_generator_config(G.state_dict())
    # below 64 px both multipliers give the same widths, so only the widths are identifiable
    assert cfg.channel_table() == G.config.channel_table()
    assert (cfg.size, cfg.style_dim, cfg.n_mlp) == (size, 512, 8)
    if size >= 64:
        assert cfg == G.config


def test_infer_encoder_config_official():
    with torch.device("meta"):
        enc = Encoder4Editing(EncoderConfig())
    cfg = infer_encoder_config(enc.state_dict(), {"encoder_type": "Encoder4Editing",
                                                  "stylegan_size": 1024})
    assert cfg == EncoderConfig()
    # without opts, the size follows from the number of style blocks
    assert infer_encoder_config(enc.state_dict(), {}).stylegan_size == 1024


def test_e4e_roundtrip(tmp_path, tiny_inverter):
    inv = tiny_inverter
    path = save_e4e(inv, tmp_path / "e4e.pt", opts={"exp_dir": "x", "lr": 1e-4})
    raw = load_checkpoint(path)
    assert set(raw) == {"state_dict", "opts", "latent_avg"}
    assert all(k.startswith(("encoder.", "decoder.")) for k in raw["state_dict"])
    assert raw["latent_avg"].shape == (inv.generator.n_latent, inv.generator.style_dim)
    inv2 = img2tab.load_inverter(path)
    assert inv2.encoder.config == inv.encoder.config
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(inv.encode(x), inv2.encode(x))
        assert torch.equal(inv.psi(x), inv2.psi(x))
        assert torch.equal(inv.reconstruct(x), inv2.reconstruct(x))
    assert isinstance(inv2.generator, Generator)
    # the e4e file's decoder also loads as a plain generator
    G = load_generator(path)
    assert G.config == inv.generator.config


def test_e4e_half_precision_file(tmp_path, tiny_inverter):
    path = save_e4e(tiny_inverter, tmp_path / "e4e16.pt", dtype=torch.float16)
    inv = load_inverter(path)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(inv.psi(x), tiny_inverter.psi(x), rtol=2e-2, atol=2e-2)
    assert next(inv.parameters()).dtype == torch.float32


def test_e4e_half_precision_keeps_out_of_range_tensors(tmp_path, tiny_inverter):
    # A BatchNorm running_var above the float16 range (65504) once became inf in the shipped
    # default model and broke the encoder for the light-skin images; it must survive export.
    inv = copy.deepcopy(tiny_inverter)
    bn = next(m for m in inv.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_var.fill_(5e5)
    path = save_e4e(inv, tmp_path / "e4e16.pt", dtype=torch.float16)
    sd = torch.load(path, weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())
    assert all(v.dtype == torch.float32 for k, v in sd.items() if k.endswith("running_var"))
    assert any(v.dtype == torch.float16 for v in sd.values())  # the rest is still halved
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(load_inverter(path).psi(x), inv.psi(x), rtol=2e-2, atol=2e-2)


def test_native_format_roundtrip(tmp_path, tiny_inverter):
    inv = tiny_inverter
    save_inverter(inv, tmp_path / "model")
    save_inverter(inv, tmp_path / "model")  # overwrite in place
    assert sorted(os.listdir(tmp_path / "model")) == ["config.json", "model.safetensors"]
    inv2 = load_inverter(tmp_path / "model")
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(inv.psi(x), inv2.psi(x))
    save_generator(inv.generator, tmp_path / "gen")
    G = load_generator(tmp_path / "gen")
    w = torch.randn(1, G.n_latent, G.style_dim)
    assert torch.equal(_styles_and_image(G, w)[1], _styles_and_image(inv.generator, w)[1])


def test_encoder_only_file_needs_generator(tmp_path, tiny_inverter):
    sd = {f"encoder.{k}": v for k, v in tiny_inverter.encoder.state_dict().items()}
    torch.save({"state_dict": sd, "opts": {"stylegan_size": 32, "input_size": 64},
                "latent_avg": tiny_inverter.latent_avg}, tmp_path / "enc.pt")
    with pytest.raises(CheckpointError, match="generator="):
        load_inverter(tmp_path / "enc.pt")
    inv = load_inverter(tmp_path / "enc.pt", generator=tiny_inverter.generator)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(inv.psi(x), tiny_inverter.psi(x))


# ---------------------------------------------------------------------------- bad files
def test_missing_file_message():
    with pytest.raises(FileNotFoundError, match="pretrained_models/README.md"):
        load_generator("no_such_file.pt")


def test_truncated_file(tmp_path, tiny_generator):
    path = save_rosinality(tiny_generator, tmp_path / "g.pt")
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_generator(tmp_path / "cut.pt")


def test_arbitrary_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"g_ema": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_generator(tmp_path / "evil.pt")


def test_missing_keys_named(tmp_path, tiny_generator):
    sd = tiny_generator.state_dict()
    del sd["to_rgbs.1.bias"]
    torch.save({"g_ema": sd}, tmp_path / "g.pt")
    with pytest.raises(CheckpointError, match=r"missing keys \[to_rgbs.1.bias\]"):
        load_generator(tmp_path / "g.pt")


def test_not_a_generator(tmp_path):
    torch.save({"g_ema": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not a StyleGAN2 generator"):
        load_generator(tmp_path / "x.pt")
    torch.save({"g_ema": torch.zeros(3)}, tmp_path / "y.pt")
    with pytest.raises(CheckpointError):
        load_generator(tmp_path / "y.pt")
    torch.save({"g_ema": {}}, tmp_path / "z.pt")
    with pytest.raises(CheckpointError, match="not an e4e"):
        load_inverter(tmp_path / "z.pt")


def test_ada_conversion_message(tmp_path, tiny_generator):
    sd = tiny_generator.state_dict()
    sd["style.1.weight"] = torch.zeros(32, 64)
    torch.save({"g_ema": sd}, tmp_path / "ada.pt")
    with pytest.raises(CheckpointError, match="StyleGAN2-ADA"):
        load_generator(tmp_path / "ada.pt")


def test_wrong_stylegan_size_message(tmp_path, tiny_inverter):
    path = save_e4e(tiny_inverter, tmp_path / "e.pt", opts={"stylegan_size": 1024})
    with pytest.raises(CheckpointError, match="wrong stylegan_size"):
        load_inverter(path)


def test_shape_mismatch_names_cause(tmp_path, tiny_generator):
    from img2tab.checkpoints import _load_strict

    other = Generator(GeneratorConfig(size=32, style_dim=32, n_mlp=2,
                                      channels=((4, 32), (8, 32), (16, 32), (32, 8))))
    with pytest.raises(CheckpointError, match="channel multiplier"):
        _load_strict(other, tiny_generator.state_dict(), "generator")
