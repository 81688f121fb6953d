"""CLI misuse ends in exit code 2 (130 for Ctrl-C) and ONE line on stderr, checked before any
work starts; genuine bugs keep their traceback (always shown with -v)."""

from __future__ import annotations

import errno
import subprocess
import sys

import numpy as np
import pytest
import torch

from img2tab.cli import main
from img2tab.tabular import ConceptClassifier, PsiDataset

XGB = ["--param", "n_estimators=5", "--param", "max_depth=2", "--param", "n_jobs=1", "--no-progress"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("clierr")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 6)).astype(np.float32)
    y = (X[:, 1] > 0).astype(int)
    train = PsiDataset(psi=X, labels=y).save(root / "train.psi")
    (root / "a_file").write_text("x")
    from PIL import Image

    (root / "imgs").mkdir()
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "imgs" / "a.png")
    return {"root": root, "train": str(train), "imgs": str(root / "imgs")}


def _one_line_error(capsys, rc: int, expected_rc: int = 2) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == expected_rc, err
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize(("argv", "reason"), [
    (["fit", "{train}", "-o", "{root}/a_file"], "'{root}/a_file' is an existing file"),
    (["fit", "{train}", "-o", "{root}/train.psi"], "already exists (add --overwrite"),
    (["fit", "{train}", "-o", "{root}/a_file/sub/model"], "is a file, not a folder"),
    (["relevance", "{train}", "-o", "{root}"], "is a directory; give a file name"),
    (["relevance", "{train}", "-o", "{root}/a_file"], "already exists (add --overwrite"),
    (["fit", "{train}", "-o", "{root}/m", "--param", "max_depth=\"deep\""],
     "--param max_depth='deep' rejected by the xgboost model"),
    (["fit", "{train}", "-o", "{root}/m", "--model", "logreg", "--param", "C=\"big\""],
     "--param C='big' rejected by the logreg model"),
    (["fit", "{train}", "-o", "{root}/m", "--device", "gpu0"], "--device 'gpu0' is not a torch device"),
    (["encode", "{imgs}", "--model", "{root}/a_file", "--out", "{root}/e.psi", "--device", "nope"],
     "--device 'nope' is not a torch device"),
    (["encode", "{imgs}", "--model", "{root}/a_file", "--out", "{root}/e.psi"], "cannot read"),
    (["encode", "{imgs}", "--model", "{root}/none.pt", "--out", "{root}/e.psi"], "not found"),
    (["encode", "{imgs}", "--model", "x", "--out", "{root}/a_file"], "is an existing file"),
    (["demo", "--out", "{root}/a_file"], "is an existing file"),
    (["evaluate", "--device", "tpu", "--out", "{root}/ev"], "is not a torch device"),
    (["train-generator", "--data", "world:4", "--out", "{root}/a_file"], "is an existing file"),
])
def test_misuse_is_one_line_exit_2(data, capsys, argv, reason):
    fmt = {k: str(v) for k, v in data.items()}
    argv = [a.format(**fmt) for a in argv]
    rc = main(argv[:1] + XGB + argv[1:] if argv[0] == "fit" and "--model" not in argv else argv)
    assert reason.format(**fmt) in _one_line_error(capsys, rc)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_gpu(data, capsys):
    rc = main(["encode", data["imgs"], "--out", str(data["root"] / "c.psi"), "--device", "cuda"])
    assert "asks for CUDA, but no CUDA GPU is available" in _one_line_error(capsys, rc)
    rc = main(["demo", "--device", "cuda:0", "--out", str(data["root"] / "d")])
    assert "no CUDA GPU" in _one_line_error(capsys, rc)


def test_overwrite_replaces(data, capsys):
    out = data["root"] / "w1.csv"
    out.write_text("old")
    assert main(["relevance", data["train"], "-o", str(out), "--overwrite", "--no-progress"]) == 0
    assert out.read_text().startswith("rank,feature")
    model = data["root"] / "model"
    assert main(["fit", data["train"], "-o", str(model), *XGB]) == 0
    capsys.readouterr()
    rc = main(["fit", data["train"], "-o", str(model), *XGB])
    assert "already exists" in _one_line_error(capsys, rc)
    assert main(["fit", data["train"], "-o", str(model), "--overwrite", *XGB]) == 0


@pytest.mark.parametrize(("exc", "expected"), [
    (OSError(errno.ENOSPC, "No space left on device", "out/model"),
     "'out/model': no space left on device (disk full)"),
    (PermissionError(errno.EACCES, "Permission denied", "out/model"), "'out/model': permission denied"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "out/x"), "'out/x': is a directory"),
    (FileExistsError(errno.EEXIST, "File exists", "out/y"), "'out/y': already exists"),
])
def test_os_errors_during_work(data, capsys, monkeypatch, exc, expected):
    def fail(self, path):
        raise exc

    monkeypatch.setattr(ConceptClassifier, "save", fail)
    rc = main(["fit", data["train"], "-o", str(data["root"] / "os"), *XGB])
    assert _one_line_error(capsys, rc) == f"img2tab fit: error: {expected}"


def test_ctrl_c_is_130(data, capsys, monkeypatch):
    def interrupt(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ConceptClassifier, "fit", interrupt)
    rc = main(["fit", data["train"], "-o", str(data["root"] / "i"), *XGB])
    assert _one_line_error(capsys, rc, 130) == "img2tab fit: interrupted"


def test_bugs_keep_their_traceback_and_verbose_shows_it(data, capsys, monkeypatch):
    def bug(self, *a, **k):
        raise RuntimeError("genuine bug")

    monkeypatch.setattr(ConceptClassifier, "fit", bug)
    with pytest.raises(RuntimeError, match="genuine bug"):
        main(["fit", data["train"], "-o", str(data["root"] / "b"), *XGB])
    monkeypatch.undo()
    capsys.readouterr()
    rc = main(["-v", "relevance", data["train"], "-o", str(data["root"])])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1].startswith("img2tab relevance: error: ")


def test_subprocess_one_line(data):
    root = data["root"]
    r = subprocess.run([sys.executable, "-m", "img2tab.cli", "encode", data["imgs"], "--model",
                        str(root / "missing.pt"), "--out", str(root / "s.psi")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "not found" in lines[0] and "Traceback" not in r.stderr
