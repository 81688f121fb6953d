"""A procedurally generated "cartoon faces" world with known generative factors.

Every image is drawn from a handful of independent ground-truth factors (smile, eye size, face
width, skin tone, hair colour, glasses, background hue, head tilt). Images are rendered with
vectorised numpy from analytic signed-distance functions with one-pixel anti-aliasing: flat
colours, smooth shapes and no texture, so a small StyleGAN2 + e4e pair can learn to reconstruct
them on a CPU while every factor stays clearly visible at 64x64.

Coordinates used by the renderer: ``x`` to the right and ``y`` downwards, both in ``[-1, 1]``
across the image, so one pixel is ``2 / size`` wide. Face parts are placed in a head frame that
is rotated by ``head_tilt`` about the face centre.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import numpy as np

from ..errors import Img2TabInputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "FACTORS",
    "FACTOR_NAMES",
    "SUPPORTED_SIZES",
    "ConceptWorld",
    "Factor",
    "WorldSample",
    "get_factor",
    "image_grid",
    "neutral_factors",
    "render",
    "sample_factors",
]

SUPPORTED_SIZES: tuple[int, ...] = (32, 64, 128)
"""Image sizes the renderer is designed for (any size >= 16 works; these are tested)."""

FactorKind = Literal["continuous", "categorical"]


@dataclass(frozen=True)
class Factor:
    """One ground-truth generative factor of the concept world.

    Attributes:
        name: Key of the factor in factor dictionaries.
        kind: ``"continuous"`` (float, uniform on ``[low, high]``) or ``"categorical"``
            (int in ``range(n_categories)``, uniform).
        low: Lower end of a continuous factor's range (0 for categorical factors).
        high: Upper end of a continuous factor's range (``n_categories - 1`` for categorical).
        n_categories: Number of categories of a categorical factor (0 for continuous ones).
        categories: Human-readable category names of a categorical factor (empty otherwise).
        description: What the factor does to the picture.
    """

    name: str
    kind: FactorKind
    low: float = 0.0
    high: float = 1.0
    n_categories: int = 0
    categories: tuple[str, ...] = ()
    description: str = ""

    @property
    def is_categorical(self) -> bool:
        """Whether the factor takes integer category values."""
        return self.kind == "categorical"

    @property
    def midpoint(self) -> float:
        """Centre of a continuous factor's range (used to binarise it)."""
        return 0.5 * (self.low + self.high)

    @property
    def neutral(self) -> float | int:
        """A middle-of-the-road value: range centre, or category 0 for categorical factors."""
        return 0 if self.is_categorical else self.midpoint


def _categorical(name: str, categories: tuple[str, ...], description: str) -> Factor:
    return Factor(
        name=name,
        kind="categorical",
        low=0.0,
        high=float(len(categories) - 1),
        n_categories=len(categories),
        categories=categories,
        description=description,
    )


FACTORS: tuple[Factor, ...] = (
    Factor(
        "smile",
        "continuous",
        -1.0,
        1.0,
        description="Mouth curvature: -1 is a deep frown, 0 a straight mouth, +1 a broad smile.",
    ),
    Factor(
        "eye_size",
        "continuous",
        0.0,
        1.0,
        description="Radius of the eyes (white and pupil), small .. large.",
    ),
    Factor(
        "face_width",
        "continuous",
        0.0,
        1.0,
        description="Horizontal radius of the face oval (and the hair around it), narrow .. wide.",
    ),
    Factor(
        "skin_tone",
        "continuous",
        0.0,
        1.0,
        description="Skin colour along a light .. dark palette (face, nose and neck).",
    ),
    _categorical(
        "hair_color",
        ("black", "brown", "blond", "red"),
        "Colour of the hair (cap, fringe and sides).",
    ),
    _categorical("glasses", ("none", "glasses"), "Dark round glasses frames around the eyes."),
    Factor(
        "background_hue",
        "continuous",
        0.0,
        1.0,
        description=(
            "Hue of the flat pastel background: 0 red, 0.25 yellow, 0.5 green, 1 blue; "
            "< 0.5 is 'warm', >= 0.5 is 'cool'."
        ),
    ),
    Factor(
        "head_tilt",
        "continuous",
        -1.0,
        1.0,
        description="In-plane rotation of the head, -1 is 15 degrees to the left, +1 to the right.",
    ),
)
"""All ground-truth factors, in a fixed order (the order in which they are drawn)."""

