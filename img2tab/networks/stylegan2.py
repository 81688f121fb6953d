"""StyleGAN2 generator and discriminator with rosinality's state-dict layout.

The modules reproduce rosinality/stylegan2-pytorch's ``model.py`` key for key, so official
checkpoints (``stylegan2-ffhq-config-f.pt``, the ``decoder.*`` part of e4e checkpoints) load with
``strict=True``. Unlike the original:

* styles are explicit tensors: :meth:`Generator.styles` maps W+ to the per-layer StyleSpace vectors
  and :meth:`Generator.synthesize` renders from them; nothing is kept in global state;
* the resampling and activation ops come from :mod:`img2tab.ops` (pure PyTorch on CPU, optional
  lazily-built CUDA kernels);
* modulated convolutions scale the input activations instead of building per-sample grouped
  weights (mathematically identical, faster on CPU, no extra state).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import FusedLeakyReLU, fused_leaky_relu, upfirdn2d
from .layout import StyleSpaceLayout, generator_channels

__all__ = [
    "Discriminator",
    "EqualConv2d",
    "EqualLinear",
    "Generator",
    "GeneratorConfig",
    "ModulatedConv2d",
]

_BLUR = (1, 3, 3, 1)


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of a rosinality StyleGAN2 generator.

    Attributes:
        size: output resolution (power of two, 4 .. 1024).
        style_dim: width of z, w and W+ rows.
        n_mlp: number of mapping layers.
        channel_multiplier: 2 for config-f.
        lr_mlp: learning-rate multiplier of the mapping network.
        channels: optional ``((resolution, width), ...)`` table overriding the standard widths
            (used by small custom generators such as img2tab's embedded default).
    """

    size: int = 1024
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    lr_mlp: float = 0.01
    channels: tuple[tuple[int, int], ...] | None = field(default=None)

    def __post_init__(self) -> None:
        log_size = int(math.log2(self.size)) if self.size > 0 else 0
        if self.size < 4 or 2**log_size != self.size:
            raise ValueError(f"GeneratorConfig.size must be a power of two >= 4, got {self.size}")

    def channel_table(self) -> dict[int, int]:
        """``{resolution: width}`` for every resolution up to :attr:`size`."""
        table = generator_channels(self.channel_multiplier)
        if self.channels is not None:
            table.update({int(r): int(c) for r, c in self.channels})
        return {r: c for r, c in table.items() if r <= self.size}

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    @property
    def n_latent(self) -> int:
        """Rows of W+ (18 at 1024 px)."""
        return 2 * self.log_size - 2

    @property
    def num_noise(self) -> int:
        """Number of noise buffers (17 at 1024 px)."""
        return 2 * (self.log_size - 2) + 1

    def to_dict(self) -> dict:
        d = {
            "size": self.size,
            "style_dim": self.style_dim,
            "n_mlp": self.n_mlp,
            "channel_multiplier": self.channel_multiplier,
            "lr_mlp": self.lr_mlp,
        }
        if self.channels is not None:
            d["channels"] = {str(r): c for r, c in self.channels}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GeneratorConfig:
        channels = d.get("channels")
        if isinstance(channels, dict):
            channels = tuple(sorted((int(r), int(c)) for r, c in channels.items()))
        return cls(
            size=int(d["size"]),
            style_dim=int(d.get("style_dim", 512)),
            n_mlp=int(d.get("n_mlp", 8)),
            channel_multiplier=int(d.get("channel_multiplier", 2)),
            lr_mlp=float(d.get("lr_mlp", 0.01)),
            channels=channels,
        )


# ---------------------------------------------------------------------------- building blocks
def _make_kernel(k: Sequence[int]) -> torch.Tensor:
    t = torch.tensor(k, dtype=torch.float32)
    if t.ndim == 1:
        t = t[None, :] * t[:, None]
    return t / t.sum()


