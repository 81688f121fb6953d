"""Small image CNNs: the classifiers and factor readers the evaluation trains, and the ConceptCNN
that the peer explainers explain.

:class:`SmallCNN` is a four-block stride-2 convolutional net with an MLP head for 32-128 px
inputs; :func:`fit_cnn` trains any such module with AdamW + one-cycle schedule from a local
``torch.Generator`` (no global RNG reseeding of the data order).

ConceptCNN: the image classifier that the CNN-based concept methods explain.

A small ReLU ResNet for 64 px concept-world images: a stride-2 stem and one residual
basic block per further width, each halving the resolution, so the default
``widths=(32, 64, 128)`` turns ``[N, 3, 64, 64]`` into an ``[N, 128, 8, 8]`` map. That map is the
output of the submodule :attr:`ConceptCNN.layer4` (the bottleneck that AttFind, ACE + TCAV and the
correspondence classifiers read; hook it with ``model.layer4.register_forward_hook``). It ends in a
ReLU, so it is non-negative; global average pooling gives a non-negative ``C``-vector and a linear
head gives the logits.

Training (:func:`train_concept_cnn`) is AdamW with a one-cycle schedule and cross-entropy, seeded
by ``config.seed`` through local :class:`torch.Generator` objects (weights and batch order; the
global RNG is never touched). :func:`load_or_train_concept_cnn` caches the trained weights on disk
(safetensors + JSON config), keyed by a sha256 of the config and of the training data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..errors import CheckpointError, Img2TabInputError

__all__ = [
    "ConceptCNN",
    "ConceptCNNConfig",
    "concept_cnn_cache_key",
    "load_concept_cnn",
    "load_or_train_concept_cnn",
    "SmallCNN",
    "fit_cnn",
    "train_concept_cnn",
]

logger = logging.getLogger(__name__)


class SmallCNN(nn.Module):
    """Four stride-2 conv blocks (conv 3x3, BatchNorm, SiLU) + MLP head.

    Args:
        size: input side in pixels (a multiple of 16).
        n_out: number of outputs (logits / regression targets).
        width: channels of the first block (doubling to ``4 * width``).

    ``forward``: ``[B, 3, size, size]`` -> ``[B, n_out]``.
    """

    def __init__(self, size: int, n_out: int, width: int = 32) -> None:
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        for a, b in zip(chans, chans[1:]):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.BatchNorm2d(b), nn.SiLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(chans[-1] * (size // 16) ** 2, 256),
                                  nn.SiLU(), nn.Linear(256, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def fit_cnn(
    model: nn.Module,
    x: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    epochs: int,
    batch_size: int,
    seed: int,
    progress: bool = False,
    desc: str = "train CNN",
) -> nn.Module:
    """Train ``model`` on images ``x`` ``[N, 3, H, W]`` for ``epochs`` (AdamW, one-cycle LR 2e-3).

    Args:
        loss_fn: ``(model(x[idx]), idx) -> scalar loss``; ``idx`` ``[B]`` indexes the targets.
        seed: seed of the local generator that shuffles the data.

    Returns:
        ``model`` in eval mode.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    model.train()
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            loss = loss_fn(model(x[idx]), idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
    bar.close()
    return model.eval()


# ---------------------------------------------------------------------------- explained CNNs
@dataclass(frozen=True)
class ConceptCNNConfig:
    """Architecture and training recipe of a :class:`ConceptCNN`.

    Attributes:
        size: Input image size (pixels); must be divisible by ``2 ** len(widths)``.
        widths: Channels of the stem and of each residual stage; the bottleneck has
            ``C = widths[-1]`` channels at ``size / 2 ** len(widths)`` pixels (8 for the default).
        n_classes: Number of classes (2 for the binary world tasks).
        epochs: Training epochs.
        batch_size: Images per optimisation step.
        lr: Peak learning rate of the one-cycle schedule (AdamW).
        weight_decay: AdamW weight decay.
        seed: Seed of the weight initialisation and of the batch order.
    """

    size: int = 64
    widths: tuple[int, ...] = (32, 64, 128)
    n_classes: int = 2
    epochs: int = 12
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.widths) < 1 or any(int(w) < 1 for w in self.widths):
            raise Img2TabInputError(f"widths must be a non-empty tuple of positive ints, got {self.widths}")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        stride = 2 ** len(self.widths)
        if self.size < stride or self.size % stride:
            raise Img2TabInputError(f"size {self.size} must be a multiple of 2**len(widths) = {stride}")
        if self.n_classes < 2:
            raise Img2TabInputError(f"n_classes must be >= 2, got {self.n_classes}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise Img2TabInputError(
                f"epochs, batch_size and lr must be positive, got {self.epochs}, {self.batch_size}, {self.lr}"
            )

    @property
    def map_size(self) -> int:
        """Side of the bottleneck map (8 for the default config)."""
        return self.size // 2 ** len(self.widths)

    def to_dict(self) -> dict:
        """JSON-able dict (``widths`` as a list)."""
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ConceptCNNConfig:
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        known = set(cls.__dataclass_fields__)
        extra = set(d) - known
        if extra:
            raise CheckpointError(f"unknown ConceptCNNConfig keys {sorted(extra)}")
        d = dict(d)
        if "widths" in d:
            d["widths"] = tuple(d["widths"])
        return cls(**d)


