"""FFHQ-style face alignment from 68 dlib landmarks.

The e4e encoder and the FFHQ StyleGAN2 expect faces cropped and rotated the way the FFHQ data set was:
a square ("quad") derived from the eye and mouth landmarks is cut out of the photo and resampled to
the output resolution. This module is split into:

* :func:`ffhq_quad` -- pure geometry, landmarks ``[68, 2]`` -> quad ``[4, 2]``;
* :func:`warp_quad` / :func:`align_face` -- shrink, crop, pad and resample the quad with PIL;
* :func:`detect_landmarks` -- dlib's HOG face detector plus the 68-point shape predictor.

Only detection needs the optional ``align`` extra (``pip install "img2tab[align]"``, i.e. ``dlib-bin``
and ``face_recognition_models``); dlib is imported lazily, so importing this module never imports it.
Geometry and warping work with landmarks from any source in the iBUG 300-W 68-point convention.

Coordinates are ``(x, y)`` in pixels with the origin at the centre of the top-left pixel (dlib's
convention); internally the quad is shifted by ``+0.5`` to PIL's continuous coordinates.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import math
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from .errors import Img2TabInputError
from .io import load_image

__all__ = [
    "align_face",
    "default_predictor_path",
    "detect_landmarks",
    "ffhq_quad",
    "project_points",
    "warp_quad",
]

logger = logging.getLogger(__name__)

_INSTALL_HINT = 'install the optional face-alignment dependencies with: pip install "img2tab[align]"'
_PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"

# iBUG 300-W 68-point indices (image left = the subject's right)
_LEFT_EYE = slice(36, 42)
_RIGHT_EYE = slice(42, 48)
_MOUTH_LEFT = 48
_MOUTH_RIGHT = 54

ImageInput = str | os.PathLike[str] | Image.Image | np.ndarray


# --------------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------------
def _check_landmarks(landmarks: Any) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise Img2TabInputError(f"expected 68 (x, y) landmarks of shape (68, 2), got {lm.shape}")
    if not np.isfinite(lm).all():
        raise Img2TabInputError("landmarks contain NaN or infinite values")
    return lm


def _rot90(v: np.ndarray) -> np.ndarray:
    """Rotate 2-vectors by +90 degrees: ``(a, b) -> (-b, a)``."""
    return np.stack([-v[..., 1], v[..., 0]], axis=-1)


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop square for one face.

    With ``e`` the vector between the eye centres, ``m`` the vector from the eye midpoint to the
    mouth-corner midpoint and ``rot90(a, b) = (-b, a)``: the horizontal half-axis ``x`` points along
    ``e - rot90(m)`` with length ``max(2 |e|, 1.8 |m|)``, the vertical half-axis is ``y = rot90(x)``
    and the centre is ``c = eye_mid + 0.1 m``. The function is equivariant under rotations, uniform
    scalings and translations of the landmarks.

    Args:
        landmarks: ``[68, 2]`` (x, y) points in the iBUG 68-point order (as dlib returns them).

    Returns:
        ``[4, 2]`` float64 corners: top-left, bottom-left, bottom-right, top-right (the order PIL's
        ``Image.QUAD`` transform expects). It is a square with side ``2 * max(2 |e|, 1.8 |m|)``.

    Raises:
        Img2TabInputError: wrong shape, NaN, or degenerate landmarks (all points coincide).
    """
    lm = _check_landmarks(landmarks)
    eye_l = lm[_LEFT_EYE].mean(axis=0)
    eye_r = lm[_RIGHT_EYE].mean(axis=0)
    eye_mid = (eye_l + eye_r) / 2
    eye_to_eye = eye_r - eye_l
    mouth_mid = (lm[_MOUTH_LEFT] + lm[_MOUTH_RIGHT]) / 2
    eye_to_mouth = mouth_mid - eye_mid

    direction = eye_to_eye - _rot90(eye_to_mouth)
    norm = float(np.hypot(*direction))
    half = max(float(np.hypot(*eye_to_eye)) * 2.0, float(np.hypot(*eye_to_mouth)) * 1.8)
    if norm < 1e-9 or half < 1e-9:
        raise Img2TabInputError("degenerate landmarks: eyes and mouth coincide, cannot build a crop")
    x = direction / norm * half
    y = _rot90(x)
    c = eye_mid + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def project_points(points: np.ndarray, quad: np.ndarray, output_size: int) -> np.ndarray:
    """Where points of the original image land in the aligned image.

    Args:
        points: ``[N, 2]`` (x, y) pixel coordinates in the original image (e.g. landmarks).
        quad: ``[4, 2]`` square from :func:`ffhq_quad`.
        output_size: side of the aligned image in pixels.

    Returns:
        ``[N, 2]`` (x, y) pixel coordinates in the aligned ``output_size`` image.
    """
    pts = np.asarray(points, dtype=np.float64)
    q = np.asarray(quad, dtype=np.float64)
    ex, ey = q[3] - q[0], q[1] - q[0]  # the quad's x (to top-right) and y (to bottom-left) sides
    d = pts - q[0]
    u = d @ ex / (ex @ ex)
    v = d @ ey / (ey @ ey)
    return np.stack([u, v], axis=-1) * output_size - 0.5


