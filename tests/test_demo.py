"""The demo pipeline end to end on a tiny random inverter (reduced sizes), and its CLI."""

from __future__ import annotations

import json

import pytest

from img2tab.cli import main
from img2tab.world.demo import DemoConfig, run_demo


def test_demo_writes_report(tmp_path, tiny_inverter):
    cfg = DemoConfig(n_train=120, n_test=60, n_spurious_train=120, n_spurious_test=60,
                     xgb_trees=10, n_explain=2, n_gallery=2, top_k=3, n_candidates=10, n_random=2,
                     curve_budgets=(2,), n_edit_strength=2)
    m = run_demo(tmp_path, tiny_inverter, cfg, progress=False)
    report = (tmp_path / "report.md").read_text()
    for section in ("Choosing the classifier", "Measuring concept importance",
                    "Concept-based prediction", "top-5 Wasserstein-1", "Concept-based debugging"):
        assert section in report
    for name in m["figures"].values():
        assert (tmp_path / name).stat().st_size > 1000, name
        assert f"({name})" in report
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["selected_classifier"] in {"xgboost", "logreg", "random_forest", "mlp"}
    assert {"before", "after", "budget", "erase", "controls", "curve"} <= set(saved["debugging"])
    assert len(saved["top_w1"]) == 3
    # per-image explanations: each image's rendered concepts are its own top concepts
    for row in saved["explanations"]:
        assert row["rendered"] == [c["feature"] for c in row["concepts"]]
    # the choice says why, and the debugging section states counts and controls
    assert saved["selection_reason"].startswith(saved["selected_classifier"])
    assert "Why:" in report and "random control" in report and "Gain versus budget" in report
    d = saved["debugging"]
    assert d["n_kept"] == d["n_features"] - d["n_excluded"]
    assert f"Excluded {saved['fairness']['n_excluded']} of {saved['fairness']['n_features']}" in report
    # edit strength of the top-3 W1 / importance concepts against 3 random ones, on 2 test images
    es = saved["edit_strength"]
    assert set(es["summary"]) == {"w1", "importance", "random"} and es["n_images"] == 2
    assert [r["concept"] for r in es["concepts"] if "w1" in r["groups"]] == [
        c["feature"] for c in saved["top_w1"]]
    assert "### Edit strength" in report and "| random | 3 |" in report
    # the README snippet is generated from metrics.json
    from img2tab.world.demo import readme_snippet

    assert (tmp_path / "readme_snippet.md").read_text() == readme_snippet(saved)


@pytest.mark.parametrize("cmd", ["demo", "evaluate", "encode"])
def test_cli_help(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main([cmd, "--help"])
    assert exc.value.code == 0
    assert "usage: img2tab " + cmd in capsys.readouterr().out


def test_demo_cli_bad_model(tmp_path, capsys):
    rc = main(["demo", "--model", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "r")])
    assert rc == 2
    assert "not found" in capsys.readouterr().err
