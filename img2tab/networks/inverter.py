"""Image -> W+ -> StyleSpace: an encoder paired with its generator."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .e4e import Encoder4Editing, GradualStyleEncoder
from .layout import StyleSpaceLayout
from .stylegan2 import Generator

__all__ = ["Inverter"]


class Inverter(nn.Module):
    """An e4e / pSp encoder, its StyleGAN2 generator and the average latent.

    ``encode`` gives W+ exactly as the official pSp wrapper feeds the generator (encoder output
    plus ``latent_avg`` when the checkpoint was trained with ``start_from_latent_avg``); ``psi``
    maps W+ through the generator's affine layers only, without synthesising an image.

    Args:
        encoder: an :class:`Encoder4Editing` or :class:`GradualStyleEncoder`.
        generator: the generator the encoder was trained for.
        latent_avg: ``[n_latent, style_dim]`` or ``[style_dim]`` average latent, or None.
    """

    def __init__(
        self,
        encoder: Encoder4Editing | GradualStyleEncoder,
        generator: Generator,
        latent_avg: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if encoder.style_count != generator.n_latent:
            raise ValueError(
                f"encoder predicts {encoder.style_count} W+ rows but the generator needs "
                f"{generator.n_latent}: they were not trained together (check stylegan_size)"
            )
        self.encoder = encoder
        self.decoder = generator
        self.source_path: str | None = None  # file it was loaded from, when known
        if latent_avg is not None:
            latent_avg = latent_avg.detach().float()
            if latent_avg.ndim == 1:
                latent_avg = latent_avg.expand(generator.n_latent, -1)
            if tuple(latent_avg.shape) != (generator.n_latent, generator.style_dim):
                raise ValueError(
                    f"latent_avg has shape {tuple(latent_avg.shape)}, expected "
                    f"[{generator.n_latent}, {generator.style_dim}]"
                )
            self.register_buffer("latent_avg", latent_avg.clone())
        else:
            self.latent_avg = None

    @property
    def generator(self) -> Generator:
        """The StyleGAN2 generator (rosinality ``decoder``)."""
        return self.decoder

    @property
    def layout(self) -> StyleSpaceLayout:
        """StyleSpace layout of the generator (``layout.total`` = D)."""
        return self.decoder.layout

    @property
    def input_size(self) -> int:
        """Encoder input resolution (256 for the official encoders)."""
        return self.encoder.config.input_size

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Check images ``[B, 3, H, W]`` in [-1, 1] and resize them to the encoder's input size."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
            raise ValueError(
                f"images must be a float tensor [B, 3, H, W] in [-1, 1], got {shape}; "
                "use img2tab's image loaders for files, PIL images or uint8 arrays"
            )
        p = next(self.encoder.parameters())
        images = images.to(device=p.device, dtype=p.dtype)
        s = self.input_size
        if images.shape[-2:] != (s, s):
            images = F.interpolate(images, size=(s, s), mode="bilinear", align_corners=False,
                                   antialias=True)
        return images

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` in [-1, 1] -> W+ ``[B, n_latent, style_dim]`` (latent_avg added)."""
        w = self.encoder(self.preprocess(images))
        if self.latent_avg is not None:
            w = w + self.latent_avg
        return w

    def styles(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer StyleSpace ``[B, C_l]`` of images (no synthesis)."""
        return self.decoder.styles(self.encode(images))

    def psi(self, images: torch.Tensor) -> torch.Tensor:
        """Flat StyleSpace Ψ ``[B, D]`` of images ``[B, 3, H, W]`` (no synthesis)."""
        return self.decoder.psi(self.encode(images))

    def reconstruct(self, images: torch.Tensor, noise: str = "const") -> torch.Tensor:
        """Invert and re-render: images ``[B, 3, H, W]`` -> ``[B, 3, size, size]``."""
        return self.decoder.synthesize(self.styles(images), noise=noise)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`psi`."""
        return self.psi(images)
