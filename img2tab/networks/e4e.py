"""e4e and pSp encoders with the official key layout (omertov/encoder4editing).

* :class:`Encoder4Editing`: one base code ``w0`` from the coarsest features plus one delta per
  further W+ row (``W+_j = w0 + Δ_j``); progressive training stages.
* :class:`GradualStyleEncoder`: pSp's encoder, every W+ row predicted independently.

Both share an IR-SE trunk (``input_layer``, ``body.k``), FPN lateral convs (``latlayer1/2``) and
one ``GradualStyleBlock`` per W+ row (``styles.j``). The official FFHQ encoder is the IR-SE50 trunk
(3/4/14/3 units at 64/128/256/512 channels) at 256 px input; :class:`EncoderConfig` also allows
smaller widths and unit counts for small generators (such as img2tab's embedded default).
The style blocks use ``nn.LeakyReLU()`` at its default slope 0.01, as the original does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import torch
import torch.nn.functional as F
from torch import nn

from .stylegan2 import EqualLinear

__all__ = [
    "EncoderConfig",
    "Encoder4Editing",
    "GradualStyleEncoder",
    "ProgressiveStage",
    "build_encoder",
]

_UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}


class ProgressiveStage(IntEnum):
    """e4e progressive training stage: how many deltas are active (``Inference`` = all)."""

    WTraining = 0
    Delta1 = 1
    Delta2 = 2
    Delta3 = 3
    Delta4 = 4
    Delta5 = 5
    Delta6 = 6
    Delta7 = 7
    Delta8 = 8
    Delta9 = 9
    Delta10 = 10
    Delta11 = 11
    Delta12 = 12
    Delta13 = 13
    Delta14 = 14
    Delta15 = 15
    Delta16 = 16
    Delta17 = 17
    Inference = 18


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of an e4e / pSp encoder.

    Attributes:
        encoder_type: ``"Encoder4Editing"`` (e4e) or ``"GradualStyleEncoder"`` (pSp).
        stylegan_size: resolution of the generator the encoder inverts into; fixes the number
            of W+ rows (``2 * log2(size) - 2``).
        style_dim: width of a W+ row.
        input_size: encoder input resolution (256 for the official encoders).
        widths: channels of the four IR-SE stages (64, 128, 256, 512 officially).
        units: bottleneck units per stage ((3, 4, 14, 3) = IR-SE50).
        stem: channels of the input layer (64 officially; equals ``widths[0]`` there).
        mode: ``"ir_se"`` (with squeeze-excitation) or ``"ir"``.
    """

    encoder_type: str = "Encoder4Editing"
    stylegan_size: int = 1024
    style_dim: int = 512
    input_size: int = 256
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    units: tuple[int, int, int, int] = (3, 4, 14, 3)
    stem: int = 64
    mode: str = "ir_se"

    def __post_init__(self) -> None:
        if self.encoder_type not in ("Encoder4Editing", "GradualStyleEncoder"):
            raise ValueError(
                f"encoder_type must be 'Encoder4Editing' or 'GradualStyleEncoder', "
                f"got {self.encoder_type!r}"
            )
        if self.mode not in ("ir", "ir_se"):
            raise ValueError(f"mode must be 'ir' or 'ir_se', got {self.mode!r}")
        if any(a == b for a, b in zip(self.widths, self.widths[1:])):
            raise ValueError(
                f"consecutive stage widths must differ (stage boundaries are recovered from the "
                f"weights), got {self.widths}"
            )
        if self.input_size % 16:
            raise ValueError(f"input_size must be a multiple of 16, got {self.input_size}")

    @property
    def n_styles(self) -> int:
        """Number of W+ rows predicted (18 for a 1024 px generator)."""
        return 2 * int(math.log2(self.stylegan_size)) - 2

    @classmethod
    def ir_se(cls, num_layers: int = 50, **kwargs: object) -> EncoderConfig:
        """Official IR-SE trunk of depth 50, 100 or 152."""
        if num_layers not in _UNITS:
            raise ValueError(f"num_layers must be one of {sorted(_UNITS)}, got {num_layers}")
        return cls(units=_UNITS[num_layers], **kwargs)  # type: ignore[arg-type]

    def to_dict(self) -> dict:
        return {
            "encoder_type": self.encoder_type,
            "stylegan_size": self.stylegan_size,
            "style_dim": self.style_dim,
            "input_size": self.input_size,
            "widths": list(self.widths),
            "units": list(self.units),
            "stem": self.stem,
            "mode": self.mode,
        }

    @classmethod
    def from_dict(cls, d: dict) -> EncoderConfig:
        return cls(
            encoder_type=str(d.get("encoder_type", "Encoder4Editing")),
            stylegan_size=int(d.get("stylegan_size", 1024)),
            style_dim=int(d.get("style_dim", 512)),
            input_size=int(d.get("input_size", 256)),
            widths=tuple(int(x) for x in d.get("widths", (64, 128, 256, 512))),  # type: ignore[arg-type]
            units=tuple(int(x) for x in d.get("units", (3, 4, 14, 3))),  # type: ignore[arg-type]
            stem=int(d.get("stem", 64)),
            mode=str(d.get("mode", "ir_se")),
        )