class _BasicBlock(nn.Module):
    """Residual block: conv3x3(stride) - BN - ReLU - conv3x3 - BN, plus a (1x1 conv) shortcut; ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + self.shortcut(x))


class ConceptCNN(nn.Module):
    """ReLU ResNet-style classifier with an 8x8xC bottleneck (``layer4``) for 64 px images.

    Layers: ``stem`` (conv3x3 stride 2, BN, ReLU) -> ``body`` (residual stages for
    ``widths[1:-1]``, stride 2 each) -> ``layer4`` (the last residual stage, stride 2, output
    non-negative) -> global average pool -> ``head`` (linear). With one width only, ``layer4`` is
    the stem itself.

    Args:
        config: Architecture (the training fields are ignored here).
        generator: Optional :class:`torch.Generator` for the weight initialisation (default: a
            generator seeded with ``config.seed``).
    """

    def __init__(self, config: ConceptCNNConfig | None = None, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config or ConceptCNNConfig()
        w = self.config.widths
        stem = nn.Sequential(nn.Conv2d(3, w[0], 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w[0]),
                             nn.ReLU())
        blocks = [_BasicBlock(a, b, 2) for a, b in zip(w[:-1], w[1:])]
        if blocks:
            self.stem = stem
            self.body = nn.Sequential(*blocks[:-1])
            self.layer4: nn.Module = blocks[-1]
        else:
            self.stem = nn.Sequential()
            self.body = nn.Sequential()
            self.layer4 = stem
        self.head = nn.Linear(w[-1], self.config.n_classes)
        self._init_weights(generator or torch.Generator().manual_seed(self.config.seed))

    @torch.no_grad()
    def _init_weights(self, gen: torch.Generator) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.in_features)
                m.weight.copy_((torch.rand(m.weight.shape, generator=gen) * 2 - 1) * bound)
                m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.bias.zero_()

    @property
    def n_channels(self) -> int:
        """Channels ``C`` of the bottleneck."""
        return self.config.widths[-1]

    def _check(self, x: torch.Tensor) -> None:
        s = self.config.size
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != s or x.shape[3] != s:
            raise Img2TabInputError(f"ConceptCNN expects [N, 3, {s}, {s}] images, got {tuple(x.shape)}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Bottleneck map (``layer4`` output), non-negative ``[N, C, 8, 8]`` for ``x`` ``[N, 3, 64, 64]``."""
        self._check(x)
        return self.layer4(self.body(self.stem(x)))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Globally average-pooled bottleneck, non-negative ``[N, C]``."""
        return self.features(x).mean(dim=(2, 3))

    def classify_features(self, feats: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, n_classes]`` from a bottleneck map ``[N, C, h, w]`` (pool + head)."""
        return self.head(feats.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, n_classes]`` of images ``[N, 3, H, W]`` in ``[-1, 1]``."""
        return self.classify_features(self.features(x))

    def logit(self, x: torch.Tensor) -> torch.Tensor:
        """Binary margin ``logits[:, 1] - logits[:, 0]``, ``[N]``."""
        out = self(x)
        return out[:, 1] - out[:, 0]

    @torch.no_grad()
    def predict_logit(self, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """:meth:`logit` in eval mode, batched, as float64 numpy ``[N]``."""
        was = self.training
        self.eval()
        out = torch.cat([self.logit(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]) \
            if len(x) else torch.zeros(0)
        self.train(was)
        return out.double().numpy()


def _check_training_data(images: torch.Tensor, y: np.ndarray, config: ConceptCNNConfig) -> tuple[
        torch.Tensor, torch.Tensor]:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise Img2TabInputError(f"images must be a [N, 3, H, W] tensor, got {getattr(images, 'shape', None)}")
    if images.shape[-1] != config.size or images.shape[-2] != config.size:
        raise Img2TabInputError(f"images are {tuple(images.shape[-2:])} px but config.size is {config.size}")
    yy = np.asarray(y)
    if yy.shape != (images.shape[0],):
        raise Img2TabInputError(f"y must have shape ({images.shape[0]},), got {yy.shape}")
    if yy.size and (yy.min() < 0 or yy.max() >= config.n_classes or not np.all(yy == np.round(yy))):
        raise Img2TabInputError(
            f"y must hold class indices in [0, {config.n_classes}), got {np.unique(yy)[:5]}")
    return images.float(), torch.as_tensor(yy.astype(np.int64))


def train_concept_cnn(
    images: torch.Tensor,
    y: np.ndarray,
    config: ConceptCNNConfig | None = None,
    progress: bool = True,
) -> ConceptCNN:
    """Train a :class:`ConceptCNN` on labelled images.

    Args:
        images: float ``[N, 3, size, size]`` in ``[-1, 1]``.
        y: int ``[N]`` class labels in ``[0, n_classes)``.
        config: Architecture and recipe (default :class:`ConceptCNNConfig`).
        progress: Show a tqdm progress bar.

    Returns:
        The trained model in eval mode.
    """
    cfg = config or ConceptCNNConfig()
    x, yt = _check_training_data(images, y, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = ConceptCNN(cfg, generator=gen)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * max(1, math.ceil(len(x) / cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    model.train()
    with tqdm(total=steps, desc="ConceptCNN", disable=not progress, leave=False) as bar:
        for _ in range(cfg.epochs):
            perm = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), cfg.batch_size):
                idx = perm[i:i + cfg.batch_size]
                if len(idx) < 2:  # BatchNorm needs two samples
                    continue
                loss = F.cross_entropy(model(x[idx]), yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}", refresh=False)
    return model.eval()


def concept_cnn_cache_key(images: torch.Tensor, y: np.ndarray, config: ConceptCNNConfig) -> str:
    """sha256 hex digest of the config and of the training images and labels."""
    h = hashlib.sha256()
    h.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    h.update(str(tuple(images.shape)).encode())
    h.update(np.ascontiguousarray(images.detach().float().cpu().numpy()).tobytes())
    h.update(np.ascontiguousarray(np.asarray(y).astype(np.int64)).tobytes())
    return h.hexdigest()


def _default_cache_dir() -> Path:
    root = os.environ.get("IMG2TAB_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "img2tab"
    return base / "concept_cnn"


def _save(model: ConceptCNN, folder: Path) -> None:
    from safetensors.torch import save_file

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(model.config.to_dict(), indent=1))
        with contextlib.suppress(OSError):  # another process won the race: keep its copy
            os.replace(tmp, folder)
    finally:
        if tmp.exists():
            for p in tmp.iterdir():
                p.unlink()
            tmp.rmdir()


def load_concept_cnn(folder: str | os.PathLike) -> ConceptCNN:
    """Load a :class:`ConceptCNN` saved by :func:`load_or_train_concept_cnn` (safetensors + JSON)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_path, w_path = folder / "config.json", folder / "model.safetensors"
    if not cfg_path.is_file() or not w_path.is_file():
        raise CheckpointError(f"{folder} is not a ConceptCNN folder (needs config.json, model.safetensors)")
    cfg = ConceptCNNConfig.from_dict(json.loads(cfg_path.read_text()))
    model = ConceptCNN(cfg)
    try:
        model.load_state_dict(load_file(str(w_path)))
    except RuntimeError as e:
        raise CheckpointError(f"{w_path} does not match its config: {str(e).splitlines()[0]}") from None
    return model.eval()


