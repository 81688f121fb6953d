"""Image input: every source kind, odd PNG modes, folders, errors, batching and output helpers."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from img2tab.errors import Img2TabInputError
from img2tab.io import (
    IMAGE_EXTENSIONS,
    LoadReport,
    iter_image_batches,
    list_images,
    load_image,
    load_images,
    save_image_grid,
    to_uint8,
)


def _rgb(h: int = 20, w: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _write(path: Path, arr: np.ndarray | None = None, **kw) -> Path:
    Image.fromarray(_rgb() if arr is None else arr).save(path, **kw)
    return path


# --------------------------------------------------------------------------------------------------
# load_image: in-memory kinds
# --------------------------------------------------------------------------------------------------
def test_load_image_numpy_kinds():
    rgb = _rgb()
    assert np.array_equal(load_image(rgb), rgb)
    gray = rgb[..., 0]
    for arr in (gray, gray[..., None]):
        out = load_image(arr)
        assert out.shape == (20, 30, 3) and out.dtype == np.uint8
        assert np.array_equal(out, np.repeat(gray[..., None], 3, axis=-1))
    # uint16: 65535 -> 255, 257 -> 1, 32896 -> 128
    u16 = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    assert load_image(u16)[0, :, 0].tolist() == [0, 1, 128, 255]
    # float in [0, 1]
    f = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    assert load_image(f)[0, :, 0].tolist() == [0, 128, 255]
    assert load_image(f.astype(np.float64)).dtype == np.uint8


def test_load_image_rgba_composites_on_white():
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = [10, 20, 30, 255]  # opaque: kept
    rgba[0, 1] = [10, 20, 30, 0]  # transparent: white
    rgba[1, 0] = [0, 0, 0, 128]  # half: mid grey
    out = load_image(rgba)
    assert out[0, 0].tolist() == [10, 20, 30]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert out[1, 0].tolist() == [127, 127, 127]


def test_load_image_pil_and_tensor():
    rgb = _rgb()
    assert np.array_equal(load_image(Image.fromarray(rgb)), rgb)
    assert load_image(Image.fromarray(rgb[..., 0])).shape == (20, 30, 3)
    t = torch.from_numpy(rgb).permute(2, 0, 1).float() / 127.5 - 1
    assert np.array_equal(load_image(t), rgb)
    assert np.array_equal(load_image(torch.from_numpy(rgb).permute(2, 0, 1)), rgb)  # uint8 tensor


@pytest.mark.parametrize(
    "arr, match",
    [
        (np.zeros((4, 4, 2), np.uint8), "unsupported numpy image shape"),
        (np.zeros((3, 8, 8), np.uint8), "channel-first"),
        (np.zeros((4,), np.uint8), "unsupported numpy image shape"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
        (np.zeros((4, 4, 3), np.int64), "unsupported image dtype int64"),
        (np.full((4, 4), np.nan, np.float32), "NaN"),
        (np.full((4, 4), 200.0), r"\[0, 1\].*divide by 255"),
        (np.full((4, 4), -0.5), r"\[-1, 1\]"),
    ],
)
def test_load_image_bad_arrays(arr, match):
    with pytest.raises(Img2TabInputError, match=match):
        load_image(arr)


def test_load_image_bad_tensors_and_types():
    with pytest.raises(Img2TabInputError, match="channels-last"):
        load_image(torch.zeros(8, 8, 3))
    with pytest.raises(Img2TabInputError, match="NaN"):
        load_image(torch.full((3, 4, 4), float("nan")))
    with pytest.raises(Img2TabInputError, match=r"\[-1, 1\]"):
        load_image(torch.full((3, 4, 4), 3.0))
    with pytest.raises(Img2TabInputError, match="dtype"):
        load_image(torch.zeros(3, 4, 4, dtype=torch.int32))
    with pytest.raises(TypeError, match="int"):
        load_image(42)  # type: ignore[arg-type]
    assert issubclass(Img2TabInputError, ValueError)


# --------------------------------------------------------------------------------------------------
# load_image: files of odd modes
# --------------------------------------------------------------------------------------------------
def test_png_modes(tmp_path):
    gray = _rgb()[..., 0]
    p = _write(tmp_path / "gray.png", gray)
    assert Image.open(p).mode == "L"
    assert np.array_equal(load_image(p), np.repeat(gray[..., None], 3, -1))

    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255
    p = _write(tmp_path / "rgba.png", rgba)
    out = load_image(str(p))
    assert out[0, 0].tolist() == [200, 0, 0] and out[3, 3].tolist() == [255, 255, 255]

    u16 = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    p = tmp_path / "deep.png"
    Image.fromarray(u16).save(p)
    assert Image.open(p).mode.startswith("I")
    assert load_image(p)[0, :, 1].tolist() == [0, 1, 128, 255]

    pal = Image.fromarray(_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    pal.save(tmp_path / "pal.png")
    assert Image.open(tmp_path / "pal.png").mode == "P"
    assert np.array_equal(load_image(tmp_path / "pal.png"), np.asarray(pal.convert("RGB")))

    pal_t = Image.new("P", (2, 1))
    pal_t.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal_t.putpixel((0, 0), 0)
    pal_t.putpixel((1, 0), 1)
    pal_t.save(tmp_path / "pal_t.png", transparency=1)
    assert load_image(tmp_path / "pal_t.png").tolist() == [[[255, 0, 0], [255, 255, 255]]]


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = [255, 0, 0]  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    p = tmp_path / "rot.jpg"
    Image.fromarray(arr).save(p, exif=exif, quality=95)
    out = load_image(p)
    assert out.shape == (40, 20, 3)
    assert out[5, 10, 0] > 200 and out[35, 10, 0] < 60  # red on top after the rotation


def test_unreadable_and_missing_files_are_named(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(Img2TabInputError, match="broken.jpg"):
        load_image(bad)
    good = _write(tmp_path / "good.png", _rgb(64, 64))
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(Img2TabInputError, match="trunc.png"):
        load_images([trunc], 16)
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_images([tmp_path / "nope.png"], 16)
    with pytest.raises(Img2TabInputError, match="folder"):
        load_image(tmp_path)


# --------------------------------------------------------------------------------------------------
# load_images
# --------------------------------------------------------------------------------------------------
def test_load_images_mixed_sources(tmp_path):
    rgb = _rgb(40, 30)
    p = _write(tmp_path / "a.png", rgb)
    srcs = [
        str(p),
        p,
        Image.fromarray(rgb),
        rgb,
        rgb[..., 0],
        rgb.astype(np.float32) / 255,
        torch.rand(3, 24, 24) * 2 - 1,
        torch.rand(2, 3, 16, 16) * 2 - 1,
        np.stack([rgb, rgb]),
    ]
    x, report = load_images(srcs, 32, return_report=True)
    assert x.shape == (11, 3, 32, 32) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert report.loaded[:2] == [str(p), str(p)]
    assert report.loaded[2:] == [f"input[{i}]" for i in range(2, 7)] + [
        "input[7][0]", "input[7][1]", "input[8][0]", "input[8][1]"
    ]
    assert report.skipped == []
    assert torch.equal(x[0], x[1]) and torch.equal(x[0], x[2]) and torch.equal(x[0], x[3])
    assert torch.allclose(x[0], x[5], atol=1e-6)


def test_normalisation_matches_e4e_transform():
    tv = pytest.importorskip("torchvision.transforms")
    img = Image.fromarray(_rgb(300, 200, seed=3))
    ref = tv.Compose([tv.Resize((64, 64)), tv.ToTensor(), tv.Normalize([0.5] * 3, [0.5] * 3)])(img)
    assert torch.equal(load_images(img, 64)[0], ref)
    white = load_images(np.full((8, 8, 3), 255, np.uint8), 8)
    black = load_images(np.zeros((8, 8, 3), np.uint8), 8)
    assert torch.all(white == 1.0) and torch.all(black == -1.0)


def test_center_crop_keeps_aspect_ratio():
    arr = np.zeros((20, 60, 3), np.uint8)
    arr[:, :20] = [255, 0, 0]
    arr[:, 20:40] = [0, 255, 0]
    arr[:, 40:] = [0, 0, 255]
    x = load_images(arr, 10, crop="center")
    assert torch.all(x[0, 1] == 1.0) and torch.all(x[0, 0] == -1.0) and torch.all(x[0, 2] == -1.0)
    squeezed = load_images(arr, 10)
    assert squeezed[0, 0, :, 0].min() > 0.9  # red still on the left
    t = torch.from_numpy(arr).permute(2, 0, 1).float() / 127.5 - 1
    xt = load_images(t, 10, crop="center")
    assert torch.allclose(xt, x, atol=1e-5)


def test_tensors_pass_through():
    t = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(load_images(t, 16), t)
    assert torch.equal(load_images([t[0]], 16)[0], t[0])
    r = load_images(t.double(), 8)
    assert r.shape == (2, 3, 8, 8) and r.dtype == torch.float32 and r.abs().max() <= 1
    with pytest.raises(Img2TabInputError, match=r"\[-1, 1\]"):
        load_images(t * 300, 16)


def test_folder_listing(tmp_path):
    for name in ["b.png", "a.JPG", "c.webp", "d.tif", "e.bmp"]:
        _write(tmp_path / name)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "._a.jpg").write_bytes(b"\0\0")  # macOS resource fork: ignored
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "sub" / "z.png")
    names = [p.name for p in list_images(tmp_path)]
    assert names == ["a.JPG", "b.png", "c.webp", "d.tif", "e.bmp"]
    x, report = load_images(tmp_path, 16, return_report=True)
    assert x.shape == (5, 3, 16, 16)
    assert [Path(i).name for i in report.loaded] == names
    x2 = load_images([tmp_path, tmp_path / "sub"], 16)
    assert x2.shape == (6, 3, 16, 16)


def test_empty_folder_errors(tmp_path):
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(Img2TabInputError, match=r"empty_dir.*\.png") as e:
        load_images(tmp_path / "empty_dir", 16)
    for ext in IMAGE_EXTENSIONS:
        assert ext in str(e.value)
    (tmp_path / "only_text").mkdir()
    (tmp_path / "only_text" / "readme.txt").write_text("x")
    with pytest.raises(Img2TabInputError, match="readme.txt"):
        list_images(tmp_path / "only_text")
    with pytest.raises(FileNotFoundError):
        list_images(tmp_path / "missing")
    with pytest.raises(Img2TabInputError, match="no images given"):
        load_images([], 16)


def test_folder_with_corrupt_file(tmp_path):
    for i in range(3):
        _write(tmp_path / f"img{i}.png", _rgb(seed=i))
    (tmp_path / "img1b.png").write_bytes(b"garbage")
    with pytest.raises(Img2TabInputError, match="img1b.png"):
        load_images(tmp_path, 16)
    with pytest.warns(UserWarning, match=r"skipped 1 of 4 .*img1b.png"):
        x, report = load_images(tmp_path, 16, skip_errors=True, return_report=True)
    assert x.shape == (3, 3, 16, 16)
    assert isinstance(report, LoadReport)
    assert [Path(p).name for p in report.loaded] == ["img0.png", "img1.png", "img2.png"]
    assert len(report.skipped) == 1 and report.skipped[0][0].endswith("img1b.png")
    assert "cannot read" not in report.skipped[0][1] and report.skipped[0][1]
    # nothing readable at all -> error even when skipping
    with pytest.raises(Img2TabInputError, match="none of the 1 inputs"):
        load_images([tmp_path / "img1b.png"], 16, skip_errors=True)
    # no warning when nothing is skipped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_images(tmp_path / "img0.png", 16, skip_errors=True)


def test_iter_image_batches(tmp_path):
    for i in range(7):
        _write(tmp_path / f"{i:02d}.png", np.full((10, 12, 3), i * 30, np.uint8))
    batches = list(iter_image_batches(tmp_path, 8, batch_size=3))
    assert [b.shape[0] for _, b in batches] == [3, 3, 1]
    ids = [i for b_ids, _ in batches for i in b_ids]
    assert [Path(i).name for i in ids] == [f"{i:02d}.png" for i in range(7)]
    full = torch.cat([b for _, b in batches])
    assert torch.equal(full, load_images(tmp_path, 8))
    assert torch.allclose(full[:, 0, 0, 0], torch.tensor([i * 30 / 127.5 - 1 for i in range(7)]))

    (tmp_path / "03b.png").write_bytes(b"broken")
    report = LoadReport()
    with pytest.warns(UserWarning, match="03b.png"):
        batches = list(iter_image_batches(tmp_path, 8, 3, skip_errors=True, report=report))
    assert [b.shape[0] for _, b in batches] == [3, 3, 1]
    assert len(report.loaded) == 7 and len(report.skipped) == 1
    with pytest.raises(Img2TabInputError, match="03b.png"):
        list(iter_image_batches(tmp_path, 8, 3))
    with pytest.raises(ValueError, match="batch_size"):
        next(iter_image_batches(tmp_path, 8, 0))


def test_option_validation():
    arr = _rgb()
    with pytest.raises(ValueError, match="size"):
        load_images(arr, 0)
    with pytest.raises(ValueError, match="crop"):
        load_images(arr, 8, crop="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="resample"):
        load_images(arr, 8, resample="nearest")
    with pytest.raises(TypeError, match="position 1"):
        load_images([arr, 3.0], 8)  # type: ignore[list-item]
    for resample in ("bicubic", "lanczos"):
        x = load_images(arr, 8, resample=resample)
        assert x.abs().max() <= 1


# --------------------------------------------------------------------------------------------------
# output helpers
# --------------------------------------------------------------------------------------------------
def test_to_uint8_round_trip():
    rgb = np.stack([_rgb(20, 20, seed=1), _rgb(20, 20, seed=2)])
    exact = load_images(rgb, 20)
    assert exact.shape == (2, 3, 20, 20)
    assert np.array_equal(to_uint8(exact), rgb)
    assert to_uint8(exact[0]).shape == (20, 20, 3)
    assert to_uint8(torch.full((1, 3, 2, 2), 5.0)).max() == 255
    with pytest.raises(Img2TabInputError):
        to_uint8(torch.zeros(2, 4, 4))


def test_save_image_grid(tmp_path):
    x = torch.rand(5, 3, 8, 6) * 2 - 1
    out = save_image_grid(x, tmp_path / "sub" / "grid.png", nrow=2, padding=1)
    grid = np.asarray(Image.open(out))
    assert grid.shape == (3 * 9 + 1, 2 * 7 + 1, 3)
    assert np.array_equal(grid[1:9, 1:7], to_uint8(x)[0])
    assert np.array_equal(grid[10:18, 8:14], to_uint8(x)[3])
    out2 = save_image_grid(to_uint8(x), tmp_path / "g2.png", nrow=8)
    assert np.asarray(Image.open(out2)).shape == (8 + 4, 5 * 8 + 2, 3)


def test_save_image_folder_round_trip(tmp_path):
    from img2tab.io import list_images, save_image_folder
    from img2tab.labels import read_label_csv

    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, size=(3, 8, 8), dtype=np.uint8)
    out = save_image_folder(gray, tmp_path / "g", names=["a", "b", "c"],
                            columns={"label": np.array([3, 8, 3]), "split": ["train", "test", "train"]})
    files = list_images(out)
    assert [f.name for f in files] == ["a.png", "b.png", "c.png"]
    back = np.asarray(Image.open(files[1]))
    np.testing.assert_array_equal(back, gray[1])  # lossless, stays single-channel
    table = read_label_csv(out / "labels.csv")
    assert table.ids.tolist() == ["a.png", "b.png", "c.png"]
    assert table.lookup(["b.png"], "label").tolist() == [8]
    assert table.columns["split"].tolist() == ["train", "test", "train"]
    rgb = rng.integers(0, 256, size=(2, 4, 4, 3), dtype=np.uint8)
    save_image_folder(rgb, tmp_path / "c")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "c" / "img_00001.png")), rgb[1])
    assert not (tmp_path / "c" / "labels.csv").exists()
    with pytest.raises(ValueError, match="uint8"):
        save_image_folder(gray.astype(np.float32), tmp_path / "x")
    with pytest.raises(ValueError, match="distinct"):
        save_image_folder(gray, tmp_path / "x", names=["a", "a", "b"])
    with pytest.raises(ValueError, match="has 2 values"):
        save_image_folder(gray, tmp_path / "x", columns={"y": [1, 2]})
