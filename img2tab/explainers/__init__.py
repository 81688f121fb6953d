"""Concept-explanation methods behind one protocol, so the ground-truth benchmark scores them alike.

:class:`ConceptExplainer` is the contract (ranked :class:`Concept` list, per-image scores, evidence
maps, the method's own intervention, the explained model's logit); each method is one adapter.
"""

from __future__ import annotations

from ._protocol import Concept, ConceptExplainer, Intervention, check_concept_indices, check_images
from .attfind import AttFindExplainer, plot_attfind_gallery
from .img2tab_w1 import Img2TabExplainer
from .oracle import OracleConceptExplainer

__all__ = ["Concept", "ConceptExplainer", "Img2TabExplainer", "Intervention", "OracleConceptExplainer",
           "check_concept_indices", "check_images", "AttFindExplainer", "plot_attfind_gallery"]
