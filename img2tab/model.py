"""The high-level Img2Tab object: an inverter paired with a concept classifier over Ψ."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import clone

from ._atomic import atomic_dir, atomic_save_npz, atomic_write_json
from ._json import read_json
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
    rank_descending,
    wasserstein_relevance,
)
from .tabular._backends import load_npz
from .tabular._dataset import _column_stats, _sha256
from .tabular._validation import check_positive_int

__all__ = ["Explanation", "Img2Tab"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Explanation:
    """Why the classifier decided as it did for some images.

    Attributes:
        proba: ``[B, n_classes]`` predicted probabilities.
        contributions: per-concept contributions (XGBoost ``pred_contribs``, exact linear terms
            for logistic regression; rows + bias sum to the margin) or None for models without
            them.
        concepts: per image, a table of *its own* top concepts (feature, layer, channel,
            resolution, contribution towards the explained class, W1).
        edits: rendered edits or None. ``edits.images[b, c, s]`` is image ``b`` with concept
            ``rendered[b, c]`` moved by ``edits.strengths[s]``; ``edits.edited_psi[b, c, s]`` its
            Ψ. (``edits.concepts`` lists every concept rendered for some image.)
        edit_proba: ``[B, k, n_strengths]`` probability of the explained class
            (``classes[class_index[b]]``) after each edit, or None.
        rendered: ``[B, k]`` int64 flat Ψ index of the concept in ``edits.images[b, c]`` (the
            ``feature`` column of ``concepts[b]``).
        class_index: ``[B]`` index into the classifier's ``classes_`` of the class explained for
            each image (by default its predicted class).
        edit_proba_image: ``[B, k, n_strengths]`` the same probability for the edited *image*:
            each rendered edit re-encoded and classified (render -> encode -> classify). This is
            what the classifier says about the picture shown; ``edit_proba`` (the classifier on
            the edited Ψ itself) moves much less, because one Ψ column saturates the classifier's
            splits (see ``benchmarks/RESULTS.md``, edit strength). None without rendered edits.
        source_proba_image: ``[B]`` that probability for the re-encoded unedited reconstruction
            (the baseline of ``edit_proba_image``), or None.
    """

    proba: np.ndarray
    contributions: Contributions | None
    concepts: list[ConceptTable]
    edits: EditResult | None
    edit_proba: np.ndarray | None
    rendered: np.ndarray | None = None
    class_index: np.ndarray | None = None
    edit_proba_image: np.ndarray | None = None
    source_proba_image: np.ndarray | None = None


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

    Fitted attributes (set by :meth:`fit`, :meth:`from_fitted` or :meth:`load`):
    ``classifier_``, ``layout_``, ``psi_mean_``, ``psi_std_`` (``[D]``, the unit of edit
    strengths), ``w1_`` (``[D]`` class relevance on the training data for two classes; None for
    three or more, see :meth:`relevance`), ``classes_``.

    A classifier that is already fitted (e.g. ``load_classifier`` of a folder written by
    ``img2tab fit``) may be passed as ``classifier``: the Img2Tab then predicts, explains and
    lists concepts with it without :meth:`fit`; edits in standard deviations, W1 and
    :meth:`debug` need the training Ψ, so use :meth:`from_fitted` (or :meth:`load` on the
    folder ``img2tab fit`` wrote, which records it) for those.
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
        inv = self.inverter
        param = next(inv.parameters(), None)
        want = torch.device(self.device)
        if param is not None and (param.device.type != want.type
                                  or want.index not in (None, param.device.index)):
            # never silently: the caller's inverter object is moved (torch moves modules in place)
            warnings.warn(f"moving the inverter from {param.device} to device={self.device!r} "
                          "(Img2Tab.device); pass the device the inverter is on to avoid this",
                          UserWarning, stacklevel=3)
        return inv.to(self.device).eval()

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
        base = self.classifier if self.classifier is not None else ConceptClassifier()
        clf = clone(base).fit(psi, y)
        return self._set_fitted(clf, X, psi, y)

    @classmethod
    def from_fitted(cls, classifier: ConceptClassifier, X: Any, y: Any = None,
                    inverter: Inverter | None = None, **kwargs: Any) -> Img2Tab:
        """An Img2Tab around a classifier already fitted on ``X`` (no refit).

        Records what :meth:`fit` records (Ψ mean / std, binary W1, the training Ψ or a reference
        to its file), so that the result edits, explains, debugs and saves like a fitted one.
        ``img2tab fit`` uses it to write its folder.

        Args:
            classifier: a fitted :class:`ConceptClassifier`.
            X: the training data it was fitted on (a :class:`PsiDataset` or Ψ ``[N, D]``).
            y: ``[N]`` labels (default: ``X.labels``).
            inverter: optional inverter.
            **kwargs: other constructor arguments (``batch_size``, ``device``, ``progress``).
        """
        if not _is_fitted(classifier):
            raise Img2TabInputError("from_fitted needs a fitted ConceptClassifier; use fit() otherwise")
        obj = cls(inverter, clone(classifier), **kwargs)
        if y is None:
            if not (isinstance(X, PsiDataset) and X.labels is not None):
                raise Img2TabInputError("from_fitted needs labels: pass y or a PsiDataset with labels")
            y = X.labels
        psi = check_psi(obj._as_psi(X))
        y = np.asarray(y)
        if psi.shape[1] != classifier.n_features_in_ or len(y) != len(psi):
            raise Img2TabInputError(
                f"X has shape {psi.shape} and y {len(y)} rows, but the classifier expects "
                f"{classifier.n_features_in_} features")
        return obj._set_fitted(classifier, X, psi, y)

    def _set_fitted(self, clf: ConceptClassifier, X: Any, psi: np.ndarray, y: np.ndarray) -> Img2Tab:
        layout = None
        if isinstance(X, PsiDataset) and X.layout is not None:
            layout = X.layout
        elif self.inverter is not None and self.inverter.layout.total == psi.shape[1]:
            layout = self.inverter.layout
        mean, std = _column_stats(psi)  # blockwise float64: no N x D temporary
        self.layout_ = layout or StyleSpaceLayout.flat(psi.shape[1])
        self.psi_mean_ = mean.astype(np.float32)
        self.psi_std_ = np.where(std > 0, std, 1.0).astype(np.float32)
        self.classes_ = clf.classes_
        self.w1_ = (wasserstein_relevance(psi, y, progress=self.progress)
                    if len(self.classes_) == 2 else None)
        self.classifier_ = clf
        self._train = (_own_copy(X, psi), np.array(y, copy=True))  # never the caller's arrays
        self._train_source = _train_reference(X)
        return self

    def _check_fitted(self) -> None:
        if hasattr(self, "classifier_"):
            return
        if self.classifier is not None and _is_fitted(self.classifier):
            self._adopt(self.classifier)  # a classifier fitted elsewhere: use it as it is
            return
        raise Img2TabInputError("this Img2Tab is not fitted yet: call fit(X, y) first, or pass a "
                                "fitted classifier (load_classifier(...))")

    def _adopt(self, clf: ConceptClassifier) -> None:
        """Use fitted ``clf`` without its training data (no Ψ statistics, W1 or debug)."""
        n = int(clf.n_features_in_)
        inv_layout = getattr(self.inverter, "layout", None)
        self.classifier_ = clf
        self.classes_ = clf.classes_
        self.layout_ = inv_layout if inv_layout is not None and inv_layout.total == n \
            else StyleSpaceLayout.flat(n)
        self.psi_mean_ = None
        self.psi_std_ = None
        self.w1_ = None
        self._train = None
        self._train_source = None

    def _require_std(self) -> np.ndarray:
        if self.psi_std_ is None:
            raise Img2TabInputError(
                "edit strengths in standard deviations need the training Ψ, which this Img2Tab "
                "does not have (it wraps a classifier fitted elsewhere): use "
                "Img2Tab.from_fitted(classifier, train_dataset), Img2Tab.load on the folder "
                "`img2tab fit` wrote, or pass scale=None / an array")
        return self.psi_std_

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
        top_k = check_positive_int(top_k, "top_k")
        self._check_fitted()
        kw = {"w1": self.w1_} if self.w1_ is not None else {}
        return global_importance(self.classifier_, importance_type, layout=self.layout_,
                                 **kw).head(top_k)

    def relevance(
        self,
        top_k: int = 20,
        *,
        pair: tuple[Any, Any] | None = None,
        mode: str = "one-vs-rest",
        aggregate: str | None = None,
    ) -> ConceptTable:
        """Concepts ranked by W1 class relevance on the training data.

        Two classes: one ``w1`` column (as before). Three or more classes need an explicit
        choice, there is no implicit aggregation:

        - ``pair=(a, b)``: W1 between classes ``a`` and ``b`` (labels as given), column
          ``"w1[a vs b]"``;
        - ``aggregate="max"`` or ``"mean"``: one column per class, ``"w1[c vs rest]"``
          (``mode="one-vs-rest"``) or per pair, ``"w1[a vs b]"`` (``mode="pairwise"``), and the
          ranking column ``"w1[max of one-vs-rest]"`` (etc.).

        Multi-class W1 is computed on the training Ψ when asked (not cached).

        Raises:
            Img2TabInputError: several classes without ``pair`` / ``aggregate``; an unknown
                class in ``pair``; no training Ψ (a classifier fitted elsewhere).
        """
        from .tabular import concept_table, relevance_columns

        top_k = check_positive_int(top_k, "top_k")
        self._check_fitted()
        if len(self.classes_) == 2 and self.w1_ is not None:
            if pair is not None:
                relevance_columns(np.zeros((2, 1), np.float32), self.classes_, pair=pair)  # checks pair
            rank_col, cols = "w1", {"w1": self.w1_}
        else:
            psi, y = self._training_data()
            rank_col, cols = relevance_columns(psi, y, pair=pair, mode=mode, aggregate=aggregate,
                                               progress=self.progress)
        order = rank_descending(cols[rank_col])[:top_k]
        return concept_table(order, layout=self.layout_, n_features=len(cols[rank_col]),
                             **{k: np.asarray(v)[order] for k, v in cols.items()})

    # ------------------------------------------------------------------ edits and explanations
    def edit(
        self,
        x: Any,
        concepts: Sequence[int],
        strengths: Sequence[float] = (-10.0, 10.0),
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
            scale = self._require_std()
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
        strengths: Sequence[float] = (-10.0, 10.0),
        render: bool = True,
        class_index: int | Sequence[int] | None = None,
    ) -> Explanation:
        """Each image's own top concepts with their contributions, and rendered edits of them.

        ``images`` may be images, W+ ``[B, n_latent, style_dim]`` or Ψ ``[B, D]``.

        Each image's concepts are ranked by |contribution| towards the explained class (XGBoost
        SHAP values, exact linear terms for logistic regression) when available, else by global
        importance (then every image gets the same concepts). With ``render=True`` every image's
        own top-k concepts are edited on that image, all in one batched render, and re-classified;
        ``Explanation.rendered[b]`` says which concepts image ``b``'s edits show.

        Args:
            images: images, W+ or Ψ.
            top_k: concepts per image.
            strengths: edit strengths in training standard deviations of Ψ.
            render: render the edits (needs the inverter).
            class_index: the class to explain (index into ``classes_``), one for all images or
                one per image; None: each image's predicted class.
        """
        from .edits import edit_psi, render_psi

        self._check_fitted()
        is_psi = isinstance(images, np.ndarray | torch.Tensor) and np.ndim(images) == 2
        is_w = (isinstance(images, torch.Tensor) and images.ndim == 3 and self.inverter is not None
                and images.shape[1:] == (self.inverter.generator.n_latent,
                                         self.inverter.generator.style_dim))
        if is_psi:
            psi = np.asarray(images, dtype=np.float32)
        else:
            w = images.detach().cpu() if is_w else self.encode_w(images)
            gen = self._require_inverter().generator
            with torch.no_grad():
                psi = gen.psi(w.to(next(gen.parameters()).device)).cpu().numpy()
        proba = self.classifier_.predict_proba(psi)
        n, n_classes = proba.shape
        if class_index is None:
            cls_idx = np.argmax(proba, axis=1).astype(np.int64)
        else:
            cls_idx = np.broadcast_to(np.asarray(class_index, dtype=np.int64).reshape(-1), (n,)).copy()
            if cls_idx.size != n or (cls_idx < 0).any() or (cls_idx >= n_classes).any():
                raise Img2TabInputError(
                    f"class_index must be one index or {n} indices in [0, {n_classes}), got {class_index!r}")
        try:
            con: Contributions | None = concept_contributions(self.classifier_, psi,
                                                              layout=self.layout_)
        except (TypeError, ValueError, NotImplementedError) as exc:
            logger.info("no per-image contributions for this model (%s)", exc)
            con = None
        tables = []
        if con is not None:
            for i in range(n):
                if con.values.ndim == 3:  # multi-class: the explained class's own contributions
                    t = con.top(i, k=top_k, class_index=int(cls_idx[i]))
                else:  # binary: contributions are towards classes[1]; flip them for classes[0]
                    t = con.top(i, k=top_k)
                    if cls_idx[i] == 0:
                        t = t.with_columns(contribution=-np.asarray(t["contribution"]))
                if self.w1_ is not None:
                    t = t.with_columns(w1=self.w1_[np.asarray(t["feature"])])
                tables.append(t)
        else:
            glob = self.concepts(top_k)
            tables = [glob] * n
        rendered = (np.stack([np.asarray(t["feature"], dtype=np.int64) for t in tables])
                    if tables else np.zeros((0, 0), dtype=np.int64))
        edits = edit_proba = edit_proba_image = source_proba_image = None
        if render and self.inverter is not None and n:
            gen = self._require_inverter().generator
            src = torch.as_tensor(psi, dtype=torch.float32)
            std = self._require_std()
            edited = torch.cat([edit_psi(src[i:i + 1], rendered[i].tolist(), strengths, std)
                                for i in range(n)])  # [B, k, n_strengths, D], each row its own concepts
            k, ns, d = edited.shape[1:]
            imgs = render_psi(gen, torch.cat([src, edited.reshape(-1, d)]), batch_size=self.batch_size,
                              progress=self.progress)
            edits = EditResult(source=imgs[:n], images=imgs[n:].reshape(n, k, ns, *imgs.shape[1:]),
                               psi=src, edited_psi=edited,
                               concepts=tuple(int(c) for c in np.unique(rendered)),
                               strengths=tuple(float(x) for x in strengths))
            p = self.classifier_.predict_proba(edited.reshape(-1, d).numpy()).reshape(n, k, ns, n_classes)
            edit_proba = np.take_along_axis(p, cls_idx[:, None, None, None], axis=3)[..., 0]
            rt, _ = self.inverter.encode_psi(imgs.clamp(-1, 1), batch_size=self.batch_size,
                                             with_w=False)  # the rendered pictures, re-encoded
            p_rt = self.classifier_.predict_proba(rt)
            source_proba_image = p_rt[np.arange(n), cls_idx]
            edit_proba_image = np.take_along_axis(p_rt[n:].reshape(n, k, ns, n_classes),
                                                  cls_idx[:, None, None, None], axis=3)[..., 0]
        return Explanation(proba, con, tables, edits, edit_proba, rendered, cls_idx,
                           edit_proba_image, source_proba_image)

    def plot_explanation(self, explanation: Explanation, i: int = 0) -> Any:
        """Figure of image ``i``'s rendered edits, each annotated with the probability of the
        explained class, named (e.g. ``p(8)=0.91``; the predicted class unless ``explain`` was
        given ``class_index``), for the picture shown: the reconstruction and every edit are
        re-encoded and classified (``source_proba_image``, ``edit_proba_image``). Needs
        ``explain(..., render=True)``.

        Returns:
            A matplotlib ``Figure`` (rows: the image's top concepts, ``layer/channel@resolution``;
            columns: the source, then each strength).
        """
        from .gallery import plot_edit_grid

        self._check_fitted()
        ex = explanation
        if ex.edits is None or ex.edit_proba is None or ex.rendered is None:
            raise Img2TabInputError("the explanation has no rendered edits: call explain(..., render=True)")
        n = ex.proba.shape[0]
        if not 0 <= int(i) < n:
            raise Img2TabInputError(f"i must be in [0, {n}), got {i!r}")
        c = int(ex.class_index[i]) if ex.class_index is not None else int(np.argmax(ex.proba[i]))
        labels = [self.layout_.label(int(k)) for k in ex.rendered[i]]
        if ex.edit_proba_image is not None and ex.source_proba_image is not None:
            p_src, p_edit = float(ex.source_proba_image[i]), ex.edit_proba_image[i]
        else:  # an Explanation built by hand without the image round trip
            p_src, p_edit = float(ex.proba[i, c]), ex.edit_proba[i]
        return plot_edit_grid(ex.edits.source[i], ex.edits.images[i], labels, ex.edits.strengths,
                              p_src, p_edit, class_name=f"p({self.classes_[c]})")

    # ------------------------------------------------------------------ debugging
    def debug(
        self,
        exclude: Sequence[int],
        X_eval: Any,
        y_eval: Any = None,
        protected: Any = None,
        strategy: str = "drop",
        max_excluded: int | None = None,
        n_random: int = 5,
        random_state: int | None = 0,
    ) -> DebugReport:
        """Exclude concepts, retrain on the training data and compare on an evaluation split.

        Returns a :class:`~img2tab.tabular.DebugReport` (accuracy, balanced accuracy, AUC,
        demographic-parity and equalized-odds differences before / after; how many concepts were
        excluded out of how many; a control that excludes the same number of random concepts,
        ``n_random`` draws, mean ± sd). ``max_excluded`` is a budget. ``self`` is not changed; use
        :meth:`with_excluded` to get a debugged Img2Tab.
        """
        self._check_fitted()
        if y_eval is None and isinstance(X_eval, PsiDataset):
            y_eval = X_eval.labels
        if protected is None and isinstance(X_eval, PsiDataset):
            protected = X_eval.protected
        psi_tr, y_tr = self._training_data()
        return debug_classifier(self.classifier_, psi_tr, y_tr, self._as_psi(X_eval),
                                np.asarray(y_eval), exclude, protected_eval=protected,
                                strategy=strategy, layout=self.layout_, max_excluded=max_excluded,
                                n_random=n_random, random_state=random_state)

    def with_excluded(self, exclude: Sequence[int], strategy: str = "drop") -> Img2Tab:
        """A new Img2Tab whose classifier ignores ``exclude`` (refit on the training data)."""
        self._check_fitted()
        base = self.classifier if self.classifier is not None else ConceptClassifier()
        new = Img2Tab(self.inverter, clone(base).set_params(masked_features=list(exclude),
                                                            mask_strategy=strategy),
                      self.batch_size, self.device, self.progress)
        psi, y = self._training_data()
        return new.fit(PsiDataset(psi, y, layout=self.layout_) if self.layout_.n_layers > 1
                       else psi, y)

    # ------------------------------------------------------------------ persistence
    def _adopted(self) -> Img2Tab:
        self._check_fitted()
        return self

    def _training_data(self) -> tuple[np.ndarray, np.ndarray]:
        train = getattr(self, "_train", None)
        if train is None and getattr(self, "_train_source", None) is None:
            raise Img2TabInputError(
                "this Img2Tab has no training Ψ (it wraps a classifier fitted elsewhere): use "
                "Img2Tab.from_fitted(classifier, train_dataset) or fit()")
        if train is None:
            raise Img2TabInputError(
                "the training Ψ of this Img2Tab is not available (the file its save referred to "
                f"is gone: {getattr(self, '_train_source', None)}); refit, or save with copy_data=True"
            )
        return train

    def save(self, path: str | os.PathLike, *, copy_data: bool = False, overwrite: bool = True) -> Path:
        """Save the fitted Img2Tab to folder ``path``, atomically and without pickles.

        Layout::

            path/
                img2tab.json   format, batch size, layout, inverter path, where the training Ψ is
                classifier/    the concept classifier (see ConceptClassifier.save)
                stats.npz      training Ψ mean / std, W1, training labels
                train.psi/     the training Ψ (only when copied)

        Args:
            path: target folder. An existing Img2Tab folder is replaced only when the new one is
                complete; a failure half-way leaves it intact.
            copy_data: copy the training Ψ into the folder. Otherwise, when the model was fitted
                on a :class:`PsiDataset` loaded from disk, only its path and the sha256 of its
                ``psi.npy`` are stored (:meth:`load` checks them); Ψ given as an in-memory
                array is always copied.
            overwrite: replace an existing Img2Tab folder at ``path``.

        The inverter is not copied; its source is recorded when known (``inverter_path``).

        Returns:
            The folder.
        """
        self._check_fitted()
        psi, y = self._training_data()
        ref = getattr(self, "_train_source", None)
        copy = bool(copy_data) or ref is None
        labels = np.asarray(y)
        if labels.dtype.hasobject:
            labels = labels.astype(str)
        arrays = {"psi_mean": self.psi_mean_, "psi_std": self.psi_std_, "train_labels": labels}
        if self.w1_ is not None:
            arrays["w1"] = self.w1_
        meta = {
            "format": "img2tab.Img2Tab",
            "version": 2,
            "batch_size": self.batch_size,
            "inverter_path": getattr(self.inverter, "source_path", None),
            "layout": self.layout_.to_dict(),
            "train": {"copy": "train.psi"} if copy else dict(ref),
        }
        if not copy:
            logger.info("saving a reference to the training Ψ at %s (copy_data=False)", ref["path"])

        def replaceable(p: Path) -> bool:
            return (p / "img2tab.json").is_file() or not any(p.iterdir())

        with atomic_dir(path, overwrite=overwrite, replaceable=replaceable) as tmp:
            self.classifier_.save(tmp / "classifier")
            if copy:
                PsiDataset(psi, labels, layout=self.layout_ if self.layout_.n_layers > 1 else None).save(
                    tmp / "train.psi")
            atomic_save_npz(tmp / "stats.npz", **arrays)
            atomic_write_json(tmp / "img2tab.json", meta)  # last: a folder with it is complete
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike, inverter: Inverter | None = None,
             device: str | torch.device = "cpu") -> Img2Tab:
        """Load an Img2Tab saved with :meth:`save` (pass the inverter, or it is reloaded from
        the recorded ``inverter_path`` when that exists).

        Nothing in the folder is unpickled or executed. A training Ψ stored by reference is
        checked against its sha256; when the referenced dataset is gone the model still
        predicts and explains, but :meth:`debug` / :meth:`with_excluded` raise.

        Raises:
            FileNotFoundError: no saved Img2Tab at ``path``.
            Img2TabInputError: a corrupt, truncated or inconsistent folder, or a referenced
                training Ψ whose content changed (one line naming the file).
        """
        path = Path(path)
        meta_path = path / "img2tab.json"
        if path.is_file():  # a bare XGBoost model file: the classifier alone
            return cls(inverter, load_classifier(path), device=device)._adopted()
        if not meta_path.exists():
            raise FileNotFoundError(f"{path} is not a saved Img2Tab (no img2tab.json)")
        meta = read_json(meta_path, "Img2Tab header")
        if isinstance(meta, dict) and meta.get("format") == "img2tab.classifier":
            # a classifier folder (ConceptClassifier.save, or `img2tab fit` before 0.x): no
            # training Ψ statistics were recorded with it
            return cls(inverter, load_classifier(path), device=device)._adopted()
        if not isinstance(meta, dict) or meta.get("format") != "img2tab.Img2Tab":
            raise Img2TabInputError(f"{meta_path} is not an Img2Tab header")
        version = meta.get("version")
        if version not in (1, 2):
            raise Img2TabInputError(f"{meta_path} has version {version!r}; this img2tab reads 1 and 2")
        try:
            batch_size = int(meta.get("batch_size", 32))
            layout = meta.get("layout")
            layout = None if layout is None else StyleSpaceLayout.from_dict(layout)
        except (TypeError, ValueError, KeyError) as exc:
            raise Img2TabInputError(f"{meta_path}: invalid batch_size or layout ({exc})") from exc
        clf = load_classifier(path / "classifier")
        n = clf.n_features_in_
        stats = load_npz(path / "stats.npz")
        for key in ("psi_mean", "psi_std", *(("w1",) if "w1" in stats else ())):
            if key not in stats or stats[key].shape != (n,):
                raise Img2TabInputError(
                    f"{path / 'stats.npz'}: {key} must have shape ({n},) for this classifier, got "
                    f"{stats[key].shape if key in stats else 'nothing'}")
        train_info = meta.get("train", {"copy": "train.psi"})
        if not isinstance(train_info, dict):
            raise Img2TabInputError(f"{meta_path}: 'train' must be a dict")
        ref = None
        if "copy" in train_info:
            if train_info["copy"] != "train.psi":
                raise Img2TabInputError(f"{meta_path}: the training copy must be 'train.psi'")
            train = PsiDataset.load(path / "train.psi", mmap=False)
            train_xy = (np.asarray(train.psi), np.asarray(train.labels))
        else:
            ref = {k: train_info.get(k) for k in ("path", "sha256")}
            if not isinstance(ref["path"], str) or not isinstance(ref["sha256"], str):
                raise Img2TabInputError(f"{meta_path}: 'train' needs a path and a sha256")
            train, train_xy = _load_reference(ref, stats.get("train_labels"))
        if train is not None and train.n_features != n:
            raise Img2TabInputError(f"the training Ψ of {path} has {train.n_features} columns but the "
                                    f"classifier {n}")
        if inverter is None and meta.get("inverter_path"):
            from .checkpoints import load_inverter

            inverter = load_inverter(meta["inverter_path"], device=device)
        obj = cls(inverter, clone(clf), batch_size=batch_size, device=device)
        obj.classifier_ = clf
        obj.classes_ = clf.classes_
        obj.layout_ = layout or (train.layout if train is not None else None) or StyleSpaceLayout.flat(n)
        obj.psi_mean_ = stats["psi_mean"]
        obj.psi_std_ = stats["psi_std"]
        obj.w1_ = stats.get("w1")
        obj._train = train_xy
        obj._train_source = ref
        return obj


def _is_fitted(clf: Any) -> bool:
    return clf is not None and hasattr(clf, "classes_") and hasattr(clf, "n_features_in_") \
        and hasattr(clf, "estimator_")


def _own_copy(X: Any, psi: np.ndarray) -> np.ndarray:
    """The read-only memory map of a loaded PsiDataset ``X`` as it is, else a private copy."""
    if _train_reference(X) is not None:
        return X.psi
    return np.array(psi, copy=True)


def _train_reference(X: Any) -> dict[str, str] | None:
    """``{"path", "sha256"}`` of the saved dataset ``X`` was loaded from (sha256 of its psi.npy
    as recorded when it was written), or None for in-memory data."""
    source = getattr(X, "source", None) if isinstance(X, PsiDataset) else None
    if source is None or not isinstance(X.psi, np.memmap) or X.psi.flags.writeable:
        return None
    try:
        info = read_json(Path(source) / "meta.json", "Ψ dataset header")["files"]["psi"]
        return {"path": str(Path(source) / info["file"]), "sha256": str(info["sha256"])}
    except (Img2TabInputError, KeyError, TypeError):
        return None


def _load_reference(ref: dict[str, str], labels: np.ndarray | None
                    ) -> tuple[PsiDataset | None, tuple[np.ndarray, np.ndarray] | None]:
    """The referenced training Ψ, checked against its sha256; (None, None) when it is gone."""
    file = Path(ref["path"])
    if not file.is_file():
        logger.warning("the training Ψ referenced by this Img2Tab (%s) is gone; debug() and "
                       "with_excluded() are unavailable", file)
        return None, None
    if _sha256(file) != ref["sha256"]:
        raise Img2TabInputError(f"the training Ψ {file} changed since the Img2Tab was saved "
                                "(sha256 mismatch); refit, or save with copy_data=True")
    train = PsiDataset.load(file.parent, mmap=True)
    if labels is None or labels.shape != (len(train),):
        raise Img2TabInputError(f"the saved training labels do not match the {len(train)} rows of {file}")
    return train, (train.psi, labels)
