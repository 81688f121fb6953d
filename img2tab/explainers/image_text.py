"""Image–text models behind one interface, for FALCON's captioning step — offline.

FALCON (:mod:`img2tab.explainers.falcon`) names a group of features by captioning the evidence crops
of the images that activate it. The official code does this with CLIP ViT-B/32 and a 400-million
caption bank from LAION, neither of which an offline machine has. This module puts the image–text
model behind one small interface, :class:`ImageTextModel`:

* ``encode_images(images) -> [N, d]`` and ``encode_texts(texts) -> [M, d]`` (unit vectors),
* ``encode_crops(images, boxes) -> [N, d]`` (crop, resize, encode; what FALCON calls),
* ``caption_bank() -> CaptionBank`` (the texts FALCON retrieves captions from, with embeddings),
* ``caption(embeddings, k=5) -> (captions, scores)`` (retrieval: ``softmax(logit_scale * cos)``,
  top-k, as the official code does with CLIP's logit scale 100),

with three implementations:

:class:`TruthCaptioner` (an upper bound)
    describes a crop of a concept-world image by the world factors whose *masks* the crop covers
    (the pixels that change when that factor alone changes; share of the mask inside the box
    ``>= coverage``). It knows the factors of the images it was given (a lookup by pixel content), and
    captions like a generative captioner: five templated captions of the covered factors with
    score 1 each (like the official BLIP path).
:class:`WorldCLIP`
    a small image–text model trained by img2tab on the world: a small CNN image tower on 40 px
    crops, a bag-of-words text tower, a symmetric InfoNCE loss with a learned temperature, captions
    of random crops built from :data:`WORLD_ATOMS` templates with synonyms, random omissions and
    generic distractor words. Shipped weights: ``pretrained_models/worldclip`` (see its README).
:class:`OpenCLIPModel`
    an OpenCLIP model from a checkpoint the user already has on disk (optional extra
    ``open-clip-torch``; nothing is ever downloaded).

The caption vocabulary of the world (:data:`WORLD_ATOMS`) maps every content word to the factor it
names (:func:`word_factor`), which is what the benchmark's word-level score reads.

**Recalibration of the official thresholds.** The official code ranks captions by
``softmax(100 * cos)``: 100 is CLIP's learned logit scale, so each model here uses its *own* logit
scale (:attr:`ImageTextModel.logit_scale`: CLIP's checkpoint value for OpenCLIP, WorldCLIP's learned
value). The interpretability test "mean pairwise cosine of a group's crops > 0.8" is on CLIP's
image-image cosine scale, which a small model does not share; :func:`calibrate_coherence_threshold`
replaces it by a percentile of the same statistic over random groups of crops of the probe set
(the group must be more coherent than ``quantile`` of random groups of its size).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, Img2TabInputError

__all__ = [
    "WORLD_ATOMS",
    "Atom",
    "CaptionBank",
    "ImageTextModel",
    "OpenCLIPModel",
    "TruthCaptioner",
    "WorldCLIP",
    "WorldCLIPConfig",
    "calibrate_coherence_threshold",
    "crop_resize",
    "evaluate_worldclip",
    "factor_masks",
    "load_worldclip",
    "tokenize",
    "train_worldclip",
    "visible_atoms",
    "word_factor",
    "world_caption_bank_texts",
    "mean_pairwise_cosine",
    "DISCARD_WORDS",
    "LEMMAS",
    "STOP_WORDS",
]

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# the world's caption vocabulary
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Atom:
    """One describable state of one world factor, with its synonymous phrases.

    Attributes:
        key: Unique id, e.g. ``"hair_color=red"``.
        factor: The factor it describes (a name in :data:`img2tab.world.FACTOR_NAMES`).
        phrases: Synonymous phrases, the first one canonical.
    """

    key: str
    factor: str
    phrases: tuple[str, ...]


def _atom(factor: str, label: str, *phrases: str) -> Atom:
    return Atom(f"{factor}={label}", factor, tuple(phrases))


WORLD_ATOMS: tuple[Atom, ...] = (
    _atom("smile", "smile", "smiling mouth", "broad smile", "happy grin"),
    _atom("smile", "straight", "straight mouth", "neutral mouth", "flat mouth"),
    _atom("smile", "frown", "frowning mouth", "sad frown", "downturned mouth"),
    _atom("eye_size", "large", "large eyes", "big eyes", "huge eyes"),
    _atom("eye_size", "small", "tiny eyes", "little eyes", "beady eyes"),
    _atom("face_width", "wide", "wide face", "plump face", "chubby face"),
    _atom("face_width", "narrow", "narrow face", "thin face", "slim face"),
    _atom("skin_tone", "light", "pale skin", "fair skin", "light skin"),
    _atom("skin_tone", "dark", "dark skin", "deep skin", "tanned skin"),
    _atom("hair_color", "black", "black hair", "raven hair", "jet black hair"),
    _atom("hair_color", "brown", "brown hair", "brunette hair", "chestnut hair"),
    _atom("hair_color", "blond", "blond hair", "golden hair", "blonde hair"),
    _atom("hair_color", "red", "ginger hair", "auburn hair", "copper hair"),
    _atom("glasses", "glasses", "round glasses", "eyeglasses", "spectacles"),
    _atom("background_hue", "pink", "pink background", "salmon backdrop", "warm pink wall"),
    _atom("background_hue", "yellow", "yellow background", "lemon backdrop", "warm yellow wall"),
    _atom("background_hue", "green", "green background", "mint backdrop", "cool green wall"),
    _atom("background_hue", "blue", "blue background", "sky backdrop", "cool blue wall"),
    _atom("head_tilt", "tilted", "tilted head", "leaning head", "slanted head"),
    _atom("head_tilt", "upright", "upright head", "level head", "erect head"),
)
"""Every describable factor state of the concept world (the caption vocabulary)."""

_ATOM_INDEX = {a.key: i for i, a in enumerate(WORLD_ATOMS)}

_TEMPLATES: tuple[str, ...] = (
    "a cartoon person with {}",
    "drawing of a character with {}",
    "an avatar with {}",
    "illustration of someone with {}",
    "{}",
)
_DISTRACTORS: tuple[str, ...] = (
    "cute", "simple", "flat", "vector", "cartoon", "character", "drawing", "illustration", "avatar",
    "person", "clipart", "doodle",
)  # fmt: skip

#: Stop words dropped by the parser (a bundled list, no NLTK download).
STOP_WORDS: frozenset[str] = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can did do does doing down during each few for from further had has
    have having he her here hers herself him himself his how i if in into is it its itself just me
    more most my myself no nor not now of off on once only or other our ours ourselves out over own
    same she should so some such than that the their theirs them themselves then there these they
    this those through to too under until up very was we were what when where which while who whom
    why will with you your yours yourself yourselves someone something one
    """.split()  # noqa: SIM905
)
#: Words the official code discards (its ``_DISCARD_WORDS``; the subset that can occur here plus
#: the generic caption words it lists), kept so results stay comparable — note it drops "background".
DISCARD_WORDS: frozenset[str] = frozenset(
    """
    photo background stock image closeup jpg picture png file pictures view showing shot example
    camera free video display thumbnail focus detail portrait zoom show real icon cropped caption
    graphic available new pic left full small looking angle logo close right blur preview wallpaper
    color colored banner frame cut bottom corner overlay original sign old isolated figure
    photography print year photograph
    """.split()  # noqa: SIM905
)
#: Lemma table for the caption vocabulary (replaces TextBlob/WordNet lemmatisation).
LEMMAS: Mapping[str, str] = {
    "eyes": "eye", "smiling": "smile", "smiles": "smile", "frowning": "frown", "frowns": "frown",
    "grinning": "grin", "tilted": "tilt", "tilting": "tilt", "leaning": "lean", "slanted": "slant",
    "spectacles": "spectacle", "eyeglasses": "eyeglass", "blonde": "blond", "downturned": "downturn",
    "characters": "character", "avatars": "avatar", "drawings": "drawing", "persons": "person",
    "faces": "face", "mouths": "mouth", "heads": "head", "walls": "wall", "backdrops": "backdrop",
}  # fmt: skip