# --------------------------------------------------------------------------------------------------
# Warping
# --------------------------------------------------------------------------------------------------
def _pad_blend(arr: np.ndarray, pads: tuple[int, int, int, int], qsize: float) -> np.ndarray:
    """Reflect-pad ``arr`` ``[H, W, 3]`` and soften the padding.

    The padded band is blended towards a blurred copy (full blur from a third of the band outwards)
    and then, linearly with the distance from the original border, towards the image's median
    colour, so that mirrored content fades out instead of producing sharp ghost faces.
    """
    from scipy.ndimage import gaussian_filter

    left, top, right, bottom = pads
    h, w = arr.shape[:2]
    mode = "reflect" if min(h, w) > 1 else "edge"
    img = np.pad(arr.astype(np.float32), ((top, bottom), (left, right), (0, 0)), mode=mode)
    ys = np.arange(img.shape[0], dtype=np.float32)[:, None]
    xs = np.arange(img.shape[1], dtype=np.float32)[None, :]

    def ramp(coord: np.ndarray, lo_pad: int, hi_pad: int, n: int) -> np.ndarray:
        # 0 inside the original extent [lo_pad, lo_pad + n - 1], 1 at the outer edge of each band
        before = (lo_pad - coord) / lo_pad if lo_pad > 0 else np.zeros_like(coord)
        after = (coord - (lo_pad + n - 1)) / hi_pad if hi_pad > 0 else np.zeros_like(coord)
        return np.clip(np.maximum(before, after), 0.0, 1.0)

    mask = np.maximum(ramp(xs, left, right, w), ramp(ys, top, bottom, h))[..., None]
    sigma = max(qsize * 0.02, 1e-3)
    blurred = gaussian_filter(img, sigma=(sigma, sigma, 0))
    img += (blurred - img) * np.clip(mask * 3.0, 0.0, 1.0)
    median = np.median(arr.reshape(-1, 3), axis=0).astype(np.float32)
    img += (median - img) * mask
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def warp_quad(
    image: ImageInput,
    quad: np.ndarray,
    output_size: int = 256,
    transform_size: int | None = None,
    enable_padding: bool = True,
) -> Image.Image:
    """Cut ``quad`` out of ``image`` and resample it to an ``output_size`` square.

    Steps: (1) very large photos are first shrunk by an integer factor so the quad is at most about
    four times ``output_size``; (2) the image is cropped to the quad plus a 10 % border; (3) if the
    quad reaches outside the photo and ``enable_padding``, the photo is reflect-padded (at least 30 %
    of the quad size) and the padding blurred and faded to the median colour (see ``_pad_blend``);
    without padding, outside areas are black; (4) PIL's ``QUAD`` transform (bilinear) renders
    ``transform_size`` pixels, then a Lanczos resize gives ``output_size``.

    Args:
        image: path, PIL image or array (anything :func:`img2tab.io.load_image` reads).
        quad: ``[4, 2]`` corners (top-left, bottom-left, bottom-right, top-right) in pixel coordinates.
        output_size: side of the result.
        transform_size: side rendered by the quad transform; default ``4 * output_size``
            (supersampling, like FFHQ's 4096 -> 1024), so the bilinear transform never minifies.
        enable_padding: pad with blurred reflections where the quad leaves the image.

    Returns:
        RGB PIL image of size ``(output_size, output_size)``.
    """
    if output_size < 1:
        raise ValueError(f"output_size must be positive, got {output_size}")
    tsize = 4 * output_size if transform_size is None else int(transform_size)
    if tsize < 1:
        raise ValueError(f"transform_size must be positive, got {transform_size}")
    img = Image.fromarray(load_image(image), "RGB")
    q = np.asarray(quad, dtype=np.float64).reshape(4, 2) + 0.5  # PIL continuous coordinates
    if not np.isfinite(q).all():
        raise Img2TabInputError("quad contains NaN or infinite values")
    qsize = float(np.hypot(*(q[3] - q[0])))

    # (1) shrink
    shrink = int(math.floor(qsize / output_size * 0.5))
    if shrink > 1:
        new = (max(1, round(img.width / shrink)), max(1, round(img.height / shrink)))
        q *= np.array([new[0] / img.width, new[1] / img.height])
        qsize /= shrink
        img = img.resize(new, Image.Resampling.BOX)

    # (2) crop
    border = max(round(qsize * 0.1), 3)
    x0, y0 = np.floor(q.min(axis=0)).astype(int)
    x1, y1 = np.ceil(q.max(axis=0)).astype(int)
    box = (max(x0 - border, 0), max(y0 - border, 0),
           min(x1 + border, img.width), min(y1 + border, img.height))
    if box[0] >= box[2] or box[1] >= box[3]:
        raise Img2TabInputError("the face crop lies entirely outside the image (landmarks out of range?)")
    if box != (0, 0, img.width, img.height):
        img = img.crop(box)
        q -= np.array(box[:2], dtype=np.float64)
        x0, y0, x1, y1 = x0 - box[0], y0 - box[1], x1 - box[0], y1 - box[1]

    # (3) pad
    pads = (max(border - x0, 0), max(border - y0, 0), max(x1 + border - img.width, 0),
            max(y1 + border - img.height, 0))
    if enable_padding and max(pads) > border - 4:
        floor_pad = round(qsize * 0.3)
        pads = tuple(max(p, floor_pad) for p in pads)  # type: ignore[assignment]
        img = Image.fromarray(_pad_blend(np.asarray(img), pads, qsize), "RGB")
        q += np.array(pads[:2], dtype=np.float64)

    # (4) transform and resize
    img = img.transform((tsize, tsize), Image.Transform.QUAD, tuple(q.flatten()), Image.Resampling.BILINEAR)
    if tsize != output_size:
        img = img.resize((output_size, output_size), Image.Resampling.LANCZOS)
    return img


