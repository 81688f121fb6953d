"""img2tab: explainable image classification by concepts (Img2Tab).

Images are inverted into the W+ space of a StyleGAN2 generator by an e4e encoder; the generator's
StyleSpace (every modulated convolution's style vector, toRGB included) becomes a tabular row Ψ.
A tabular classifier over Ψ gives concept importances; a Wasserstein-1 score per feature says which
concepts are class-relevant; concepts are shown by editing a StyleSpace channel and re-rendering.

Public names are imported lazily, so ``import img2tab`` is cheap and never compiles anything.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

# public name -> module that defines it
_LAZY: dict[str, str] = {
    # networks and checkpoints
    "StyleLayer": "img2tab.networks.layout",
    "StyleSpaceLayout": "img2tab.networks.layout",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'img2tab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # pragma: no cover
    from .networks.layout import StyleLayer, StyleSpaceLayout  # noqa: F401