def tokenize(text: str) -> list[str]:
    """Parse a caption into content words, offline.

    Lowercase, keep ``[a-z0-9]`` runs, lemmatise by :data:`LEMMAS`, drop :data:`STOP_WORDS`,
    :data:`DISCARD_WORDS`, words of length <= 2 and words with digits — the official parser's word
    filter, without its part-of-speech tagging (every remaining word counts; see the falcon module).

    Args:
        text: A caption.

    Returns:
        Content words in order (duplicates kept).
    """
    out = []
    for w in re.findall(r"[a-z0-9]+", str(text).lower()):
        w = LEMMAS.get(w, w)
        if w in STOP_WORDS or w in DISCARD_WORDS or len(w) <= 2 or any(c.isdigit() for c in w):
            continue
        out.append(w)
    return out


def _word_factor_table() -> dict[str, str | None]:
    table: dict[str, str | None] = {}
    for atom in WORLD_ATOMS:
        for phrase in atom.phrases:
            for w in tokenize(phrase):
                if w in table and table[w] != atom.factor:
                    table[w] = None  # ambiguous
                else:
                    table.setdefault(w, atom.factor)
    return table


_WORD_FACTOR = _word_factor_table()


def word_factor(word: str) -> str | None:
    """The world factor a caption word (or phrase) names, or ``None`` for a generic word.

    A phrase names a factor when all its factor-naming words agree on one.

    Args:
        word: A lemmatised word (as :func:`tokenize` returns) or a phrase.

    Returns:
        A factor name, or ``None``.
    """
    names = {_WORD_FACTOR.get(w) for w in tokenize(word)} - {None}
    return names.pop() if len(names) == 1 else None


def _atom_of(factor: str, value: float) -> str | None:
    v = float(value)
    if factor == "smile":
        return "smile=smile" if v > 0.25 else ("smile=frown" if v < -0.25 else "smile=straight")
    if factor == "eye_size":
        return "eye_size=large" if v >= 0.5 else "eye_size=small"
    if factor == "face_width":
        return "face_width=wide" if v >= 0.5 else "face_width=narrow"
    if factor == "skin_tone":
        return "skin_tone=dark" if v >= 0.5 else "skin_tone=light"
    if factor == "hair_color":
        return "hair_color=" + ("black", "brown", "blond", "red")[int(v)]
    if factor == "glasses":
        return "glasses=glasses" if int(v) > 0 else None
    if factor == "background_hue":
        label = "pink" if v < 0.2 else "yellow" if v < 0.45 else "green" if v < 0.7 else "blue"
        return "background_hue=" + label
    if factor == "head_tilt":
        return "head_tilt=tilted" if abs(v) > 0.5 else "head_tilt=upright"
    raise Img2TabInputError(f"unknown factor {factor!r}")


