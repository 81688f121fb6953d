"""The high-level Img2Tab object: an inverter paired with a concept classifier over Ψ."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import clone

from .edits import EditResult, edit
from .errors import Img2TabInputError
from .networks.inverter import Inverter
from .networks.layout import StyleSpaceLayout
from .tabular import (
    ConceptClassifier,
    ConceptTable,
    Contributions,
    DebugReport,
    PsiDataset,
    check_psi,
    concept_contributions,
    debug_classifier,
    global_importance,
    load_classifier,
    wasserstein_relevance,
)

__all__ = ["Explanation", "Img2Tab"]

logger = logging.getLogger(__name__)


def _check_top_k(top_k: Any) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 0:
        raise Img2TabInputError(f"top_k must be a non-negative int, got {top_k!r}")


@dataclass(frozen=True)
class Explanation:
    """Why the classifier decided as it did for some images.

    Attributes:
        proba: ``[B, n_classes]`` predicted probabilities.
        contributions: per-concept contributions (XGBoost ``pred_contribs``; rows + bias sum to
            the margin) or None for models without them.
        concepts: per image, a table of its top concepts (feature, layer, channel, resolution,
            contribution, W1).
        edits: rendered edits of those concepts (``edits.images[b, c, s]``) or None.
        edit_proba: ``[B, n_concepts, n_strengths]`` probability of class 1 after each edit
            (binary tasks) or None.
    """

    proba: np.ndarray
    contributions: Contributions | None
    concepts: list[ConceptTable]
    edits: EditResult | None
    edit_proba: np.ndarray | None


class Img2Tab:
    """Images -> Ψ -> concept classifier, with explanations, edits and debugging.

    Args:
        inverter: an :class:`~img2tab.networks.inverter.Inverter` (``img2tab.load_inverter`` or
            ``img2tab.load_default``). May be None when only Ψ arrays are used.
        classifier: an unfitted :class:`~img2tab.tabular.ConceptClassifier` (cloned on ``fit``);
            default ``ConceptClassifier()`` (XGBoost).
        batch_size: images per encoder / generator call.
        device: torch device for the networks.
        progress: show progress bars.

    Fitted attributes (set by :meth:`fit` only): ``classifier_``, ``layout_``, ``psi_mean_``,
    ``psi_std_`` (``[D]``, the unit of edit strengths), ``w1_`` (``[D]`` class relevance on the
    training data), ``classes_``.
    """

    def __init__(
        self,
        inverter: Inverter | None = None,
        classifier: ConceptClassifier | None = None,
        batch_size: int = 32,
        device: str | torch.device = "cpu",
        progress: bool = True,
    ) -> None:
        self.inverter = inverter
        self.classifier = classifier
        self.batch_size = batch_size
        self.device = device
        self.progress = progress

    # ------------------------------------------------------------------ encoding
    def _require_inverter(self) -> Inverter:
        if self.inverter is None:
            raise Img2TabInputError(
                "this Img2Tab has no inverter: pass Ψ arrays / PsiDatasets, or build it with "
                "Img2Tab(img2tab.load_inverter(...)) to work on images"
            )
        return self.inverter.to(self.device).eval()

    def _encode(self, images: Any, with_w: bool) -> tuple[np.ndarray, torch.Tensor | None]:
        """Images -> ``(Ψ [B, D], W+ [B, n_latent, style_dim] or None)`` by ``Inverter.encode_psi``."""
        inv = self._require_inverter()
        if not isinstance(images, torch.Tensor):
            from .io import load_images

            images = load_images(images, inv.input_size)
        return inv.encode_psi(images, batch_size=self.batch_size,
                              progress=self.progress and len(images) > self.batch_size,
                              with_w=with_w)

    def encode_w(self, images: Any) -> torch.Tensor:
        """Images (paths, folder, PIL, arrays or a ``[B, 3, H, W]`` tensor: float in [-1, 1] or
        uint8) -> W+ ``[B, n_latent, style_dim]`` on the CPU."""
        return self._encode(images, with_w=True)[1]

    def encode(self, images: Any) -> np.ndarray:
        """Images -> Ψ ``[B, D]`` float32 (encoder + affine layers only, no synthesis)."""
        return self._encode(images, with_w=False)[0]

    def _as_psi(self, X: Any) -> np.ndarray:
        """Ψ from a PsiDataset, an array ``[N, D]`` or images."""
        if isinstance(X, PsiDataset):
            return np.asarray(X.psi)
        if isinstance(X, np.ndarray) and X.ndim == 2:
            return X
        if isinstance(X, torch.Tensor) and X.ndim == 2:
            return X.detach().cpu().numpy()
        return self.encode(X)

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any = None) -> Img2Tab:
        """Fit the concept classifier.

        Args:
            X: a :class:`PsiDataset` (labels taken from it when ``y`` is None), Ψ ``[N, D]``, or
                images (encoded first).
            y: ``[N]`` labels.

        Returns:
            self.
        """
        if y is None:
            if isinstance(X, PsiDataset) and X.labels is not None:
                y = X.labels
            else:
                raise Img2TabInputError("fit needs labels: pass y or a PsiDataset with labels")
        psi = check_psi(self._as_psi(X))
        y = np.asarray(y)
        layout = None
        if isinstance(X, PsiDataset) and X.layout is not None:
            layout = X.layout
        elif self.inverter is not None and self.inverter.layout.total == psi.shape[1]:
            layout = self.inverter.layout
        base = self.classifier if self.classifier is not None else ConceptClassifier()
        clf = clone(base).fit(psi, y)
        mean = psi.mean(0, dtype=np.float64)
        std = psi.std(0, dtype=np.float64)
        self.layout_ = layout or StyleSpaceLayout.flat(psi.shape[1])
        self.psi_mean_ = mean.astype(np.float32)
        self.psi_std_ = np.where(std > 0, std, 1.0).astype(np.float32)
        self.classes_ = clf.classes_
        self.w1_ = (wasserstein_relevance(psi, y, progress=self.progress)
                    if len(self.classes_) == 2 else None)
        self.classifier_ = clf
        self._train = (psi, y)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "classifier_"):
            raise Img2TabInputError("this Img2Tab is not fitted yet: call fit(X, y) first")

    # ------------------------------------------------------------------ prediction
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``[N, n_classes]`` for images, Ψ or a PsiDataset."""
        self._check_fitted()
        return self.classifier_.predict_proba(self._as_psi(X))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels ``[N]`` for images, Ψ or a PsiDataset."""
        self._check_fitted()
        return self.classifier_.predict(self._as_psi(X))

    def score(self, X: Any, y: Any = None) -> float:
        """Accuracy on images, Ψ or a labelled PsiDataset."""
        if y is None and isinstance(X, PsiDataset):
            y = X.labels
        return float(np.mean(self.predict(X) == np.asarray(y)))

    # ------------------------------------------------------------------ concepts
    def concepts(self, top_k: int = 20, importance_type: str | None = None) -> ConceptTable:
        """The classifier's top concepts: importance, W1, layer, channel, resolution, toRGB."""
        _check_top_k(top_k)
        self._check_fitted()
        kw = {"w1": self.w1_} if self.w1_ is not None else {}
        return global_importance(self.classifier_, importance_type, layout=self.layout_,
                                 **kw).head(top_k)

    def relevance(self, top_k: int = 20) -> ConceptTable:
        """Concepts ranked by W1 class relevance on the training data."""
        from .tabular import concept_table

        _check_top_k(top_k)
        self._check_fitted()
        if self.w1_ is None:
            raise Img2TabInputError("W1 relevance is defined here for binary labels only")
        order = np.argsort(-self.w1_, kind="stable")[:top_k]
        return concept_table(order, layout=self.layout_, n_features=len(self.w1_),
                             w1=self.w1_[order])

    # ------------------------------------------------------------------ edits and explanations
    def edit(
        self,
        x: Any,
        concepts: Sequence[int],
        strengths: Sequence[float] = (-2.0, 2.0),
        scale: str | np.ndarray | None = "std",
    ) -> EditResult:
        """Render single-concept edits of images, W+ ``[B, n_latent, style_dim]`` or Ψ ``[B, D]``.

        Args:
            x: images, W+ or Ψ.
            concepts: flat Ψ indices.
            strengths: shifts, in units of ``scale``.
            scale: ``"std"`` (training Ψ standard deviation; needs ``fit``), an array ``[D]``, or
                None for raw style units.
        """
        inv = self._require_inverter()
        gen = inv.generator
        if isinstance(scale, str):
            if scale != "std":
                raise Img2TabInputError(f"scale must be 'std', an array or None, got {scale!r}")
            self._check_fitted()
            scale = self.psi_std_
        if isinstance(x, torch.Tensor) and x.ndim == 3 and x.shape[1:] == (gen.n_latent,
                                                                          gen.style_dim):
            src = x
        elif isinstance(x, (np.ndarray, torch.Tensor)) and np.ndim(x) == 2:
            src = torch.as_tensor(np.asarray(x, dtype=np.float32))
        else:
            src = self.encode_w(x)
        return edit(gen, src, concepts, strengths, scale=scale, batch_size=self.batch_size,
                    progress=self.progress)

    def explain(
        self,
        images: Any,
        top_k: int = 5,
        strengths: Sequence[float] = (-2.0, 2.0),
        render: bool = True,
    ) -> Explanation:
        """Top concepts of each image with their contributions, and rendered edits of them.

        ``images`` may be images, W+ ``[B, n_latent, style_dim]`` or Ψ ``[B, D]``.

        Each image's concepts are ranked by |contribution| (XGBoost SHAP values) when available,
        else by global importance. With ``render=True`` the top concepts of the *first* image's
        ranking are edited on all images (one batch) and re-classified.
        """
        self._check_fitted()
        is_psi = isinstance(images, np.ndarray | torch.Tensor) and np.ndim(images) == 2
        is_w = (isinstance(images, torch.Tensor) and images.ndim == 3 and self.inverter is not None
                and images.shape[1:] == (self.inverter.generator.n_latent,
                                         self.inverter.generator.style_dim))
        if is_psi:
            psi = np.asarray(images, dtype=np.float32)
            w = None
        else:
            w = images.detach().cpu() if is_w else self.encode_w(images)
            gen = self._require_inverter().generator
            with torch.no_grad():
                psi = gen.psi(w.to(next(gen.parameters()).device)).cpu().numpy()
        proba = self.classifier_.predict_proba(psi)
        try:
            con: Contributions | None = concept_contributions(self.classifier_, psi,
                                                              layout=self.layout_)
        except (TypeError, ValueError, NotImplementedError) as exc:
            logger.info("no per-image contributions for this model (%s)", exc)
            con = None
        tables = []
        if con is not None:
            for i in range(len(psi)):
                t = con.top(i, k=top_k)
                if self.w1_ is not None:
                    t = t.with_columns(w1=self.w1_[np.asarray(t["feature"])])
                tables.append(t)
        else:
            glob = self.concepts(top_k)
            tables = [glob] * len(psi)
        edits = edit_proba = None
        if render and self.inverter is not None and tables:
            feats = [int(f) for f in tables[0]["feature"]]
            src = w if w is not None else torch.as_tensor(psi)
            edits = self.edit(src, feats, strengths)
            flat = edits.edited_psi.reshape(-1, psi.shape[1]).numpy()
            p = self.classifier_.predict_proba(flat)[:, -1]
            edit_proba = p.reshape(edits.edited_psi.shape[:3])
        return Explanation(proba, con, tables, edits, edit_proba)

    # ------------------------------------------------------------------ debugging
    def debug(
        self,
        exclude: Sequence[int],
        X_eval: Any,
        y_eval: Any = None,
        protected: Any = None,
        strategy: str = "drop",
    ) -> DebugReport:
        """Exclude concepts, retrain on the training data and compare on an evaluation split.

        Returns a :class:`~img2tab.tabular.DebugReport` (accuracy, balanced accuracy, AUC,
        demographic-parity and equalized-odds differences before / after). ``self`` is not
        changed; use :meth:`with_excluded` to get a debugged Img2Tab.
        """
        self._check_fitted()
        if y_eval is None and isinstance(X_eval, PsiDataset):
            y_eval = X_eval.labels
        if protected is None and isinstance(X_eval, PsiDataset):
            protected = X_eval.protected
        psi_tr, y_tr = self._train
        return debug_classifier(self.classifier_, psi_tr, y_tr, self._as_psi(X_eval),
                                np.asarray(y_eval), exclude, protected_eval=protected,
                                strategy=strategy, layout=self.layout_)

    def with_excluded(self, exclude: Sequence[int], strategy: str = "drop") -> Img2Tab:
        """A new Img2Tab whose classifier ignores ``exclude`` (refit on the training data)."""
        self._check_fitted()
        base = self.classifier if self.classifier is not None else ConceptClassifier()
        new = Img2Tab(self.inverter, clone(base).set_params(masked_features=list(exclude),
                                                            mask_strategy=strategy),
                      self.batch_size, self.device, self.progress)
        psi, y = self._train
        return new.fit(PsiDataset(psi, y, layout=self.layout_) if self.layout_.n_layers > 1
                       else psi, y)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Save the fitted classifier, training Ψ statistics and W1 to directory ``path``.

        The inverter is not copied; its source is recorded when known (``inverter_path``).
        """
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.classifier_.save(path / "classifier")
        psi, y = self._train
        PsiDataset(psi, y, layout=self.layout_ if self.layout_.n_layers > 1 else None).save(
            path / "train.psi")
        arrays = {"psi_mean": self.psi_mean_, "psi_std": self.psi_std_}
        if self.w1_ is not None:
            arrays["w1"] = self.w1_
        np.savez(path / "stats.npz", **arrays)
        meta = {"format": "img2tab.Img2Tab", "version": 1, "batch_size": self.batch_size,
                "inverter_path": getattr(self.inverter, "source_path", None)}
        (path / "img2tab.json").write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, inverter: Inverter | None = None,
             device: str | torch.device = "cpu") -> Img2Tab:
        """Load an Img2Tab saved with :meth:`save` (pass the inverter, or it is reloaded from
        the recorded ``inverter_path`` when that exists)."""
        path = Path(path)
        meta_path = path / "img2tab.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{path} is not a saved Img2Tab (no img2tab.json)")
        meta = json.loads(meta_path.read_text())
        if inverter is None and meta.get("inverter_path"):
            from .checkpoints import load_inverter

            inverter = load_inverter(meta["inverter_path"], device=device)
        clf = load_classifier(path / "classifier")
        obj = cls(inverter, clone(clf), batch_size=int(meta.get("batch_size", 32)), device=device)
        train = PsiDataset.load(path / "train.psi", mmap=False)
        stats = np.load(path / "stats.npz")
        obj.classifier_ = clf
        obj.classes_ = clf.classes_
        obj.layout_ = train.layout or StyleSpaceLayout.flat(train.n_features)
        obj.psi_mean_ = stats["psi_mean"]
        obj.psi_std_ = stats["psi_std"]
        obj.w1_ = stats["w1"] if "w1" in stats.files else None
        obj._train = (np.asarray(train.psi), np.asarray(train.labels))
        return obj
