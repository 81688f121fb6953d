"""TCAV (testing with concept activation vectors) for any hooked layer of a PyTorch model.

A **CAV** separates the activations of a concept set from those of a random set at one layer; the
**TCAV score** of a concept for a class is the share of the class's examples whose class evidence
rises when the layer's activation moves along the CAV. A concept matters when its scores over many
random sets differ significantly from those of a random set tested the same way.

Example (ConceptCNN, bottleneck ``layer4``):
    >>> tcav = TCAV(model, "layer4", target=1).fit({"glasses": patches}, randoms, random_concept)
    >>> result = tcav.score(class_images)           # TCAVResult: scores per random set, p-values
    >>> result.concepts[0].mean, result.concepts[0].p_value
    >>> tcav.score(new_class_images)                  # the stored CAVs reused on new images
    >>> tcav.profile(images)                          # [N, K] projections on the CAVs (find_profile)

What follows the official code (tensorflow/tcav ``cav.py`` as vendored by amiratag/ACE and
MKowal2/ACE_TCAV_Pytorch) and what img2tab changes:

* **Linear model.** ``SGDClassifier(alpha=0.01, max_iter=1000, tol=1e-3)`` (sklearn's default
  hinge loss) on the *flattened* layer activations; ``LogisticRegression`` as the alternative
  (``classifier="logistic"``; img2tab passes ``max_iter`` to it, the official code used sklearn's
  default of 100 iterations). Both sets are truncated to the size of the smaller one (balanced, as
  the official ``_create_cav_training_set``), then a stratified 33 % hold-out gives the CAV's
  accuracy. img2tab seeds the split and SGD (``random_state``); the official code did not, one
  reason why its results change between runs (tensorflow/tcav #38).
* **Sign.** The concept is label 0 and the random set label 1, so sklearn's ``coef_`` points at the
  random set; the CAV is ``-coef_`` normalised to unit length: it points from the random set
  towards the concept (official ``cavs[0]``).
* **Gradient convention** (tensorflow/tcav #124, #83, #107, #41). ``gradient="loss"`` (default,
  as tensorflow/tcav and amiratag/ACE): ``g = d CE(logits, target) / d a``; the official code counts
  examples with ``g . v < 0``. ``gradient="logit"`` (MKowal2's port): ``g = d logit_target / d a``,
  counted where ``g . v > 0``. img2tab reports both through one quantity, the *class-evidence
  directional derivative* ``S(x) = -g_loss . v`` or ``S(x) = g_logit . v``, and the TCAV score is
  ``mean(S > 0)`` in both cases: a score above 0.5 always means "moving towards the concept raises
  the evidence for the class". For a two-class model ``-g_loss = (1 - p_target) * d(logit_target -
  logit_other)/da``, so the loss convention has the sign of the *margin* derivative, while the logit
  convention looks at the target logit alone; the two can disagree (the tests build such a case).
* **Significance.** One TCAV score per random set ``r`` for the concept and for a *random concept*
  (another random set, ACE's ``random_discovery``; tensorflow/tcav's random-vs-random experiments),
  each trained against the same ``r``; then a two-sided test: ``test="ttest_ind"`` (default,
  tensorflow/tcav ``utils_plot``: ``ttest_ind(random_scores, concept_scores)``, the random scores of
  all random concepts pooled), ``"ttest_rel"`` (amiratag/ACE: paired by random set with the first
  random concept) or ``"ttest_1samp"`` (concept scores against 0.5). ``bonferroni=True`` divides the
  threshold by the number of concepts tested (tensorflow/tcav #20). Zero-variance samples, where
  scipy returns NaN, get ``p = 1`` for equal means and ``p = 0`` otherwise.
* **The official t-tests are anti-conservative** (img2tab finding, measured in
  ``tests/test_tcav.py``): the R scores of one concept all share the same concept set, so they are
  not independent draws; a concept set drawn from the random distribution itself comes out
  "significant" far above the nominal rate (0.17 with ``ttest_ind`` and 0.22 with ``ttest_rel`` at
  alpha = 0.05 over 180 such sets, 6 random sets of 30 each; ``benchmarks/RESULTS.md``). img2tab
  adds ``test="random_means"``: given ``M >= 3`` random concepts, the concept's *mean* TCAV score
  is compared with the M random concepts' mean scores (each over the same R random sets) by a t
  prediction interval, ``t = (m - mean(m_j)) / (sd(m_j) sqrt(1 + 1/M))``
  with ``M - 1`` degrees of freedom. A concept set exchangeable with the random concepts then comes
  out significant at most at the nominal rate (tested; 0 of 180 above, conservative because TCAV
  means are bounded and spread over [0, 1], so it needs clearly separated concepts).
* **Seeds and spread.** Every CAV records its seed; results carry the per-random-set scores, their
  mean and standard deviation, and the CAV accuracies.
* **Reuse.** Fitted CAVs (:attr:`TCAV.cavs_`) score new class images (:meth:`TCAV.score`), project
  images into concept space (:meth:`TCAV.profile`, the official ``find_profile``) and are saved and
  loaded with :meth:`TCAV.save_cavs` / :meth:`TCAV.load_cavs` (safetensors + JSON metadata, atomic).

**TCAV on Ψ.** :class:`PsiClassifier` (a logistic regression or a small MLP over standardised Ψ
columns, fitted by :func:`fit_psi_classifier`) is differentiable, so the same :class:`TCAV` runs on
it with ``layer="features"`` (the standardised Ψ) and Ψ rows in place of images: concept sets are
then the Ψ rows of images showing the concept (XGBoost, img2tab's default Ψ classifier, has no
gradients).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from ..errors import Img2TabInputError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "CAV",
    "ConceptTCAV",
    "PsiClassifier",
    "TCAV",
    "TCAVResult",
    "class_evidence_derivatives",
    "fit_psi_classifier",
    "layer_activations",
    "layer_gradients",
    "plot_tcav",
    "tcav_p_value",
    "train_cav",
]

logger = logging.getLogger(__name__)

Gradient = Literal["loss", "logit"]
Classifier = Literal["sgd", "logistic"]
TestName = Literal["ttest_ind", "ttest_rel", "ttest_1samp", "random_means"]
_GRADIENTS = ("loss", "logit")
_CLASSIFIERS = ("sgd", "logistic")
_TESTS = ("ttest_ind", "ttest_rel", "ttest_1samp", "random_means")


# ---------------------------------------------------------------------------------------- hooks
def _resolve_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """The (name, module) of ``layer`` inside ``model``; ``layer`` is a dotted name or a submodule."""
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name, module
        raise Img2TabInputError(f"layer {type(layer).__name__} is not a submodule of the model")
    try:
        return str(layer), model.get_submodule(str(layer))
    except AttributeError:
        names = [n for n, _ in model.named_children()]
        raise Img2TabInputError(f"model has no layer {layer!r}; top-level children: {names}") from None


class _StopForward(Exception):
    """Raised by an activation hook to skip the layers after the hooked one."""


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    if t.ndim < 2:
        raise Img2TabInputError(f"{name} must be batched [N, ...], got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise Img2TabInputError(f"{name} must be a float tensor, got dtype {t.dtype}")
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise Img2TabInputError(f"{name} contains NaN or inf")
    return t.float()


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def layer_activations(
    model: nn.Module,
    layer: str | nn.Module,
    inputs: torch.Tensor | np.ndarray,
    *,
    batch_size: int = 64,
    channel_mean: bool = False,
) -> np.ndarray:
    """Activations of one layer, captured by a forward hook (the layers after it are skipped).

    Args:
        model: Any ``nn.Module``; it is run in eval mode (its mode is restored afterwards).
        layer: Dotted submodule name (``"layer4"``) or the submodule itself.
        inputs: Model inputs ``[N, ...]`` (images ``[N, 3, H, W]`` or Ψ rows ``[N, D]``).
        batch_size: Forward batch size.
        channel_mean: Average over the spatial axes of a ``[N, C, H, W]`` output (ACE's
            ``channel_mean=True``, used for clustering) instead of flattening it.

    Returns:
        float32 ``[N, D]``: flattened activations (``D = C*H*W``) or channel means (``D = C``).
    """
    x = _as_tensor(inputs, "inputs")
    _, module = _resolve_layer(model, layer)
    store: list[torch.Tensor] = []

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        if not isinstance(out, torch.Tensor):
            raise Img2TabInputError(f"layer {layer!r} returns {type(out).__name__}, not a tensor")
        store.append(out.detach())
        raise _StopForward

    chunks = []
    handle = module.register_forward_hook(hook)
    dev = _device(model)
    try:
        with _eval_mode(model), torch.no_grad():
            for i in range(0, x.shape[0], batch_size):
                store.clear()
                with suppress(_StopForward):
                    model(x[i : i + batch_size].to(dev))
                if not store:
                    raise Img2TabInputError(f"layer {layer!r} was not called by the model's forward")
                a = store[0]
                if channel_mean and a.ndim > 2:
                    a = a.mean(dim=tuple(range(2, a.ndim)))
                chunks.append(a.reshape(a.shape[0], -1).float().cpu().numpy())
    finally:
        handle.remove()
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(chunks, 0)


def _as_logits(out: Any) -> torch.Tensor:
    """Model output as ``[N, n_classes]`` logits; a ``[N]`` output is the class-1 margin."""
    if not isinstance(out, torch.Tensor):
        raise Img2TabInputError(f"model output must be a tensor, got {type(out).__name__}")
    if out.ndim == 1:
        return torch.stack([torch.zeros_like(out), out], dim=1)
    if out.ndim != 2:
        raise Img2TabInputError(f"model output must be [N] or [N, n_classes], got {tuple(out.shape)}")
    return out


def layer_gradients(
    model: nn.Module,
    layer: str | nn.Module,
    inputs: torch.Tensor | np.ndarray,
    target: int,
    *,
    gradient: Gradient = "loss",
    batch_size: int = 64,
) -> np.ndarray:
    """Per-example gradient of the loss or of the target logit with respect to one layer's output.

    The hooked output is replaced by a detached leaf, so gradients flow only through the layers
    after it (the earlier layers are not differentiated, and frozen parameters are fine).

    Args:
        model: ``nn.Module`` returning logits ``[N, n_classes]`` (or a ``[N]`` class-1 margin).
        layer: Dotted submodule name or the submodule.
        inputs: Model inputs ``[N, ...]``.
        target: The class whose evidence is differentiated.
        gradient: ``"loss"`` = ``d CE(logits, target) / d a`` (tensorflow/tcav, amiratag/ACE);
            ``"logit"`` = ``d logits[:, target] / d a`` (MKowal2's port).

    Returns:
        float32 ``[N, D]`` raw gradients, flattened like :func:`layer_activations` (no sign flip:
        see :func:`class_evidence_derivatives`).
    """
    if gradient not in _GRADIENTS:
        raise Img2TabInputError(f"gradient must be one of {_GRADIENTS}, got {gradient!r}")
    x = _as_tensor(inputs, "inputs")
    _, module = _resolve_layer(model, layer)
    store: list[torch.Tensor] = []

    def hook(_m: nn.Module, _i: Any, out: Any) -> torch.Tensor:
        if not isinstance(out, torch.Tensor):
            raise Img2TabInputError(f"layer {layer!r} returns {type(out).__name__}, not a tensor")
        leaf = out.detach().requires_grad_(True)
        store.append(leaf)
        return leaf

    chunks = []
    handle = module.register_forward_hook(hook)
    dev = _device(model)
    try:
        with _eval_mode(model), torch.enable_grad():
            for i in range(0, x.shape[0], batch_size):
                store.clear()
                logits = _as_logits(model(x[i : i + batch_size].to(dev)))
                if not 0 <= int(target) < logits.shape[1]:
                    raise Img2TabInputError(f"target {target} out of range for {logits.shape[1]} classes")
                if gradient == "logit":
                    quantity = logits[:, int(target)].sum()
                else:
                    labels = torch.full((logits.shape[0],), int(target), dtype=torch.long, device=dev)
                    quantity = F.cross_entropy(logits, labels, reduction="sum")
                (g,) = torch.autograd.grad(quantity, store[0])
                chunks.append(g.reshape(g.shape[0], -1).float().cpu().numpy())
    finally:
        handle.remove()
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(chunks, 0)


def class_evidence_derivatives(grads: np.ndarray, vectors: np.ndarray, gradient: Gradient) -> np.ndarray:
    """Directional derivatives of the class evidence along CAVs, with one sign for both conventions.

    Args:
        grads: ``[N, D]`` raw gradients from :func:`layer_gradients`.
        vectors: ``[D]`` or ``[K, D]`` unit CAVs.
        gradient: The convention ``grads`` were computed with.

    Returns:
        float64 ``[N]`` or ``[N, K]``: ``S = -g . v`` for ``"loss"``, ``S = g . v`` for ``"logit"``;
        ``S > 0`` means the class evidence rises along the CAV.
    """
    if gradient not in _GRADIENTS:
        raise Img2TabInputError(f"gradient must be one of {_GRADIENTS}, got {gradient!r}")
    v = np.asarray(vectors, dtype=np.float64)
    s = np.asarray(grads, dtype=np.float64) @ v.T
    return -s if gradient == "loss" else s


# ---------------------------------------------------------------------------------------- CAVs
@dataclass(frozen=True)
class CAV:
    """One concept activation vector (concept vs one random set at one layer).

    Attributes:
        concept: Concept name.
        random: Name of the random counterpart.
        layer: Layer name.
        vector: Unit vector float64 ``[D]`` pointing from the random set towards the concept.
        accuracy: Overall accuracy of the linear model on the stratified hold-out.
        accuracies: Hold-out accuracy per set (``{concept: .., random: ..}``).
        seed: Seed of the hold-out split and of the linear model.
        n_per_set: Examples per set after balancing.
    """

    concept: str
    random: str
    layer: str
    vector: np.ndarray
    accuracy: float
    accuracies: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    n_per_set: int = 0


def train_cav(
    concept_acts: np.ndarray,
    random_acts: np.ndarray,
    *,
    classifier: Classifier = "sgd",
    alpha: float = 0.01,
    max_iter: int = 1000,
    tol: float = 1e-3,
    test_size: float = 0.33,
    seed: int = 0,
    concept: str = "concept",
    random: str = "random",
    layer: str = "",
) -> CAV:
    """Train one CAV as the official ``cav.CAV.train`` does (balanced sets, stratified hold-out).

    Args:
        concept_acts: ``[Nc, D]`` (or ``[Nc, ...]``, flattened) activations of the concept set.
        random_acts: ``[Nr, D]`` activations of the random set.
        classifier: ``"sgd"`` (official default) or ``"logistic"``.
        alpha: SGD regularisation (official 0.01).
        max_iter: Iteration cap (official 1000).
        tol: SGD stopping tolerance (official 1e-3).
        test_size: Stratified hold-out share (official 0.33).
        seed: Seed of the split and of the linear model.
        concept: Name of the concept (recorded).
        random: Name of the random set (recorded).
        layer: Layer name (recorded).

    Returns:
        The :class:`CAV` (unit vector towards the concept).

    Raises:
        Img2TabInputError: Mismatched dimensions, fewer than 3 examples per set, a degenerate fit.
    """
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.model_selection import train_test_split

    if classifier not in _CLASSIFIERS:
        raise Img2TabInputError(f"classifier must be one of {_CLASSIFIERS}, got {classifier!r}")
    c = np.asarray(concept_acts, dtype=np.float64)
    r = np.asarray(random_acts, dtype=np.float64)
    c = c.reshape(c.shape[0], -1)
    r = r.reshape(r.shape[0], -1)
    if c.shape[1] != r.shape[1]:
        raise Img2TabInputError(
            f"concept and random activations differ in width: {c.shape[1]} vs {r.shape[1]}"
        )
    if not (np.isfinite(c).all() and np.isfinite(r).all()):
        raise Img2TabInputError(f"activations of {concept!r} or {random!r} contain NaN or inf")
    n = min(c.shape[0], r.shape[0])
    if n < 3:
        raise Img2TabInputError(
            f"a CAV needs >= 3 examples per set, got {c.shape[0]} ({concept}) / {r.shape[0]}"
        )
    x = np.concatenate([c[:n], r[:n]], 0)
    labels = np.repeat([0, 1], n)  # concept = label 0 (official)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, labels, test_size=test_size, stratify=labels, random_state=seed
    )
    if classifier == "sgd":
        lm = SGDClassifier(alpha=alpha, max_iter=max_iter, tol=tol, random_state=seed)
    else:
        lm = LogisticRegression(max_iter=max_iter)
    lm.fit(x_tr, y_tr)
    pred = lm.predict(x_te)
    accs = {
        concept: float(np.mean(pred[y_te == 0] == 0)),
        random: float(np.mean(pred[y_te == 1] == 1)),
    }
    coef = -np.asarray(lm.coef_[0], dtype=np.float64)  # sklearn's coef points at label 1 (random)
    norm = float(np.linalg.norm(coef))
    if not np.isfinite(norm) or norm == 0.0:
        raise Img2TabInputError(f"CAV {concept!r} vs {random!r} is degenerate (zero coefficients)")
    return CAV(
        concept=concept,
        random=random,
        layer=layer,
        vector=coef / norm,
        accuracy=float(np.mean(pred == y_te)),
        accuracies=accs,
        seed=int(seed),
        n_per_set=int(n),
    )


# ---------------------------------------------------------------------------------------- stats
def tcav_p_value(
    concept_scores: np.ndarray, random_scores: np.ndarray, test: TestName = "ttest_ind"
) -> float:
    """Two-sided p-value of a concept's TCAV scores against random-vs-random scores.

    Args:
        concept_scores: ``[R]`` TCAV scores of the concept, one per random set.
        random_scores: ``[R']`` or ``[M, R']`` TCAV scores of ``M`` random concepts (rows) against
            the random sets (ignored by ``"ttest_1samp"``).
        test: ``"ttest_ind"`` (tensorflow/tcav; all random scores pooled), ``"ttest_rel"``
            (amiratag/ACE; pairs the first ``min(R, R')`` scores with the first random concept),
            ``"ttest_1samp"`` (against 0.5) or ``"random_means"`` (img2tab: the concept's mean
            against the M random concepts' means, t prediction interval with ``M - 1`` df; needs
            ``M >= 3``).

    Returns:
        The p-value; for constant samples (where scipy gives NaN) 1.0 when the means are equal and
        0.0 otherwise.
    """
    if test not in _TESTS:
        raise Img2TabInputError(f"test must be one of {_TESTS}, got {test!r}")
    a = np.asarray(concept_scores, dtype=np.float64).ravel()
    b2 = np.atleast_2d(np.asarray(random_scores, dtype=np.float64))
    b = b2.ravel()
    if a.size < 2 or (test in ("ttest_ind", "ttest_rel") and b2.shape[1] < 2):
        raise Img2TabInputError(f"a t-test needs >= 2 scores per sample, got {a.size} and {b2.shape[1]}")
    if test == "ttest_rel":
        m = min(a.size, b2.shape[1])
        d = a[:m] - b2[0, :m]
        if np.ptp(d) == 0:
            return 1.0 if d[0] == 0 else 0.0
        return float(stats.ttest_rel(a[:m], b2[0, :m]).pvalue)
    if test == "ttest_1samp":
        if np.ptp(a) == 0:
            return 1.0 if a[0] == 0.5 else 0.0
        return float(stats.ttest_1samp(a, 0.5).pvalue)
    if test == "random_means":
        null = b2.mean(axis=1)
        if null.size < 3:
            raise Img2TabInputError(f"test='random_means' needs >= 3 random concepts, got {null.size}")
        diff = float(a.mean() - null.mean())
        sd = float(null.std(ddof=1))
        if sd == 0:
            return 1.0 if diff == 0 else 0.0
        t = diff / (sd * np.sqrt(1.0 + 1.0 / null.size))
        return float(2 * stats.t.sf(abs(t), df=null.size - 1))
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return 1.0 if a[0] == b[0] else 0.0
    return float(stats.ttest_ind(b, a).pvalue)


@dataclass(frozen=True)
class ConceptTCAV:
    """TCAV of one concept for one class, over all random sets.

    Attributes:
        concept: Concept name.
        scores: TCAV scores float64 ``[R]``, one per random set.
        random_scores: The random concepts' TCAV scores ``[M, R]`` against the same random sets.
        cav_accuracies: Hold-out accuracy of each CAV ``[R]``.
        p_value: Two-sided p-value of ``scores`` against ``random_scores``.
        significant: ``p_value`` below the (possibly Bonferroni-corrected) threshold.
        seeds: Seed of each CAV ``[R]``.
    """

    concept: str
    scores: np.ndarray
    random_scores: np.ndarray
    cav_accuracies: np.ndarray
    p_value: float
    significant: bool
    seeds: tuple[int, ...] = ()

    @property
    def mean(self) -> float:
        """Mean TCAV score over the random sets."""
        return float(np.mean(self.scores))

    @property
    def std(self) -> float:
        """Standard deviation of the TCAV scores over the random sets (the spread TCAV reports)."""
        return float(np.std(self.scores))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        return {
            "concept": self.concept,
            "mean": self.mean,
            "std": self.std,
            "scores": [float(s) for s in self.scores],
            "random_mean": float(np.mean(self.random_scores)),
            "random_std": float(np.std(self.random_scores)),
            "random_concept_means": [float(m) for m in np.atleast_2d(self.random_scores).mean(1)],
            "cav_accuracy": float(np.mean(self.cav_accuracies)),
            "p_value": float(self.p_value),
            "significant": bool(self.significant),
            "seeds": [int(s) for s in self.seeds],
        }


@dataclass(frozen=True)
class TCAVResult:
    """TCAV of several concepts for one class.

    Attributes:
        concepts: One :class:`ConceptTCAV` per concept, in the order the concepts were given.
        target: The class.
        gradient: Gradient convention used (``"loss"`` or ``"logit"``).
        test: The t-test used.
        threshold: p-value threshold actually applied (``significance`` or its Bonferroni share).
        bonferroni: Whether the threshold was divided by the number of concepts.
        n_examples: Number of class examples the scores are shares of.
    """

    concepts: tuple[ConceptTCAV, ...]
    target: int
    gradient: str
    test: str
    threshold: float
    bonferroni: bool
    n_examples: int

    def __getitem__(self, name: str) -> ConceptTCAV:
        for c in self.concepts:
            if c.concept == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        return {
            "target": int(self.target),
            "gradient": self.gradient,
            "test": self.test,
            "threshold": float(self.threshold),
            "bonferroni": bool(self.bonferroni),
            "n_examples": int(self.n_examples),
            "concepts": [c.to_dict() for c in self.concepts],
        }


# ---------------------------------------------------------------------------------------- TCAV
class TCAV:
    """CAVs for concept sets against random sets at one layer, TCAV scores and their significance.

    Args:
        model: ``nn.Module`` returning logits ``[N, n_classes]`` (or a ``[N]`` class-1 margin).
        layer: Dotted name or submodule whose output the CAVs live in (``"layer4"`` for ConceptCNN,
            ``"features"`` for :class:`PsiClassifier`).
        target: Default class to test.
        gradient: ``"loss"`` (default, official) or ``"logit"``; see the module docstring.
        classifier: CAV classifier, ``"sgd"`` (official) or ``"logistic"``.
        alpha, max_iter, tol, test_size: CAV training settings (official 0.01, 1000, 1e-3, 0.33).
        test: ``"ttest_ind"`` (default, tensorflow/tcav), ``"ttest_rel"`` (ACE) or ``"ttest_1samp"``.
        significance: p-value threshold (tensorflow/tcav 0.05; ACE 0.01).
        bonferroni: Divide ``significance`` by the number of concepts tested.
        batch_size: Forward / backward batch size.
        seed: CAV ``r`` uses seed ``seed + r``.

    Attributes set by :meth:`fit`:
        cavs_: ``{concept: [CAV per random set]}``.
        random_cavs_: ``[M][R]`` CAVs of the ``M`` random concepts.
        concept_names_: Concept names in the order given.
        layer_name_: Name of the hooked layer.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module,
        *,
        target: int = 1,
        gradient: Gradient = "loss",
        classifier: Classifier = "sgd",
        alpha: float = 0.01,
        max_iter: int = 1000,
        tol: float = 1e-3,
        test_size: float = 0.33,
        test: TestName = "ttest_ind",
        significance: float = 0.05,
        bonferroni: bool = False,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.layer = layer
        self.target = target
        self.gradient = gradient
        self.classifier = classifier
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.test_size = test_size
        self.test = test
        self.significance = significance
        self.bonferroni = bonferroni
        self.batch_size = batch_size
        self.seed = seed

    # ------------------------------------------------------------------ fitting
    def _check_params(self) -> None:
        if self.gradient not in _GRADIENTS:
            raise Img2TabInputError(f"gradient must be one of {_GRADIENTS}, got {self.gradient!r}")
        if self.test not in _TESTS:
            raise Img2TabInputError(f"test must be one of {_TESTS}, got {self.test!r}")
        if not 0.0 < float(self.significance) < 1.0:
            raise Img2TabInputError(f"significance must be in (0, 1), got {self.significance}")
        _resolve_layer(self.model, self.layer)

    def activations(self, inputs: torch.Tensor | np.ndarray) -> np.ndarray:
        """Flattened activations ``[N, D]`` of ``inputs`` at the layer."""
        return layer_activations(self.model, self.layer, inputs, batch_size=self.batch_size)

    def fit(
        self,
        concepts: Mapping[str, torch.Tensor | np.ndarray],
        randoms: Sequence[torch.Tensor | np.ndarray],
        random_concept: torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray] | None = None,
    ) -> TCAV:
        """Train the CAVs from model inputs (images or Ψ rows).

        Args:
            concepts: ``{name: inputs [Nc, ...]}`` examples of each concept.
            randoms: ``R`` random sets ``[Nr, ...]`` (e.g. world images of any class, drawn with
                different seeds).
            random_concept: The random concept tested like a concept for the null distribution
                (one set ``[Nq, ...]``), or a list of ``M`` such sets (``test="random_means"``
                needs ``M >= 3``); ``None`` uses the last of ``randoms`` (then ``R - 1`` random
                sets remain).

        Returns:
            ``self``.
        """
        acts = {k: self.activations(v) for k, v in concepts.items()}
        rnd = [self.activations(r) for r in randoms]
        rc: list[np.ndarray] | None = None
        if random_concept is not None:
            sets = list(random_concept) if isinstance(random_concept, (list, tuple)) else [random_concept]
            rc = [self.activations(q) for q in sets]
        return self.fit_activations(acts, rnd, rc)

    def fit_activations(
        self,
        concepts: Mapping[str, np.ndarray],
        randoms: Sequence[np.ndarray],
        random_concept: np.ndarray | Sequence[np.ndarray] | None = None,
    ) -> TCAV:
        """Train the CAVs from precomputed flattened activations (same arguments as :meth:`fit`)."""
        self._check_params()
        self.layer_name_ = _resolve_layer(self.model, self.layer)[0]
        randoms = [np.asarray(r) for r in randoms]
        if random_concept is None:
            if len(randoms) < 3:
                raise Img2TabInputError(
                    f"need >= 3 random sets when random_concept is None, got {len(randoms)}"
                )
            random_concept, randoms = [randoms[-1]], randoms[:-1]
        elif not isinstance(random_concept, (list, tuple)):
            random_concept = [random_concept]
        if len(randoms) < 2:
            raise Img2TabInputError(f"need >= 2 random sets for a t-test, got {len(randoms)}")
        if not concepts:
            raise Img2TabInputError("concepts is empty")
        names = [str(k) for k in concepts]
        if len(set(names)) != len(names):
            raise Img2TabInputError(f"concept names must be unique, got {names}")
        if any(n.startswith("random_concept_") for n in names):
            raise Img2TabInputError("concept names starting with 'random_concept_' are reserved")

        def cavs_for(name: str, acts: np.ndarray) -> list[CAV]:
            return [
                train_cav(
                    acts,
                    r_acts,
                    classifier=self.classifier,
                    alpha=self.alpha,
                    max_iter=self.max_iter,
                    tol=self.tol,
                    test_size=self.test_size,
                    seed=int(self.seed) + i,
                    concept=name,
                    random=f"random_{i}",
                    layer=self.layer_name_,
                )
                for i, r_acts in enumerate(randoms)
            ]

        self.cavs_ = {name: cavs_for(name, np.asarray(concepts[key])) for name, key in zip(names, concepts)}
        self.random_cavs_ = [
            cavs_for(f"random_concept_{j}", np.asarray(q)) for j, q in enumerate(random_concept)
        ]
        if self.test == "random_means" and len(self.random_cavs_) < 3:
            raise Img2TabInputError(
                f"test='random_means' needs >= 3 random concepts, got {len(self.random_cavs_)}"
            )
        self.concept_names_ = tuple(names)
        return self

    def _all_cavs(self) -> list[tuple[str, list[CAV]]]:
        rnd = [(f"random_concept_{j}", cavs) for j, cavs in enumerate(self.random_cavs_)]
        return [*self.cavs_.items(), *rnd]

    def _check_fitted(self) -> None:
        if not hasattr(self, "cavs_"):
            raise Img2TabInputError("TCAV is not fitted; call fit(...) or load_cavs(path) first")

    # ------------------------------------------------------------------ scoring
    def sensitivities(
        self, inputs: torch.Tensor | np.ndarray, target: int | None = None
    ) -> dict[str, np.ndarray]:
        """Class-evidence directional derivatives ``S`` of ``inputs`` along every CAV.

        Returns:
            ``{concept: float64 [N, R]}`` plus ``"random_concept_j"`` for each random concept.
        """
        self._check_fitted()
        t = self.target if target is None else target
        grads = layer_gradients(
            self.model, self.layer, inputs, int(t), gradient=self.gradient, batch_size=self.batch_size
        )
        out = {}
        for name, cavs in self._all_cavs():
            out[name] = class_evidence_derivatives(grads, np.stack([c.vector for c in cavs]), self.gradient)
        return out

    def score(self, class_inputs: torch.Tensor | np.ndarray, target: int | None = None) -> TCAVResult:
        """TCAV scores of every concept for a class, with p-values against the random concept.

        Args:
            class_inputs: ``[N, ...]`` examples of the class (reuses the stored CAVs, so new
                images can be scored without refitting).
            target: Class (default :attr:`target`).

        Returns:
            A :class:`TCAVResult`.
        """
        self._check_fitted()
        t = int(self.target if target is None else target)
        sens = self.sensitivities(class_inputs, t)
        n = next(iter(sens.values())).shape[0]
        if n == 0:
            raise Img2TabInputError("class_inputs is empty")
        rnd_scores = np.stack(
            [np.mean(sens[f"random_concept_{j}"] > 0, axis=0) for j in range(len(self.random_cavs_))]
        )
        threshold = float(self.significance) / (len(self.cavs_) if self.bonferroni else 1)
        results = []
        for name, cavs in self.cavs_.items():
            scores = np.mean(sens[name] > 0, axis=0)
            p = tcav_p_value(scores, rnd_scores, self.test)
            results.append(
                ConceptTCAV(
                    concept=name,
                    scores=scores,
                    random_scores=rnd_scores,
                    cav_accuracies=np.array([c.accuracy for c in cavs]),
                    p_value=p,
                    significant=bool(p < threshold),
                    seeds=tuple(c.seed for c in cavs),
                )
            )
        return TCAVResult(
            concepts=tuple(results),
            target=t,
            gradient=str(self.gradient),
            test=str(self.test),
            threshold=threshold,
            bonferroni=bool(self.bonferroni),
            n_examples=int(n),
        )

    def profile(self, inputs: torch.Tensor | np.ndarray, mean: bool = True) -> np.ndarray:
        """Concept profile: projections of the layer activations on the CAVs (official ``find_profile``).

        Args:
            inputs: ``[N, ...]`` model inputs.
            mean: Average over the random sets.

        Returns:
            float64 ``[N, K]`` (``mean=True``) or ``[N, K, R]``, ``K`` in :attr:`concept_names_` order.
        """
        self._check_fitted()
        acts = self.activations(inputs).astype(np.float64)
        prof = np.stack([acts @ np.stack([c.vector for c in cavs]).T for cavs in self.cavs_.values()], axis=1)
        return prof.mean(-1) if mean else prof

    # ------------------------------------------------------------------ persistence
    def save_cavs(self, path: str | os.PathLike) -> Path:
        """Save the CAVs (safetensors, metadata as JSON in the header; atomic write).

        Returns:
            The path written.
        """
        from safetensors.numpy import save_file

        self._check_fitted()
        path = Path(path)
        tensors: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {"layer": self.layer_name_, "concepts": {}, "gradient": self.gradient}
        meta["n_random_concepts"] = len(self.random_cavs_)
        for key, cavs in self._all_cavs():
            idx = len(meta["concepts"])
            tensors[f"cav_{idx}"] = np.stack([c.vector for c in cavs]).astype(np.float64)
            meta["concepts"][key] = {
                "index": idx,
                "random": [c.random for c in cavs],
                "accuracy": [c.accuracy for c in cavs],
                "accuracies": [dict(c.accuracies) for c in cavs],
                "seed": [c.seed for c in cavs],
                "n_per_set": [c.n_per_set for c in cavs],
            }
        from .._atomic import atomic_path

        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"img2tab_tcav": json.dumps(meta)})
        return path

    def load_cavs(self, path: str | os.PathLike) -> TCAV:
        """Load CAVs saved by :meth:`save_cavs` into this (model, layer); returns ``self``."""
        from safetensors import safe_open

        self._check_params()
        name = _resolve_layer(self.model, self.layer)[0]
        with safe_open(str(path), framework="numpy") as f:
            meta_raw = (f.metadata() or {}).get("img2tab_tcav")
            if meta_raw is None:
                raise Img2TabInputError(f"{path} is not an img2tab CAV file")
            meta = json.loads(meta_raw)
            if meta["layer"] != name:
                raise Img2TabInputError(f"{path} holds CAVs of layer {meta['layer']!r}, not {name!r}")
            loaded: dict[str, list[CAV]] = {}
            for key, info in meta["concepts"].items():
                vecs = f.get_tensor(f"cav_{info['index']}")
                loaded[key] = [
                    CAV(
                        concept=key,
                        random=info["random"][i],
                        layer=name,
                        vector=vecs[i],
                        accuracy=float(info["accuracy"][i]),
                        accuracies=info["accuracies"][i],
                        seed=int(info["seed"][i]),
                        n_per_set=int(info["n_per_set"][i]),
                    )
                    for i in range(vecs.shape[0])
                ]
        self.random_cavs_ = [loaded.pop(f"random_concept_{j}") for j in range(int(meta["n_random_concepts"]))]
        self.cavs_ = loaded
        self.concept_names_ = tuple(loaded)
        self.layer_name_ = name
        return self