class PixelNorm(nn.Module):
    """Normalise each sample to unit RMS over dim 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class Upsample(nn.Module):
    """2x FIR upsampling (buffer ``kernel`` [4, 4])."""

    def __init__(self, kernel: Sequence[int] = _BLUR, factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", _make_kernel(kernel) * factor**2)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, down=1, pad=self.pad)


class Blur(nn.Module):
    """FIR low-pass filter (buffer ``kernel`` [4, 4])."""

    def __init__(
        self, kernel: Sequence[int], pad: tuple[int, int], upsample_factor: int = 1
    ) -> None:
        super().__init__()
        k = _make_kernel(kernel)
        if upsample_factor > 1:
            k = k * upsample_factor**2
        self.register_buffer("kernel", k)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class EqualConv2d(nn.Module):
    """Conv2d with equalized learning rate (weight scaled at run time by 1/sqrt(fan_in))."""

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(
            x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding
        )


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate and optional fused leaky ReLU.

    Keys ``weight`` [out, in] and ``bias`` [out], as in rosinality.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: str | None = None,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.activation = activation
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias=bias)


class ModulatedConv2d(nn.Module):
    """Modulated (and optionally demodulated) convolution taking an explicit style.

    ``modulation`` is the affine layer producing the style ``s`` [B, in_channel]; :meth:`forward`
    takes ``s`` itself so callers can edit StyleSpace before rendering.
    """

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        downsample: bool = False,
        blur_kernel: Sequence[int] = _BLUR,
    ) -> None:
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.upsample, self.downsample, self.demodulate = upsample, downsample, demodulate
        factor = 2
        if upsample:
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1),
                             upsample_factor=factor)
        if downsample:
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2, p // 2))
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(
            torch.randn(1, out_channel, in_channel, kernel_size, kernel_size)
        )
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)

    def style(self, w: torch.Tensor) -> torch.Tensor:
        """Affine map W row ``[B, style_dim]`` -> style ``[B, in_channel]``."""
        return self.modulation(w)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Apply the convolution to ``x`` [B, in, H, W] modulated by style ``s`` [B, in]."""
        batch = x.shape[0]
        weight = self.scale * self.weight[0]  # [out, in, k, k]
        x = x * s.reshape(batch, self.in_channel, 1, 1)
        if self.upsample:
            out = F.conv_transpose2d(x, weight.transpose(0, 1), padding=0, stride=2)
            out = self.blur(out)
        elif self.downsample:
            out = F.conv2d(self.blur(x), weight, padding=0, stride=2)
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            w2 = weight.square().sum(dim=(2, 3))  # [out, in]
            demod = torch.rsqrt(s.square() @ w2.t() + 1e-8)  # [B, out]
            out = out * demod.reshape(batch, self.out_channel, 1, 1)
        return out