FACTOR_NAMES: tuple[str, ...] = tuple(f.name for f in FACTORS)
"""Names of :data:`FACTORS`, in order."""

_BY_NAME: dict[str, Factor] = {f.name: f for f in FACTORS}


def get_factor(name: str) -> Factor:
    """Look a factor up by name.

    Args:
        name: One of :data:`FACTOR_NAMES`.

    Returns:
        The matching :class:`Factor`.

    Raises:
        Img2TabInputError: If no factor has that name.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise Img2TabInputError(
            f"unknown factor {name!r}; the concept world has {', '.join(FACTOR_NAMES)}"
        ) from None


# ---------------------------------------------------------------------------------------------
# factor sampling
# ---------------------------------------------------------------------------------------------


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def _check_values(factor: Factor, values: np.ndarray) -> np.ndarray:
    """Validate and cast one factor's values. Returns float64 or int64 array."""
    values = np.asarray(values)
    if factor.is_categorical:
        if values.dtype.kind == "f":
            if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
                raise Img2TabInputError(
                    f"factor {factor.name!r} is categorical; give integer category indices"
                )
        elif values.dtype.kind not in "iub":
            raise Img2TabInputError(f"factor {factor.name!r} needs integer values, got dtype {values.dtype}")
        out = values.astype(np.int64)
        if np.any((out < 0) | (out >= factor.n_categories)):
            raise Img2TabInputError(
                f"factor {factor.name!r} takes values in 0..{factor.n_categories - 1} "
                f"({', '.join(factor.categories)})"
            )
        return out
    if values.dtype.kind not in "iufb":
        raise Img2TabInputError(f"factor {factor.name!r} needs numeric values, got dtype {values.dtype}")
    out = values.astype(np.float64)
    if not np.all(np.isfinite(out)):
        raise Img2TabInputError(f"factor {factor.name!r} contains NaN or infinite values")
    tol = 1e-9 * (factor.high - factor.low)
    if np.any((out < factor.low - tol) | (out > factor.high + tol)):
        raise Img2TabInputError(f"factor {factor.name!r} must lie in [{factor.low}, {factor.high}]")
    return np.clip(out, factor.low, factor.high)


def _draw(factor: Factor, n: int, rng: np.random.Generator) -> np.ndarray:
    if factor.is_categorical:
        return rng.integers(0, factor.n_categories, size=n, dtype=np.int64)
    return rng.uniform(factor.low, factor.high, size=n)


