"""Reports and figures are written atomically: a failing save leaves the previous file intact."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from img2tab._atomic import atomic_savefig, atomic_write_text


def test_atomic_savefig_writes_a_png_and_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "fig.png"
    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1], [0, 1])
    atomic_savefig(fig, path, dpi=20)
    first = path.read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"

    class Boom(Figure):
        def savefig(self, fname, **kwargs):  # writes half a file, then fails
            with open(fname, "wb") as f:
                f.write(b"half")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_savefig(Boom(), path)
    assert path.read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]  # no temporary left behind


def test_atomic_write_text_replaces_whole_files(tmp_path):
    path = tmp_path / "report.md"
    atomic_write_text(path, "old\n")
    atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n"
