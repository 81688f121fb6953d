"""What every benchmark records about the model it ran on: its file and the file's sha256."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any


def add_model_argument(parser: argparse.ArgumentParser, help_default: str = "the embedded default") -> None:
    """``--model PATH``: an inverter checkpoint (None: {help_default})."""
    parser.add_argument("--model", default=None,
                        help="inverter checkpoint (e4e-layout .pt or img2tab safetensors); "
                        f"default: {help_default}")


def sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_model(path: str | None) -> tuple[Any, dict[str, str]]:
    """The inverter at ``path`` (None: the embedded default) and ``{"model", "sha256"}`` for the output."""
    import img2tab
    from img2tab.default import default_model_path

    file = Path(path) if path is not None else default_model_path()
    inv = img2tab.load_inverter(file) if path is not None else img2tab.load_default()
    name = file.name if path is None else str(path)
    return inv, {"model": name, "sha256": sha256(file)}
