"""Concept-explanation methods behind one protocol, so the ground-truth benchmark scores them alike.

:class:`ConceptExplainer` is the contract (ranked :class:`Concept` list, per-image scores, evidence
maps, the method's own intervention, the explained model's logit); each method is one adapter:

* :class:`Img2TabExplainer`: Img2Tab's StyleSpace concepts (W1 or classifier importance);
* :class:`AttFindExplainer`: StylEx's AttFind over the same StyleSpace, any classifier in the loop;
* :class:`ACEExplainer` (with :class:`TCAV`): ACE's segment clusters tested by TCAV;
* :class:`CorrespondenceExplainer` over :class:`KNNClassifier`, :class:`EMDCorrClassifier`,
  :class:`CHMCorrClassifier`: explanation by exemplars and matched patches;
* :class:`FALCON`: groups of co-activated features named in words by an image-text model;
* :class:`OracleConceptExplainer`: the true factors (the benchmark's upper bound).
"""

from __future__ import annotations

from ._protocol import Concept, ConceptExplainer, Intervention, check_concept_indices, check_images
from .ace import ACEConfig, ACEExplainer, concept_cnn_ace
from .attfind import AttFindExplainer, plot_attfind_gallery
from .correspondence import CHMCorrClassifier, CorrespondenceExplainer, EMDCorrClassifier, KNNClassifier
from .falcon import FALCON, FalconGroup, plot_falcon_group, plot_falcon_words
from .img2tab_w1 import Img2TabExplainer
from .oracle import OracleConceptExplainer
from .tcav import CAV, TCAV, PsiClassifier, TCAVResult, fit_psi_classifier

__all__ = [
    "ACEConfig",
    "ACEExplainer",
    "AttFindExplainer",
    "CAV",
    "CHMCorrClassifier",
    "Concept",
    "ConceptExplainer",
    "CorrespondenceExplainer",
    "EMDCorrClassifier",
    "FALCON",
    "FalconGroup",
    "Img2TabExplainer",
    "Intervention",
    "KNNClassifier",
    "OracleConceptExplainer",
    "PsiClassifier",
    "TCAV",
    "TCAVResult",
    "check_concept_indices",
    "check_images",
    "concept_cnn_ace",
    "fit_psi_classifier",
    "plot_attfind_gallery",
    "plot_falcon_group",
    "plot_falcon_words",
]
