"""StyleGAN2 training (rosinality ``train.py`` recipe) with rosinality-layout checkpoints.

Per iteration: a discriminator step on the non-saturating logistic loss, lazy R1 every
``d_reg_every`` steps (weighted ``r1 / 2 * d_reg_every``), a generator step on the non-saturating
loss with style mixing (probability ``mixing``), lazy path-length regularisation every
``g_reg_every`` steps (weighted ``path_regularize * g_reg_every``), and an EMA update of
``g_ema``. Adam uses rosinality's lazy-regularisation scaling: ``lr * c`` and betas
``(0 ** c, 0.99 ** c)`` with ``c = every / (every + 1)``.

Checkpoints ``checkpoints/<step:06d>.pt`` hold ``{'g', 'd', 'g_ema', 'g_optim', 'd_optim', 'args',
'step', 'latent_avg'}`` (``args`` a plain dict) plus resume extras (``mean_path_length``,
``rng``, ``data``); they load with :func:`img2tab.checkpoints.load_generator` (``g_ema``) and
:func:`img2tab.checkpoints.load_discriminator`. The run's final ``generator.pt`` has the same
layout.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..checkpoints import load_checkpoint
from ..networks.layout import generator_channels
from ..networks.stylegan2 import Discriminator, Generator, GeneratorConfig
from ._base import DataArg, Trainer
from ._common import (
    accumulate,
    atomic_save,
    config_to_dict,
    get_rng_state,
    parse_channels,
    requires_grad,
    scalar,
    set_rng_state,
)
from .losses import d_logistic_loss, d_r1_loss, g_nonsaturating_loss, g_path_regularize

__all__ = ["StyleGAN2TrainConfig", "StyleGAN2Trainer", "train_stylegan2"]

logger = logging.getLogger("img2tab.training")


@dataclass(frozen=True)
class StyleGAN2TrainConfig:
    """Configuration of :class:`StyleGAN2Trainer` (defaults: rosinality's, at a CPU-sized width).

    Attributes:
        size: image resolution.
        style_dim: width of z / w.
        n_mlp: mapping layers.
        channel_multiplier: rosinality channel multiplier (used where ``channels`` is None).
        lr_mlp: mapping learning-rate multiplier.
        channels: generator widths ``((res, width), ...)`` or a spec string: ``"small"``
            (:func:`~img2tab.training._common.default_channels`, 4:256 ... 64:32) or
            ``"standard"`` (rosinality's table for ``channel_multiplier``).
        d_channels: discriminator widths (same forms); None = same as the generator.
        steps: total iterations.
        batch: minibatch size.
        lr: Adam learning rate (before the lazy-regularisation scaling).
        r1: R1 weight (gamma); 0 disables.
        d_reg_every: R1 interval.
        path_regularize: path-length weight; 0 disables.
        path_batch_shrink: the path-length batch is ``batch // path_batch_shrink``.
        g_reg_every: path-length interval.
        mixing: style-mixing probability.
        ema_kimg: g_ema half-life in thousands of images (rosinality: 10 at batch 32).
        latent_avg_samples: samples averaged for the saved ``latent_avg``.
        mirror: random horizontal flips of the training images.
        data: data spec (for records and resume without a data argument).
        seed: seed of initialisation, latents and shuffling.
        device: ``"auto"`` (cuda if available), ``"cpu"``, ``"cuda"``, ...
        sample_every / save_every / log_every: intervals in steps (0 = never).
        n_sample: images in a sample grid.
        keep_checkpoints: checkpoints kept in the run directory (0 = all).
        progress: show a tqdm progress bar.
    """

    size: int = 64
    style_dim: int = 256
    n_mlp: int = 8
    channel_multiplier: int = 2
    lr_mlp: float = 0.01
    channels: tuple[tuple[int, int], ...] | str = "small"
    d_channels: tuple[tuple[int, int], ...] | str | None = None
    steps: int = 10_000
    batch: int = 16
    lr: float = 0.002
    r1: float = 10.0
    d_reg_every: int = 16
    path_regularize: float = 2.0
    path_batch_shrink: int = 2
    g_reg_every: int = 4
    mixing: float = 0.9
    ema_kimg: float = 10.0
    latent_avg_samples: int = 4096
    mirror: bool = False
    data: str = ""
    seed: int = 0
    device: str = "auto"
    sample_every: int = 500
    save_every: int = 1000
    log_every: int = 50
    n_sample: int = 16
    keep_checkpoints: int = 3
    progress: bool = True

    def generator_config(self) -> GeneratorConfig:
        """The generator architecture."""
        return GeneratorConfig(self.size, self.style_dim, self.n_mlp, self.channel_multiplier,
                               self.lr_mlp, parse_channels(self.channels, self.size))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields (lists instead of tuples)."""
        return config_to_dict(self)


def _d_channels(cfg: StyleGAN2TrainConfig, G: Generator) -> dict[int, int]:
    if cfg.d_channels is None:
        return {int(r): int(c) for r, c in G.channels.items()}
    parsed = parse_channels(cfg.d_channels, cfg.size)
    if parsed is None:
        return {r: c for r, c in generator_channels(cfg.channel_multiplier).items() if r <= cfg.size}
    return dict(parsed)


class StyleGAN2Trainer(Trainer):
    """Adversarial StyleGAN2 training; see the module docstring for the recipe.

    Attributes:
        generator, g_ema, discriminator: the networks (``g_ema`` is the EMA generator).
        g_optim, d_optim: Adam optimisers.
        step: completed iterations.
    """

    config_cls = StyleGAN2TrainConfig
    ckpt_pattern = r"(\d{6,})\.pt"

    def _build(self) -> None:
        cfg: StyleGAN2TrainConfig = self.config
        dev = self.device
        self.generator = Generator(cfg.generator_config()).to(dev).train()
        self.discriminator = Discriminator(cfg.size, channel_multiplier=cfg.channel_multiplier,
                                           channels=_d_channels(cfg, self.generator)).to(dev)
        self.discriminator.train()
        self.g_ema = copy.deepcopy(self.generator).eval()
        requires_grad(self.g_ema, False)
        g_ratio = cfg.g_reg_every / (cfg.g_reg_every + 1) if cfg.path_regularize > 0 else 1.0
        d_ratio = cfg.d_reg_every / (cfg.d_reg_every + 1) if cfg.r1 > 0 else 1.0
        self.g_optim = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr * g_ratio,
                                        betas=(0.0**g_ratio, 0.99**g_ratio), foreach=True)
        self.d_optim = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr * d_ratio,
                                        betas=(0.0**d_ratio, 0.99**d_ratio), foreach=True)
        self.mean_path_length = torch.zeros((), device=dev)
        self.ema_decay = 0.5 ** (cfg.batch / max(cfg.ema_kimg * 1000.0, 1e-8))
        self.sample_z = torch.randn(cfg.n_sample, cfg.style_dim,
                                    generator=torch.Generator().manual_seed(cfg.seed + 2)).to(dev)

    # ------------------------------------------------------------------ one iteration
    def _mixing_noise(self, batch: int) -> list[torch.Tensor]:
        cfg = self.config
        if cfg.mixing > 0 and float(torch.rand((), generator=self.rng)) < cfg.mixing:
            return list(self._randn(2, batch, cfg.style_dim).unbind(0))
        return [self._randn(batch, cfg.style_dim)]

    def _step(self, i: int) -> dict[str, float]:
        cfg: StyleGAN2TrainConfig = self.config
        G, D = self.generator, self.discriminator
        losses: dict[str, float] = {}
        real = self._batch()

        # discriminator
        requires_grad(G, False)
        requires_grad(D, True)
        with torch.no_grad():
            fake, _ = G(self._mixing_noise(cfg.batch))
        d_loss = d_logistic_loss(D(real), D(fake))
        self.d_optim.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_optim.step()
        losses["d"] = scalar(d_loss)

        if cfg.r1 > 0 and i % cfg.d_reg_every == 0:
            real_req = real.detach().requires_grad_(True)
            r1_loss = d_r1_loss(D(real_req), real_req)
            self.d_optim.zero_grad(set_to_none=True)
            (cfg.r1 / 2 * r1_loss * cfg.d_reg_every).backward()
            self.d_optim.step()
            losses["r1"] = scalar(r1_loss)

        # generator
        requires_grad(G, True)
        requires_grad(D, False)
        fake, _ = G(self._mixing_noise(cfg.batch))
        g_loss = g_nonsaturating_loss(D(fake))
        self.g_optim.zero_grad(set_to_none=True)
        g_loss.backward()
        self.g_optim.step()
        losses["g"] = scalar(g_loss)

        if cfg.path_regularize > 0 and i % cfg.g_reg_every == 0:
            pb = max(1, cfg.batch // max(cfg.path_batch_shrink, 1))
            fake, latents = G(self._mixing_noise(pb), return_latents=True)
            path_loss, self.mean_path_length, path_lengths = g_path_regularize(
                fake, latents, self.mean_path_length)
            self.g_optim.zero_grad(set_to_none=True)
            (cfg.path_regularize * cfg.g_reg_every * path_loss).backward()
            self.g_optim.step()
            losses["path"] = scalar(path_loss)
            losses["path_length"] = scalar(path_lengths.mean())
        requires_grad(D, True)

        accumulate(self.g_ema, G, self.ema_decay)
        return losses

    # ------------------------------------------------------------------ outputs
    def _samples(self) -> torch.Tensor:
        img, _ = self.g_ema([self.sample_z], randomize_noise=False)
        return img

    def _grid_nrow(self) -> int:
        return max(1, int(self.config.n_sample**0.5))

    @torch.no_grad()
    def latent_avg(self) -> torch.Tensor:
        """Mean mapped latent of ``g_ema``, ``[style_dim]`` (fixed seed)."""
        return self.g_ema.mean_latent(self.config.latent_avg_samples, seed=self.config.seed)[0]

    def _payload(self, step: int, training: bool = True) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "g": self.generator.state_dict(),
            "d": self.discriminator.state_dict(),
            "g_ema": self.g_ema.state_dict(),
            "args": self._config_dict(),
            "step": int(step),
            "latent_avg": self.latent_avg().cpu(),
        }
        if training:
            obj.update({
                "g_optim": self.g_optim.state_dict(),
                "d_optim": self.d_optim.state_dict(),
                "mean_path_length": self.mean_path_length.detach().cpu(),
                "rng": get_rng_state(self.rng),
                "data": self.data.state_dict(),
            })
        return obj

    def _save(self, step: int) -> Path:
        return atomic_save(self._payload(step), self.ckpt_dir / f"{step:06d}.pt")

    def _export(self) -> None:
        atomic_save(self._payload(self.step, training=False), self.out_dir / "generator.pt")

    def _stored_config(self, path: Path) -> dict[str, Any]:
        args = load_checkpoint(path).get("args")
        return dict(args) if isinstance(args, dict) else {}

    def _load(self, path: Path) -> None:
        ck = load_checkpoint(path)
        self.generator.load_state_dict(ck["g"])
        self.discriminator.load_state_dict(ck["d"])
        self.g_ema.load_state_dict(ck["g_ema"])
        self._load_opt(self.g_optim, ck.get("g_optim"))
        self._load_opt(self.d_optim, ck.get("d_optim"))
        if "mean_path_length" in ck:
            self.mean_path_length = ck["mean_path_length"].to(self.device)
        if "rng" in ck:
            set_rng_state(ck["rng"], self.rng)
        if "data" in ck:
            self.data.load_state_dict(ck["data"])
        self.step = int(ck.get("step", 0))


def train_stylegan2(
    config: StyleGAN2TrainConfig,
    data: DataArg = None,
    out_dir: str | os.PathLike = "run",
    resume: bool | str | os.PathLike = False,
) -> StyleGAN2Trainer:
    """Build a :class:`StyleGAN2Trainer`, train it to ``config.steps`` and return it."""
    trainer = StyleGAN2Trainer(config, data, out_dir, resume=resume)
    trainer.train()
    return trainer
