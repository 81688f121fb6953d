"""Image input and output: files, folders, PIL images, arrays and tensors to encoder-ready batches.

Every input becomes an RGB image, is resized to the inverter's square resolution and normalised to
``[-1, 1]`` exactly like the e4e training transform (``Resize``, ``ToTensor``, ``Normalize(0.5, 0.5)``).

Conventions:

* **Folders** are read non-recursively; files are sorted by name and kept when their extension (any
  case) is one of :data:`IMAGE_EXTENSIONS`. Hidden files (name starting with ``.``, e.g. macOS
  ``._x.jpg`` resource forks) are ignored.
* **Alpha** (RGBA, LA, palette transparency) is composited on a **white** background, so transparent
  regions do not turn into whatever colour happens to be stored under ``alpha == 0``.
* **16-bit** images (``I;16`` PNG/TIFF, ``uint16`` arrays) are scaled to 8 bit with ``round(v / 257)``
  (65535 -> 255). PIL mode ``I`` (32-bit int) is assumed to hold 16-bit values and is clipped to
  ``[0, 65535]`` first.
* **Float** arrays must be in ``[0, 1]``; **float tensors** must already be in ``[-1, 1]`` and are passed
  through (only resized/cropped). ``uint8`` tensors are accepted as ``[0, 255]``.
* **EXIF orientation** of files and PIL images is applied (``ImageOps.exif_transpose``).
* **Resizing** uses PIL antialiased bilinear (torchvision's default for PIL images, as in e4e
  training); ``crop="center"`` first centre-crops to a square to keep the aspect ratio, ``crop=None``
  squeezes the whole image into the square (aligned faces are square already).

Example:
    >>> x = load_images("photos/", size=256, crop="center")        # doctest: +SKIP
    >>> for ids, batch in iter_image_batches("photos/", 256, 32):   # doctest: +SKIP
    ...     w = inverter.encode(batch)
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from ._atomic import atomic_path, atomic_write_text
from .errors import Img2TabInputError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageSource",
    "LoadReport",
    "iter_image_batches",
    "list_images",
    "load_image",
    "load_images",
    "save_image_folder",
    "save_image_grid",
    "to_uint8",
]

logger = logging.getLogger(__name__)

#: File extensions (lower case) picked up when a folder is given.
IMAGE_EXTENSIONS: tuple[str, ...] = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")

#: One image source: a file or folder path, a PIL image, a numpy array or a torch tensor.
ImageSource = str | os.PathLike[str] | Image.Image | np.ndarray | torch.Tensor

Crop = Literal["center"] | None
_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
# float tensors may exceed [-1, 1] by rounding noise (e.g. a generator output clamped elsewhere)
_TENSOR_TOL = 1e-3


@dataclass
class LoadReport:
    """What a tolerant load (``skip_errors=True``) read and what it skipped.

    Attributes:
        loaded: ids of the images that were loaded, in output order (file paths as strings, or
            ``"input[i]"`` / ``"input[i][j]"`` for in-memory inputs at list position ``i``).
        skipped: ``(id, reason)`` for every input that could not be read.
    """

    loaded: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """One line: counts plus the first few skipped items and their reasons."""
        n = len(self.loaded) + len(self.skipped)
        head = "; ".join(f"{Path(i).name if os.sep in i else i} ({r})" for i, r in self.skipped[:3])
        more = f"; ... and {len(self.skipped) - 3} more" if len(self.skipped) > 3 else ""
        return f"skipped {len(self.skipped)} of {n} images that could not be read: {head}{more}"


# --------------------------------------------------------------------------------------------------
# Folders
# --------------------------------------------------------------------------------------------------
def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name.

    Args:
        folder: directory to scan (not recursive).

    Returns:
        Paths whose suffix (case-insensitive) is in :data:`IMAGE_EXTENSIONS`; hidden files excluded.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        Img2TabInputError: ``folder`` holds no such file (the message names the folder, the accepted
            extensions and, if any, a few of the other files found).
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: '{root}'")
    files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not images:
        other = ""
        if files:
            other = f" (found {len(files)} other file(s), e.g. {', '.join(p.name for p in files[:3])})"
        raise Img2TabInputError(
            f"folder '{root}' contains no images with extensions {', '.join(IMAGE_EXTENSIONS)}{other}"
        )
    return images


# --------------------------------------------------------------------------------------------------
# Single image -> uint8 RGB
# --------------------------------------------------------------------------------------------------
def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """``[H, W, 4]`` uint8 -> ``[H, W, 3]`` uint8, alpha-blended over white."""
    rgb = rgba[..., :3].astype(np.uint32)
    a = rgba[..., 3:4].astype(np.uint32)
    out = (rgb * a + 255 * (255 - a) + 127) // 255
    return out.astype(np.uint8)


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    """Any PIL image -> ``[H, W, 3]`` uint8 RGB (EXIF orientation applied, alpha over white)."""
    img = ImageOps.exif_transpose(img) or img
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img).astype(np.int64)
        return _array_to_rgb(np.clip(arr, 0, 65535).astype(np.uint16))
    if mode == "F":
        return _array_to_rgb(np.asarray(img))
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        return _composite_on_white(np.asarray(img.convert("RGBA")))
    if mode != "RGB":
        try:
            img = img.convert("RGB")
        except (ValueError, OSError) as e:
            raise Img2TabInputError(f"cannot convert a PIL image of mode {mode!r} to RGB: {e}") from e
    return np.asarray(img, dtype=np.uint8).copy()


def _array_to_rgb(arr: np.ndarray) -> np.ndarray:
    """``[H, W]`` / ``[H, W, 1|3|4]`` uint8, uint16 or float ``[0, 1]`` -> ``[H, W, 3]`` uint8."""
    if arr.ndim == 3 and arr.shape[-1] > 4 and arr.shape[0] in (1, 3, 4):
        raise Img2TabInputError(
            f"numpy image of shape {arr.shape} looks channel-first; pass arr.transpose(1, 2, 0) "
            "(numpy images are [H, W], [H, W, 1], [H, W, 3] or [H, W, 4])"
        )
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4)):
        raise Img2TabInputError(
            f"unsupported numpy image shape {arr.shape}; expected [H, W], [H, W, 1], [H, W, 3] or [H, W, 4]"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise Img2TabInputError(f"empty numpy image of shape {arr.shape}")
    if arr.dtype == np.uint8:
        u8 = arr
    elif arr.dtype == np.uint16:
        u8 = ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise Img2TabInputError("image array contains NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            hint = " (values look like [0, 255]: divide by 255)" if hi > 1.5 else ""
            hint = " (values look like [-1, 1]: use (x + 1) / 2)" if lo < 0 and lo >= -1 - 1e-6 else hint
            raise Img2TabInputError(f"float image arrays must be in [0, 1], got [{lo:.4g}, {hi:.4g}]{hint}")
        u8 = np.rint(np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        raise Img2TabInputError(
            f"unsupported image dtype {arr.dtype}; use uint8 [0, 255], uint16 [0, 65535] or float [0, 1] "
            "(e.g. arr.astype(np.uint8))"
        )
    if u8.ndim == 2:
        u8 = u8[..., None]
    if u8.shape[-1] == 1:
        return np.repeat(u8, 3, axis=-1)
    if u8.shape[-1] == 4:
        return _composite_on_white(u8)
    return np.ascontiguousarray(u8)


def _read_file(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img.load()
            return _pil_to_rgb(img)
    except FileNotFoundError:
        raise
    except Img2TabInputError as e:
        raise Img2TabInputError(f"cannot read image file '{path}': {e}") from e
    except Exception as e:  # PIL decoders raise OSError, SyntaxError, struct.error, DecompressionBombError...
        reason = str(e) or type(e).__name__
        raise Img2TabInputError(f"cannot read image file '{path}': {reason}") from e


def _check_tensor(t: torch.Tensor) -> torch.Tensor:
    """``[3, H, W]`` tensor -> float32 CPU tensor in ``[-1, 1]`` (uint8 scaled, floats validated)."""
    if t.ndim != 3 or t.shape[0] != 3:
        hint = " (channels-last? use t.permute(2, 0, 1))" if t.ndim == 3 and t.shape[-1] == 3 else ""
        raise Img2TabInputError(
            f"image tensors must be [3, H, W] or [B, 3, H, W], got {tuple(t.shape)}{hint}"
        )
    t = t.detach().cpu()
    if t.dtype == torch.uint8:
        return t.float().div(255).sub(0.5).div(0.5)
    if not t.is_floating_point():
        raise Img2TabInputError(f"unsupported tensor dtype {t.dtype}; use float in [-1, 1] or uint8")
    t = t.float()
    if not torch.isfinite(t).all():
        raise Img2TabInputError("image tensor contains NaN or infinite values")
    lo, hi = float(t.min()), float(t.max())
    if lo < -1 - _TENSOR_TOL or hi > 1 + _TENSOR_TOL:
        raise Img2TabInputError(f"float image tensors must be in [-1, 1], got [{lo:.4g}, {hi:.4g}]")
    return t.clamp(-1.0, 1.0)


def load_image(src: str | os.PathLike[str] | Image.Image | np.ndarray | torch.Tensor) -> np.ndarray:
    """Read one image as 8-bit RGB.

    Args:
        src: image file path, PIL image, numpy array (``[H, W]``, ``[H, W, 1|3|4]``; uint8, uint16 or
            float in ``[0, 1]``) or tensor ``[3, H, W]`` (float in ``[-1, 1]`` or uint8).

    Returns:
        ``[H, W, 3]`` uint8 array (a new array; the input is not modified).

    Raises:
        FileNotFoundError: the path does not exist.
        Img2TabInputError: unreadable file (message names it), unsupported shape/dtype, NaN.
        TypeError: ``src`` is none of the above.
    """
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if path.is_dir():
            raise Img2TabInputError(f"'{path}' is a folder; load_image reads one file (use load_images)")
        if not path.exists():
            raise FileNotFoundError(f"no such image file: '{path}'")
        return _read_file(path)
    if isinstance(src, Image.Image):
        return _pil_to_rgb(src)
    if isinstance(src, np.ndarray):
        return _array_to_rgb(src)
    if isinstance(src, torch.Tensor):
        return to_uint8(_check_tensor(src))
    raise TypeError(f"unsupported image source of type {type(src).__name__}")


# --------------------------------------------------------------------------------------------------
# Many images -> normalised tensors
# --------------------------------------------------------------------------------------------------
def _expand(srcs: ImageSource | Iterable[ImageSource]) -> list[tuple[str, Any]]:
    """Flatten sources into ``(id, item)`` pairs; folders are listed, batches split (no decoding)."""
    if isinstance(srcs, (str, os.PathLike, Image.Image, np.ndarray, torch.Tensor)):
        srcs = [srcs]
    items: list[tuple[str, Any]] = []
    for i, src in enumerate(srcs):
        if isinstance(src, (str, os.PathLike)):
            p = Path(src)
            if p.is_dir():
                items.extend((str(f), f) for f in list_images(p))
            else:
                items.append((str(p), p))
        elif isinstance(src, (torch.Tensor, np.ndarray)) and src.ndim == 4:
            items.extend((f"input[{i}][{j}]", src[j]) for j in range(src.shape[0]))
        elif isinstance(src, (Image.Image, np.ndarray, torch.Tensor)):
            items.append((f"input[{i}]", src))
        else:
            raise TypeError(
                f"unsupported image source of type {type(src).__name__} at position {i}; expected a path, "
                "folder, PIL image, numpy array or torch tensor"
            )
    if not items:
        raise Img2TabInputError("no images given (empty list)")
    return items


def _center_crop_box(w: int, h: int) -> tuple[int, int, int, int]:
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return left, top, left + s, top + s


def _prepare(item: Any, size: int, crop: Crop, resample: str) -> torch.Tensor:
    """One source -> ``[3, size, size]`` float32 in ``[-1, 1]``."""
    if isinstance(item, torch.Tensor):
        t = _check_tensor(item)
        if crop == "center":
            left, top, right, bottom = _center_crop_box(t.shape[2], t.shape[1])
            t = t[:, top:bottom, left:right]
        if tuple(t.shape[1:]) != (size, size):
            mode = "bicubic" if resample != "bilinear" else "bilinear"
            t = F.interpolate(t[None], size=(size, size), mode=mode, align_corners=False, antialias=True)[0]
            t = t.clamp(-1.0, 1.0)
        return t.contiguous()
    rgb = _read_file(item) if isinstance(item, Path) else load_image(item)
    img = Image.fromarray(rgb, "RGB")
    if crop == "center":
        img = img.crop(_center_crop_box(*img.size))
    if img.size != (size, size):
        img = img.resize((size, size), _RESAMPLE[resample])
    x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
    # same arithmetic as ToTensor + Normalize(0.5, 0.5)
    return x.float().div(255).sub(0.5).div(0.5)


def _check_options(size: int, crop: Crop, resample: str) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if crop not in ("center", None):
        raise ValueError(f"crop must be 'center' or None, got {crop!r}")
    if resample not in _RESAMPLE:
        raise ValueError(f"resample must be one of {sorted(_RESAMPLE)}, got {resample!r}")


def _iter_loaded(
    items: Sequence[tuple[str, Any]],
    size: int,
    crop: Crop,
    resample: str,
    skip_errors: bool,
    report: LoadReport,
) -> Iterator[tuple[str, torch.Tensor]]:
    for ident, item in items:
        try:
            x = _prepare(item, size, crop, resample)
        except (Img2TabInputError, FileNotFoundError) as e:
            if not skip_errors:
                raise
            reason = str(e).split(": ", 1)[-1] if str(e).startswith("cannot read image file") else str(e)
            logger.debug("skipping %s: %s", ident, reason)
            report.skipped.append((ident, reason))
            continue
        report.loaded.append(ident)
        yield ident, x


def _warn_skipped(report: LoadReport) -> None:
    if report.skipped:
        warnings.warn(report.summary(), UserWarning, stacklevel=3)


def iter_image_batches(
    srcs: ImageSource | Iterable[ImageSource],
    size: int = 256,
    batch_size: int = 32,
    *,
    crop: Crop = None,
    resample: str = "bilinear",
    skip_errors: bool = False,
    report: LoadReport | None = None,
) -> Iterator[tuple[list[str], torch.Tensor]]:
    """Load images lazily, ``batch_size`` at a time (for folders too large to hold in memory).

    Folders are listed up front but each file is decoded only when its batch is built. Skipped
    inputs do not shrink batches: every batch but the last has exactly ``batch_size`` images.

    Args:
        srcs: one source or an iterable of sources (paths, folders, PIL images, arrays, tensors;
            see :func:`load_images`).
        size: output side in pixels (the inverter's input resolution).
        batch_size: images per batch.
        crop: ``"center"`` to centre-crop to a square before resizing, ``None`` to resize as is.
        resample: ``"bilinear"`` (antialiased, default), ``"bicubic"`` or ``"lanczos"``.
        skip_errors: skip unreadable or invalid inputs instead of raising; a one-line summary is
            issued with ``warnings.warn`` when the iterator is exhausted.
        report: optional :class:`LoadReport` filled in as batches are produced.

    Yields:
        ``(ids, images)``: ids as in :class:`LoadReport` and a ``[b, 3, size, size]`` float32 tensor in
        ``[-1, 1]`` with ``b <= batch_size``.

    Raises:
        Img2TabInputError: as :func:`load_images`; also when every input was skipped.
    """
    _check_options(size, crop, resample)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    items = _expand(srcs)
    report = report if report is not None else LoadReport()
    ids: list[str] = []
    xs: list[torch.Tensor] = []
    for ident, x in _iter_loaded(items, size, crop, resample, skip_errors, report):
        ids.append(ident)
        xs.append(x)
        if len(xs) == batch_size:
            yield ids, torch.stack(xs)
            ids, xs = [], []
    if xs:
        yield ids, torch.stack(xs)
    if not report.loaded:
        raise Img2TabInputError(f"none of the {len(items)} inputs could be read; {report.summary()}")
    _warn_skipped(report)


def load_images(
    srcs: ImageSource | Iterable[ImageSource],
    size: int = 256,
    *,
    crop: Crop = None,
    resample: str = "bilinear",
    skip_errors: bool = False,
    return_report: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, LoadReport]:
    """Load images into one encoder-ready batch.

    Args:
        srcs: a source or an iterable mixing sources: image file paths (``str``/``Path``), folders
            (all images inside, sorted by name; see :func:`list_images`), PIL images, numpy arrays
            (``[H, W]``, ``[H, W, 1|3|4]``, or a batch ``[B, H, W, C]``; uint8, uint16 or float in
            ``[0, 1]``), torch tensors ``[3, H, W]`` / ``[B, 3, H, W]`` (float in ``[-1, 1]``, passed
            through after crop/resize; or uint8).
        size: output side in pixels (the inverter's input resolution, e.g. 256).
        crop: ``"center"`` to centre-crop to a square first (keeps the aspect ratio), ``None`` to
            resize the whole image to ``size x size``.
        resample: ``"bilinear"`` (antialiased; default, matches e4e training), ``"bicubic"`` or
            ``"lanczos"``. Float tensors are resized with ``F.interpolate(antialias=True)``
            (bilinear, or bicubic for the other two) and clamped to ``[-1, 1]``.
        skip_errors: skip unreadable files / invalid inputs, report them, and ``warnings.warn`` a
            one-line summary instead of raising.
        return_report: also return a :class:`LoadReport` (which ids were loaded and skipped).

    Returns:
        ``[B, 3, size, size]`` float32 tensor in ``[-1, 1]``, or ``(tensor, report)``.

    Raises:
        FileNotFoundError: a path does not exist (unless ``skip_errors``).
        Img2TabInputError: unreadable file (named), empty folder (named, with the accepted
            extensions), unsupported shape or dtype, NaN, or nothing could be loaded.
        TypeError: an input of an unsupported type.
    """
    _check_options(size, crop, resample)
    items = _expand(srcs)
    report = LoadReport()
    xs = [x for _, x in _iter_loaded(items, size, crop, resample, skip_errors, report)]
    if not xs:
        raise Img2TabInputError(f"none of the {len(items)} inputs could be read; {report.summary()}")
    _warn_skipped(report)
    out = torch.stack(xs)
    return (out, report) if return_report else out


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------
def to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Convert images in ``[-1, 1]`` to displayable 8-bit arrays.

    Args:
        images: ``[B, 3, H, W]`` or ``[3, H, W]`` float tensor/array in ``[-1, 1]`` (values outside
            are clipped, e.g. generator outputs).

    Returns:
        ``[B, H, W, 3]`` (or ``[H, W, 3]``) uint8 numpy array.
    """
    t = torch.as_tensor(images).detach().cpu().float()
    if t.ndim not in (3, 4) or t.shape[-3] != 3:
        raise Img2TabInputError(f"expected [B, 3, H, W] or [3, H, W] images, got {tuple(t.shape)}")
    u8 = ((t + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return u8.movedim(-3, -1).numpy()


def save_image_grid(
    images: torch.Tensor | np.ndarray,
    path: str | os.PathLike[str],
    *,
    nrow: int = 8,
    padding: int = 2,
    pad_value: int = 255,
) -> Path:
    """Save a batch as one image grid (row-major, ``nrow`` images per row).

    Args:
        images: ``[B, 3, H, W]`` in ``[-1, 1]`` (tensor or array), or ``[B, H, W, 3]`` uint8 array.
        path: output file; the format follows the extension (e.g. ``.png``). Parent folders are created.
        nrow: images per row.
        padding: pixels between images and around the grid.
        pad_value: grey level of the padding (0-255).

    Returns:
        The written path.
    """
    if isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4:
        if images.shape[-1] != 3:
            raise Img2TabInputError(f"uint8 grids must be [B, H, W, 3], got {images.shape}")
        arr = images
    else:
        arr = to_uint8(images)
        if arr.ndim == 3:
            arr = arr[None]
    b, h, w, _ = arr.shape
    ncol = max(1, min(nrow, b))
    nrows = math.ceil(b / ncol)
    grid = np.full(
        (nrows * (h + padding) + padding, ncol * (w + padding) + padding, 3), pad_value, dtype=np.uint8
    )
    for k in range(b):
        r, c = divmod(k, ncol)
        y, x = padding + r * (h + padding), padding + c * (w + padding)
        grid[y : y + h, x : x + w] = arr[k]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        Image.fromarray(grid, "RGB").save(tmp, format=Image.registered_extensions().get(
            out.suffix.lower(), "PNG"))
    return out


def save_image_folder(
    images: np.ndarray,
    folder: str | os.PathLike[str],
    *,
    names: Sequence[str] | None = None,
    columns: dict[str, Sequence[Any]] | None = None,
    labels_file: str = "labels.csv",
) -> Path:
    """Write images as PNG files and, with ``columns``, a labels CSV keyed by file name.

    The result is what ``img2tab train-*``, ``encode --labels`` and ``evaluate --data --labels``
    read: ``folder/<name>.png`` and ``folder/labels.csv`` with the columns ``image, <columns...>``
    (``image`` is the file name). Every file is written atomically.

    Args:
        images: uint8 ``[N, H, W]`` (grayscale) or ``[N, H, W, 3]`` (RGB).
        folder: output folder (created).
        names: ``N`` file names without extension; default ``img_00000`` ...
        columns: column name -> ``N`` values (e.g. ``{"label": y}``); None = no CSV.
        labels_file: name of the CSV inside ``folder``.

    Returns:
        The folder.
    """
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or not (arr.ndim == 3 or (arr.ndim == 4 and arr.shape[-1] == 3)):
        raise Img2TabInputError(
            f"images must be uint8 [N, H, W] or [N, H, W, 3], got {arr.dtype} {arr.shape}")
    n = len(arr)
    names = [f"img_{i:05d}" for i in range(n)] if names is None else [str(x) for x in names]
    if len(names) != n or len(set(names)) != n:
        raise Img2TabInputError(f"names must be {n} distinct file names, got {len(names)} "
                                f"({len(set(names))} distinct)")
    bad = [x for x in names if not x or os.sep in x or "/" in x or x.startswith(".")]
    if bad:
        raise Img2TabInputError(f"names must be plain file names, got {bad[0]!r}")
    cols = {str(k): list(v) for k, v in (columns or {}).items()}
    for k, v in cols.items():
        if len(v) != n:
            raise Img2TabInputError(f"column {k!r} has {len(v)} values for {n} images")
        if k == "image":
            raise Img2TabInputError("'image' is the file-name column; rename that column")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    mode = "L" if arr.ndim == 3 else "RGB"
    for img, name in zip(arr, names, strict=True):
        with atomic_path(out / f"{name}.png") as tmp:
            Image.fromarray(np.ascontiguousarray(img), mode).save(tmp, format="PNG")
    if cols:
        import csv
        import io as _io

        buf = _io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["image", *cols])
        for i, name in enumerate(names):
            w.writerow([f"{name}.png", *(_plain(cols[k][i]) for k in cols)])
        atomic_write_text(out / labels_file, buf.getvalue())
    return out


def _plain(v: Any) -> Any:
    """numpy scalars as Python values, for CSV cells."""
    return v.item() if isinstance(v, np.generic) else v