def factor_masks(
    factors: Mapping[str, np.ndarray], size: int = 64, n_values: int = 4, threshold: float = 8 / 255
) -> np.ndarray:
    """Pixels each factor controls, stacked: :func:`img2tab.world.groundtruth.factor_masks` (where the
    image changes by more than ``threshold`` when the factor alone takes ``n_values`` values).

    Args:
        factors: Factor dict with arrays ``[N]`` (as :func:`img2tab.world.sample_factors` gives).
        size: Render size.
        n_values: Values per continuous factor.
        threshold: Change threshold in [0, 1] intensity units.

    Returns:
        bool ``[N, F, size, size]`` in :data:`img2tab.world.FACTOR_NAMES` order.
    """
    from ..world import FACTOR_NAMES
    from ..world.groundtruth import factor_masks as _masks

    masks = _masks(factors, size, n_values=n_values, threshold=threshold)
    return np.stack([masks[name] for name in FACTOR_NAMES], axis=1)


def visible_atoms(
    factors: Mapping[str, np.ndarray],
    masks: np.ndarray,
    boxes: np.ndarray,
    coverage: float = 0.5,
) -> list[list[str]]:
    """The factor states a crop shows: those whose mask lies at least ``coverage`` inside the box.

    Args:
        factors: Factor dict with arrays ``[N]``.
        masks: bool ``[N, F, h, w]`` (:func:`factor_masks`, any resolution).
        boxes: int ``[N, 4]`` boxes ``(x0, y0, x1, y1)`` (end exclusive) in the masks' pixel grid.
        coverage: Minimum share of a factor's mask inside the box.

    Returns:
        Per image, the atom keys shown (in :data:`WORLD_ATOMS` order).
    """
    from ..world import FACTOR_NAMES

    masks = np.asarray(masks, dtype=bool)
    boxes = np.asarray(boxes, dtype=np.int64)
    total = masks.sum(axis=(2, 3))
    out = []
    for i in range(masks.shape[0]):
        x0, y0, x1, y1 = boxes[i]
        inside = masks[i, :, y0:y1, x0:x1].sum(axis=(1, 2))
        keys = []
        for j, name in enumerate(FACTOR_NAMES):
            if total[i, j] > 0 and inside[j] >= coverage * total[i, j]:
                key = _atom_of(name, factors[name][i])
                if key is not None:
                    keys.append(key)
        out.append(sorted(keys, key=_ATOM_INDEX.__getitem__))
    return out


def _compose(phrases: Sequence[str], template: str) -> str:
    body = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return template.format(body)


def world_caption_bank_texts(seed: int = 0, n_triples: int = 600) -> list[str]:
    """Caption texts of the world bank: every phrase alone (under each template), every pair of
    atoms of different factors (two phrasings), and ``n_triples`` random triples.

    Returns:
        Unique captions, in a fixed order for a given seed.
    """
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    for a in WORLD_ATOMS:
        for p in a.phrases:
            texts.extend(_compose([p], t) for t in _TEMPLATES)
    for i, a in enumerate(WORLD_ATOMS):
        for b in WORLD_ATOMS[i + 1 :]:
            if a.factor == b.factor:
                continue
            for _ in range(2):
                ph = [a.phrases[rng.integers(3)], b.phrases[rng.integers(3)]]
                texts.append(_compose(ph, _TEMPLATES[rng.integers(len(_TEMPLATES))]))
    factors = sorted({a.factor for a in WORLD_ATOMS})
    for _ in range(n_triples):
        fs = rng.choice(len(factors), size=3, replace=False)
        ph = []
        for fi in fs:
            cands = [a for a in WORLD_ATOMS if a.factor == factors[fi]]
            a = cands[rng.integers(len(cands))]
            ph.append(a.phrases[rng.integers(3)])
        texts.append(_compose(ph, _TEMPLATES[rng.integers(len(_TEMPLATES))]))
    return list(dict.fromkeys(texts))


# ---------------------------------------------------------------------------------------------
# interface
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaptionBank:
    """Texts a retrieval captioner chooses from, with their unit embeddings.

    Attributes:
        texts: ``[M]`` captions.
        embeddings: float32 ``[M, d]`` unit rows.
        chunk_size: The official code applies the softmax within chunks of the bank (LAION's 411
            embedding files) and merges running top-k lists; ``None`` = one chunk (a plain softmax).
    """

    texts: tuple[str, ...]
    embeddings: torch.Tensor
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != len(self.texts):
            raise Img2TabInputError(
                f"caption bank embeddings must be [{len(self.texts)}, d], got {tuple(self.embeddings.shape)}"
            )

    def __len__(self) -> int:
        return len(self.texts)


def crop_resize(images: torch.Tensor, boxes: np.ndarray | torch.Tensor, out_size: int) -> torch.Tensor:
    """Crop each image to its box and resize it (bilinear, antialiased when shrinking).

    Args:
        images: ``[N, 3, H, W]``.
        boxes: int ``[N, 4]`` ``(x0, y0, x1, y1)`` in pixels, end exclusive (clipped to the image).
        out_size: Output side length.

    Returns:
        ``[N, 3, out_size, out_size]``.
    """
    n, _, h, w = images.shape
    b = np.asarray(boxes, dtype=np.int64).reshape(n, 4)
    out = images.new_empty((n, images.shape[1], out_size, out_size))
    for i in range(n):
        x0, y0 = max(0, int(b[i, 0])), max(0, int(b[i, 1]))
        x1, y1 = min(w, max(int(b[i, 2]), x0 + 1)), min(h, max(int(b[i, 3]), y0 + 1))
        crop = images[i : i + 1, :, y0:y1, x0:x1]
        if crop.shape[-2:] == (out_size, out_size):
            out[i] = crop[0]
        else:
            out[i] = F.interpolate(
                crop, size=(out_size, out_size), mode="bilinear", antialias=True, align_corners=False
            )[0]
    return out


