"""Image -> W+ -> StyleSpace: an encoder paired with its generator."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..errors import Img2TabInputError
from .e4e import Encoder4Editing, GradualStyleEncoder
from .layout import StyleSpaceLayout
from .stylegan2 import Generator

__all__ = ["PIXEL_TOLERANCE", "Inverter", "check_image_batch"]

PIXEL_TOLERANCE = 1e-3
"""Float images may exceed [-1, 1] by this much (resampling overshoot); they are clamped."""


def check_image_batch(images: Any, what: str = "images") -> torch.Tensor:
    """Validate an image batch and bring it to float in [-1, 1] (same device).

    The rule: ``uint8`` tensors are read as [0, 255] and mapped to [-1, 1]; floating tensors must
    be finite and lie in [-1, 1] (up to :data:`PIXEL_TOLERANCE`, then clamped); anything else
    (NaN / inf, a 0..255 or 0..1-looking float range beyond the tolerance, integer dtypes other
    than uint8, wrong shape) raises :class:`~img2tab.errors.Img2TabInputError` naming what was
    found. Numpy arrays are accepted and converted with the same rule.

    Args:
        images: ``[B, 3, H, W]`` tensor or array.
        what: name of the input in error messages.

    Returns:
        ``[B, 3, H, W]`` floating tensor in [-1, 1].
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
        hint = (" (channels-last? use x.permute(0, 3, 1, 2))"
                if isinstance(images, torch.Tensor) and images.ndim == 4 and images.shape[-1] == 3 else "")
        raise Img2TabInputError(
            f"{what} must be a tensor [B, 3, H, W] (float in [-1, 1] or uint8), got {shape}{hint}; "
            "use img2tab.io.load_images for files, PIL images or HWC arrays"
        )
    if images.dtype == torch.uint8:
        return images.float().div(127.5).sub(1.0)
    if not images.is_floating_point():
        raise Img2TabInputError(
            f"{what} have dtype {images.dtype}; use float in [-1, 1] or uint8 in [0, 255]")
    if images.numel() == 0:
        return images
    lo, hi = torch.aminmax(images.detach())
    lo, hi = float(lo), float(hi)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise Img2TabInputError(f"{what} contain NaN or infinite pixel values")
    if lo < -1 - PIXEL_TOLERANCE or hi > 1 + PIXEL_TOLERANCE:
        hint = (" (looks like 0..255: pass a uint8 tensor or x / 127.5 - 1)" if hi > 2 else
                "")
        raise Img2TabInputError(
            f"{what} must lie in [-1, 1], found values in [{lo:.4g}, {hi:.4g}]{hint}"
        )
    return images.clamp(-1.0, 1.0) if lo < -1 or hi > 1 else images


