"""The tabular half of Img2Tab: everything that works on Ψ arrays and needs no network.

* Ψ datasets (:class:`PsiDataset`, atomic save / memory-mapped load, official ``.pt`` importer),
  vectorized standardization;
* :class:`ConceptClassifier`, a scikit-learn estimator over Ψ (XGBoost by default; logistic
  regression, random forest, MLP, LightGBM / CatBoost when installed) with ``masked_features``;
* concept importance (global and per image) as :class:`ConceptTable` rows with layer / channel /
  resolution;
* :func:`wasserstein_relevance`, exact per-feature W1 between class-conditional distributions;
* classifier choice by relevance, debugging with fairness metrics, and plots.
"""

from __future__ import annotations

from ._classifier import MODELS, PRESETS, ConceptClassifier, default_device, load_classifier
from ._dataset import (
    PsiDataset,
    Standardizer,
    check_labels,
    check_psi,
    default_layout,
    load_official_psi,
    standardize,
)
from ._debugging import (
    DEFAULT_BUDGETS,
    DEFAULT_RATIOS,
    DebugReport,
    ErasureSearch,
    ExclusionSearch,
    conditional_relevance,
    debug_classifier,
    erase_spurious,
    evaluate,
    exclusion_curve,
    flag_spurious_concepts,
    group_accuracies,
    random_exclusions,
    spurious_order,
    suggest_exclusions,
    tune_spurious_exclusion,
)
from ._erasure import ErasedClassifier, LinearErasure
from ._fairness import (
    demographic_parity_difference,
    equalized_odds_difference,
    fairness_report,
    group_rates,
)
from ._importance import (
    ConceptTable,
    Contributions,
    Table,
    concept_contributions,
    concept_table,
    global_importance,
    importance_vector,
    rank_descending,
    recommended_importance_type,
    top_concepts,
)
from ._plots import (
    plot_classifier_comparison,
    plot_concept_density,
    plot_debug_report,
    plot_importance,
    plot_importance_vs_relevance,
    plot_relevance,
)
from ._selection import (
    classification_metrics,
    compare_classifiers,
    held_out_permutation_importance,
    select_classifier,
)
from ._wasserstein import AGGREGATES, rank_by_relevance, relevance_columns, wasserstein_relevance

__all__ = [
    "AGGREGATES",
    "DEFAULT_BUDGETS",
    "DEFAULT_RATIOS",
    "MODELS",
    "PRESETS",
    "ConceptClassifier",
    "ConceptTable",
    "Contributions",
    "DebugReport",
    "ErasedClassifier",
    "ErasureSearch",
    "ExclusionSearch",
    "LinearErasure",
    "PsiDataset",
    "Standardizer",
    "Table",
    "check_labels",
    "check_psi",
    "classification_metrics",
    "compare_classifiers",
    "concept_contributions",
    "conditional_relevance",
    "concept_table",
    "debug_classifier",
    "default_device",
    "default_layout",
    "demographic_parity_difference",
    "equalized_odds_difference",
    "erase_spurious",
    "evaluate",
    "exclusion_curve",
    "fairness_report",
    "flag_spurious_concepts",
    "global_importance",
    "group_accuracies",
    "group_rates",
    "held_out_permutation_importance",
    "importance_vector",
    "load_classifier",
    "load_official_psi",
    "plot_classifier_comparison",
    "plot_concept_density",
    "plot_debug_report",
    "plot_importance",
    "plot_importance_vs_relevance",
    "plot_relevance",
    "random_exclusions",
    "rank_by_relevance",
    "relevance_columns",
    "rank_descending",
    "recommended_importance_type",
    "select_classifier",
    "spurious_order",
    "standardize",
    "tune_spurious_exclusion",
    "suggest_exclusions",
    "top_concepts",
    "wasserstein_relevance",
]
