"""FFHQ alignment: quad geometry on a synthetic 68-point face, warping, and (opt-in) dlib on a real photo."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy.ndimage import binary_erosion

from img2tab import align
from img2tab.align import align_face, detect_landmarks, ffhq_quad, project_points, warp_quad
from img2tab.errors import Img2TabInputError


def _template() -> np.ndarray:
    """A canonical frontal face in the iBUG 68-point order, unit scale, x right, y down.

    Eye centres at (-0.45, -0.3) and (0.45, -0.3), mouth corners at (-0.35, 0.55) and (0.35, 0.55):
    eye-to-eye 0.9, eye-to-mouth 0.85, so the FFHQ half-side is max(2 * 0.9, 1.8 * 0.85) = 1.8.
    """
    pts: list[tuple[float, float]] = []
    for i in range(17):  # jaw 0-16
        t = np.pi * i / 16
        pts.append((-np.cos(t), -0.2 + 1.2 * np.sin(t)))
    for i in range(5):  # right brow (image left) 17-21
        pts.append((-0.8 + 0.15 * i, -0.55 - 0.08 * np.sin(np.pi * i / 4)))
    for i in range(5):  # left brow 22-26
        pts.append((0.2 + 0.15 * i, -0.55 - 0.08 * np.sin(np.pi * i / 4)))
    pts += [(0.0, -0.35 + 0.125 * i) for i in range(4)]  # nose bridge 27-30
    pts += [(-0.2 + 0.1 * i, 0.25 + 0.03 * (2 - abs(i - 2))) for i in range(5)]  # nostrils 31-35
    eye = [(-0.15, 0.0), (-0.05, -0.05), (0.05, -0.05), (0.15, 0.0), (0.05, 0.05), (-0.05, 0.05)]
    pts += [(-0.45 + dx, -0.3 + dy) for dx, dy in eye]  # 36-41
    pts += [(0.45 + dx, -0.3 + dy) for dx, dy in eye]  # 42-47
    outer = [(-0.35, 0.55), (-0.22, 0.48), (-0.08, 0.45), (0.0, 0.46), (0.08, 0.45), (0.22, 0.48),
             (0.35, 0.55), (0.22, 0.64), (0.08, 0.68), (0.0, 0.68), (-0.08, 0.68), (-0.22, 0.64)]
    inner = [(-0.28, 0.55), (-0.1, 0.52), (0.0, 0.52), (0.1, 0.52), (0.28, 0.55), (0.1, 0.58),
             (0.0, 0.58), (-0.1, 0.58)]
    pts += outer + inner  # 48-59, 60-67
    lm = np.array(pts, dtype=np.float64)
    assert lm.shape == (68, 2)
    return lm


def _similarity(points: np.ndarray, angle_deg: float, scale: float, shift) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return points @ rot.T * scale + np.asarray(shift, dtype=np.float64)


def _key_points(lm: np.ndarray) -> np.ndarray:
    """Eye centres and mouth centre, [3, 2]."""
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), (lm[48] + lm[54]) / 2])


# --------------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------------
def test_quad_of_canonical_face():
    quad = ffhq_quad(_template())
    half = 1.8
    centre = np.array([0.0, -0.3 + 0.085])  # eye midpoint + 0.1 * eye-to-mouth
    expected = centre + half * np.array([[-1, -1], [-1, 1], [1, 1], [1, -1]])  # TL, BL, BR, TR
    np.testing.assert_allclose(quad, expected, atol=1e-12)


def test_quad_is_square_with_expected_side():
    lm = _similarity(_template(), 17.0, 55.0, (300, 200))
    quad = ffhq_quad(lm)
    sides = np.linalg.norm(np.roll(quad, -1, axis=0) - quad, axis=1)
    np.testing.assert_allclose(sides, 2 * 1.8 * 55.0, rtol=1e-12)
    edges = np.roll(quad, -1, axis=0) - quad
    np.testing.assert_allclose([edges[i] @ edges[(i + 1) % 4] for i in range(4)], 0.0, atol=1e-8)
    # the mouth term wins when the mouth is far from the eyes
    long_face = _template()
    long_face[48:68, 1] += 1.0  # eye-to-mouth 1.85 -> half-side 1.8 * 1.85
    q = ffhq_quad(long_face)
    np.testing.assert_allclose(np.linalg.norm(q[3] - q[0]), 2 * 1.8 * 1.85, rtol=1e-12)


@pytest.mark.parametrize(
    "angle, scale, shift",
    [(0.0, 1.0, (0, 0)), (30.0, 80.0, (400, 300)), (-75.0, 3.5, (-20, 10)), (180.0, 120.0, (1e3, 5e2))],
)
def test_quad_is_similarity_equivariant(angle, scale, shift):
    rng = np.random.default_rng(0)
    lm = _template() + rng.normal(scale=0.03, size=(68, 2))  # asymmetric face
    np.testing.assert_allclose(
        ffhq_quad(_similarity(lm, angle, scale, shift)),
        _similarity(ffhq_quad(lm), angle, scale, shift),
        rtol=1e-10,
        atol=1e-8 * scale,
    )


def test_quad_rejects_bad_landmarks():
    with pytest.raises(Img2TabInputError, match=r"\(68, 2\)"):
        ffhq_quad(np.zeros((5, 2)))
    bad = _template()
    bad[3, 0] = np.nan
    with pytest.raises(Img2TabInputError, match="NaN"):
        ffhq_quad(bad)
    with pytest.raises(Img2TabInputError, match="degenerate"):
        ffhq_quad(np.ones((68, 2)))


def test_project_points():
    quad = ffhq_quad(_similarity(_template(), 40.0, 30.0, (100, 90)))
    corners = project_points(quad, quad, 256)
    np.testing.assert_allclose(corners, np.array([[0, 0], [0, 256], [256, 256], [256, 0]]) - 0.5, atol=1e-9)


# --------------------------------------------------------------------------------------------------
# warping a synthetic photo
# --------------------------------------------------------------------------------------------------
_COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]  # left eye, right eye, mouth


def _synthetic_photo(lm: np.ndarray, size: tuple[int, int], radius: float) -> np.ndarray:
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = (96 + 64 * np.sin(xx / 37.0) * np.cos(yy / 53.0)).astype(np.uint8)
    img = Image.fromarray(np.repeat(base[..., None], 3, axis=-1))
    draw = ImageDraw.Draw(img)
    for (x, y), colour in zip(_key_points(lm), _COLOURS):
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
    return np.asarray(img)


def _centroids(aligned: np.ndarray) -> np.ndarray:
    a = aligned.astype(int)
    out = []
    for c in range(3):
        others = [o for o in range(3) if o != c]
        mask = (a[..., c] > 150) & (a[..., others[0]] < 90) & (a[..., others[1]] < 90)
        assert mask.sum() > 5, f"colour {c} not found in the aligned image"
        ys, xs = np.nonzero(mask)
        out.append((xs.mean(), ys.mean()))
    return np.array(out)


@pytest.mark.parametrize(
    "angle, scale, shift, size",
    [
        (25.0, 60.0, (400, 300), (800, 600)),  # face well inside: crop only
        (-10.0, 70.0, (90, 80), (500, 400)),  # face at the corner: padding
        (5.0, 350.0, (1100, 900), (2200, 1800)),  # large photo: shrink path
    ],
)
def test_align_face_puts_eyes_at_canonical_positions(angle, scale, shift, size):
    out_size = 128
    lm = _similarity(_template(), angle, scale, shift)
    photo = _synthetic_photo(lm, size, radius=0.07 * scale)
    aligned = align_face(photo, landmarks=lm, output_size=out_size)
    assert isinstance(aligned, Image.Image) and aligned.mode == "RGB" and aligned.size == (out_size, out_size)
    found = _centroids(np.asarray(aligned))
    predicted = project_points(_key_points(lm), ffhq_quad(lm), out_size)
    np.testing.assert_allclose(found, predicted, atol=1.0)
    # canonical positions for this template: eyes level at y = 0.5 - 0.1 * 0.85 / 3.6, 0.25 apart
    s = out_size
    canonical = np.array([[0.5 - 0.125, 0.5 - 0.085 / 3.6], [0.5 + 0.125, 0.5 - 0.085 / 3.6],
                          [0.5, 0.5 + 0.765 / 3.6]]) * s - 0.5
    np.testing.assert_allclose(found, canonical, atol=1.0)


def test_padding_fills_outside_and_can_be_disabled():
    lm = _similarity(_template(), 0.0, 60.0, (40, 50))  # crop reaches far outside the photo
    photo = _synthetic_photo(lm, (400, 300), radius=4)
    padded = np.asarray(align_face(photo, landmarks=lm, output_size=64))
    plain = np.asarray(align_face(photo, landmarks=lm, output_size=64, enable_padding=False))
    assert padded.shape == plain.shape == (64, 64, 3)
    assert plain[:4, :4].max() == 0  # outside the photo is black without padding
    assert padded[:4, :4].min() > 30  # reflected, blurred and faded content with padding
    # inside the photo, padding changes nothing (away from the photo's edge)
    inside = binary_erosion(plain.sum(-1) > 0, iterations=3)
    assert inside.sum() > 1000
    assert np.abs(padded.astype(int) - plain.astype(int))[inside].max() <= 2
    predicted = project_points(_key_points(lm), ffhq_quad(lm), 64)
    np.testing.assert_allclose(_centroids(plain), predicted, atol=1.0)


def test_align_face_inputs_and_options(tmp_path):
    lm = _similarity(_template(), 0.0, 40.0, (150, 120))
    photo = _synthetic_photo(lm, (300, 260), radius=3)
    path = tmp_path / "face.png"
    Image.fromarray(photo).save(path)
    a = align_face(path, lm, output_size=32, transform_size=32)
    b = align_face(Image.fromarray(photo), lm, output_size=32, transform_size=32)
    assert a.size == (32, 32) and np.array_equal(np.asarray(a), np.asarray(b))
    assert warp_quad(photo, ffhq_quad(lm), 48).size == (48, 48)
    with pytest.raises(ValueError, match="select"):
        align_face(photo, lm, select="first")  # type: ignore[arg-type]
    with pytest.raises(Img2TabInputError, match="outside"):
        warp_quad(photo, ffhq_quad(lm) + 5000, 32)


# --------------------------------------------------------------------------------------------------
# optional dependency handling (no dlib needed)
# --------------------------------------------------------------------------------------------------
def test_import_does_not_import_dlib():
    code = "import sys, img2tab.align; assert 'dlib' not in sys.modules, 'dlib imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_dependencies_say_how_to_install(monkeypatch):
    monkeypatch.setattr(align.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"img2tab\[align\]"):
        align.default_predictor_path()
    with pytest.raises(ImportError, match=r"img2tab\[align\]"):
        detect_landmarks(np.zeros((8, 8, 3), np.uint8))
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` fail
    align._face_detector.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"pip install \"img2tab\[align\]\""):
            align._face_detector()
    finally:
        align._face_detector.cache_clear()


# --------------------------------------------------------------------------------------------------
# real photo (needs the align extra and scikit-image's bundled astronaut image)
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    pytest.importorskip("dlib")
    # not importorskip: importing face_recognition_models needs pkg_resources, gone from new setuptools
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("face_recognition_models is not installed (pip install 'img2tab[align]')")
    data = pytest.importorskip("skimage.data")
    return data.astronaut()


@pytest.mark.align
def test_detect_and_align_real_photo(astronaut):
    faces = detect_landmarks(astronaut)
    assert len(faces) >= 1 and faces[0].shape == (68, 2)
    lm = faces[0]
    eyes = _key_points(lm)[:2]
    assert 170 < eyes[0, 0] < eyes[1, 0] < 270 and 80 < eyes[:, 1].mean() < 140  # Eileen Collins' face

    size = 256
    aligned = align_face(astronaut, output_size=size)
    assert aligned.size == (size, size) and aligned.mode == "RGB"
    again = detect_landmarks(aligned, upsample=0)
    assert len(again) == 1
    found = _key_points(again[0])[:2]
    np.testing.assert_allclose(found, project_points(eyes, ffhq_quad(lm), size), atol=0.03 * size)
    # FFHQ geometry: eye midpoint centred, a little above the middle; eyes level, about a quarter apart
    mid = found.mean(0) / size
    assert abs(mid[0] - 0.5) < 0.04 and 0.43 < mid[1] < 0.52
    assert abs(found[1, 1] - found[0, 1]) < 0.03 * size
    assert 0.17 < (found[1, 0] - found[0, 0]) / size < 0.28


@pytest.mark.align
def test_face_selection_and_no_face(astronaut, tmp_path):
    # at upsample=1 dlib also fires (weakly) on the mission patch: 'best' and 'largest' pick the face
    best = np.asarray(align_face(astronaut, output_size=64, select="best"))
    largest = np.asarray(align_face(astronaut, output_size=64, select="largest"))
    assert np.array_equal(best, largest)
    if len(detect_landmarks(astronaut)) > 1:
        with pytest.raises(Img2TabInputError, match="faces found"):
            align_face(astronaut, output_size=64, select="single")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((120, 160, 3), 128, np.uint8)).save(blank)
    assert detect_landmarks(blank) == []
    with pytest.raises(Img2TabInputError, match="no face found in 'blank.png'"):
        align_face(blank)
