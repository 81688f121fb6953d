"""README.md's Python examples run as written (blocks that need the official files are marked so)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
OFFICIAL = "# requires official files"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_python_examples():
    blocks = _blocks()
    assert len(blocks) >= 2
    # only blocks that say so may be skipped, and the quick start is not one of them
    assert any("load_default()" in b and OFFICIAL not in b for b in blocks)


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    code = _blocks()[index]
    if code.lstrip().startswith(OFFICIAL):
        pytest.skip("needs the official FFHQ files (marked in README.md)")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(code, f"README.md block {index}", "exec"), namespace)
    if "load_default()" in code:
        # the quick start renders images at the default model's size and explains each image
        assert namespace["train"].to_tensor().shape[-1] == namespace["inv"].generator.size == 64
        assert namespace["ex"].rendered.shape == (2, 5)
        assert namespace["report"].n_features == 2176 and namespace["report"].control is not None


def test_readme_demo_numbers_come_from_the_demo_metrics():
    """README's sentences about the demo are generated from the committed metrics.json of that run."""
    import json

    from img2tab.world.demo import readme_snippet

    metrics = json.loads((README.parent / "docs" / "demo_metrics.json").read_text(encoding="utf-8"))
    snippet = readme_snippet(metrics).strip()
    assert snippet in README.read_text(encoding="utf-8"), (
        "README.md's demo paragraph differs from readme_snippet(docs/demo_metrics.json); paste "
        "demo_report/readme_snippet.md from the run that produced docs/demo_*.png")
