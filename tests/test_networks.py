"""StyleGAN2 generator / discriminator and e4e encoders on tiny random configs, plus full-size
construction checks (on the meta device, so they cost no memory)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from img2tab.networks.e4e import Encoder4Editing, EncoderConfig, GradualStyleEncoder, build_encoder
from img2tab.networks.stylegan2 import Discriminator, Generator, GeneratorConfig
from img2tab.ops import upfirdn2d


def _n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ---------------------------------------------------------------------------- full size
def test_config_f_1024_counts_and_keys():
    with torch.device("meta"):
        G = Generator(GeneratorConfig(1024))
    sd = G.state_dict()
    assert len(sd) == 171
    assert _n_params(G) == 30_370_060
    assert _n_params(G.style) == 2_101_248
    expected = {
        "style.1.weight": (512, 512),
        "style.8.bias": (512,),
        "input.input": (1, 512, 4, 4),
        "conv1.conv.weight": (1, 512, 512, 3, 3),
        "conv1.conv.modulation.weight": (512, 512),
        "conv1.noise.weight": (1,),
        "conv1.activate.bias": (512,),
        "to_rgb1.bias": (1, 3, 1, 1),
        "to_rgb1.conv.weight": (1, 3, 512, 1, 1),
        "convs.0.conv.blur.kernel": (4, 4),
        "convs.15.conv.weight": (1, 32, 32, 3, 3),
        "convs.14.conv.modulation.weight": (64, 512),
        "to_rgbs.7.conv.weight": (1, 3, 32, 1, 1),
        "to_rgbs.0.upsample.kernel": (4, 4),
        "noises.noise_0": (1, 1, 4, 4),
        "noises.noise_16": (1, 1, 1024, 1024),
    }
    for k, shape in expected.items():
        assert tuple(sd[k].shape) == shape, k
    assert "latent_avg" not in sd
    assert sum(b.numel() for _, b in G.named_buffers()) == 2_796_432
    assert G.layout.total == 9088 and G.n_latent == 18


@pytest.mark.parametrize("size", [32, 64, 128, 256, 512, 1024])
@pytest.mark.parametrize("cm", [1, 2])
def test_generator_sizes(size, cm):
    with torch.device("meta"):
        G = Generator(GeneratorConfig(size, channel_multiplier=cm))
        D = Discriminator(size, channel_multiplier=cm)
    n_layers = 2 + 3 * (int(math.log2(size)) - 2)
    assert G.layout.n_layers == n_layers
    assert len(G.modulated_layers()) == n_layers
    assert len(G.noise_buffers()) == 2 * (int(math.log2(size)) - 2) + 1
    if (size, cm) == (256, 2):
        assert _n_params(G) == 30_034_338 and len(G.state_dict()) == 135
    assert "final_linear.1.weight" in D.state_dict()


def test_e4e_official_counts():
    with torch.device("meta"):
        enc = Encoder4Editing(EncoderConfig())
        psp = GradualStyleEncoder(EncoderConfig(encoder_type="GradualStyleEncoder"))
    sd = enc.state_dict()
    assert len(sd) == 621
    assert _n_params(enc) == 267_136_704
    assert set(sd) == set(psp.state_dict())
    trunk = sum(p.numel() for n, p in enc.named_parameters()
                if n.startswith(("input_layer", "body")))
    assert trunk == 30_950_080
    assert sum(p.numel() for n, p in enc.named_parameters() if n.startswith("styles")) == 235_988_992
    for k in ("body.3.shortcut_layer.0.weight", "body.7.shortcut_layer.1.running_var",
              "body.21.shortcut_layer.0.weight", "body.0.res_layer.5.fc1.weight",
              "styles.17.convs.10.weight", "styles.0.convs.6.bias", "latlayer1.weight",
              "input_layer.1.num_batches_tracked"):
        assert k in sd, k
    assert "body.0.shortcut_layer.0.weight" not in sd  # MaxPool shortcut, no params
    assert "styles.0.convs.8.weight" not in sd  # coarse blocks: 4 convs at spatial 16
    assert enc.style_count == 18


def test_e4e_style_blocks_use_slope_001():
    enc = Encoder4Editing(EncoderConfig(stylegan_size=32, style_dim=16, input_size=32,
                                        widths=(4, 8, 12, 16), units=(1, 1, 1, 1), stem=4))
    acts = [m for m in enc.styles.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert acts and all(a.negative_slope == 0.01 for a in acts)


# ---------------------------------------------------------------------------- tiny generator
def _grouped_modconv(conv, x, s):
    """rosinality's fused (grouped-conv) modulated convolution, written out as the spec."""
    b, cin, h, w = x.shape
    k = conv.kernel_size
    weight = conv.scale * conv.weight * s.view(b, 1, cin, 1, 1)
    if conv.demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(b, -1, 1, 1, 1)
    if conv.upsample:
        weight = weight.transpose(1, 2).reshape(b * cin, conv.out_channel, k, k)
        out = F.conv_transpose2d(x.view(1, b * cin, h, w), weight, padding=0, stride=2, groups=b)
        out = out.view(b, conv.out_channel, *out.shape[-2:])
        return upfirdn2d(out, conv.blur.kernel, pad=conv.blur.pad, impl="ref")
    weight = weight.view(b * conv.out_channel, cin, k, k)
    out = F.conv2d(x.view(1, b * cin, h, w), weight, padding=conv.padding, groups=b)
    return out.view(b, conv.out_channel, h, w)