class NoiseInjection(nn.Module):
    """Adds per-pixel noise scaled by a learned ``weight`` [1]."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            b, _, h, w = x.shape
            noise = x.new_empty(b, 1, h, w).normal_()
        return x + self.weight * noise


class StyledConv(nn.Module):
    """Modulated conv + noise + fused leaky ReLU (keys ``conv``, ``noise``, ``activate``)."""

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        style_dim: int,
        upsample: bool = False,
        blur_kernel: Sequence[int] = _BLUR,
        demodulate: bool = True,
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim,
                                    demodulate=demodulate, upsample=upsample,
                                    blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(
        self, x: torch.Tensor, s: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, s), noise=noise))


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB plus upsampled skip (keys ``conv``, ``bias``, ``upsample``)."""

    def __init__(
        self,
        in_channel: int,
        style_dim: int,
        upsample: bool = True,
        blur_kernel: Sequence[int] = _BLUR,
    ) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(
        self, x: torch.Tensor, s: torch.Tensor, skip: torch.Tensor | None = None
    ) -> torch.Tensor:
        out = self.conv(x, s) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ConstantInput(nn.Module):
    """Learned constant ``input`` [1, C, 4, 4]."""

    def __init__(self, channel: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


# ---------------------------------------------------------------------------- generator
class Generator(nn.Module):
    """StyleGAN2 generator (rosinality layout) with an explicit StyleSpace interface.

    Typical use::

        w = G.mapping(z)                                  # [B, style_dim]
        w_plus = w[:, None].expand(-1, G.n_latent, -1)    # [B, n_latent, style_dim]
        styles = G.styles(w_plus)                         # list of [B, C_l], forward order
        psi = G.layout.flatten(styles)                    # [B, D]
        img = G.synthesize(styles)                        # [B, 3, size, size], fixed noise

    Args:
        config: architecture; keyword arguments are accepted as a shortcut
            (``Generator(size=64, style_dim=128, ...)``).
    """

    def __init__(self, config: GeneratorConfig | None = None, **kwargs: object) -> None:
        super().__init__()
        if config is None:
            config = GeneratorConfig(**kwargs)  # type: ignore[arg-type]
        elif kwargs:
            raise TypeError("pass either a GeneratorConfig or keyword arguments, not both")
        self.config = config
        self.size = config.size
        self.style_dim = config.style_dim
        self.log_size = config.log_size
        self.n_latent = config.n_latent
        self.num_layers = config.num_noise
        ch = self.channels = config.channel_table()
        self.layout = StyleSpaceLayout.from_generator_config(config.size, channels=ch)

        self.style = nn.Sequential(
            PixelNorm(),
            *[
                EqualLinear(config.style_dim, config.style_dim, lr_mul=config.lr_mlp,
                            activation="fused_lrelu")
                for _ in range(config.n_mlp)
            ],
        )
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], 3, config.style_dim)
        self.to_rgb1 = ToRGB(ch[4], config.style_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.upsamples = nn.ModuleList()  # unused; kept for rosinality parity
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        # average W (``[style_dim]``) when known from a checkpoint; not part of the state dict
        self.register_buffer("latent_avg", None, persistent=False)
        for i in range(self.num_layers):
            res = (i + 5) // 2
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, 2**res, 2**res))
        in_ch = ch[4]
        for i in range(3, self.log_size + 1):
            out_ch = ch[2**i]
            self.convs.append(StyledConv(in_ch, out_ch, 3, config.style_dim, upsample=True))
            self.convs.append(StyledConv(out_ch, out_ch, 3, config.style_dim))
            self.to_rgbs.append(ToRGB(out_ch, config.style_dim))
            in_ch = out_ch

    # ------------------------------------------------------------------ modules in order
    def modulated_layers(self) -> list[ModulatedConv2d]:
        """The modulated convolutions in StyleSpace (forward) order."""
        mods = [self.conv1.conv, self.to_rgb1.conv]
        for t, to_rgb in enumerate(self.to_rgbs):
            mods += [self.convs[2 * t].conv, self.convs[2 * t + 1].conv, to_rgb.conv]
        return mods

    # ------------------------------------------------------------------ latent spaces
    def mapping(
        self,
        z: torch.Tensor,
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Map z ``[B, style_dim]`` to w ``[B, style_dim]`` (with optional truncation)."""
        w = self.style(z)
        if truncation != 1.0:
            if truncation_latent is None:
                raise ValueError("truncation != 1 needs truncation_latent (see mean_latent())")
            w = truncation_latent + truncation * (w - truncation_latent)
        return w

    get_latent = mapping  # rosinality name

    @torch.no_grad()
    def mean_latent(self, n_latent: int = 4096, seed: int | None = None) -> torch.Tensor:
        """Average mapping output of ``n_latent`` normal samples, shape ``[1, style_dim]``."""
        dev = self.input.input.device
        gen = torch.Generator(device=dev)
        if seed is not None:
            gen.manual_seed(seed)
        z = torch.randn(n_latent, self.style_dim, device=dev, generator=gen)
        return self.style(z).mean(0, keepdim=True)

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """Turn w ``[B, style_dim]`` into W+ ``[B, n_latent, style_dim]`` (W+ passes through)."""
        if w.ndim == 2:
            return w.unsqueeze(1).expand(-1, self.n_latent, -1)
        return w

    def styles(self, w_plus: torch.Tensor) -> list[torch.Tensor]:
        """StyleSpace of W+: one ``[B, C_l]`` tensor per modulated conv, in forward order.

        Only the affine ``modulation`` layers run; no image is synthesised.

        Args:
            w_plus: ``[B, n_latent, style_dim]`` (a ``[B, style_dim]`` w is broadcast).
        """
        w_plus = self.broadcast(w_plus)
        if w_plus.ndim != 3 or w_plus.shape[1:] != (self.n_latent, self.style_dim):
            raise ValueError(
                f"w_plus has shape {tuple(w_plus.shape)}, expected "
                f"[B, {self.n_latent}, {self.style_dim}]"
            )
        return [
            mod.style(w_plus[:, spec.w_index])
            for mod, spec in zip(self.modulated_layers(), self.layout.layers)
        ]

    def psi(self, w_plus: torch.Tensor) -> torch.Tensor:
        """Flat StyleSpace Ψ ``[B, D]`` of W+ ``[B, n_latent, style_dim]``."""
        return self.layout.flatten(self.styles(w_plus))

    # ------------------------------------------------------------------ rendering
    def noise_buffers(self) -> list[torch.Tensor]:
        """The checkpoint's fixed noise maps ``noises.noise_i`` ``[1, 1, r, r]``."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    def make_noise(self, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Fresh noise maps of the same shapes as :meth:`noise_buffers`."""
        return [torch.randn(n.shape, device=n.device, generator=generator)
                for n in self.noise_buffers()]

    def synthesize(
        self,
        styles: Sequence[torch.Tensor] | torch.Tensor,
        noise: str | Sequence[torch.Tensor | None] = "const",
    ) -> torch.Tensor:
        """Render images from per-layer styles.

        Args:
            styles: list of ``[B, C_l]`` style tensors (as returned by :meth:`styles`, possibly
                edited) or a flat Ψ ``[B, D]``.
            noise: ``"const"`` uses the checkpoint's fixed noise buffers (rosinality
                ``randomize_noise=False``; default), ``"random"`` draws fresh noise, or an
                explicit list with one entry per noise layer.

        Returns:
            Images ``[B, 3, size, size]``, roughly in [-1, 1].
        """
        if isinstance(styles, torch.Tensor):
            styles = self.layout.unflatten(styles)
        styles = list(styles)
        if len(styles) != self.layout.n_layers:
            raise ValueError(f"expected {self.layout.n_layers} style tensors, got {len(styles)}")
        if isinstance(noise, str):
            if noise == "const":
                noises: Sequence[torch.Tensor | None] = self.noise_buffers()
            elif noise == "random":
                noises = [None] * self.num_layers
            else:
                raise ValueError(f"noise must be 'const', 'random' or a list, got {noise!r}")
        else:
            noises = list(noise)
            if len(noises) != self.num_layers:
                raise ValueError(f"expected {self.num_layers} noise maps, got {len(noises)}")
        batch = styles[0].shape[0]
        out = self.input(batch)
        out = self.conv1(out, styles[0], noise=noises[0])
        skip = self.to_rgb1(out, styles[1])
        k = 2
        for t, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * t](out, styles[k], noise=noises[1 + 2 * t])
            out = self.convs[2 * t + 1](out, styles[k + 1], noise=noises[2 + 2 * t])
            skip = to_rgb(out, styles[k + 2], skip)
            k += 3
        return skip

    def forward(
        self,
        styles: Sequence[torch.Tensor],
        return_latents: bool = False,
        inject_index: int | None = None,
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | None = None,
        input_is_latent: bool = False,
        noise: Sequence[torch.Tensor | None] | None = None,
        randomize_noise: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """rosinality-compatible call: ``G([z])``, ``G([w_plus], input_is_latent=True)``, mixing.

        Returns:
            ``(image [B, 3, size, size], W+ [B, n_latent, style_dim] or None)``.
        """
        if not input_is_latent:
            styles = [self.style(s) for s in styles]
        if truncation != 1.0:
            if truncation_latent is None:
                raise ValueError("truncation != 1 needs truncation_latent (see mean_latent())")
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]
        if len(styles) < 2:
            latent = self.broadcast(styles[0])
        else:
            if inject_index is None:
                inject_index = int(torch.randint(1, self.n_latent - 1, ()).item())
            latent = torch.cat(
                [
                    self.broadcast(styles[0])[:, :inject_index],
                    self.broadcast(styles[1])[:, inject_index:],
                ],
                dim=1,
            )
        if noise is None:
            noise = "random" if randomize_noise else "const"  # type: ignore[assignment]
        image = self.synthesize(self.styles(latent), noise=noise)  # type: ignore[arg-type]
        return image, (latent if return_latents else None)


