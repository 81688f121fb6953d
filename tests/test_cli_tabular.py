"""``img2tab fit | relevance | concepts | debug`` end to end on a small saved Ψ dataset."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from img2tab.cli import main
from img2tab.cli._tabular import parse_indices, parse_params
from img2tab.errors import Img2TabInputError
from img2tab.tabular._dataset import PsiDataset

SIGNAL, SHORTCUT = 7, 3
XGB = ["--param", "n_estimators=20", "--param", "max_depth=3", "--param", "n_jobs=1"]


def _dataset(n: int, seed: int, p_agree: float) -> PsiDataset:
    rng = np.random.default_rng(seed)
    g = (rng.random(n) < 0.5).astype(np.int64)
    y = np.where(rng.random(n) < p_agree, g, 1 - g)
    X = rng.normal(size=(n, 16)).astype(np.float32)
    X[:, SIGNAL] += 1.5 * y
    X[:, SHORTCUT] += 3.0 * g
    return PsiDataset(psi=X, labels=y, protected=g)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    train = _dataset(300, 0, 0.9).save(root / "train.psi")
    ev = _dataset(200, 1, 0.5).save(root / "eval.psi")
    model = root / "model"
    rc = main(["fit", str(train), "-o", str(model), *XGB, "--no-progress", "--eval", str(ev)])
    assert rc == 0
    return {"root": root, "train": str(train), "eval": str(ev), "model": str(model)}


def test_fit_writes_loadable_classifier(files, capsys):
    from img2tab.tabular._classifier import load_classifier

    clf = load_classifier(files["model"])
    assert clf.n_features_in_ == 16 and clf.model == "xgboost"
    out = files["root"] / "masked"
    rc = main(
        ["fit", files["train"], "-o", str(out), "--model", "logreg", "--exclude", "3,5-6", "--no-progress"]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["masked"] == [3, 5, 6] and summary["model"] == "logreg"
    assert load_classifier(out).masked_features_.tolist() == [3, 5, 6]


def test_relevance_csv(files, capsys):
    out = files["root"] / "w1.csv"
    assert main(["relevance", files["train"], "-o", str(out), "--no-progress"]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == ["rank", "feature", "layer", "channel", "resolution", "is_torgb", "w1"]
    assert len(rows) == 16 and rows[0]["rank"] == "1"
    assert {rows[0]["feature"], rows[1]["feature"]} == {str(SIGNAL), str(SHORTCUT)}
    assert main(["relevance", files["train"], "--by", "protected", "--top", "1", "--no-progress"]) == 0
    text = capsys.readouterr().out.strip().splitlines()
    assert len(text) == 2 and text[1].split(",")[1] == str(SHORTCUT)


def test_concepts_markdown_and_csv(files, capsys):
    rc = main(["concepts", files["model"], "--format", "markdown", "--top", "3", "--no-progress"])
    assert rc == 0
    md = capsys.readouterr().out
    assert md.startswith("| rank | feature |") and len(md.strip().splitlines()) == 5
    rc = main(["concepts", files["model"], "--dataset", files["train"], "--top", "0", "--no-progress"])
    assert rc == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 16 and "w1" in rows[0] and "importance" in rows[0]


def test_debug_report(files, capsys):
    out = files["root"] / "debug"
    rc = main(
        [
            "debug", files["model"], "--train", files["train"], "--eval", files["eval"],
            "--suggest", "1", "--k-important", "5", "-o", str(out), "--no-progress",
        ]
    )  # fmt: skip
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["excluded"] == [SHORTCUT]
    assert report["suggested"][0]["feature"] == SHORTCUT
    assert report["after"]["dp_difference"] < report["before"]["dp_difference"]
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "classifier" / "img2tab.json").is_file()
    assert "| accuracy |" in capsys.readouterr().out
    # without --eval: a held-out split of --train, exclusions given explicitly
    rc = main(
        ["debug", files["model"], "--train", files["train"], "--exclude", "3", "--strategy", "mean",
         "-o", str(files["root"] / "debug2"), "--no-save-classifier", "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    assert json.loads((files["root"] / "debug2" / "report.json").read_text())["strategy"] == "mean"


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["fit", "{root}/missing.psi", "-o", "{root}/x"], "no Ψ dataset"),
        (["fit", "{train}", "-o", "{root}/x", "--param", "oops"], "--param expects key=value"),
        (["fit", "{train}", "-o", "{root}/x", "--exclude", "99"], "out of range for 16 features"),
        (["fit", "{train}", "-o", "{root}/x", "--exclude", "a-b"], "bad concept index"),
        (["debug", "{model}", "--train", "{train}", "-o", "{root}/d"], "give --exclude"),
        (["concepts", "{root}/nothing"], "no classifier at"),
        (["concepts", "{model}", "--importance-type", "permutation"], "needs --dataset"),
    ],
)
def test_bad_input_exit_code_2(files, capsys, argv, reason):
    fmt = {k: str(v) for k, v in files.items()}
    rc = main([a.format(**fmt) for a in argv] + ["--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and reason in err[0]


def test_feature_mismatch_exit_code_2(files, tmp_path, capsys):
    other = PsiDataset(psi=np.zeros((10, 5), np.float32), labels=np.arange(10) % 2).save(tmp_path / "o.psi")
    assert main(["concepts", files["model"], "--dataset", str(other), "--no-progress"]) == 2
    assert "expecting 16 features" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", ["fit", "relevance", "concepts", "debug"])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as info:
        main([cmd, "--help"])
    assert info.value.code == 0
    assert "usage: img2tab " + cmd in capsys.readouterr().out


def test_parsers():
    assert parse_indices("4614, 512,10-12") == [4614, 512, 10, 11, 12]
    assert parse_params(["a=1", "b=0.5", "c=hist", "d=true"]) == {"a": 1, "b": 0.5, "c": "hist", "d": True}
    with pytest.raises(Img2TabInputError):
        parse_indices("5-2")