# ---------------------------------------------------------------------------- IR-SE trunk
class SEModule(nn.Module):
    """Squeeze-and-excitation (keys ``fc1.weight``, ``fc2.weight``)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class Subsample(nn.Module):
    """Every ``stride``-th row and column: ``[B, C, H, W] -> [B, C, ceil(H/s), ceil(W/s)]``.

    Equal to the official ``MaxPool2d(1, stride)`` shortcut (a 1x1 max is the value itself)
    without its index bookkeeping, and the identity without a copy when ``stride`` is 1.
    """

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = int(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.stride == 1 else x[:, :, :: self.stride, :: self.stride]


class BottleneckIR(nn.Module):
    """IR(-SE) bottleneck unit (keys ``res_layer.*``, ``shortcut_layer.*``)."""

    def __init__(self, in_channel: int, depth: int, stride: int, se: bool = True) -> None:
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer: nn.Module = Subsample(stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channel, depth, 1, stride, bias=False), nn.BatchNorm2d(depth)
            )
        layers: list[nn.Module] = [
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        ]
        if se:
            layers.append(SEModule(depth, 16))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class GradualStyleBlock(nn.Module):
    """log2(spatial) stride-2 convs with LeakyReLU(0.01), then EqualLinear (keys ``convs``,
    ``linear``)."""

    def __init__(self, in_c: int, out_c: int, spatial: int) -> None:
        super().__init__()
        self.out_c = out_c
        num_pools = int(math.log2(spatial))
        modules: list[nn.Module] = [nn.Conv2d(in_c, out_c, 3, stride=2, padding=1), nn.LeakyReLU()]
        for _ in range(num_pools - 1):
            modules += [nn.Conv2d(out_c, out_c, 3, stride=2, padding=1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*modules)
        self.linear = EqualLinear(out_c, out_c, lr_mul=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).reshape(-1, self.out_c))


def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class _EncoderBase(nn.Module):
    """Shared trunk, FPN laterals and style blocks of e4e and pSp."""

    coarse_ind = 3
    middle_ind = 7

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        w = config.widths
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, config.stem, 3, 1, 1, bias=False),
            nn.BatchNorm2d(config.stem),
            nn.PReLU(config.stem),
        )
        units: list[nn.Module] = []
        in_c = config.stem
        self._taps: list[int] = []
        for depth, n in zip(w, config.units):
            for u in range(n):
                units.append(BottleneckIR(in_c, depth, 2 if u == 0 else 1, se=config.mode == "ir_se"))
                in_c = depth
            self._taps.append(len(units) - 1)
        self.body = nn.Sequential(*units)
        self.style_count = config.n_styles
        s = config.input_size
        self.styles = nn.ModuleList()
        for i in range(self.style_count):
            spatial = s // 16 if i < self.coarse_ind else (s // 8 if i < self.middle_ind else s // 4)
            self.styles.append(GradualStyleBlock(w[3], config.style_dim, spatial))
        self.latlayer1 = nn.Conv2d(w[2], w[3], 1)
        self.latlayer2 = nn.Conv2d(w[1], w[3], 1)

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Trunk taps c1 (stage 2), c2 (stage 3), c3 (stage 4)."""
        expected = (3, self.config.input_size, self.config.input_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"encoder input has shape {tuple(x.shape)}, expected [B, {expected[0]}, "
                f"{expected[1]}, {expected[2]}] in [-1, 1]"
            )
        x = self.input_layer(x)
        taps = {}
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self._taps[1:]:
                taps[i] = x
        c1, c2, c3 = (taps[i] for i in self._taps[1:])
        return c1, c2, c3


class Encoder4Editing(_EncoderBase):
    """e4e encoder: ``W+_j = w0 + Δ_j`` (without ``latent_avg``, which the inverter adds).

    Args:
        config: architecture; defaults to the official FFHQ encoder (IR-SE50, 18 rows).
    """

    def __init__(self, config: EncoderConfig | None = None) -> None:
        super().__init__(config or EncoderConfig())
        self.progressive_stage = ProgressiveStage.Inference

    def set_progressive_stage(self, stage: ProgressiveStage | int) -> None:
        """Only deltas ``1 .. stage`` are added (training); ``Inference`` adds all."""
        self.progressive_stage = ProgressiveStage(int(stage))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, S, S]`` in [-1, 1] -> W+ offsets ``[B, n_styles, style_dim]``."""
        c1, c2, c3 = self._features(x)
        w0 = self.styles[0](c3)
        rows = [w0]
        stage = int(self.progressive_stage)
        features = c3
        p2 = None
        for i in range(1, self.style_count):
            if i == self.coarse_ind:
                p2 = _upsample_add(c3, self.latlayer1(c2))
                features = p2
            elif i == self.middle_ind:
                features = _upsample_add(p2, self.latlayer2(c1))
            if i <= stage:
                rows.append(w0 + self.styles[i](features))
            else:
                rows.append(w0)
        return torch.stack(rows, dim=1)

    def deltas(self, w: torch.Tensor) -> torch.Tensor:
        """``Δ_j = w_j - w_0`` of an output of :meth:`forward`, shape ``[B, n_styles-1, D]``."""
        return w[:, 1:] - w[:, :1]


class GradualStyleEncoder(_EncoderBase):
    """pSp encoder: every W+ row predicted independently from c3 / p2 / p1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, S, S]`` in [-1, 1] -> W+ ``[B, n_styles, style_dim]``."""
        c1, c2, c3 = self._features(x)
        rows = [self.styles[j](c3) for j in range(self.coarse_ind)]
        p2 = _upsample_add(c3, self.latlayer1(c2))
        rows += [self.styles[j](p2) for j in range(self.coarse_ind, self.middle_ind)]
        p1 = _upsample_add(p2, self.latlayer2(c1))
        rows += [self.styles[j](p1) for j in range(self.middle_ind, self.style_count)]
        return torch.stack(rows, dim=1)


def build_encoder(config: EncoderConfig) -> Encoder4Editing | GradualStyleEncoder:
    """Instantiate the encoder class named by ``config.encoder_type``."""
    if config.encoder_type == "GradualStyleEncoder":
        return GradualStyleEncoder(config)
    return Encoder4Editing(config)
