"""How a benchmark hands back its results: printed as JSON, and written atomically if asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def report(res: dict[str, Any], path: Path | None) -> None:
    """Print ``res`` as indented JSON and, with ``path``, write the same text there atomically."""
    text = json.dumps(res, indent=2)
    print(text)
    if path is not None:
        from img2tab._atomic import atomic_write_text

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text + "\n")