# ---------------------------------------------------------------------------------------- Ψ mode
class PsiClassifier(nn.Module):
    """Differentiable classifier over standardised Ψ columns, for TCAV on Img2Tab's features.

    ``forward(psi [N, D]) -> logits [N, 2]``; the submodule ``features`` outputs the standardised
    Ψ (the layer to hook); ``hidden=0`` is a logistic regression, ``hidden > 0`` a one-hidden-layer
    ReLU MLP. Build it with :func:`fit_psi_classifier`.
    """

    def __init__(self, mean: torch.Tensor, scale: torch.Tensor, hidden: int = 0, n_classes: int = 2) -> None:
        super().__init__()
        d = int(mean.shape[0])
        self.register_buffer("mean", mean.float().clone())
        self.register_buffer("scale", scale.float().clone())
        self.features = nn.Identity()
        if hidden > 0:
            self.head: nn.Module = nn.Sequential(
                nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, n_classes)
            )
        else:
            self.head = nn.Linear(d, n_classes)

    def forward(self, psi: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, n_classes]`` of Ψ rows ``[N, D]``."""
        return self.head(self.features((psi - self.mean) / self.scale))

    def logit(self, psi: torch.Tensor) -> torch.Tensor:
        """Margin of class 1 over class 0, ``[N]``."""
        out = self(psi)
        return out[:, 1] - out[:, 0]


def fit_psi_classifier(
    psi: np.ndarray,
    y: np.ndarray,
    *,
    hidden: int = 0,
    weight_decay: float = 1e-3,
    epochs: int = 300,
    lr: float = 0.01,
    seed: int = 0,
) -> PsiClassifier:
    """Fit a :class:`PsiClassifier` (full-batch Adam on cross-entropy, L2 penalty ``weight_decay``).

    Args:
        psi: ``[N, D]`` Ψ table.
        y: int ``[N]`` labels in ``0..n_classes-1``.
        hidden: 0 = logistic regression, otherwise the MLP's hidden width.
        weight_decay: L2 penalty on the weights.
        epochs: Full-batch optimisation steps.
        lr: Adam learning rate.
        seed: Seed of the initialisation.

    Returns:
        The fitted classifier (eval mode).
    """
    x = np.asarray(psi, dtype=np.float64)
    yy = np.asarray(y).astype(np.int64).ravel()
    if x.ndim != 2 or x.shape[0] != yy.shape[0]:
        raise Img2TabInputError(f"psi must be [N, D] matching y [N], got {x.shape} and {yy.shape}")
    if not np.isfinite(x).all():
        raise Img2TabInputError("psi contains NaN or inf")
    n_classes = int(yy.max()) + 1 if yy.size else 0
    if n_classes < 2 or yy.min() < 0 or np.unique(yy).size < 2:
        raise Img2TabInputError(f"y must hold >= 2 classes labelled 0..C-1, got {np.unique(yy).tolist()}")
    mean = x.mean(0)
    scale = x.std(0)
    scale = np.where(scale > 1e-8, scale, 1.0)
    gen = torch.Generator().manual_seed(int(seed))
    model = PsiClassifier(torch.from_numpy(mean), torch.from_numpy(scale), hidden=hidden, n_classes=n_classes)
    with torch.no_grad():
        for p in model.head.parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * (1.0 / np.sqrt(p.shape[1])))
            else:
                p.zero_()
    xt = torch.from_numpy(x).float()
    yt = torch.from_numpy(yy)
    opt = torch.optim.Adam(model.head.parameters(), lr=lr)
    weights = [p for p in model.head.parameters() if p.ndim == 2]
    model.train()
    for _ in range(int(epochs)):
        opt.zero_grad()
        loss = F.cross_entropy(model(xt), yt) + weight_decay * sum((w**2).sum() for w in weights)
        loss.backward()
        opt.step()
    return model.eval()


# ---------------------------------------------------------------------------------------- plots
def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        try:
            fig = ax.get_figure(root=True)
        except TypeError:  # pragma: no cover - older matplotlib
            fig = ax.figure
        return fig, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def plot_tcav(result: TCAVResult, ax: Axes | None = None, max_concepts: int | None = None) -> Figure:
    """Bar chart of mean TCAV scores with their spread over random sets, p-values and the random baseline.

    Args:
        result: A :class:`TCAVResult`.
        ax: Axes to draw on; ``None`` creates a figure.
        max_concepts: Show only the first concepts.

    Returns:
        The figure.
    """
    items = list(result.concepts)[: max_concepts or None]
    fig, ax = _axes(ax, (max(3.0, 0.6 * len(items) + 1.5), 3.2))
    x = np.arange(len(items))
    means = [c.mean for c in items]
    stds = [c.std for c in items]
    colors = ["#1f77b4" if c.significant else "#b0b0b0" for c in items]
    ax.bar(x, means, yerr=stds, color=colors, capsize=3, zorder=2)
    if items:
        rnd = np.concatenate([c.random_scores for c in items[:1]])
        ax.axhspan(
            rnd.mean() - rnd.std(), rnd.mean() + rnd.std(), color="#ff7f0e", alpha=0.15, lw=0, zorder=0
        )
        ax.axhline(rnd.mean(), color="#ff7f0e", lw=1, label="random concept (mean ± sd)", zorder=1)
        ax.legend(loc="upper right", fontsize=7, frameon=False)
    for xi, c in zip(x, items):
        ax.text(xi, min(c.mean + c.std + 0.03, 1.05), f"p={c.p_value:.2g}", ha="center", fontsize=6)
    ax.set_xticks(x, [c.concept for c in items], rotation=45, ha="right", fontsize=7)
    ax.set_ylim(0, 1.3)
    ax.set_ylabel(f"TCAV score (class {result.target}, {result.gradient})")
    ax.set_title(f"{result.test}, threshold {result.threshold:.3g} (blue = significant)", fontsize=8)
    return fig
