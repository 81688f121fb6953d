"""Trainers on tiny configs (16 px, style_dim 32): one step each, loss decrease, checkpoints that
load through the public loaders, resume, data sources and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from img2tab.checkpoints import load_checkpoint, load_discriminator, load_generator, load_inverter
from img2tab.cli import main as cli_main
from img2tab.training import (
    AutoencoderTrainConfig,
    AutoencoderTrainer,
    E4ETrainConfig,
    E4ETrainer,
    ImageSource,
    StyleGAN2TrainConfig,
    StyleGAN2Trainer,
    ms_ssim,
    open_source,
    parse_channels,
    ssim,
)
from img2tab.training._common import progressive_stage, progressive_steps
from img2tab.training.losses import delta_loss, sliced_wasserstein

SIZE = 16
CHANNELS = "4:32,8:32,16:16"
ENC = {"input_size": 16, "widths": (8, 16, 24, 32), "units": (1, 1, 1, 1), "stem": 8}
RUN = {"device": "cpu", "progress": False, "log_every": 0, "sample_every": 0, "save_every": 0}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny convolutions run fastest (and are not hurt by a busy CPU) on one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """8 concept-world images, uint8 [8, 16, 16, 3] (a fixed tiny dataset)."""
    from img2tab.training.data import ImageSource

    src = ImageSource.from_world(8, seed=3, size=SIZE)
    return src.images.permute(0, 2, 3, 1).numpy()


def _gan_cfg(**kw) -> StyleGAN2TrainConfig:
    base = dict(size=SIZE, style_dim=32, n_mlp=2, channels=CHANNELS, batch=4, steps=1,
                latent_avg_samples=256, **RUN)
    base.update(kw)
    return StyleGAN2TrainConfig(**base)


def _ae_cfg(**kw) -> AutoencoderTrainConfig:
    base = dict(size=SIZE, style_dim=32, n_mlp=2, channels=CHANNELS, batch=4, steps=1,
                latent_avg_samples=256, adv_start=0, **ENC, **RUN)
    base.update(kw)
    return AutoencoderTrainConfig(**base)


def _e4e_cfg(**kw) -> E4ETrainConfig:
    base = dict(batch=4, steps=1, lr=1e-3, **ENC, **RUN)
    base.update(kw)
    return E4ETrainConfig(**base)


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory, images) -> Path:
    """A StyleGAN2 run trained for 2 steps; returns its directory."""
    out = tmp_path_factory.mktemp("gan")
    tr = StyleGAN2Trainer(_gan_cfg(steps=2), images, out)
    tr.train()
    return out


def _x(images: np.ndarray) -> torch.Tensor:
    return ImageSource.from_array(images).fixed(4)


# ---------------------------------------------------------------------------- data and losses
def test_image_source_shuffles_by_epoch_and_resumes(tmp_path, images):
    src = ImageSource.from_array(images, seed=1)
    assert len(src) == 8 and src.size == SIZE
    idx = torch.cat([src.next_indices(3) for _ in range(8)])  # 24 = 3 epochs
    for e in range(3):
        assert sorted(idx[8 * e: 8 * e + 8].tolist()) == list(range(8))
    state = src.state_dict()
    a = src.next_batch(5)
    src2 = ImageSource.from_array(images, seed=1)
    src2.load_state_dict(state)
    assert torch.equal(src2.next_batch(5), a)
    assert a.shape == (5, 3, SIZE, SIZE) and a.min() >= -1 and a.max() <= 1

    from PIL import Image

    (tmp_path / "sub").mkdir()
    for i in range(3):
        Image.fromarray(images[i]).resize((24, 20)).save(tmp_path / "sub" / f"{i}.png")
    folder = open_source(tmp_path, size=SIZE)
    assert len(folder) == 3 and folder.next_batch(2).shape == (2, 3, SIZE, SIZE)
    np.save(tmp_path / "a.npy", images)
    assert len(open_source(tmp_path / "a.npy", size=8)) == 8
    world = open_source("world:5:2", size=SIZE)
    assert len(world) == 5 and world.name == "world:5:2"
    with pytest.raises(ValueError):
        open_source("world:x", size=SIZE)
    with pytest.raises(FileNotFoundError):
        open_source(tmp_path / "missing", size=SIZE)


def test_losses_and_schedules():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1).requires_grad_(True)
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-5)
    assert torch.allclose(ms_ssim(x, x), torch.ones(2), atol=1e-5)
    v = ms_ssim(y, x)
    assert (v < 0.99).all()
    v.sum().backward()
    assert torch.isfinite(y.grad).all()
    w = torch.zeros(3, 5, 4)
    w[:, 2] = 1.0
    assert delta_loss(w, stage=1).item() == 0.0
    assert delta_loss(w, stage=2).item() == pytest.approx(2.0)
    a = torch.randn(64, 8)
    assert sliced_wasserstein(a, a.clone()).item() == pytest.approx(0.0, abs=1e-10)
    steps = progressive_steps(4, 10, 5)
    assert steps == [0, 10, 15, 20]
    assert [progressive_stage(s, steps) for s in (0, 9, 10, 16, 99)] == [0, 0, 1, 2, 3]
    assert progressive_stage(5, None) == 18
    assert parse_channels("small", 64) == ((4, 256), (8, 256), (16, 128), (32, 64), (64, 32))
    assert parse_channels("standard", 64) is None
    with pytest.raises(ValueError):
        parse_channels("4:32,16:16", 16)


# ---------------------------------------------------------------------------- StyleGAN2
def test_stylegan2_step_and_checkpoint_loads(gan_run, images):
    ck = load_checkpoint(gan_run / "checkpoints" / "000002.pt")
    assert {"g", "d", "g_ema", "g_optim", "d_optim", "args", "step", "latent_avg"} <= set(ck)
    assert type(ck["args"]) is dict and ck["step"] == 2
    assert ck["latent_avg"].shape == (32,)
    log = [json.loads(line) for line in (gan_run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    assert {"d", "g", "r1", "path"} <= set(log[0])  # both lazy regularisers ran at step 0

    tr = StyleGAN2Trainer(_gan_cfg(steps=2), images, gan_run, resume=True)
    assert tr.step == 2
    G = load_generator(gan_run / "generator.pt")
    D = load_discriminator(gan_run / "generator.pt")
    w = torch.randn(3, G.n_latent, 32)
    with torch.no_grad():
        assert torch.allclose(G.synthesize(G.styles(w)), tr.g_ema.synthesize(tr.g_ema.styles(w)),
                              atol=1e-6)
        x = _x(images)
        assert torch.allclose(D(x), tr.discriminator.eval()(x), atol=1e-6)
    assert torch.allclose(G.latent_avg, ck["latent_avg"])


# ---------------------------------------------------------------------------- e4e
def test_e4e_trains_and_checkpoint_loads(tmp_path, gan_run, images):
    cfg = _e4e_cfg(steps=24, stylegan_weights=str(gan_run / "generator.pt"), msssim_lambda=0.0,
                   dfeat_lambda=0.1, w_discriminator_lambda=0.1, progressive_start=4,
                   progressive_step_every=4, d_reg_every=4)
    tr = E4ETrainer(cfg, images, tmp_path)
    hist = tr.train()
    loss = [h["l2"] for h in hist]
    assert np.mean(loss[-4:]) < 0.9 * np.mean(loss[:4])
    assert hist[-1]["stage"] == 5 and "delta" in hist[-1] and "w_adv" in hist[-1]

    inv = load_inverter(tmp_path / "inverter.pt")
    mine = tr.inverter.eval()
    x = _x(images)
    with torch.no_grad():
        assert torch.allclose(inv.encode(x), mine.encode(x), atol=1e-5)
        assert torch.allclose(inv.reconstruct(x), mine.reconstruct(x), atol=1e-5)
    ck = load_checkpoint(tmp_path / "checkpoints" / "iteration_000024.pt")
    assert type(ck["opts"]) is dict and ck["opts"]["stylegan_size"] == SIZE
    assert (tmp_path / "checkpoints" / "iteration_000024_train.pt").exists()


# ---------------------------------------------------------------------------- autoencoder
def test_autoencoder_trains_and_checkpoints_load(tmp_path, images):
    cfg = _ae_cfg(steps=20, ema_decay=0.9, adv_lambda=0.02, adv_every=2, r1=1.0, d_reg_every=2)
    tr = AutoencoderTrainer(cfg, images, tmp_path)
    hist = tr.train()
    mse = [h["mse"] for h in hist]
    assert np.mean(mse[-4:]) < 0.7 * np.mean(mse[:4])
    assert {"g_adv", "d", "r1", "mapping_swd", "delta", "msssim"} <= set(hist[0])
    assert "g_adv" not in hist[1] and "r1" not in hist[2] and "r1" in hist[4]

    inv = load_inverter(tmp_path / "inverter.pt")
    mine = tr.export_inverter().eval()
    x = _x(images)
    with torch.no_grad():
        assert torch.allclose(inv.encode(x), mine.encode(x), atol=1e-5)
        assert torch.allclose(inv.reconstruct(x), mine.reconstruct(x), atol=1e-5)
    G = load_generator(tmp_path / "checkpoints" / "iteration_000020_train.pt")
    assert torch.allclose(G.latent_avg, tr.latent_avg[0])
    w = torch.randn(2, G.n_latent, 32)
    with torch.no_grad():
        ref = tr.export_generator().synthesize(tr.export_generator().styles(w))
        assert torch.allclose(G.synthesize(G.styles(w)), ref, atol=1e-6)
    assert load_discriminator(tmp_path / "generator.pt").size == SIZE


def test_narrow_channels_and_fractional_adv_start(tmp_path, images):
    from img2tab.training._common import parse_channels

    assert parse_channels("narrow", 64) == ((4, 32), (8, 32), (16, 16), (32, 16), (64, 16))
    tr = AutoencoderTrainer(_ae_cfg(steps=10, adv_start=0.6, adv_every=2), images, tmp_path / "a")
    assert tr.adv_start_step() == 6
    hist = tr.train()
    assert [("g_adv" in h) for h in hist] == [False] * 6 + [True, False, True, False]
    tr = AutoencoderTrainer(_ae_cfg(steps=10, adv_start=7), images, tmp_path / "b")
    assert tr.adv_start_step() == 7


def test_mix_codes_takes_rows_before_the_cut_from_each_image():
    from img2tab.training.autoencoder import mix_codes

    w = torch.arange(3)[:, None, None].expand(3, 5, 2).float()  # image i is all i
    m = mix_codes(w, 2)
    assert m[:, :2, 0].tolist() == [[0, 0], [1, 1], [2, 2]]
    assert m[:, 2:, 0].tolist() == [[2, 2, 2], [0, 0, 0], [1, 1, 1]]
    with pytest.raises(ValueError, match="cut"):
        mix_codes(w, 5)


def test_gray_generator_renders_r_equals_g_equals_b(tmp_path, images):
    from img2tab.training.autoencoder import source_is_gray
    from img2tab.training.data import ImageSource

    gray = images.mean(-1, keepdims=True).astype(np.uint8).repeat(3, -1)
    assert source_is_gray(ImageSource.from_array(gray))
    assert not source_is_gray(ImageSource.from_array(images))
    cfg = _ae_cfg(steps=3, color="auto", adv_lambda=0.02, cycle_lambda=0.1, cycle_mode="mix")
    tr = AutoencoderTrainer(cfg, gray, tmp_path / "gray")
    hist = tr.train()
    assert tr.gray and "cycle" in hist[0] and np.isfinite(hist[-1]["cycle"])
    assert "g_adv_cycle" in hist[0]  # the adversarial term reaches the mixed renders too
    inv = load_inverter(tmp_path / "gray" / "inverter.pt")
    with torch.no_grad():
        y = inv.reconstruct(_x(images))  # even a colour input renders gray
        psi = inv.psi(_x(gray))
        k = int(np.flatnonzero(inv.layout.torgb_mask)[0])
        psi[:, k] += 10.0  # a toRGB edit changes brightness, never a tint
        y2 = inv.decoder.synthesize(inv.layout.unflatten(psi))
    for img in (y, y2):
        assert torch.equal(img[:, 0], img[:, 1]) and torch.equal(img[:, 1], img[:, 2])
    rgb = AutoencoderTrainer(_ae_cfg(steps=1, color="auto"), images, tmp_path / "rgb")
    assert not rgb.gray


def test_style_cycle_edits_and_reads_back(tmp_path, images):
    cfg = _ae_cfg(steps=2, cycle_lambda=0.05, cycle_mode="style", cycle_channels=3,
                  cycle_batch=1.0)
    hist = AutoencoderTrainer(cfg, images, tmp_path).train()
    assert all(np.isfinite(h["cycle"]) and h["cycle"] > 0 for h in hist)
    with pytest.raises(ValueError, match="cycle_mode"):
        _ae_cfg(cycle_mode="swap")
    with pytest.raises(ValueError, match="color"):
        _ae_cfg(color="cmyk")


@pytest.mark.parametrize("kind", ["gan", "e4e", "ae"])
def test_resume_continues_from_saved_step(tmp_path, gan_run, images, kind):
    if kind == "gan":
        make = lambda steps: _gan_cfg(steps=steps)  # noqa: E731
        cls, opt = StyleGAN2Trainer, "g_optim"
    elif kind == "e4e":
        make = lambda steps: _e4e_cfg(  # noqa: E731
            steps=steps, stylegan_weights=str(gan_run / "generator.pt"))
        cls, opt = E4ETrainer, "optimizer"
    else:
        make = lambda steps: _ae_cfg(steps=steps, ema_decay=0.9)  # noqa: E731
        cls, opt = AutoencoderTrainer, "e_optim"
    first = cls(make(3), images, tmp_path)
    first.train()
    saved = getattr(first, opt).state_dict()["state"]
    nxt = first.data.state_dict()

    with pytest.raises(ValueError, match="resume"):
        cls(make(5), images, tmp_path)  # a fresh run must not clobber the saved one
    second = cls(make(5), images, tmp_path, resume=True)
    assert second.step == 3
    restored = getattr(second, opt).state_dict()["state"]
    assert set(restored) == set(saved) and len(saved) > 0
    for k in saved:
        assert torch.equal(restored[k]["exp_avg"], saved[k]["exp_avg"])
        assert int(restored[k]["step"]) == int(saved[k]["step"]) >= 3
    assert second.data.state_dict() == nxt
    second.train()
    assert second.step == 5
    steps = [json.loads(x)["step"] for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]
    assert second.latest_checkpoint() is not None and "5" in second.latest_checkpoint().name


# ---------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("cmd", ["train-generator", "train-encoder", "train-autoencoder"])
def test_cli_help(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main([cmd, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--data" in out


def test_cli_help_shows_the_config_defaults():
    import argparse
    import dataclasses

    from img2tab.cli import build_parser
    from img2tab.cli._training import DEFAULT_THREADS

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    p = sub.choices["train-autoencoder"]
    actions = {a.dest: a for a in p._actions}
    helps = {a.dest: a.help for a in p._actions}
    for f in dataclasses.fields(AutoencoderTrainConfig):
        if f.name in helps:
            text = helps[f.name]
            assert text.count("(default: ") == 1, f.name
            got = text[text.index("(default: ") + 10:-1]
            if isinstance(f.default, bool):  # a flag is on by default iff it sets the default
                want = "on" if actions[f.name].const == f.default else "off"
            else:
                want = {(32, 48, 64, 128): "32,48,64,128", (1, 2, 2, 1): "1,2,2,1",
                        None: "none", "": "none"}.get(f.default, str(f.default))
            assert got == want, (f.name, got, want)
    assert helps["progress"].endswith("(default: off)")  # --no-progress
    assert helps["threads"].endswith(f"(default: {DEFAULT_THREADS})")
    assert helps["adv_lambda"].endswith(f"(default: {AutoencoderTrainConfig().adv_lambda})")


def test_cli_two_step_runs(tmp_path):
    common = ["--data", "world:8:0", "--steps", "2", "--batch", "4", "--size", "16",
              "--device", "cpu", "--no-progress", "--style-dim", "32", "--n-mlp", "2",
              "--channels", CHANNELS]
    enc = ["--input-size", "16", "--widths", "8,16,24,32", "--units", "1,1,1,1", "--stem", "8"]
    ae = tmp_path / "ae"
    assert cli_main(["train-autoencoder", *common, *enc, "--out", str(ae), "--adv-start",
                     "0", "--sample-every", "1"]) == 0
    assert (ae / "inverter.pt").exists() and (ae / "samples" / "000002.png").exists()
    assert load_inverter(ae / "inverter.pt").layout.n_layers == 8
    gan = tmp_path / "gan"
    assert cli_main(["train-generator", *common, "--out", str(gan)]) == 0
    assert load_generator(gan / "generator.pt").size == SIZE
    e4e = tmp_path / "e4e"
    assert cli_main(["train-encoder", "--data", "world:8:0", "--generator",
                     str(ae / "generator.pt"), "--steps", "2", "--batch", "4", "--device", "cpu",
                     "--no-progress", *enc, "--out", str(e4e)]) == 0
    assert load_inverter(e4e / "inverter.pt").encoder.config.widths == (8, 16, 24, 32)
    # resume without --data takes the stored spec and extends the run
    assert cli_main(["train-autoencoder", "--out", str(ae), "--resume", "--steps", "3",
                     "--no-progress", "--device", "cpu"]) == 0
    assert load_checkpoint(ae / "generator.pt")["step"] == 3
    assert cli_main(["train-encoder", "--out", str(tmp_path / "x"), "--data", "world:4"]) == 2
