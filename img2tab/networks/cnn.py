"""Small image CNNs: the classifiers and factor readers the evaluation trains, beside the networks
that peer explainers explain.

:class:`SmallCNN` is a four-block stride-2 convolutional net with an MLP head for 32-128 px
inputs; :func:`fit_cnn` trains any such module with AdamW + one-cycle schedule from a local
``torch.Generator`` (no global RNG reseeding of the data order).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = ["SmallCNN", "fit_cnn"]


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
# (the ConceptCNN that peer explainers explain goes below)