class ImageTextModel(ABC):
    """An image–text model FALCON can caption with.

    Attributes:
        name: Short name for reports.
        logit_scale: Softmax temperature for caption retrieval (CLIP: 100); see the module docstring.
    """

    name: str = "image-text"
    logit_scale: float = 100.0

    @abstractmethod
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Unit embeddings of whole images ``[N, 3, H, W]`` in ``[-1, 1]``; returns ``[N, d]``."""

    @abstractmethod
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit embeddings of texts; returns ``[M, d]``."""

    @abstractmethod
    def caption_bank(self) -> CaptionBank:
        """The bank captions are retrieved from."""

    def encode_crops(self, images: torch.Tensor, boxes: np.ndarray) -> torch.Tensor:
        """Unit embeddings of crops: ``images [N, 3, H, W]``, ``boxes [N, 4]`` -> ``[N, d]``.

        The default crops and resizes to the image size and calls :meth:`encode_images`.
        """
        return self.encode_images(crop_resize(images, boxes, images.shape[-1]))

    def caption(self, embeddings: torch.Tensor, k: int = 5) -> tuple[list[list[str]], np.ndarray]:
        """Retrieve ``k`` captions per embedding from :meth:`caption_bank`.

        Score = ``softmax(logit_scale * cos)`` over the bank (per chunk when the bank is chunked, with
        the chunks' top-k lists merged by score, as the official code does).

        Args:
            embeddings: ``[N, d]`` unit image embeddings.
            k: Captions per image.

        Returns:
            ``(captions [N][k], scores float64 [N, k])``, best first.
        """
        bank = self.caption_bank()
        emb = bank.embeddings.to(embeddings.dtype)
        m = len(bank)
        step = bank.chunk_size or m
        best_v = torch.full((embeddings.shape[0], 0), -1.0, dtype=torch.float64)
        best_i = torch.zeros((embeddings.shape[0], 0), dtype=torch.long)
        with torch.no_grad():
            for start in range(0, m, step):
                logits = self.logit_scale * embeddings @ emb[start : start + step].T
                p = logits.double().softmax(dim=-1)
                v, i = p.topk(min(k, p.shape[1]), dim=1)
                cat_v = torch.cat([best_v, v], 1)
                cat_i = torch.cat([best_i, i + start], 1)
                best_v, order = cat_v.topk(min(k, cat_v.shape[1]), dim=1)
                best_i = cat_i.gather(1, order)
        caps = [[bank.texts[j] for j in row] for row in best_i.tolist()]
        return caps, best_v.numpy()


# ---------------------------------------------------------------------------------------------
# (a) the truth captioner
# ---------------------------------------------------------------------------------------------