def _broadcast(name: str, value: object, n: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim == 0:
        return np.broadcast_to(arr, (n,)).copy()
    if arr.shape != (n,):
        raise Img2TabInputError(
            f"override for {name!r} must be a scalar or have shape ({n},), got {arr.shape}"
        )
    return arr.copy()


def sample_factors(
    n: int, seed: int | np.random.Generator | None = 0, **overrides: object
) -> dict[str, np.ndarray]:
    """Draw ``n`` independent factor vectors.

    Continuous factors are uniform on ``[low, high]``; categorical factors are uniform over their
    categories. All factors are always drawn, in the order of :data:`FACTORS`, and overrides
    replace values afterwards, so fixing one factor leaves the others exactly as they would be
    for the same seed (handy for sweeps and counterfactual pairs).

    Args:
        n: Number of samples (>= 0).
        seed: Integer seed, a ``numpy.random.Generator`` (consumed), or ``None`` for fresh entropy.
        **overrides: ``name=value`` where value is a scalar or an array of shape ``[n]``.

    Returns:
        Dict factor name -> array of shape ``[n]``: float64 for continuous factors, int64 for
        categorical ones.

    Raises:
        Img2TabInputError: On a negative ``n``, an unknown factor name or an out-of-range value.
    """
    n = int(n)
    if n < 0:
        raise Img2TabInputError(f"n must be >= 0, got {n}")
    for name in overrides:
        get_factor(name)
    rng = _rng(seed)
    out: dict[str, np.ndarray] = {}
    for factor in FACTORS:
        out[factor.name] = _draw(factor, n, rng)
    for name, value in overrides.items():
        out[name] = _check_values(_BY_NAME[name], _broadcast(name, value, n))
    return out


def neutral_factors(n: int = 1, **overrides: object) -> dict[str, np.ndarray]:
    """Factor vectors with every factor at its neutral value (see :attr:`Factor.neutral`).

    Args:
        n: Number of (identical unless overridden) samples.
        **overrides: ``name=value`` with a scalar or an array of shape ``[n]``.

    Returns:
        Dict factor name -> array of shape ``[n]`` (float64 / int64 as in :func:`sample_factors`).
    """
    n = int(n)
    if n < 0:
        raise Img2TabInputError(f"n must be >= 0, got {n}")
    for name in overrides:
        get_factor(name)
    out: dict[str, np.ndarray] = {}
    for factor in FACTORS:
        dtype = np.int64 if factor.is_categorical else np.float64
        out[factor.name] = np.full(n, factor.neutral, dtype=dtype)
    for name, value in overrides.items():
        out[name] = _check_values(_BY_NAME[name], _broadcast(name, value, n))
    return out


def _validate_factors(factors: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    if not isinstance(factors, Mapping):
        raise Img2TabInputError("factors must be a dict of factor name -> array")
    missing = [name for name in FACTOR_NAMES if name not in factors]
    if missing:
        raise Img2TabInputError(
            f"factors is missing {', '.join(missing)}; build it with sample_factors() or neutral_factors()"
        )
    unknown = sorted(set(factors) - set(FACTOR_NAMES))
    if unknown:
        raise Img2TabInputError(f"unknown factors {', '.join(unknown)}")
    arrays = {name: np.asarray(factors[name]) for name in FACTOR_NAMES}
    lengths = {a.shape for a in arrays.values()}
    if len(lengths) != 1 or len(next(iter(lengths))) != 1:
        raise Img2TabInputError(
            f"every factor must be a 1-D array of the same length, got shapes "
            f"{ {k: v.shape for k, v in arrays.items()} }"
        )
    checked = {name: _check_values(_BY_NAME[name], a) for name, a in arrays.items()}
    return checked, int(arrays["smile"].shape[0])


# ---------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------

# palettes (RGB in [0, 1])
_SKIN = np.array(
    [
        [1.00, 0.87, 0.77],
        [0.93, 0.74, 0.58],
        [0.76, 0.54, 0.37],
        [0.55, 0.36, 0.23],
        [0.42, 0.27, 0.18],
    ],
    dtype=np.float32,
)
_HAIR = np.array(
    [
        [0.10, 0.09, 0.09],  # black
        [0.42, 0.24, 0.10],  # brown
        [0.96, 0.82, 0.36],  # blond
        [0.85, 0.30, 0.07],  # red
    ],
    dtype=np.float32,
)
_SCLERA = np.array([0.98, 0.98, 0.98], dtype=np.float32)
_PUPIL = np.array([0.12, 0.10, 0.16], dtype=np.float32)
_MOUTH_TINT = np.array([0.62, 0.16, 0.2], dtype=np.float32)  # mouth = skin * tint (always darker)
_FRAME = np.array([0.06, 0.06, 0.10], dtype=np.float32)
_SHIRT = np.array([0.24, 0.30, 0.44], dtype=np.float32)

# geometry (head frame, units of half the image width)
_HEAD_CENTER = (0.0, -0.04)
_MAX_TILT = np.deg2rad(15.0)
_FACE_RY = 0.58
_FACE_RX = (0.44, 0.62)
_EYE_X, _EYE_Y = 0.22, -0.07
_EYE_R = (0.065, 0.13)
_RING_R, _RING_T = 0.165, 0.022
_MOUTH_Y, _MOUTH_W, _MOUTH_DEPTH, _MOUTH_T = 0.28, 0.22, 0.17, 0.04
_BG_SAT, _BG_VAL, _BG_HUE_SPAN = 0.42, 0.9, 0.62


def _hsv_to_rgb(h: np.ndarray, s: float, v: float) -> np.ndarray:
    """Vectorised HSV -> RGB. ``h`` in [0, 1) of shape [N]; returns float32 [N, 3]."""
    h6 = (np.asarray(h, dtype=np.float64) % 1.0) * 6.0
    k = (np.array([5.0, 3.0, 1.0])[None, :] + h6[:, None]) % 6.0
    rgb = v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return rgb.astype(np.float32)


def _palette(t: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation of ``palette`` [K, 3] at ``t`` in [0, 1]. Returns [N, 3]."""
    pos = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0) * (len(palette) - 1)
    lo = np.minimum(np.floor(pos).astype(np.int64), len(palette) - 2)
    w = (pos - lo)[:, None]
    return ((1.0 - w) * palette[lo] + w * palette[lo + 1]).astype(np.float32)


def _coverage(d: np.ndarray, inv_px: float) -> np.ndarray:
    """Anti-aliased coverage of a signed distance (negative inside), in place. Shape kept."""
    d *= -inv_px
    d += 0.5
    np.clip(d, 0.0, 1.0, out=d)
    return d


def _ellipse_sd(u: np.ndarray, v: np.ndarray, rx: np.ndarray | float, ry: np.ndarray | float) -> np.ndarray:
    """First-order signed distance to an axis-aligned ellipse centred at the origin."""
    a = u / rx
    b = v / ry
    k = np.sqrt(a * a + b * b)
    a /= rx
    b /= ry
    g = np.sqrt(a * a + b * b)
    np.maximum(g, 1e-6, out=g)
    # |grad k| = g / k, so (k - 1) / |grad k| = (k - 1) * k / g
    return (k - 1.0) * k / g


def _over(img: np.ndarray, alpha: np.ndarray, color: np.ndarray) -> None:
    """Composite a flat colour over a planar image, in place.

    Args:
        img: float32 ``[3, N, h, w]`` (a view into the canvas is fine).
        alpha: float32 coverage ``[N, h, w]`` (or broadcastable to it).
        color: RGB ``[N, 3]`` (per image) or ``[3]``.
    """
    color = np.asarray(color, dtype=np.float32)
    tmp = np.empty(np.broadcast_shapes(img.shape[1:], alpha.shape), dtype=np.float32)
    for ch in range(3):
        plane = img[ch]
        value = color[:, ch, None, None] if color.ndim == 2 else color[ch]
        np.subtract(value, plane, out=tmp)
        tmp *= alpha
        plane += tmp


def _pixel_range(lo: float, hi: float, size: int) -> slice:
    """Pixel indices whose centres lie within ``[lo, hi]`` plus a two-pixel margin."""
    px = 2.0 / size
    i0 = int(np.floor((lo + 1.0) / px - 0.5)) - 2
    i1 = int(np.ceil((hi + 1.0) / px - 0.5)) + 3
    return slice(max(0, i0), min(size, i1))


@lru_cache(maxsize=64)
def _head_window(u_lo: float, u_hi: float, v_lo: float, v_hi: float, size: int) -> tuple[slice, slice]:
    """Rows and columns covering a head-frame box ``[u_lo, u_hi] x [v_lo, v_hi]`` at any tilt."""
    thetas = np.linspace(-_MAX_TILT, _MAX_TILT, 61)
    cu = np.array([u_lo, u_lo, u_hi, u_hi])[:, None]
    cv = np.array([v_lo, v_hi, v_lo, v_hi])[:, None]
    ct, st = np.cos(thetas)[None, :], np.sin(thetas)[None, :]
    # inverse of the head-frame rotation used in _render_chunk
    x = _HEAD_CENTER[0] + ct * cu - st * cv
    y = _HEAD_CENTER[1] + st * cu + ct * cv
    slack = 0.02
    rows = _pixel_range(float(y.min()) - slack, float(y.max()) + slack, size)
    cols = _pixel_range(float(x.min()) - slack, float(x.max()) + slack, size)
    return rows, cols


@lru_cache(maxsize=8)
def _grid(size: int) -> np.ndarray:
    """Pixel-centre coordinates in [-1, 1], float32 [size]."""
    px = 2.0 / size
    return ((np.arange(size, dtype=np.float64) + 0.5) * px - 1.0).astype(np.float32)


@lru_cache(maxsize=8)
def _body_coverage(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Coverage of the (untilted, fixed) shoulders and neck, float32 [size, size] each."""
    c = _grid(size)
    gx, gy = c[None, :], c[:, None]
    inv_px = size / 2.0
    ones = np.ones((size, size), dtype=np.float32)
    sh = _ellipse_sd(gx * ones, (gy - 1.22) * ones, 0.8, 0.42)
    neck = np.maximum(np.abs(gx) - 0.15, np.abs(gy - 0.62) - 0.34)
    return _coverage(sh, inv_px), _coverage(neck, inv_px)


def _render_chunk(f: Mapping[str, np.ndarray], size: int) -> np.ndarray:
    """Render one batch. Returns planar float32 [3, N, size, size] in [0, 1].

    Each part is evaluated only inside a window of rows/columns that contains it at any tilt, so
    the cost is dominated by the head, not the whole canvas.
    """
    n = f["smile"].shape[0]
    inv_px = size / 2.0
    c = _grid(size)

    def col(a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=np.float32)[:, None, None]

    theta = f["head_tilt"] * _MAX_TILT
    ct, st = col(np.cos(theta)), col(np.sin(theta))

    def head_frame(rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
        """Head-frame coordinates (u, v), float32 [N, h, w], for an image window."""
        dx = c[None, None, cols] - np.float32(_HEAD_CENTER[0])
        dy = c[None, rows, None] - np.float32(_HEAD_CENTER[1])
        return ct * dx + st * dy, ct * dy - st * dx

    # --- background, shoulders, neck (not tilted) -------------------------------------------------
    bg = _hsv_to_rgb(f["background_hue"] * _BG_HUE_SPAN, _BG_SAT, _BG_VAL)
    img = np.empty((3, n, size, size), dtype=np.float32)
    img[...] = bg.T[:, :, None, None]
    skin = _palette(f["skin_tone"], _SKIN)
    hair = _HAIR[f["hair_color"]]
    shoulders, neck = _body_coverage(size)
    _over(img, shoulders[None], _SHIRT)
    _over(img, neck[None], skin * 0.8)

    # --- hair and face ---------------------------------------------------------------------------
    rx_max = _FACE_RX[1] + 0.075
    rows, cols = _head_window(-rx_max, rx_max, -_FACE_RY - 0.11, _FACE_RY, size)
    win = img[:, :, rows, cols]
    u, v = head_frame(rows, cols)
    rx = col(_FACE_RX[0] + (_FACE_RX[1] - _FACE_RX[0]) * f["face_width"])
    # hair behind the face: an oval a bit larger than the face, cut off at chin height
    hair_oval = _ellipse_sd(u, v + 0.07, rx + 0.075, _FACE_RY + 0.04)
    hb = np.maximum(hair_oval, v - 0.26)
    _over(win, _coverage(hb, inv_px), hair)
    face = _ellipse_sd(u, v, rx, _FACE_RY)
    _over(win, _coverage(face, inv_px), skin)
    # fringe: the hair oval above the hairline (lower at the temples); drawn over the face so the
    # face's anti-aliased top edge never shows through the hair
    q = u / rx
    slope = 0.34 * q / rx
    fringe = (v - (-0.33 + 0.17 * q * q)) / np.sqrt(1.0 + slope * slope)
    np.maximum(fringe, hair_oval, out=fringe)
    _over(win, _coverage(fringe, inv_px), hair)

    # --- nose ------------------------------------------------------------------------------------
    rows, cols = _head_window(-0.06, 0.06, 0.03, 0.17, size)
    u, v = head_frame(rows, cols)
    nose = _ellipse_sd(u, v - 0.1, 0.045, 0.055)
    _over(img[:, :, rows, cols], _coverage(nose, inv_px), skin * 0.82)

    # --- eyes and glasses (symmetric, so measure from the nearer eye) -----------------------------
    arm_y = _EYE_Y - 0.01
    rows, cols = _head_window(
        -0.97 * _FACE_RX[1],
        0.97 * _FACE_RX[1],
        _EYE_Y - _RING_R - _RING_T,
        _EYE_Y + _RING_R + _RING_T,
        size,
    )
    win = img[:, :, rows, cols]
    u, v = head_frame(rows, cols)
    au = np.abs(u)
    eu = au - _EYE_X
    ev = v - _EYE_Y
    dist = np.sqrt(eu * eu + ev * ev)
    er = col(_EYE_R[0] + (_EYE_R[1] - _EYE_R[0]) * f["eye_size"])
    _over(win, _coverage(dist - er, inv_px), _SCLERA)
    _over(win, _coverage(dist - 0.55 * er, inv_px), _PUPIL)
    has_glasses = np.asarray(f["glasses"]) > 0
    if np.any(has_glasses):
        g = np.flatnonzero(has_glasses)
        aug, vg, dg = au[g], v[g], dist[g]
        ring = np.abs(dg - _RING_R) - _RING_T
        bridge = np.maximum(aug - (_EYE_X - _RING_R + 0.01), np.abs(vg - (_EYE_Y - 0.02)) - 0.018)
        arms = np.maximum(np.maximum(_EYE_X + _RING_R - aug, aug - 0.97 * rx[g]), np.abs(vg - arm_y) - 0.016)
        frame = np.minimum(np.minimum(ring, bridge), arms)
        sub = win[:, g]
        _over(sub, _coverage(frame, inv_px), _FRAME)
        win[:, g] = sub

    # --- mouth: a parabolic stroke, corners up for a smile and down for a frown -------------------
    w, depth = _MOUTH_W, _MOUTH_DEPTH
    rows, cols = _head_window(
        -w - _MOUTH_T,
        w + _MOUTH_T,
        _MOUTH_Y - 0.5 * depth - _MOUTH_T,
        _MOUTH_Y + 0.5 * depth + _MOUTH_T,
        size,
    )
    u, v = head_frame(rows, cols)
    s = col(f["smile"] * depth)
    au = np.abs(u)
    uc = np.minimum(au, w)
    q = uc / w
    mv = v - _MOUTH_Y
    curve = s * (0.5 - q * q)  # centre at +s/2 (lower), corners at -s/2 (higher) when smiling
    dslope = 2.0 * s * uc / (w * w)
    inner = np.abs(mv - curve) / np.sqrt(1.0 + dslope * dslope)
    end = np.sqrt((au - w) ** 2 + (mv + 0.5 * s) ** 2)
    mouth = np.where(au <= w, inner, end) - _MOUTH_T
    _over(img[:, :, rows, cols], _coverage(mouth, inv_px), skin * _MOUTH_TINT)
    return img


def render(factors: Mapping[str, np.ndarray], size: int = 64, *, batch_size: int = 64) -> np.ndarray:
    """Render images from factor values.

    Rendering is a pure function of the factor values: the same factors give bitwise identical
    images, whatever the batch composition.

    Args:
        factors: Dict with every name in :data:`FACTOR_NAMES` -> array of shape ``[N]``
            (as returned by :func:`sample_factors`).
        size: Image height and width in pixels (32, 64 and 128 are supported; >= 16).
        batch_size: Images rendered per vectorised chunk (memory/speed trade-off only).

    Returns:
        uint8 array of shape ``[N, size, size, 3]`` (RGB).

    Raises:
        Img2TabInputError: On missing/unknown factors, mismatched lengths, out-of-range values or
            an unusable ``size``.
    """
    size = int(size)
    if size < 16:
        raise Img2TabInputError(f"size must be >= 16 pixels, got {size}")
    checked, n = _validate_factors(factors)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    step = max(1, int(batch_size))
    for start in range(0, n, step):
        chunk = {k: v[start : start + step] for k, v in checked.items()}
        img = _render_chunk(chunk, size)
        img *= 255.0
        img += 0.5
        np.clip(img, 0.0, 255.0, out=img)
        out[start : start + step] = np.moveaxis(img, 0, -1)  # truncating cast == rounding
    return out


def image_grid(images: np.ndarray, ncols: int = 8, *, upscale: int = 1, pad: int = 0) -> np.ndarray:
    """Tile images into one picture (row-major), e.g. for a preview.

    Args:
        images: uint8 array ``[N, H, W, 3]``.
        ncols: Images per row.
        upscale: Integer nearest-neighbour magnification.
        pad: Pixels of white padding between tiles (before upscaling).

    Returns:
        uint8 array ``[rows * (H + pad) - pad, ncols * (W + pad) - pad, 3]`` times ``upscale``.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise Img2TabInputError(f"images must have shape [N, H, W, 3], got {images.shape}")
    n, h, w, _ = images.shape
    ncols = max(1, min(int(ncols), max(n, 1)))
    nrows = -(-n // ncols)
    grid = np.full((nrows * (h + pad) - pad, ncols * (w + pad) - pad, 3), 255, dtype=images.dtype)
    for i in range(n):
        r, c = divmod(i, ncols)
        grid[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = images[i]
    if upscale > 1:
        grid = grid.repeat(upscale, axis=0).repeat(upscale, axis=1)
    return grid


# ---------------------------------------------------------------------------------------------
# object API
# ---------------------------------------------------------------------------------------------


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return x.div_(127.5).sub_(1.0).contiguous()


@dataclass(frozen=True)
class WorldSample:
    """Images of the concept world with their ground-truth factors.

    Attributes:
        images: uint8 ``[N, H, W, 3]`` RGB images.
        factors: Dict factor name -> ``[N]`` array (float64 continuous, int64 categorical).
    """

    images: np.ndarray
    factors: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to_tensor(self) -> torch.Tensor:
        """Images as a float32 torch tensor ``[N, 3, H, W]`` scaled to ``[-1, 1]``."""
        return _to_tensor(self.images)

    def factor_array(self, names: Sequence[str] | None = None) -> np.ndarray:
        """Stack factor values into a matrix.

        Args:
            names: Factors to include (default: all, in :data:`FACTOR_NAMES` order).

        Returns:
            float64 array ``[N, len(names)]``.
        """
        names = FACTOR_NAMES if names is None else tuple(names)
        for name in names:
            get_factor(name)
        if not names:
            return np.zeros((len(self), 0))
        return np.stack([np.asarray(self.factors[k], dtype=np.float64) for k in names], axis=1)


@dataclass(frozen=True)
class ConceptWorld:
    """The cartoon-face concept world at a given resolution.

    Attributes:
        size: Image height and width in pixels (32, 64 or 128).

    Example:
        >>> world = ConceptWorld(size=64)
        >>> batch = world.sample(16, seed=0)
        >>> batch.images.shape
        (16, 64, 64, 3)
    """

    size: int = 64

    def __post_init__(self) -> None:
        if int(self.size) < 16:
            raise Img2TabInputError(f"size must be >= 16 pixels, got {self.size}")

    @property
    def factors(self) -> tuple[Factor, ...]:
        """The world's ground-truth factors (:data:`FACTORS`)."""
        return FACTORS

    def sample(self, n: int, seed: int | np.random.Generator | None = 0, **overrides: object) -> WorldSample:
        """Draw ``n`` random images with independent factors.

        Args:
            n: Number of images.
            seed: Seed or generator, as in :func:`sample_factors`.
            **overrides: Fixed factor values, as in :func:`sample_factors`.

        Returns:
            A :class:`WorldSample` with ``images`` uint8 ``[n, size, size, 3]``.
        """
        factors = sample_factors(n, seed, **overrides)
        return WorldSample(images=render(factors, self.size), factors=factors)

    def render(self, factors: Mapping[str, np.ndarray]) -> np.ndarray:
        """Render given factor values; see :func:`render`. Returns uint8 ``[N, size, size, 3]``."""
        return render(factors, self.size)
