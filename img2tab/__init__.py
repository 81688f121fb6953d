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
    "Generator": "img2tab.networks.stylegan2",
    "GeneratorConfig": "img2tab.networks.stylegan2",
    "Discriminator": "img2tab.networks.stylegan2",
    "EncoderConfig": "img2tab.networks.e4e",
    "Encoder4Editing": "img2tab.networks.e4e",
    "GradualStyleEncoder": "img2tab.networks.e4e",
    "Inverter": "img2tab.networks.inverter",
    "load_generator": "img2tab.checkpoints",
    "load_inverter": "img2tab.checkpoints",
    "load_discriminator": "img2tab.checkpoints",
    "save_generator": "img2tab.checkpoints",
    "save_inverter": "img2tab.checkpoints",
    "save_rosinality": "img2tab.checkpoints",
    "save_e4e": "img2tab.checkpoints",
    # tabular half (Ψ datasets, classifiers, W1, debugging)
    "ConceptClassifier": "img2tab.tabular",
    "ConceptTable": "img2tab.tabular",
    "DebugReport": "img2tab.tabular",
    "PsiDataset": "img2tab.tabular",
    "compare_classifiers": "img2tab.tabular",
    "concept_contributions": "img2tab.tabular",
    "debug_classifier": "img2tab.tabular",
    "global_importance": "img2tab.tabular",
    "load_classifier": "img2tab.tabular",
    "load_official_psi": "img2tab.tabular",
    "select_classifier": "img2tab.tabular",
    "standardize": "img2tab.tabular",
    "suggest_exclusions": "img2tab.tabular",
    "flag_spurious_concepts": "img2tab.tabular",
    "tune_spurious_exclusion": "img2tab.tabular",
    "top_concepts": "img2tab.tabular",
    "wasserstein_relevance": "img2tab.tabular",
    "fairness_report": "img2tab.tabular",
    "rank_by_relevance": "img2tab.tabular",
    # edit strength
    "EditStrength": "img2tab.edit_strength",
    "class_directions": "img2tab.edit_strength",
    "concept_groups": "img2tab.edit_strength",
    "measure_edit_strength": "img2tab.edit_strength",
    "psi_scale": "img2tab.edit_strength",
    # high level
    "Img2Tab": "img2tab.model",
    "Explanation": "img2tab.model",
    "load_default": "img2tab.default",
    "load_images": "img2tab.io",
    "align_face": "img2tab.align",
    "encode_to_dataset": "img2tab.encode",
    # edits
    "edit": "img2tab.edits",
    "EditResult": "img2tab.edits",
    "CheckpointError": "img2tab.errors",
    "Img2TabInputError": "img2tab.errors",
    "resolve_device": "img2tab._device",
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
    from ._device import resolve_device  # noqa: F401
    from .align import align_face  # noqa: F401
    from .checkpoints import (  # noqa: F401
        load_discriminator,
        load_generator,
        load_inverter,
        save_e4e,
        save_generator,
        save_inverter,
        save_rosinality,
    )
    from .default import load_default  # noqa: F401
    from .edit_strength import (  # noqa: F401
        EditStrength,
        class_directions,
        concept_groups,
        measure_edit_strength,
        psi_scale,
    )
    from .edits import EditResult, edit  # noqa: F401
    from .encode import encode_to_dataset  # noqa: F401
    from .errors import CheckpointError, Img2TabInputError  # noqa: F401
    from .io import load_images  # noqa: F401
    from .model import Explanation, Img2Tab  # noqa: F401
    from .networks.e4e import Encoder4Editing, EncoderConfig, GradualStyleEncoder  # noqa: F401
    from .networks.inverter import Inverter  # noqa: F401
    from .networks.layout import StyleLayer, StyleSpaceLayout  # noqa: F401
    from .networks.stylegan2 import Discriminator, Generator, GeneratorConfig  # noqa: F401
    from .tabular import (  # noqa: F401
        ConceptClassifier,
        ConceptTable,
        DebugReport,
        PsiDataset,
        compare_classifiers,
        concept_contributions,
        debug_classifier,
        fairness_report,
        global_importance,
        load_classifier,
        load_official_psi,
        rank_by_relevance,
        select_classifier,
        standardize,
        suggest_exclusions,
        top_concepts,
        wasserstein_relevance,
    )