def _image_key(image: torch.Tensor) -> str:
    q = ((image.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return hashlib.sha256(q.numpy().tobytes()).hexdigest()[:24]


class TruthCaptioner(ImageTextModel):
    """Upper-bound captioner: names the world factors whose masks a crop covers.

    It must be told the factors of the images it will see (``register``; the probe set of FALCON). A
    crop's embedding is the unit indicator vector of its visible atoms (:func:`visible_atoms`); a
    text's embedding is the indicator of the atoms whose phrases it contains. :meth:`caption` decodes
    the atoms of an embedding into five templated captions (synonyms rotated) with score 1 each.

    Args:
        factors: Factor dict with arrays ``[N]`` of the images to register.
        images: ``[N, 3, H, W]`` in ``[-1, 1]`` (rendered from ``factors``; used as lookup keys).
        coverage: Minimum share of a factor's mask inside a crop for it to be named.
        masks: Optional precomputed bool ``[N, F, H, W]`` factor masks (else rendered on first use).
    """

    name = "truth"
    logit_scale = 100.0

    def __init__(
        self,
        factors: Mapping[str, np.ndarray],
        images: torch.Tensor,
        coverage: float = 0.5,
        masks: np.ndarray | None = None,
    ) -> None:
        self.coverage = float(coverage)
        self._factors: dict[str, np.ndarray] = {}
        self._masks: dict[int, np.ndarray] = {}
        self._size = int(images.shape[-1])
        self._keys: dict[str, int] = {}
        self.register(factors, images, masks)

    def register(
        self, factors: Mapping[str, np.ndarray], images: torch.Tensor, masks: np.ndarray | None = None
    ) -> TruthCaptioner:
        """Add images with known factors (masks are rendered lazily, on first use); returns ``self``."""
        from ..world import FACTOR_NAMES

        n = images.shape[0]
        if any(np.asarray(factors[k]).shape != (n,) for k in FACTOR_NAMES):
            raise Img2TabInputError(f"factors must hold arrays of shape ({n},) for the {n} images")
        offset = len(next(iter(self._factors.values()))) if self._factors else 0
        for k in FACTOR_NAMES:
            self._factors[k] = np.concatenate([self._factors.get(k, np.zeros(0)), np.asarray(factors[k])])
        if masks is not None:
            for i in range(n):
                self._masks[offset + i] = np.asarray(masks[i], dtype=bool)
        for i in range(n):
            self._keys.setdefault(_image_key(images[i]), offset + i)
        return self

    def _get_masks(self, idx: np.ndarray) -> np.ndarray:
        missing = sorted({int(i) for i in idx} - set(self._masks))
        if missing:
            sub = {k: v[missing] for k, v in self._factors.items()}
            for i, m in zip(missing, factor_masks(sub, self._size)):
                self._masks[i] = m
        return np.stack([self._masks[int(i)] for i in idx])

    def _lookup(self, images: torch.Tensor) -> np.ndarray:
        idx = []
        for i in range(images.shape[0]):
            j = self._keys.get(_image_key(images[i]))
            if j is None:
                raise Img2TabInputError(
                    f"images[{i}] is not one the TruthCaptioner knows; register its factors first"
                )
            idx.append(j)
        return np.asarray(idx, dtype=np.int64)

    def _embed_atoms(self, atom_lists: Sequence[Sequence[str]]) -> torch.Tensor:
        out = torch.zeros(len(atom_lists), len(WORLD_ATOMS))
        for i, keys in enumerate(atom_lists):
            for key in keys:
                out[i, _ATOM_INDEX[key]] = 1.0
        return F.normalize(out, dim=1)

    def encode_crops(self, images: torch.Tensor, boxes: np.ndarray) -> torch.Tensor:
        idx = self._lookup(images)
        scale = self._size / images.shape[-1]
        b = np.round(np.asarray(boxes, dtype=np.float64) * scale).astype(np.int64)
        sub = {k: v[idx] for k, v in self._factors.items()}
        return self._embed_atoms(visible_atoms(sub, self._get_masks(idx), b, self.coverage))

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        s = images.shape[-1]
        return self.encode_crops(images, np.tile([0, 0, s, s], (images.shape[0], 1)))

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        lists = []
        for t in texts:
            words = " " + " ".join(tokenize(t)) + " "
            lists.append(
                [
                    a.key
                    for a in WORLD_ATOMS
                    if any(" " + " ".join(tokenize(p)) + " " in words for p in a.phrases)
                ]
            )
        return self._embed_atoms(lists)

    def caption_bank(self) -> CaptionBank:
        texts = tuple(world_caption_bank_texts())
        return CaptionBank(texts, self.encode_texts(texts))

    def caption(self, embeddings: torch.Tensor, k: int = 5) -> tuple[list[list[str]], np.ndarray]:
        caps = []
        for row in embeddings:
            atoms = [WORLD_ATOMS[j] for j in torch.nonzero(row > 0).ravel().tolist()]
            row_caps = []
            for c in range(k):
                phrases = [a.phrases[c % len(a.phrases)] for a in atoms]
                row_caps.append(
                    _compose(phrases, _TEMPLATES[c % len(_TEMPLATES)]) if phrases else "a cartoon person"
                )
            caps.append(row_caps)
        return caps, np.ones((embeddings.shape[0], k))


# ---------------------------------------------------------------------------------------------
# (b) WorldCLIP
# ---------------------------------------------------------------------------------------------


def _vocabulary() -> tuple[str, ...]:
    words: set[str] = set()
    for a in WORLD_ATOMS:
        for p in a.phrases:
            words.update(tokenize(p))
    for t in (*_TEMPLATES, *_DISTRACTORS):
        words.update(tokenize(t))
    return tuple(sorted(words))


@dataclass(frozen=True)
class WorldCLIPConfig:
    """Architecture and training recipe of :class:`WorldCLIP`.

    Attributes:
        input_size: Side of the crops fed to the image tower.
        widths: Conv widths of the image tower (first stride 1, then stride 2).
        dim: Joint embedding size.
        vocab: Text-tower vocabulary (lemmatised words; unknown words are ignored).
        steps: Training steps; batch_size: crops per step; lr: AdamW learning rate.
        n_pool: Rendered training images (crops are drawn from them); image_size: their size.
        p_full: Share of whole-image crops; min_box: smallest crop side in pixels.
        p_omit: Probability that a visible factor is left out of the caption (>= 1 kept).
        p_distract: Probability of each of up to two generic distractor words.
        coverage: Mask share a crop must contain for the factor to be captioned.
        seed: Seed of the world sample, crops, captions and initialisation.
    """

    input_size: int = 40
    widths: tuple[int, ...] = (24, 48, 96, 128)
    dim: int = 64
    vocab: tuple[str, ...] = field(default_factory=_vocabulary)
    steps: int = 900
    batch_size: int = 128
    lr: float = 3e-3
    n_pool: int = 3000
    image_size: int = 64
    p_full: float = 0.25
    min_box: int = 16
    p_omit: float = 0.3
    p_distract: float = 0.5
    coverage: float = 0.5
    seed: int = 0


class _WorldCLIPNet(nn.Module):
    def __init__(self, cfg: WorldCLIPConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i, c in enumerate(cfg.widths):
            layers += [
                nn.Conv2d(c_in, c, 3, stride=1 if i == 0 else 2, padding=1),
                nn.BatchNorm2d(c),
                nn.ReLU(),
            ]
            c_in = c
        self.image_tower = nn.Sequential(
            *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, cfg.dim)
        )
        self.word_emb = nn.EmbeddingBag(len(cfg.vocab) + 1, cfg.dim, mode="mean", padding_idx=0)
        self.text_proj = nn.Sequential(nn.ReLU(), nn.Linear(cfg.dim, cfg.dim))
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def images(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_tower(x), dim=1)

    def texts(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_proj(self.word_emb(ids, offsets)), dim=1)


class WorldCLIP(ImageTextModel):
    """A small image–text model of the concept world (see :func:`train_worldclip`).

    Args:
        net: The trained towers.
        config: Its :class:`WorldCLIPConfig`.
    """

    name = "worldclip"

    def __init__(self, net: _WorldCLIPNet, config: WorldCLIPConfig) -> None:
        self.net = net.eval()
        self.config = config
        self._word_id = {w: i + 1 for i, w in enumerate(config.vocab)}
        self._bank: CaptionBank | None = None

    @property
    def logit_scale(self) -> float:  # type: ignore[override]
        """WorldCLIP's learned logit scale (its retrieval temperature)."""
        return float(self.net.log_scale.detach().exp().clamp(max=100.0))

    def _token_batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids: list[int] = []
        offsets = []
        for t in texts:
            offsets.append(len(ids))
            toks = [self._word_id[w] for w in tokenize(t) if w in self._word_id]
            ids.extend(toks or [0])
        return torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        s = self.config.input_size
        x = images.float()
        if x.shape[-1] != s or x.shape[-2] != s:
            x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        with torch.no_grad():
            return torch.cat([self.net.images(x[i : i + 512]) for i in range(0, x.shape[0], 512)])

    def encode_crops(self, images: torch.Tensor, boxes: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return self.encode_images(crop_resize(images.float(), boxes, self.config.input_size))

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        ids, offsets = self._token_batch(list(texts))
        with torch.no_grad():
            return self.net.texts(ids, offsets)

    def caption_bank(self) -> CaptionBank:
        if self._bank is None:
            texts = tuple(world_caption_bank_texts())
            self._bank = CaptionBank(texts, self.encode_texts(texts))
        return self._bank

    # -------------------------------------------------------------- persistence
    def save(self, directory: str | os.PathLike, extra: Mapping[str, object] | None = None) -> Path:
        """Write ``model.safetensors`` and ``config.json`` (atomically) into ``directory``."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        cfg = asdict(self.config)
        cfg["vocab"] = list(cfg["vocab"])
        cfg["widths"] = list(cfg["widths"])
        payload = {"format": "img2tab-worldclip", "version": 1, "config": cfg, **(dict(extra or {}))}
        state = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}
        for name, write in (
            ("model.safetensors", lambda p: save_file(state, p)),
            ("config.json", lambda p: Path(p).write_text(json.dumps(payload, indent=1) + "\n")),
        ):
            fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
            os.close(fd)
            try:
                write(tmp)
                os.chmod(tmp, 0o644)
                os.replace(tmp, d / name)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        return d


def _default_worldclip_dir() -> Path:
    """``$IMG2TAB_HOME/worldclip``, the repository's ``pretrained_models/worldclip`` or
    ``./pretrained_models/worldclip``, whichever has the weights (else the repository's)."""
    candidates = []
    home = os.environ.get("IMG2TAB_HOME")
    if home:
        candidates.append(Path(home) / "worldclip")
    candidates.append(Path(__file__).resolve().parents[2] / "pretrained_models" / "worldclip")
    candidates.append(Path("pretrained_models") / "worldclip")
    for c in candidates:
        if (c / "model.safetensors").is_file():
            return c
    return candidates[-2]


def load_worldclip(directory: str | os.PathLike | None = None) -> WorldCLIP:
    """Load WorldCLIP from ``directory`` (default: the weights shipped in ``pretrained_models/worldclip``).

    Raises:
        CheckpointError: Missing files or a config that does not match the weights.
    """
    from safetensors.torch import load_file

    d = Path(directory) if directory is not None else _default_worldclip_dir()
    cfg_path, w_path = d / "config.json", d / "model.safetensors"
    if not cfg_path.is_file() or not w_path.is_file():
        raise CheckpointError(f"{d} has no WorldCLIP checkpoint (config.json + model.safetensors)")
    payload = json.loads(cfg_path.read_text())
    if payload.get("format") != "img2tab-worldclip":
        raise CheckpointError(f"{cfg_path} is not a WorldCLIP config")
    raw = dict(payload["config"])
    raw["vocab"] = tuple(raw["vocab"])
    raw["widths"] = tuple(raw["widths"])
    cfg = WorldCLIPConfig(**raw)
    net = _WorldCLIPNet(cfg)
    try:
        net.load_state_dict(load_file(str(w_path)))
    except RuntimeError as err:
        raise CheckpointError(f"{w_path} does not match its config: {str(err).splitlines()[0]}") from None
    return WorldCLIP(net, cfg)


def _random_boxes(rng: np.random.Generator, n: int, size: int, min_box: int, p_full: float) -> np.ndarray:
    boxes = np.tile(np.array([0, 0, size, size]), (n, 1))
    part = rng.random(n) >= p_full
    k = int(part.sum())
    w = rng.integers(min_box, size + 1, k)
    h = np.clip(np.round(w * rng.uniform(0.75, 1.33, k)).astype(np.int64), min_box, size)
    x0 = rng.integers(0, size - w + 1)
    y0 = rng.integers(0, size - h + 1)
    boxes[part] = np.stack([x0, y0, x0 + w, y0 + h], 1)
    return boxes


def _training_caption(rng: np.random.Generator, keys: Sequence[str], cfg: WorldCLIPConfig) -> str:
    atoms = [WORLD_ATOMS[_ATOM_INDEX[k]] for k in keys]
    if atoms:
        keep = rng.random(len(atoms)) >= cfg.p_omit
        if not keep.any():
            keep[rng.integers(len(atoms))] = True
        atoms = [a for a, kp in zip(atoms, keep) if kp]
        rng.shuffle(atoms)  # type: ignore[arg-type]
    phrases = [a.phrases[rng.integers(len(a.phrases))] for a in atoms] or ["nothing in particular"]
    for _ in range(2):
        if rng.random() < cfg.p_distract:
            phrases.insert(int(rng.integers(len(phrases) + 1)), str(rng.choice(_DISTRACTORS)))
    return _compose(phrases, _TEMPLATES[rng.integers(len(_TEMPLATES))])


class _CropData:
    """Rendered images, their factors and masks (at half resolution) for crop sampling."""

    def __init__(self, n: int, size: int, seed: int) -> None:
        from ..world import render, sample_factors

        self.size = size
        self.factors = sample_factors(n, seed)
        self.images = torch.from_numpy(render(self.factors, size)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        masks = np.concatenate(
            [
                factor_masks({k: v[i : i + 500] for k, v in self.factors.items()}, size)
                for i in range(0, n, 500)
            ]
        )
        h = size // 2
        self.masks = masks.reshape(n, masks.shape[1], h, 2, h, 2).any(axis=(3, 5))

    def atoms(self, idx: np.ndarray, boxes: np.ndarray, coverage: float) -> list[list[str]]:
        sub = {k: v[idx] for k, v in self.factors.items()}
        return visible_atoms(sub, self.masks[idx], boxes // 2, coverage)


def train_worldclip(
    config: WorldCLIPConfig = WorldCLIPConfig(),
    checkpoint_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> WorldCLIP:
    """Train WorldCLIP on random crops of rendered world images (symmetric InfoNCE).

    Each step draws ``batch_size`` (image, box) pairs from a pool of ``n_pool`` rendered images,
    captions each crop from the factors whose masks it covers (synonyms, omissions, distractors) and
    minimises the CLIP loss with a learned temperature. Uses only a local ``torch.Generator`` /
    numpy generator seeded from ``config.seed``.

    Args:
        config: Recipe.
        checkpoint_dir: If given, the model is saved there every 250 steps and at the end.
        progress: Show a tqdm bar.

    Returns:
        The trained :class:`WorldCLIP` (eval mode).
    """
    from tqdm.auto import tqdm

    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    data = _CropData(config.n_pool, config.image_size, config.seed)
    net = _WorldCLIPNet(config)
    with torch.no_grad():
        for p in net.parameters():  # re-initialise from the local generator (no global RNG use)
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=gen) * math.sqrt(2.0 / p[0].numel()))
    model = WorldCLIP(net, config)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.lr, total_steps=config.steps, pct_start=0.1
    )
    bar = tqdm(range(config.steps), disable=not progress, desc="WorldCLIP")
    for step in bar:
        net.train()
        idx = rng.integers(0, config.n_pool, config.batch_size)
        boxes = _random_boxes(rng, config.batch_size, config.image_size, config.min_box, config.p_full)
        texts = [_training_caption(rng, keys, config) for keys in data.atoms(idx, boxes, config.coverage)]
        x = crop_resize(data.images[torch.from_numpy(idx)], boxes, config.input_size)
        ids, offsets = model._token_batch(texts)
        zi = net.images(x)
        zt = net.texts(ids, offsets)
        logits = net.log_scale.exp().clamp(max=100.0) * zi @ zt.T
        # identical captions are not negatives of each other
        same = torch.tensor([[a == b for b in texts] for a in texts])
        logits = logits.masked_fill(same & ~torch.eye(len(texts), dtype=torch.bool), -1e4)
        target = torch.arange(len(texts))
        loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", scale=f"{net.log_scale.exp().item():.1f}")
            logger.info("step %d loss %.4f scale %.2f", step, loss.item(), net.log_scale.exp().item())
        if checkpoint_dir is not None and (step + 1) % 250 == 0:
            model.net.eval()
            model.save(checkpoint_dir, {"steps_done": step + 1})
    net.eval()
    model._bank = None
    if checkpoint_dir is not None:
        model.save(checkpoint_dir, {"steps_done": config.steps})
    return model


def evaluate_worldclip(model: ImageTextModel, n: int = 400, seed: int = 12345, size: int = 64) -> dict:
    """Held-out crop retrieval accuracy of an image–text model on fresh world images.

    Two measures, on ``n`` new images (a seed not used in training) with random crops:

    * ``factor_accuracy``: per factor, zero-shot classification of the state of a factor the crop
      shows (its mask lies >= 50 % inside the crop) by the nearest canonical one-phrase caption among
      that factor's states; mean over the seven factors with two or more states (``glasses`` has a
      single describable state and is left out); ``per_factor`` gives each.
    * ``caption_top1``: image-to-text retrieval among the ``n`` crops' full captions (all visible
      atoms, canonical phrases); a hit when the retrieved caption has the same atom set.

    Returns:
        Dict with ``factor_accuracy`` (mean), ``per_factor`` and ``caption_top1``, ``n``, ``seed``.
    """
    rng = np.random.default_rng(seed)
    data = _CropData(n, size, seed)
    boxes = _random_boxes(rng, n, size, 24, 0.25)
    keys = data.atoms(np.arange(n), boxes, 0.5)
    emb = model.encode_crops(data.images, boxes)
    per: dict[str, float] = {}
    for factor in dict.fromkeys(a.factor for a in WORLD_ATOMS):
        states = [a for a in WORLD_ATOMS if a.factor == factor]
        if len(states) < 2:
            continue
        t = model.encode_texts([_compose([a.phrases[0]], _TEMPLATES[-1]) for a in states])
        rows, truth = [], []
        for i, ks in enumerate(keys):
            hit = [j for j, a in enumerate(states) if a.key in ks]
            if hit:
                rows.append(i)
                truth.append(hit[0])
        if rows:
            pred = (emb[rows] @ t.T).argmax(1).numpy()
            per[factor] = float(np.mean(pred == np.asarray(truth)))
    captions = [
        _compose([WORLD_ATOMS[_ATOM_INDEX[k]].phrases[0] for k in ks] or ["nothing"], "{}") for ks in keys
    ]
    t = model.encode_texts(captions)
    best = (emb @ t.T).argmax(1).numpy()
    top1 = float(np.mean([keys[b] == keys[i] for i, b in enumerate(best)]))
    return {
        "factor_accuracy": float(np.mean(list(per.values()))),
        "per_factor": per,
        "caption_top1": top1,
        "n": n,
        "seed": seed,
    }


# ---------------------------------------------------------------------------------------------
# (c) OpenCLIP from a local checkpoint
# ---------------------------------------------------------------------------------------------


class OpenCLIPModel(ImageTextModel):
    """An OpenCLIP model from a checkpoint already on disk (optional extra ``open-clip-torch``).

    Nothing is downloaded: ``pretrained`` must be a local file path, or ``None`` for random weights
    (tests). Images in ``[-1, 1]`` are mapped to ``[0, 1]``, resized to the model's input size and
    normalised with the model's mean and std.

    Args:
        model_name: An open_clip architecture name (e.g. ``"ViT-B-32"``).
        pretrained: Path of a local checkpoint file, or ``None``.
        texts: Caption bank texts (default: the world bank).
        device: Torch device.
    """

    name = "openclip"

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: str | os.PathLike | None = None,
        texts: Sequence[str] | None = None,
        device: str = "cpu",
    ) -> None:
        try:
            import open_clip
        except ImportError as err:  # pragma: no cover - depends on the optional extra
            raise ImportError("OpenCLIPModel needs the optional extra: pip install open-clip-torch") from err
        if pretrained is not None and not Path(pretrained).is_file():
            raise CheckpointError(
                f"OpenCLIP checkpoint {pretrained} is not a local file (nothing is downloaded)"
            )
        model = open_clip.create_model(model_name, pretrained=None, device=device)
        if pretrained is not None:
            open_clip.load_checkpoint(model, str(pretrained))
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.device = device
        size = model.visual.image_size
        self.input_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        mean = getattr(model.visual, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)
        std = getattr(model.visual, "image_std", None) or (0.26862954, 0.26130258, 0.27577711)
        self._mean = torch.tensor(mean).view(1, 3, 1, 1)
        self._std = torch.tensor(std).view(1, 3, 1, 1)
        self._texts = tuple(texts) if texts is not None else tuple(world_caption_bank_texts())
        self._bank: CaptionBank | None = None

    @property
    def logit_scale(self) -> float:  # type: ignore[override]
        """The checkpoint's own logit scale (100 for trained CLIP models)."""
        return float(self.model.logit_scale.detach().exp().clamp(max=100.0))

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() + 1.0) / 2.0
        x = F.interpolate(x, size=(self.input_size,) * 2, mode="bicubic", align_corners=False).clamp(0, 1)
        x = (x - self._mean) / self._std
        with torch.no_grad():
            return F.normalize(self.model.encode_image(x.to(self.device)).float().cpu(), dim=1)

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        with torch.no_grad():
            z = self.model.encode_text(self.tokenizer(list(texts)).to(self.device))
        return F.normalize(z.float().cpu(), dim=1)

    def caption_bank(self) -> CaptionBank:
        if self._bank is None:
            self._bank = CaptionBank(self._texts, self.encode_texts(self._texts))
        return self._bank


# ---------------------------------------------------------------------------------------------
# threshold recalibration
# ---------------------------------------------------------------------------------------------


def mean_pairwise_cosine(embeddings: torch.Tensor) -> float:
    """The official coherence statistic: mean of ``E @ E.T`` over all pairs, diagonal included."""
    return float((embeddings @ embeddings.T).mean())


def calibrate_coherence_threshold(
    embeddings: torch.Tensor, group_size: int, quantile: float = 0.9, n_draws: int = 200, seed: int = 0
) -> float:
    """Per-model replacement of the official ``0.8`` interpretability threshold.

    Args:
        embeddings: ``[N, d]`` unit embeddings of crops of the probe set.
        group_size: Size of the random groups (the size of the group being tested).
        quantile: The threshold is this quantile of the statistic over random groups.
        n_draws: Random groups drawn.
        seed: Seed of the draws.

    Returns:
        The threshold on :func:`mean_pairwise_cosine`.
    """
    rng = np.random.default_rng(seed)
    n = embeddings.shape[0]
    k = max(2, min(int(group_size), n))
    stats = [mean_pairwise_cosine(embeddings[rng.choice(n, k, replace=False)]) for _ in range(n_draws)]
    return float(np.quantile(stats, quantile))