@pytest.mark.parametrize("layer", [0, 1, 2, 3, 4])
def test_modulated_conv_matches_grouped_definition(tiny_generator, layer):
    torch.manual_seed(layer)
    conv = tiny_generator.modulated_layers()[layer]
    res = tiny_generator.layout.layers[layer].resolution
    in_res = res // 2 if conv.upsample else res
    x = torch.randn(3, conv.in_channel, in_res, in_res)
    s = torch.randn(3, conv.in_channel)
    torch.testing.assert_close(conv(x, s), _grouped_modconv(conv, x, s), rtol=1e-4, atol=1e-5)


def test_styles_and_synthesis(tiny_generator):
    G = tiny_generator
    z = torch.randn(4, G.style_dim)
    w = G.mapping(z)
    assert w.shape == (4, G.style_dim)
    w_plus = G.broadcast(w) + 0.1 * torch.randn(4, G.n_latent, G.style_dim)
    styles = G.styles(w_plus)
    assert [s.shape[1] for s in styles] == list(G.layout.dims)
    psi = G.layout.flatten(styles)
    assert psi.shape == (4, G.layout.total)
    with torch.no_grad():
        img = G.synthesize(styles)
        img2 = G.synthesize(psi)
        img3 = G.synthesize(styles)
        rnd = G.synthesize(styles, noise="random")
    assert img.shape == (4, 3, 32, 32)
    assert torch.equal(img, img2) and torch.equal(img, img3)  # fixed noise: deterministic
    assert not torch.allclose(img, rnd)
    # batch independence: row i of a batch equals the single-image result
    with torch.no_grad():
        single = G.synthesize([s[1:2] for s in styles])
    torch.testing.assert_close(single, img[1:2], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="w_plus has shape"):
        G.styles(torch.zeros(1, G.n_latent + 1, G.style_dim))
    with pytest.raises(ValueError, match="noise"):
        G.synthesize(styles, noise="fresh")


def test_styles_equal_what_forward_sees(tiny_generator):
    """Ψ from the affine layers alone equals the modulation outputs during a full forward."""
    G = tiny_generator
    w_plus = torch.randn(2, G.n_latent, G.style_dim)
    seen: list[torch.Tensor] = []
    hooks = [m.modulation.register_forward_hook(lambda _m, _i, o: seen.append(o))
             for m in G.modulated_layers()]
    with torch.no_grad():
        G([w_plus], input_is_latent=True, randomize_noise=False)
    for h in hooks:
        h.remove()
    with torch.no_grad():
        mine = G.styles(w_plus)
    assert len(seen) == len(mine)
    for a, b in zip(seen, mine):
        assert torch.equal(a, b)


