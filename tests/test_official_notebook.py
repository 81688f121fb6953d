"""The official path end to end: ``notebooks/official_ffhq.ipynb`` executed against files in the
official layouts with random weights (a 1024 config-f rosinality generator, the released e4e
layout with ``cuda:0``-tagged storages, a 9,088-feature XGBoost 1.7 JSON) on two synthetic faces.

Marked slow (about 3-5 minutes on a loaded 2-core machine: the 1.1 GB e4e file, the IR-SE50
encoder and five 1024 px renders); ``make test`` runs it on every commit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from official_files import storage_locations, write_faces, write_official_files

NB = Path(__file__).resolve().parents[1] / "notebooks" / "official_ffhq.ipynb"


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    root = tmp_path_factory.mktemp("official")
    paths = write_official_files(root / "pretrained_models")
    faces = write_faces(root / "faces", n=2, size=256)
    return root, paths, faces


@pytest.mark.slow
@pytest.mark.notebook
def test_official_files_have_the_released_layout(official):
    from img2tab.checkpoints import load_checkpoint

    _, paths, _ = official
    assert storage_locations(paths["e4e"]) == {"cuda:0"}
    ckpt = load_checkpoint(paths["e4e"])  # map_location='cpu', weights_only=True
    assert set(ckpt) == {"state_dict", "opts", "latent_avg"}
    sd = ckpt["state_dict"]
    assert sum(k.startswith("encoder.") for k in sd) == 621
    assert sum(k.startswith("decoder.") for k in sd) == 171  # as pretrained_models/README.md lists
    assert all(t.device.type == "cpu" for t in sd.values())
    assert ckpt["opts"]["stylegan_size"] == 1024 and tuple(ckpt["latent_avg"].shape) == (18, 512)


@pytest.mark.slow
@pytest.mark.notebook
def test_official_notebook_runs_every_cell(official, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    root, paths, faces = official
    monkeypatch.setenv("IMG2TAB_PRETRAINED", str(paths["e4e"].parent))
    monkeypatch.setenv("IMG2TAB_FACES", str(faces[0].parent))
    monkeypatch.setenv("OMP_NUM_THREADS", str(max(1, torch.get_num_threads())))
    nb = nbformat.read(NB, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(NB.parent)}})
    client.execute()  # raises CellExecutionError naming the cell on any failure
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)

    def text(cell) -> str:  # stdout and results (stderr holds e.g. tqdm's "no ipywidgets" notice)
        return "".join(o.get("text", "") if o.get("output_type") == "stream" and o.get("name") == "stdout"
                       else str(o.get("data", {}).get("text/plain", "")) for o in cell.outputs)

    assert text(code[1]).split()[:2] == ["9088", "9088"]  # Ψ width of config-f, classifier width
    assert "largest Ψ gap to the e4e decoder 0.00e+00" in text(code[2])
    assert "array([" in text(code[3])  # p(class 1) of the two faces
    assert "| rank |" in text(code[4])
    # the edit grid: img2tab's figures are pyplot-free, so the kernel shows their text repr
    assert "<Figure size" in text(code[5]) and "with 6 Axes" in text(code[5])
