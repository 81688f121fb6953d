"""Image sources for training: a folder of images, an array / tensor, or the concept world.

:class:`ImageSource` holds images as uint8 ``[N, 3, S, S]`` (in memory, or read lazily from files)
and yields shuffled minibatches scaled to [-1, 1]. Shuffling is by epoch with a permutation seeded
by ``(seed, epoch)``, so the data position (``state_dict``) is just ``(epoch, pos)`` and a resumed
run continues with exactly the batches it would have seen. No DataLoader workers are used.

Spec strings (for the command line), see :func:`open_source`:

* ``world:N:SEED`` (or ``world:N``): ``N`` concept-world images drawn with ``SEED``;
* a directory: every ``.png/.jpg/.jpeg/.bmp/.webp`` file below it (centre-cropped, resized);
* a ``.npy`` / ``.npz`` file holding uint8 ``[N, H, W, 3]`` (or ``[N, 3, H, W]``) images.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import Img2TabInputError

__all__ = ["IMAGE_EXTENSIONS", "ImageSource", "open_source"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")


def _load_image(path: Path, size: int) -> np.ndarray:
    """Read an image file as uint8 ``[3, size, size]`` (RGB, centre crop, Lanczos resize)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        if w != h:
            left, top = (w - s) // 2, (h - s) // 2
            im = im.crop((left, top, left + s, top + s))
        if s != size:
            im = im.resize((size, size), Image.Resampling.LANCZOS)
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()


def _to_uint8_nchw(images: np.ndarray | torch.Tensor, size: int | None) -> torch.Tensor:
    """Normalise an image array to uint8 ``[N, 3, S, S]`` (resizing to ``size`` if given)."""
    t = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    t = t.detach().cpu()
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4:
        raise Img2TabInputError(f"images must be [N, H, W, 3] or [N, 3, H, W], got {tuple(t.shape)}")
    if t.shape[-1] == 3 and t.shape[1] != 3:
        t = t.permute(0, 3, 1, 2)
    if t.shape[1] != 3:
        raise Img2TabInputError(f"images must have 3 channels, got shape {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        x = t
    elif t.is_floating_point():
        if not torch.isfinite(t).all():
            raise Img2TabInputError("images contain NaN or inf")
        lo, hi = float(t.min()), float(t.max())
        if lo < -1.001 or hi > 1.001:
            raise Img2TabInputError(
                f"float images must be in [-1, 1] (got range [{lo:.3g}, {hi:.3g}]); pass uint8 "
                "for 0..255 data"
            )
        x = t.float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)
    else:
        x = t.clamp(0, 255).to(torch.uint8)
    h, w = x.shape[-2:]
    if h != w:
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        x = x[:, :, top: top + s, left: left + s]
    if size is not None and x.shape[-1] != size:
        out = []
        for i in range(0, x.shape[0], 256):
            chunk = x[i: i + 256].float()
            chunk = F.interpolate(chunk, size=(size, size), mode="bilinear", align_corners=False,
                                  antialias=True)
            out.append(chunk.round().clamp(0, 255).to(torch.uint8))
        x = torch.cat(out)
    return x.contiguous()