_PRECISIONS = ("float32", "bfloat16")
_NHWC_MIN_BATCH = 8  # channels-last pays off from about this many images per batch (measured)


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
        self.opts: dict = {}  # the checkpoint's training options, when loaded from a file
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
        """Check images ``[B, 3, H, W]`` and resize them to the encoder's input size.

        Float images must be finite and in [-1, 1]; uint8 images are read as [0, 255] (see
        :func:`check_image_batch`). Raises :class:`~img2tab.errors.Img2TabInputError` otherwise.
        """
        p = next(self.encoder.parameters())
        if isinstance(images, torch.Tensor) and images.dtype == torch.uint8:
            images = images.to(p.device)
        images = check_image_batch(images)
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

    @torch.no_grad()
    def encode_psi(
        self,
        images: torch.Tensor | np.ndarray | Iterable[torch.Tensor | np.ndarray],
        batch_size: int = 32,
        progress: bool = False,
        desc: str = "encode",
        with_w: bool = True,
        channels_last: bool | None = None,
        precision: str = "float32",
    ) -> tuple[np.ndarray, torch.Tensor | None]:
        """Encode many images to Ψ and W+: the one batch-encoding path of img2tab.

        Batches run on the inverter's device (move it first, e.g. ``inv.to("cuda")``); inputs
        may live on any device (CUDA tensors are fine). Image values follow
        :func:`check_image_batch`: float in [-1, 1] or uint8 in [0, 255].

        Args:
            images: a tensor / array ``[N, 3, H, W]``, or an iterable of tensors / arrays, each
                one image ``[3, H, W]`` or a batch ``[B, 3, H, W]`` (sizes may differ between
                items; every item is resized to the encoder's input size).
            batch_size: images per encoder call.
            progress: show a ``tqdm.auto`` progress bar.
            desc: progress bar label.
            with_w: also return W+ (set False to save memory when only Ψ is needed).
            channels_last: run the encoder on channels-last (NHWC) batches, which oneDNN's CPU
                convolutions run faster from about 8 images per batch and slower for one image
                (``benchmarks/RESULTS.md``, "Encoding settings"; Ψ equal within 1e-5). Default:
                on CPU for batches of at least 8 images.
            precision: ``"float32"`` (exact) or ``"bfloat16"``: the encoder's convolutions and
                linear layers under bfloat16 autocast (W+ and Ψ are still returned as float32).
                On this project's AVX-512 BF16 CPU the 1024 px encoder ran 2.4x faster at 8
                images per batch but not faster at 32, and the 64 px default not reliably
                faster; Ψ moves by up to about 2e-2. An opt-in for large encodings, not the default.

        Returns:
            ``(psi, w_plus)``: Ψ ``[N, D]`` float32 numpy array (``D = self.layout.total``) and
            W+ ``[N, n_latent, style_dim]`` float32 CPU tensor (latent_avg added), or None when
            ``with_w`` is False.
        """
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise Img2TabInputError(f"batch_size must be a positive int, got {batch_size!r}")
        if precision not in _PRECISIONS:
            raise Img2TabInputError(f"precision must be one of {sorted(_PRECISIONS)}, got {precision!r}")
        device = next(self.parameters()).device
        gen = self.decoder
        total = len(images) if isinstance(images, torch.Tensor | np.ndarray) else None
        psi: list[np.ndarray] = []
        ws: list[torch.Tensor] = []
        with tqdm(total=total, desc=desc, unit="img", disable=not progress, leave=False) as bar:
            for x in self._batches(images, batch_size):
                x = x.to(device) if x.device != device else x
                nhwc = (device.type == "cpu" and len(x) >= _NHWC_MIN_BATCH) if channels_last is None \
                    else channels_last
                if nhwc:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
                    w = self.encode(x)
                w = w.float()
                psi.append(gen.psi(w).float().cpu().numpy())
                if with_w:
                    ws.append(w.float().cpu())
                bar.update(len(x))
        n_latent, style_dim = gen.n_latent, gen.style_dim
        out_psi = (np.concatenate(psi).astype(np.float32, copy=False) if psi
                   else np.zeros((0, self.layout.total), np.float32))
        if not with_w:
            return out_psi, None
        return out_psi, (torch.cat(ws) if ws else torch.zeros(0, n_latent, style_dim))

    @staticmethod
    def _batches(images: Any, batch_size: int) -> Iterator[torch.Tensor]:
        """Cut ``images`` (see :meth:`encode_psi`) into ``[<=batch_size, 3, H, W]`` tensors."""
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.ascontiguousarray(images))
        if isinstance(images, torch.Tensor):
            if images.ndim != 4:
                check_image_batch(images)  # raises the shape error
            for i in range(0, len(images), batch_size):
                yield images[i:i + batch_size]
            return
        if isinstance(images, (str, bytes)) or not isinstance(images, Iterable):
            raise Img2TabInputError(
                f"images must be a tensor [N, 3, H, W] or an iterable of image tensors, got "
                f"{type(images).__name__}; use img2tab.io.load_images for files"
            )
        pending: list[torch.Tensor] = []
        n_pending = 0
        for j, item in enumerate(images):
            if isinstance(item, np.ndarray):
                item = torch.from_numpy(np.ascontiguousarray(item))
            if not isinstance(item, torch.Tensor) or item.ndim not in (3, 4):
                raise Img2TabInputError(
                    f"item {j} of images is not an image tensor [3, H, W] or batch [B, 3, H, W] "
                    f"(got {tuple(item.shape) if hasattr(item, 'shape') else type(item).__name__})"
                )
            item = check_image_batch(item[None] if item.ndim == 3 else item, f"item {j} of images")
            if pending and item.shape[1:] != pending[0].shape[1:]:
                yield from Inverter._flush(pending, batch_size)
                pending, n_pending = [], 0
            pending.append(item)
            n_pending += len(item)
            if n_pending >= batch_size:
                rest = yield from Inverter._flush(pending, batch_size, keep_tail=True)
                pending = [rest] if rest is not None else []
                n_pending = len(rest) if rest is not None else 0
        if pending:
            yield from Inverter._flush(pending, batch_size)

    @staticmethod
    def _flush(pending: list[torch.Tensor], batch_size: int, keep_tail: bool = False):
        """Yield full batches of the concatenated ``pending``; return the tail when ``keep_tail``."""
        x = torch.cat(pending) if len(pending) > 1 else pending[0]
        n_full = len(x) // batch_size * batch_size if keep_tail else len(x)
        for i in range(0, n_full, batch_size):
            yield x[i:min(i + batch_size, n_full)]
        return x[n_full:] if keep_tail and n_full < len(x) else None