# --------------------------------------------------------------------------------------------------
# Detection (optional dlib)
# --------------------------------------------------------------------------------------------------
def _import_dlib() -> Any:
    try:
        return importlib.import_module("dlib")
    except ImportError as e:
        raise ImportError(f"face detection needs dlib, which is not installed; {_INSTALL_HINT}") from e


def default_predictor_path() -> Path:
    """Path of ``shape_predictor_68_face_landmarks.dat`` inside ``face_recognition_models``.

    The package directory is located with ``importlib.util.find_spec`` (the package's own helper
    imports ``pkg_resources``, which recent setuptools no longer provides).

    Raises:
        ImportError: ``face_recognition_models`` is not installed.
        FileNotFoundError: the package is installed but the model file is missing.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the 68-point landmark model needs face_recognition_models; {_INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / _PREDICTOR_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{_PREDICTOR_FILE} not found at '{path}'; reinstall face_recognition_models")
    return path


@functools.cache
def _face_detector() -> Any:
    return _import_dlib().get_frontal_face_detector()


@functools.cache
def _shape_predictor(path: str) -> Any:
    dlib = _import_dlib()
    logger.debug("loading dlib shape predictor from %s", path)
    return dlib.shape_predictor(path)


def _source_name(image: Any) -> str:
    if isinstance(image, (str, os.PathLike)):
        return f"'{Path(image).name}'"
    return f"the given {type(image).__name__} image"


def _detect(
    rgb: np.ndarray, upsample: int, predictor_path: str | os.PathLike[str] | None
) -> list[tuple[np.ndarray, float, float]]:
    """``(landmarks [68, 2], box area, detector score)`` per face, in detector order."""
    path = str(predictor_path) if predictor_path is not None else str(default_predictor_path())
    detector = _face_detector()
    predictor = _shape_predictor(path)
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    rects, scores, _ = detector.run(rgb, int(upsample), 0.0)
    faces = []
    for rect, score in zip(rects, scores):
        shape = predictor(rgb, rect)
        lm = np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], dtype=np.float64)
        faces.append((lm, float(rect.width() * rect.height()), float(score)))
    return faces


def detect_landmarks(
    image: ImageInput,
    *,
    upsample: int = 1,
    predictor_path: str | os.PathLike[str] | None = None,
) -> list[np.ndarray]:
    """Detect faces with dlib and return their 68 landmarks, largest face first.

    Args:
        image: path, PIL image or array (anything :func:`img2tab.io.load_image` reads).
        upsample: how many times dlib upsamples the image before detecting (1 finds faces down to
            about 40 px; 0 is faster).
        predictor_path: a ``shape_predictor_68_face_landmarks.dat`` file; default: the one shipped
            with ``face_recognition_models``. The loaded predictor is cached per process.

    Returns:
        One ``[68, 2]`` float64 (x, y) array per detected face, sorted by detection box area
        (largest first; ties by detector score); empty if no face was found.

    Raises:
        ImportError: dlib or face_recognition_models is missing (says how to install them).
    """
    faces = _detect(load_image(image), upsample, predictor_path)
    faces.sort(key=lambda f: (-f[1], -f[2]))
    return [f[0] for f in faces]


def align_face(
    image: ImageInput,
    landmarks: np.ndarray | None = None,
    output_size: int = 256,
    transform_size: int | None = None,
    enable_padding: bool = True,
    *,
    select: Literal["largest", "best", "single"] = "largest",
    upsample: int = 1,
    predictor_path: str | os.PathLike[str] | None = None,
) -> Image.Image:
    """FFHQ-align one face.

    Args:
        image: path, PIL image or array (anything :func:`img2tab.io.load_image` reads; EXIF
            orientation is applied first).
        landmarks: ``[68, 2]`` landmarks of the face in ``image``; if ``None`` they are detected with
            dlib (needs the ``align`` extra).
        output_size: side of the aligned image (256 for the e4e encoder).
        transform_size: supersampling side for the quad transform (default ``4 * output_size``).
        enable_padding: reflect-pad with blur where the crop leaves the photo (see :func:`warp_quad`).
        select: with several detected faces, ``"largest"`` (detection box area), ``"best"`` (highest
            detector score) or ``"single"`` (raise unless exactly one face).
        upsample: dlib detector upsampling (see :func:`detect_landmarks`).
        predictor_path: custom 68-point shape predictor file.

    Returns:
        RGB PIL image of size ``(output_size, output_size)``.

    Raises:
        Img2TabInputError: no face found (names the file), several faces with ``select="single"``,
            bad landmarks.
        ImportError: detection was needed but dlib / face_recognition_models is missing.
    """
    if select not in ("largest", "best", "single"):
        raise ValueError(f"select must be 'largest', 'best' or 'single', got {select!r}")
    rgb = load_image(image)
    if landmarks is None:
        faces = _detect(rgb, upsample, predictor_path)
        if not faces:
            raise Img2TabInputError(
                f"no face found in {_source_name(image)}; try upsample=2 for small faces, a more frontal "
                "photo, or pass landmarks explicitly"
            )
        if len(faces) > 1:
            if select == "single":
                raise Img2TabInputError(
                    f"{len(faces)} faces found in {_source_name(image)}; select='single' needs exactly one"
                )
            logger.info("%d faces found in %s; using the %s one", len(faces), _source_name(image),
                        "largest" if select == "largest" else "most confident")
        key = (lambda f: (f[1], f[2])) if select != "best" else (lambda f: (f[2], f[1]))
        landmarks = max(faces, key=key)[0]
    quad = ffhq_quad(landmarks)
    return warp_quad(rgb, quad, output_size, transform_size, enable_padding)