# ---------------------------------------------------------------------------- discriminator
class ConvLayer(nn.Sequential):
    """[Blur] + EqualConv2d + [FusedLeakyReLU], rosinality's Sequential layout."""

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        downsample: bool = False,
        blur_kernel: Sequence[int] = _BLUR,
        bias: bool = True,
        activate: bool = True,
    ) -> None:
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channel, out_channel, kernel_size, padding=padding,
                                  stride=stride, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channel, bias=bias))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Residual downsampling block (keys ``conv1``, ``conv2``, ``skip``)."""

    def __init__(self, in_channel: int, out_channel: int, blur_kernel: Sequence[int] = _BLUR):
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True)
        self.skip = ConvLayer(in_channel, out_channel, 1, downsample=True, activate=False,
                              bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator (rosinality layout).

    Args:
        size: input resolution.
        channel_multiplier: as for the generator.
        channels: optional ``{resolution: width}`` override.
    """

    def __init__(
        self,
        size: int,
        channel_multiplier: int = 2,
        blur_kernel: Sequence[int] = _BLUR,
        channels: dict[int, int] | None = None,
    ) -> None:
        super().__init__()
        ch = generator_channels(channel_multiplier)
        if channels:
            ch.update({int(r): int(c) for r, c in channels.items()})
        self.size = size
        log_size = int(math.log2(size))
        convs: list[nn.Module] = [ConvLayer(3, ch[size], 1)]
        in_ch = ch[size]
        for i in range(log_size, 2, -1):
            out_ch = ch[2 ** (i - 1)]
            convs.append(ResBlock(in_ch, out_ch, blur_kernel))
            in_ch = out_ch
        self.convs = nn.Sequential(*convs)
        self.stddev_group = 4
        self.stddev_feat = 1
        self.final_conv = ConvLayer(in_ch + 1, ch[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(ch[4] * 4 * 4, ch[4], activation="fused_lrelu"),
            EqualLinear(ch[4], 1),
        )

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Intermediate activations after the input layer and every ResBlock (for perceptual
        losses); the last entry is the 4x4 feature map before the minibatch-stddev layer."""
        feats = []
        for block in self.convs:
            x = block(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Realness logits ``[B, 1]`` of images ``[B, 3, size, size]``."""
        out = self.convs(x)
        batch, channel, height, width = out.shape
        group = min(batch, self.stddev_group)
        while batch % group:
            group -= 1
        std = out.view(group, -1, self.stddev_feat, channel // self.stddev_feat, height, width)
        std = torch.sqrt(std.var(0, unbiased=False) + 1e-8)
        std = std.mean([2, 3, 4], keepdim=True).squeeze(2)
        std = std.repeat(group, 1, height, width)
        out = self.final_conv(torch.cat([out, std], 1))
        return self.final_linear(out.view(batch, -1))
