"""The embedded default model: a small StyleGAN2 + e4e pair trained by img2tab on the concept world.

The weights live in ``pretrained_models/default/`` of the repository (model card:
``pretrained_models/README.md``). They are ordinary e4e-layout files, so
``img2tab.load_inverter(path)`` and ``img2tab.load_generator(path)`` read them like the official
ones; :func:`load_default` only finds the file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .networks.inverter import Inverter

__all__ = ["DEFAULT_FILE", "default_model_path", "load_default"]

DEFAULT_FILE = "default/img2tab_world64_e4e.pt"
_WORLD_SIZE = 64


def default_model_path() -> Path:
    """Where the default weights are: ``$IMG2TAB_HOME/<file>``, the repository's
    ``pretrained_models/<file>``, or ``./pretrained_models/<file>``.

    Raises:
        FileNotFoundError: with the places searched.
    """
    from .checkpoints import search_path, weight_dirs

    repo = Path(__file__).resolve().parents[1] / "pretrained_models"
    return search_path(DEFAULT_FILE, weight_dirs(repo), "the embedded default model",
                       "it ships with the img2tab repository under pretrained_models/default/")


def load_default(device: str | torch.device = "cpu") -> Inverter:
    """Load the embedded default inverter (e4e + StyleGAN2 trained on the 64 px concept world).

    Returns:
        An :class:`~img2tab.networks.inverter.Inverter`; ``inv.generator`` renders 64 px images
        (the encoder reads them resized to 32 px), ``inv.psi(images)`` gives Ψ. Render matching images with
        ``img2tab.world.ConceptWorld(size=64)``.
    """
    from .checkpoints import load_inverter

    return load_inverter(default_model_path(), device=device)


def world_size() -> int:
    """Image size of the concept world the default model was trained on."""
    return _WORLD_SIZE