def test_rosinality_forward_semantics(tiny_generator):
    G = tiny_generator
    z = torch.randn(2, G.style_dim)
    with torch.no_grad():
        img, lat = G([z], return_latents=True, randomize_noise=False)
        assert lat.shape == (2, G.n_latent, G.style_dim)
        img2, _ = G([lat], input_is_latent=True, randomize_noise=False)
        torch.testing.assert_close(img, img2)
        mean = G.mean_latent(256, seed=0)
        assert mean.shape == (1, G.style_dim)
        _, lat_t = G([z], return_latents=True, truncation=0.5, truncation_latent=mean)
        torch.testing.assert_close(lat_t[:, 0], mean + 0.5 * (lat[:, 0] - mean))
        # style mixing at inject_index
        z2 = torch.randn(2, G.style_dim)
        _, mixed = G([z, z2], return_latents=True, inject_index=3)
        torch.testing.assert_close(mixed[:, :3], lat[:, :3])
        torch.testing.assert_close(mixed[:, 3:], G.broadcast(G.mapping(z2))[:, 3:])
    with pytest.raises(ValueError, match="truncation_latent"):
        G.mapping(z, truncation=0.7)


def test_generator_backward(tiny_generator):
    G = tiny_generator.train()
    w = torch.randn(2, G.n_latent, G.style_dim, requires_grad=True)
    G.synthesize(G.styles(w)).square().mean().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()
    assert G.conv1.conv.weight.grad is not None


def test_discriminator_tiny():
    torch.manual_seed(0)
    D = Discriminator(32, channels={4: 32, 8: 32, 16: 16, 32: 8})
    for b in (1, 3, 4, 6):
        assert D(torch.randn(b, 3, 32, 32)).shape == (b, 1)
    feats = D.features(torch.randn(2, 3, 32, 32))
    assert feats[-1].shape == (2, 32, 4, 4)


# ---------------------------------------------------------------------------- encoders / inverter
def test_encoders_forward(tiny_inverter):
    enc = tiny_inverter.encoder
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        w = enc(x)
    assert w.shape == (2, 8, 32)
    # e4e: every row = w0 + delta; at stage 0 all rows equal w0
    enc.set_progressive_stage(0)
    with torch.no_grad():
        w0 = enc(x)
    enc.set_progressive_stage(18)
    assert torch.allclose(w0, w0[:, :1].expand_as(w0))
    torch.testing.assert_close(w0[:, 0], w[:, 0])
    psp = build_encoder(EncoderConfig(**{**enc.config.to_dict(), "encoder_type":
                                         "GradualStyleEncoder",
                                         "widths": tuple(enc.config.widths),
                                         "units": tuple(enc.config.units)}))
    psp.load_state_dict(enc.state_dict())
    with torch.no_grad():
        wp = psp.eval()(x)
    enc.eval()
    # same weights, different forward: pSp row 0 equals e4e w0, the others differ
    torch.testing.assert_close(wp[:, 0], w[:, 0])
    assert not torch.allclose(wp[:, 5], w[:, 5])
    with pytest.raises(ValueError, match="encoder input has shape"):
        enc(torch.zeros(1, 3, 32, 32))


def test_inverter_psi_without_synthesis(tiny_inverter):
    inv = tiny_inverter
    G = inv.generator
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    calls = []
    h = G.conv1.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        w = inv.encode(x)
        psi = inv.psi(x)
    assert not calls, "psi must not run the synthesis network"
    h.remove()
    torch.testing.assert_close(w, inv.encoder(x) + inv.latent_avg)
    assert psi.shape == (3, G.layout.total)
    seen: list[torch.Tensor] = []
    hooks = [m.modulation.register_forward_hook(lambda _m, _i, o: seen.append(o))
             for m in G.modulated_layers()]
    with torch.no_grad():
        G([w], input_is_latent=True, randomize_noise=False)
    for hk in hooks:
        hk.remove()
    torch.testing.assert_close(psi, torch.cat(seen, 1), rtol=0, atol=0)
    # other input sizes are resized; wrong channel count is refused
    with torch.no_grad():
        assert inv.psi(torch.zeros(1, 3, 100, 100)).shape == (1, G.layout.total)
        assert inv.reconstruct(x).shape == (3, 3, 32, 32)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        inv.psi(torch.zeros(1, 1, 64, 64))
