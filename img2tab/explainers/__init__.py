"""Concept-explanation methods behind one protocol, so the ground-truth benchmark scores them alike.

:class:`ConceptExplainer` is the contract (ranked :class:`Concept` list, per-image scores, evidence
maps, the method's own intervention, the explained model's logit); each method is one adapter.
"""

from __future__ import annotations

from ._protocol import Concept, ConceptExplainer, Intervention, check_concept_indices, check_images
from .ace import ACEConfig, ACEExplainer, concept_cnn_ace
from .img2tab_w1 import Img2TabExplainer
from .oracle import OracleConceptExplainer
from .tcav import CAV, TCAV, PsiClassifier, TCAVResult, fit_psi_classifier

__all__ = ["ACEConfig", "ACEExplainer", "CAV", "PsiClassifier", "TCAV", "TCAVResult", "concept_cnn_ace",
           "fit_psi_classifier",
           "Concept", "ConceptExplainer", "Img2TabExplainer", "Intervention", "OracleConceptExplainer",
           "check_concept_indices", "check_images"]
