"""StyleSpace layout: where every style channel of a StyleGAN2 generator lives in the flat Ψ vector.

A StyleGAN2 generator (rosinality layout) has one affine "modulation" layer per modulated
convolution. Its output, the style ``s`` of that layer, has one value per *input* channel of the
convolution. Concatenating all styles in forward order gives the flat StyleSpace vector Ψ
used by Img2Tab as a tabular row.

Forward order (same as rosinality's forward calls and betterze/StyleSpace):
``conv1``, ``to_rgb1``, then for every resolution 8, 16, ... ``convs.{2t}`` (up-conv),
``convs.{2t+1}``, ``to_rgbs.{t}``.

All indices are 0-based: ``locate(k)`` maps a flat Ψ index ``k`` to ``(layer, channel)`` and
``index(layer, channel)`` is its inverse. (The official ``get_l_s_index`` treats ``k`` as
1-based and is wrong at every layer boundary; this module is right at all of them.)
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

__all__ = ["StyleLayer", "StyleSpaceLayout", "generator_channels"]


def generator_channels(channel_multiplier: int = 2) -> dict[int, int]:
    """Feature-map width per resolution of a rosinality StyleGAN2 generator.

    Args:
        channel_multiplier: 2 for TF config-f, 1 for the lighter configs.

    Returns:
        ``{resolution: channels}`` for resolutions 4 .. 1024.
    """
    cm = channel_multiplier
    return {
        4: 512,
        8: 512,
        16: 512,
        32: 512,
        64: 256 * cm,
        128: 128 * cm,
        256: 64 * cm,
        512: 32 * cm,
        1024: 16 * cm,
    }


@dataclass(frozen=True)
class StyleLayer:
    """One modulated convolution's style vector.

    Attributes:
        index: position of the layer in forward order (0-based).
        name: module path in the rosinality state dict, e.g. ``"convs.4"`` or ``"to_rgbs.1"``.
        resolution: output resolution of the layer.
        channels: number of style channels (= the convolution's input channels).
        is_torgb: whether the layer is a toRGB layer.
        w_index: which row of W+ feeds the layer.
        offset: flat Ψ offset of channel 0 of this layer.
    """

    index: int
    name: str
    resolution: int
    channels: int
    is_torgb: bool
    w_index: int
    offset: int

    @property
    def stop(self) -> int:
        """Flat Ψ index one past the layer's last channel."""
        return self.offset + self.channels

    @property
    def slice(self) -> slice:
        """Slice of Ψ that holds this layer."""
        return slice(self.offset, self.stop)


@dataclass(frozen=True)
class StyleSpaceLayout:
    """Immutable description of a generator's StyleSpace.

    Build it with :meth:`from_generator_config` (rosinality architecture) or directly from a
    list of :class:`StyleLayer`.

    Attributes:
        layers: the style layers in forward order.
    """

    layers: tuple[StyleLayer, ...]

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_generator_config(
        cls, size: int, channel_multiplier: int = 2, channels: dict[int, int] | None = None
    ) -> StyleSpaceLayout:
        """Layout of a rosinality ``Generator(size, ..., channel_multiplier)``.

        Args:
            size: output resolution (power of two, >= 4).
            channel_multiplier: the generator's channel multiplier.
            channels: explicit ``{resolution: width}`` table overriding the standard one
                (for small custom generators).
        """
        log_size = int(math.log2(size))
        if size < 4 or 2**log_size != size:
            raise ValueError(f"size must be a power of two >= 4, got {size}")
        ch = dict(channels) if channels is not None else generator_channels(channel_multiplier)
        specs: list[tuple[str, int, int, bool, int]] = [
            ("conv1", 4, ch[4], False, 0),
            ("to_rgb1", 4, ch[4], True, 1),
        ]
        for t, res_log in enumerate(range(3, log_size + 1)):
            res = 2**res_log
            specs.append((f"convs.{2 * t}", res, ch[res // 2], False, 1 + 2 * t))
            specs.append((f"convs.{2 * t + 1}", res, ch[res], False, 2 + 2 * t))
            specs.append((f"to_rgbs.{t}", res, ch[res], True, 3 + 2 * t))
        layers = []
        offset = 0
        for i, (name, res, c, rgb, w) in enumerate(specs):
            layers.append(StyleLayer(i, name, res, c, rgb, w, offset))
            offset += c
        return cls(tuple(layers))

    # ------------------------------------------------------------------ sizes
    @property
    def n_layers(self) -> int:
        """Number of style layers (26 for the 1024 px generator)."""
        return len(self.layers)

    @cached_property
    def dims(self) -> tuple[int, ...]:
        """Width of every layer, in forward order."""
        return tuple(layer.channels for layer in self.layers)

    @cached_property
    def offsets(self) -> tuple[int, ...]:
        """Flat offset of every layer (cumulative sum of :attr:`dims`, starting at 0)."""
        return tuple(layer.offset for layer in self.layers)

    @property
    def total(self) -> int:
        """Length of Ψ (9088 for the 1024 px config-f generator)."""
        return sum(self.dims)

    def __len__(self) -> int:
        return self.total

    @cached_property
    def n_latent(self) -> int:
        """Number of W+ rows the layers read (18 at 1024 px)."""
        return max(layer.w_index for layer in self.layers) + 1

    @cached_property
    def torgb_mask(self) -> np.ndarray:
        """Boolean ``(D,)`` mask, True for channels of toRGB layers."""
        mask = np.zeros(self.total, dtype=bool)
        for layer in self.layers:
            if layer.is_torgb:
                mask[layer.slice] = True
        return mask

    @property
    def total_without_torgb(self) -> int:
        """Number of channels outside toRGB layers (6048 at 1024 px)."""
        return int((~self.torgb_mask).sum())

    # ------------------------------------------------------------------ index mapping
    def locate(self, k: int) -> tuple[int, int]:
        """Map a 0-based flat Ψ index to ``(layer, channel)``.

        Raises:
            IndexError: if ``k`` is outside ``[0, total)``.
        """
        k = int(k)
        if not 0 <= k < self.total:
            raise IndexError(f"flat StyleSpace index {k} out of range [0, {self.total})")
        layer = bisect.bisect_right(self.offsets, k) - 1
        return layer, k - self.offsets[layer]

    def index(self, layer: int, channel: int) -> int:
        """Map ``(layer, channel)`` to the 0-based flat Ψ index (inverse of :meth:`locate`)."""
        layer, channel = int(layer), int(channel)
        if not 0 <= layer < self.n_layers:
            raise IndexError(f"layer {layer} out of range [0, {self.n_layers})")
        if not 0 <= channel < self.dims[layer]:
            raise IndexError(
                f"channel {channel} out of range for layer {layer} "
                f"({self.layers[layer].name}, {self.dims[layer]} channels)"
            )
        return self.offsets[layer] + channel

    def describe(self, k: int) -> dict[str, object]:
        """Human-readable description of flat index ``k`` (layer, channel, resolution, ...)."""
        layer, channel = self.locate(k)
        spec = self.layers[layer]
        return {
            "feature": int(k),
            "layer": layer,
            "channel": channel,
            "module": spec.name,
            "resolution": spec.resolution,
            "is_torgb": spec.is_torgb,
            "w_index": spec.w_index,
        }

    def label(self, k: int) -> str:
        """Short label such as ``"L9c6@32"`` (layer 9, channel 6, resolution 32; ``rgb`` if toRGB)."""
        d = self.describe(k)
        rgb = "rgb" if d["is_torgb"] else ""
        return f"L{d['layer']}c{d['channel']}@{d['resolution']}{rgb}"

    # ------------------------------------------------------------------ tensors / arrays
    def flatten(self, styles: Sequence[Any]) -> Any:
        """Concatenate per-layer styles ``[B, C_l]`` into Ψ ``[B, D]``.

        Works on torch tensors (``torch.cat``) and numpy arrays (``np.concatenate``); this
        module itself never imports torch (the tabular half uses it without torch).
        """
        if len(styles) != self.n_layers:
            raise ValueError(f"expected {self.n_layers} style tensors, got {len(styles)}")
        for i, (s, c) in enumerate(zip(styles, self.dims)):
            if s.ndim != 2 or s.shape[1] != c:
                raise ValueError(f"style {i} has shape {tuple(s.shape)}, expected [B, {c}]")
        if isinstance(styles[0], np.ndarray):
            return np.concatenate(list(styles), axis=1)
        import torch  # only reached with tensors, so torch is already imported

        return torch.cat(list(styles), dim=1)

    def unflatten(self, psi: Any) -> list[Any]:
        """Split Ψ ``[B, D]`` (or ``[D]``) into per-layer styles ``[B, C_l]`` (views).

        Works on torch tensors and numpy arrays.
        """
        if psi.ndim == 1:
            psi = psi.reshape(1, -1)
        if psi.ndim != 2 or psi.shape[1] != self.total:
            raise ValueError(f"psi has shape {tuple(psi.shape)}, expected [B, {self.total}]")
        return [psi[:, o : o + c] for o, c in zip(self.offsets, self.dims)]

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable form (see :meth:`from_dict`)."""
        return {
            "layers": [
                {
                    "name": layer.name,
                    "resolution": layer.resolution,
                    "channels": layer.channels,
                    "is_torgb": layer.is_torgb,
                    "w_index": layer.w_index,
                }
                for layer in self.layers
            ]
        }

    @classmethod
    def from_dict(cls, data: dict) -> StyleSpaceLayout:
        """Inverse of :meth:`to_dict`."""
        layers = []
        offset = 0
        for i, spec in enumerate(data["layers"]):
            layers.append(
                StyleLayer(
                    i,
                    str(spec["name"]),
                    int(spec["resolution"]),
                    int(spec["channels"]),
                    bool(spec["is_torgb"]),
                    int(spec["w_index"]),
                    offset,
                )
            )
            offset += int(spec["channels"])
        return cls(tuple(layers))

    @classmethod
    def flat(cls, n_features: int) -> StyleSpaceLayout:
        """A one-layer layout for feature tables that do not come from a generator."""
        return cls((StyleLayer(0, "features", 0, int(n_features), False, 0, 0),))