class ImageSource:
    """A finite set of square RGB images yielding shuffled minibatches in [-1, 1].

    Build one with :meth:`from_array`, :meth:`from_folder`, :meth:`from_world` or
    :func:`open_source`.

    Args:
        images: uint8 ``[N, 3, S, S]`` tensor (in-memory source), or None with ``files``.
        files: image files read lazily (folder source).
        size: image side ``S``.
        seed: shuffling seed.
        mirror: randomly flip images horizontally (with probability 1/2, deterministic per
            batch position).
        name: description used in logs and checkpoints.
    """

    def __init__(
        self,
        images: torch.Tensor | None = None,
        files: Sequence[Path] | None = None,
        size: int | None = None,
        seed: int = 0,
        mirror: bool = False,
        name: str = "",
    ) -> None:
        if (images is None) == (files is None):
            raise ValueError("give exactly one of images / files")
        if images is not None:
            if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
                raise ValueError("images must be uint8 [N, 3, S, S]; use ImageSource.from_array")
            size = int(images.shape[-1])
            n = int(images.shape[0])
        else:
            assert files is not None
            if size is None:
                raise ValueError("a folder source needs size")
            n = len(files)
        if n == 0:
            raise Img2TabInputError(f"image source {name or ''} holds no images")
        self.images = images
        self.files = list(files) if files is not None else None
        self.size = int(size)  # type: ignore[arg-type]
        self.seed = int(seed)
        self.mirror = bool(mirror)
        self.name = name
        self._n = n
        self.epoch = 0
        self.pos = 0
        self._perm: torch.Tensor | None = None
        self._perm_epoch = -1

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_array(cls, images: np.ndarray | torch.Tensor, size: int | None = None,
                   seed: int = 0, mirror: bool = False, name: str = "array") -> ImageSource:
        """From uint8 ``[N, H, W, 3]`` / ``[N, 3, H, W]`` or float ``[N, 3, H, W]`` in [-1, 1]
        (centre-cropped to square and resized to ``size`` when given)."""
        return cls(_to_uint8_nchw(images, size), seed=seed, mirror=mirror, name=name)

    @classmethod
    def from_folder(cls, path: str | os.PathLike, size: int, seed: int = 0, mirror: bool = False,
                    cache: bool | None = None) -> ImageSource:
        """All images below ``path`` (recursively, sorted), centre-cropped and resized to ``size``.

        Args:
            cache: load everything into memory up front; default: when the decoded images
                take at most 2 GiB.
        """
        root = Path(path)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {str(path)!r} not found")
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise Img2TabInputError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
        if cache is None:
            cache = len(files) * 3 * size * size <= 2 * 1024**3
        name = f"folder:{root}"
        if cache:
            arr = torch.from_numpy(np.stack([_load_image(p, size) for p in files]))
            return cls(arr, seed=seed, mirror=mirror, name=name)
        return cls(files=files, size=size, seed=seed, mirror=mirror, name=name)

    @classmethod
    def from_world(cls, n: int, seed: int = 0, size: int = 64, shuffle_seed: int | None = None,
                   mirror: bool = False) -> ImageSource:
        """``n`` images of :class:`img2tab.world.ConceptWorld` drawn with ``seed`` (rendered at
        ``size`` when the world supports it, otherwise rendered at 64 and resized)."""
        from ..world import ConceptWorld
        render = size if size >= 16 else 64
        imgs = ConceptWorld(size=render).sample(int(n), seed=int(seed)).images
        return cls.from_array(imgs, size=size, seed=seed if shuffle_seed is None else shuffle_seed,
                              mirror=mirror, name=f"world:{n}:{seed}")

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return self._n

    def _get(self, idx: torch.Tensor) -> torch.Tensor:
        if self.images is not None:
            return self.images[idx]
        assert self.files is not None
        return torch.from_numpy(np.stack([_load_image(self.files[int(i)], self.size)
                                          for i in idx]))

    @staticmethod
    def to_float(x: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, 3, S, S]`` -> float ``[B, 3, S, S]`` in [-1, 1]."""
        return x.float().div_(127.5).sub_(1.0)

    def get(self, indices: Sequence[int] | torch.Tensor,
            device: str | torch.device = "cpu") -> torch.Tensor:
        """Images at ``indices`` as float ``[B, 3, S, S]`` in [-1, 1] (no flipping)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.to_float(self._get(idx).to(device))

    def fixed(self, n: int, device: str | torch.device = "cpu") -> torch.Tensor:
        """The first ``min(n, N)`` images, float ``[n, 3, S, S]`` in [-1, 1] (for sample grids)."""
        return self.get(torch.arange(min(n, self._n)), device)

    def _permutation(self, epoch: int) -> torch.Tensor:
        if self._perm_epoch != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self._n, generator=g)
            self._perm_epoch = epoch
        assert self._perm is not None
        return self._perm

    def next_indices(self, batch: int) -> torch.Tensor:
        """Indices of the next ``batch`` images (epochs of shuffled permutations)."""
        out = []
        need = batch
        while need > 0:
            perm = self._permutation(self.epoch)
            take = perm[self.pos: self.pos + need]
            out.append(take)
            need -= len(take)
            self.pos += len(take)
            if self.pos >= self._n:
                self.epoch += 1
                self.pos = 0
        return torch.cat(out)

    def next_batch(self, batch: int, device: str | torch.device = "cpu") -> torch.Tensor:
        """The next shuffled minibatch, float ``[batch, 3, S, S]`` in [-1, 1] on ``device``."""
        key = self.seed * 7_919 + self.epoch * 104_729 + self.pos
        idx = self.next_indices(batch)
        x = self._get(idx)
        if self.mirror:
            g = torch.Generator().manual_seed(key)
            flip = torch.rand(len(idx), generator=g) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return self.to_float(x.to(device, non_blocking=True))

    def __iter__(self) -> ImageSource:
        return self

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        """Data position: ``{"epoch", "pos", "seed", "n"}``."""
        return {"epoch": self.epoch, "pos": self.pos, "seed": self.seed, "n": self._n}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position (a warning if the source changed size)."""
        if int(state.get("n", self._n)) != self._n:
            logger.warning("data source had %s images when saved, now %d; the data position is "
                           "only approximate", state.get("n"), self._n)
        self.epoch = int(state.get("epoch", 0))
        self.pos = int(state.get("pos", 0)) % self._n
        self.seed = int(state.get("seed", self.seed))

    def __repr__(self) -> str:
        return f"ImageSource({self.name or 'images'}, n={self._n}, size={self.size})"


def open_source(
    data: ImageSource | str | os.PathLike | np.ndarray | torch.Tensor,
    size: int,
    seed: int = 0,
    mirror: bool = False,
) -> ImageSource:
    """Turn a data argument into an :class:`ImageSource` of ``size`` x ``size`` images.

    Args:
        data: an :class:`ImageSource` (returned as is; its size must match), an array / tensor
            of images, ``"world:N:SEED"``, a folder, or a ``.npy`` / ``.npz`` file.
        size: image side expected by the networks.
        seed: shuffling seed.
        mirror: random horizontal flips.
    """
    if isinstance(data, ImageSource):
        if data.size != size:
            raise Img2TabInputError(f"image source has {data.size} px images, training needs {size}")
        return data
    if isinstance(data, (np.ndarray, torch.Tensor)):
        return ImageSource.from_array(data, size=size, seed=seed, mirror=mirror)
    spec = os.fspath(data)
    if spec.startswith("world:") or spec == "world":
        parts = spec.split(":")
        try:
            n = int(parts[1]) if len(parts) > 1 and parts[1] else 10_000
            wseed = int(parts[2]) if len(parts) > 2 and parts[2] else 0
        except ValueError:
            raise Img2TabInputError(f"world spec is world:N:SEED with integers, got {spec!r}") from None
        if len(parts) > 3 or n <= 0:
            raise Img2TabInputError(f"world spec is world:N:SEED, got {spec!r}")
        return ImageSource.from_world(n, wseed, size=size, shuffle_seed=seed, mirror=mirror)
    path = Path(spec).expanduser()
    if path.is_dir():
        return ImageSource.from_folder(path, size, seed=seed, mirror=mirror)
    if path.suffix in (".npy", ".npz"):
        if not path.exists():
            raise FileNotFoundError(f"image array file {spec!r} not found")
        arr = np.load(path, allow_pickle=False)
        if isinstance(arr, np.lib.npyio.NpzFile):
            key = "images" if "images" in arr.files else arr.files[0]
            arr = arr[key]
        return ImageSource.from_array(arr, size=size, seed=seed, mirror=mirror, name=str(path))
    if not path.exists():
        raise FileNotFoundError(
            f"training data {spec!r} not found (expected a folder of images, a .npy/.npz file "
            "or world:N:SEED)"
        )
    raise Img2TabInputError(f"cannot read training data from {spec!r} (not a folder, .npy or .npz)")