def load_or_train_concept_cnn(
    images: torch.Tensor,
    y: np.ndarray,
    config: ConceptCNNConfig | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> ConceptCNN:
    """:func:`train_concept_cnn`, cached on disk.

    The model is stored under ``cache_dir`` (default ``$IMG2TAB_CACHE/concept_cnn`` or
    ``~/.cache/img2tab/concept_cnn``) in a folder named by :func:`concept_cnn_cache_key`, as
    ``model.safetensors`` + ``config.json``, written atomically.

    Args:
        images: float ``[N, 3, size, size]`` in ``[-1, 1]``.
        y: int ``[N]`` class labels.
        config: Architecture and recipe.
        cache_dir: Cache folder.
        progress: Progress bar while training.

    Returns:
        The trained model in eval mode.
    """
    cfg = config or ConceptCNNConfig()
    _check_training_data(images, y, cfg)
    folder = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    folder = folder / concept_cnn_cache_key(images, y, cfg)
    if (folder / "model.safetensors").is_file():
        try:
            logger.info("loading cached ConceptCNN from %s", folder)
            return load_concept_cnn(folder)
        except CheckpointError as e:
            logger.warning("ignoring broken ConceptCNN cache %s (%s)", folder, e)
    model = train_concept_cnn(images, y, cfg, progress=progress)
    _save(model, folder)
    return model
