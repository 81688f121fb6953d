"""e4e encoder training on a frozen StyleGAN2 generator (omertov/encoder4editing recipe).

Loss per iteration (``W+ = encoder(x) + latent_avg``, ``y = G(W+)`` with the generator's fixed
noise by default)::

    l2_lambda * MSE(y, x) + l1_lambda * L1(y, x)
    + msssim_lambda * (1 - MS-SSIM(y, x))                  # perceptual, no downloaded weights
    + dfeat_lambda * mean_l MSE(D_l(y), D_l(x))            # features of the GAN's discriminator
    + delta_norm_lambda * sum_{i<=stage} mean ||w_i - w_0||   # only while progressive
    + w_discriminator_lambda * mean_i softplus(-D_w(w_i))  # optional latent discriminator

Differences from the official code, which needs downloaded LPIPS / ArcFace / MoCo weights: the
perceptual term is MS-SSIM and / or discriminator features, the optimiser is Adam instead of
Ranger, and the latent discriminator sees ``encoder(x) + latent_avg`` (the W the generator
receives) rather than the raw encoder output. Progressive stages follow e4e: stage ``i`` starts at
``progressive_steps[i]`` = ``[0, start, start + every, ...]``.

Checkpoints: ``checkpoints/iteration_<step>.pt`` in the official e4e layout (written with
:func:`img2tab.checkpoints.save_e4e`, ``opts`` a plain dict; loads with
:func:`img2tab.checkpoints.load_inverter`) plus ``iteration_<step>_train.pt`` (optimiser, latent
discriminator, RNG and data position), written last so it marks a complete checkpoint. The run's
final ``inverter.pt`` has the e4e layout.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..checkpoints import load_checkpoint, load_discriminator, load_generator, save_e4e
from ..networks.e4e import Encoder4Editing, EncoderConfig, build_encoder
from ..networks.inverter import Inverter
from ..networks.stylegan2 import Discriminator, Generator
from ._base import DataArg, Trainer
from ._common import (
    atomic_save,
    config_to_dict,
    get_rng_state,
    progressive_stage,
    progressive_steps,
    requires_grad,
    scalar,
    set_rng_state,
)
from .losses import (
    LatentCodesDiscriminator,
    LatentCodesPool,
    d_logistic_loss,
    d_r1_loss,
    delta_loss,
    feature_loss,
    ms_ssim,
)

__all__ = ["E4ETrainConfig", "E4ETrainer", "train_e4e"]

logger = logging.getLogger("img2tab.training")


@dataclass(frozen=True)
class E4ETrainConfig:
    """Configuration of :class:`E4ETrainer` (option names follow e4e's ``train_options.py``).

    Attributes:
        stylegan_weights: rosinality / e4e checkpoint of the frozen generator (unless a
            generator is passed to the trainer).
        size: training image size; 0 = the generator's size.
        encoder_type: ``"Encoder4Editing"`` or ``"GradualStyleEncoder"``.
        input_size: encoder input size; 0 = ``min(256, generator size)``.
        widths, units, stem, mode: IR-SE trunk (see :class:`~img2tab.networks.e4e.EncoderConfig`).
        steps: total iterations (``max_steps``).
        batch: minibatch size.
        lr: Adam learning rate of the encoder.
        l2_lambda, l1_lambda: pixel losses.
        msssim_lambda: weight of ``1 - MS-SSIM``.
        dfeat_lambda: weight of the discriminator-feature distance (needs a discriminator: the
            ``d`` of ``stylegan_weights`` or one passed to the trainer).
        delta_norm, delta_norm_lambda: delta regulariser (applied while progressive).
        progressive_start: first delta stage step; None = all deltas from the start.
        progressive_step_every: steps between delta stages.
        w_discriminator_lambda: latent-discriminator weight (0 = off).
        w_discriminator_lr: its Adam learning rate.
        r1, d_reg_every: R1 of the latent discriminator.
        use_w_pool, w_pool_size: history pool of latent codes for it.
        start_from_latent_avg: add the generator's average latent to the encoder output.
        noise_mode: generator noise in training (``"const"`` = the fixed buffers, as at
            inference; ``"random"``).
        mirror, data, seed, device, sample_every, save_every, log_every, n_sample,
        keep_checkpoints, progress: as in
        :class:`~img2tab.training.stylegan2.StyleGAN2TrainConfig`.
    """

    stylegan_weights: str = ""
    size: int = 0
    encoder_type: str = "Encoder4Editing"
    input_size: int = 0
    widths: tuple[int, int, int, int] = (32, 48, 64, 128)
    units: tuple[int, int, int, int] = (1, 2, 2, 1)
    stem: int = 32
    mode: str = "ir_se"
    steps: int = 20_000
    batch: int = 8
    lr: float = 1e-4
    l2_lambda: float = 1.0
    l1_lambda: float = 0.0
    msssim_lambda: float = 0.5
    dfeat_lambda: float = 0.0
    delta_norm: float = 2.0
    delta_norm_lambda: float = 2e-4
    progressive_start: int | None = None
    progressive_step_every: int = 2000
    w_discriminator_lambda: float = 0.0
    w_discriminator_lr: float = 2e-5
    r1: float = 10.0
    d_reg_every: int = 16
    use_w_pool: bool = True
    w_pool_size: int = 50
    start_from_latent_avg: bool = True
    noise_mode: str = "const"
    mirror: bool = False
    data: str = ""
    seed: int = 0
    device: str = "auto"
    sample_every: int = 500
    save_every: int = 1000
    log_every: int = 50
    n_sample: int = 8
    keep_checkpoints: int = 3
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields (lists instead of tuples)."""
        return config_to_dict(self)


class E4ETrainer(Trainer):
    """Trains an e4e / pSp encoder against a frozen generator.

    Args:
        config: :class:`E4ETrainConfig`.
        data, out_dir, resume: see :class:`~img2tab.training._base.Trainer`.
        generator: the frozen generator (or a checkpoint path); default
            ``config.stylegan_weights`` (or the decoder of the checkpoint resumed from).
        discriminator: image discriminator for ``dfeat_lambda`` (default: the ``d`` of
            ``config.stylegan_weights``).

    Attributes:
        encoder, generator, inverter: the networks (``inverter`` = encoder + generator +
            latent_avg, what gets saved).
        optimizer: Adam over the encoder.
        w_discriminator, w_optimizer: the latent discriminator and its optimiser (or None).
    """

    config_cls = E4ETrainConfig
    ckpt_pattern = r"iteration_(\d+)_train\.pt"
    ckpt_companions = ("iteration_{step:06d}.pt",)

    def __init__(
        self,
        config: E4ETrainConfig,
        data: DataArg = None,
        out_dir: str | os.PathLike = "run",
        resume: bool | str | os.PathLike = False,
        generator: Generator | str | os.PathLike | None = None,
        discriminator: Discriminator | None = None,
    ) -> None:
        self._given_generator = generator
        self._given_discriminator = discriminator
        super().__init__(config, data, out_dir, resume)

    # ------------------------------------------------------------------ setup
    @property
    def image_size(self) -> int:
        return int(self.config.size or self.generator.size)

    def _prepare(self, resume_path: Path | None) -> None:
        cfg: E4ETrainConfig = self.config
        g = self._given_generator
        if isinstance(g, Generator):
            G = g
        elif g is not None:
            G = load_generator(g)
        elif resume_path is not None:
            G = load_generator(self._model_path(resume_path))
        elif cfg.stylegan_weights:
            G = load_generator(cfg.stylegan_weights)
        else:
            raise ValueError("E4ETrainer needs a generator (argument or config.stylegan_weights)")
        self.generator = G.to(self.device).eval()
        requires_grad(self.generator, False)

    @staticmethod
    def _model_path(train_path: Path) -> Path:
        return train_path.with_name(train_path.name.replace("_train.pt", ".pt"))

    def _encoder_config(self) -> EncoderConfig:
        cfg: E4ETrainConfig = self.config
        G = self.generator
        return EncoderConfig(
            encoder_type=cfg.encoder_type,
            stylegan_size=G.size,
            style_dim=G.style_dim,
            input_size=int(cfg.input_size or min(256, G.size)),
            widths=tuple(cfg.widths),  # type: ignore[arg-type]
            units=tuple(cfg.units),  # type: ignore[arg-type]
            stem=cfg.stem,
            mode=cfg.mode,
        )

    def _build(self) -> None:
        cfg: E4ETrainConfig = self.config
        G, dev = self.generator, self.device
        self.encoder = build_encoder(self._encoder_config()).to(dev).train()
        latent_avg = None
        if cfg.start_from_latent_avg:
            latent_avg = G.latent_avg
            if latent_avg is None:
                logger.info("generator has no latent_avg; using the mean of 10,000 mapped samples")
                latent_avg = G.mean_latent(10_000, seed=cfg.seed)[0]
            latent_avg = latent_avg.to(dev)
        self.inverter = Inverter(self.encoder, G, latent_avg).to(dev)
        self.optimizer = torch.optim.Adam(self.encoder.parameters(), lr=cfg.lr, foreach=True)
        self.prog_steps = (progressive_steps(G.n_latent, cfg.progressive_start,
                                             cfg.progressive_step_every)
                           if isinstance(self.encoder, Encoder4Editing) else None)
        self.image_d: Discriminator | None = None
        if cfg.dfeat_lambda > 0:
            D = self._given_discriminator
            if D is None:
                if not cfg.stylegan_weights:
                    raise ValueError("dfeat_lambda > 0 needs a discriminator (argument, or a "
                                     "stylegan_weights checkpoint holding 'd')")
                D = load_discriminator(cfg.stylegan_weights)
            self.image_d = D.to(dev).eval()
            requires_grad(self.image_d, False)
        self.w_discriminator: LatentCodesDiscriminator | None = None
        self.w_optimizer: torch.optim.Optimizer | None = None
        self.real_pool = LatentCodesPool(cfg.w_pool_size if cfg.use_w_pool else 0, cfg.seed)
        self.fake_pool = LatentCodesPool(cfg.w_pool_size if cfg.use_w_pool else 0, cfg.seed + 1)
        if cfg.w_discriminator_lambda > 0:
            self.w_discriminator = LatentCodesDiscriminator(G.style_dim, 4).to(dev)
            self.w_optimizer = torch.optim.Adam(self.w_discriminator.parameters(),
                                                lr=cfg.w_discriminator_lr)
        self.sample_x = self.data.fixed(cfg.n_sample, dev)

    # ------------------------------------------------------------------ one iteration
    @property
    def stage(self) -> int:
        """Current progressive stage (active deltas; 18 = all, no delta loss)."""
        return progressive_stage(self.step, self.prog_steps)

    def _dims(self, stage: int) -> list[int]:
        n = self.generator.n_latent
        return list(range(min(stage + 1, n))) if self.prog_steps is not None else list(range(n))

    def _train_w_discriminator(self, x: torch.Tensor, i: int) -> dict[str, float]:
        cfg: E4ETrainConfig = self.config
        Dw, opt = self.w_discriminator, self.w_optimizer
        assert Dw is not None and opt is not None
        requires_grad(Dw, True)
        with torch.no_grad():
            real_w = self.generator.mapping(self._randn(x.shape[0], self.generator.style_dim))
            fake_w = self.inverter.encode(x)[:, 0]
        real_w = self.real_pool.query(real_w)
        fake_w = self.fake_pool.query(fake_w)
        loss = d_logistic_loss(Dw(real_w), Dw(fake_w))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        out = {"w_d": scalar(loss)}
        if cfg.r1 > 0 and i % cfg.d_reg_every == 0:
            real_req = real_w.detach().requires_grad_(True)
            r1 = d_r1_loss(Dw(real_req), real_req)
            opt.zero_grad(set_to_none=True)
            (cfg.r1 / 2 * r1 * cfg.d_reg_every).backward()
            opt.step()
            out["w_r1"] = scalar(r1)
        requires_grad(Dw, False)
        return out

    def reconstruct(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        """Render W+ (default: ``encode(x)``) with the training noise: ``[B, 3, S, S]``."""
        if w is None:
            w = self.inverter.encode(x)
        return self.generator.synthesize(self.generator.styles(w), noise=self.config.noise_mode)

    def _step(self, i: int) -> dict[str, float]:
        cfg: E4ETrainConfig = self.config
        stage = self.stage
        if self.prog_steps is not None:
            self.encoder.set_progressive_stage(stage)  # type: ignore[union-attr]
        self.encoder.train()
        x = self._batch()
        losses: dict[str, float] = {}
        if self.w_discriminator is not None:
            losses.update(self._train_w_discriminator(x, i))

        w = self.inverter.encode(x)
        y = self.reconstruct(x, w)
        if y.shape[-1] != x.shape[-1]:
            y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False,
                              antialias=True)
        total = x.new_zeros(())
        if cfg.l2_lambda:
            l2 = F.mse_loss(y, x)
            total = total + cfg.l2_lambda * l2
            losses["l2"] = scalar(l2)
        if cfg.l1_lambda:
            l1 = F.l1_loss(y, x)
            total = total + cfg.l1_lambda * l1
            losses["l1"] = scalar(l1)
        if cfg.msssim_lambda:
            ms = 1 - ms_ssim(y, x).mean()
            total = total + cfg.msssim_lambda * ms
            losses["msssim"] = scalar(ms)
        if self.image_d is not None:
            fl = feature_loss(self.image_d.features(y), self.image_d.features(x))
            total = total + cfg.dfeat_lambda * fl
            losses["dfeat"] = scalar(fl)
        if self.w_discriminator is not None:
            dims = self._dims(stage)
            adv = torch.stack([F.softplus(-self.w_discriminator(w[:, d])).mean()
                               for d in dims]).mean()
            total = total + cfg.w_discriminator_lambda * adv
            losses["w_adv"] = scalar(adv)
        if self.prog_steps is not None and stage < 18 and cfg.delta_norm_lambda:
            dl = delta_loss(w, stage, cfg.delta_norm)
            total = total + cfg.delta_norm_lambda * dl
            losses["delta"] = scalar(dl)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        losses["loss"] = scalar(total)
        losses["stage"] = scalar(stage)
        return losses

    # ------------------------------------------------------------------ outputs
    def _samples(self) -> torch.Tensor:
        was = self.encoder.training
        self.encoder.eval()
        try:
            y = self.reconstruct(self.sample_x)
        finally:
            self.encoder.train(was)
        if y.shape[-1] != self.sample_x.shape[-1]:
            y = F.interpolate(y, size=self.sample_x.shape[-2:], mode="bilinear",
                              align_corners=False)
        return torch.cat([self.sample_x, y])

    def _grid_nrow(self) -> int:
        return self.sample_x.shape[0]

    def opts(self) -> dict[str, Any]:
        """The ``opts`` dict stored in e4e checkpoints (config plus official option names)."""
        cfg: E4ETrainConfig = self.config
        d = self._config_dict()
        d.update(self._encoder_config().to_dict())
        d.update({
            "exp_dir": str(self.out_dir),
            "dataset_type": "img2tab",
            "learning_rate": cfg.lr,
            "batch_size": cfg.batch,
            "max_steps": cfg.steps,
            "progressive_steps": self.prog_steps,
            "start_from_latent_avg": self.inverter.latent_avg is not None,
            "global_step": self.step,
            "trainer": "img2tab.training.e4e",
            "concept_world": str(d.get("data", "")).startswith("world"),
        })
        return d

    def export_inverter(self) -> Inverter:
        """The inverter as saved (encoder in its current mode; call ``.eval()`` for inference)."""
        return self.inverter

    def _save(self, step: int) -> Path:
        save_e4e(self.inverter, self.ckpt_dir / f"iteration_{step:06d}.pt", opts=self.opts())
        state: dict[str, Any] = {
            "global_step": int(step),
            "config": self._config_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": get_rng_state(self.rng),
            "data": self.data.state_dict(),
            "real_w_pool": self.real_pool.state_dict(),
            "fake_w_pool": self.fake_pool.state_dict(),
        }
        if self.w_discriminator is not None and self.w_optimizer is not None:
            state["discriminator_state_dict"] = self.w_discriminator.state_dict()
            state["discriminator_optimizer_state_dict"] = self.w_optimizer.state_dict()
        return atomic_save(state, self.ckpt_dir / f"iteration_{step:06d}_train.pt")

    def _export(self) -> None:
        save_e4e(self.inverter, self.out_dir / "inverter.pt", opts=self.opts())

    def _stored_config(self, path: Path) -> dict[str, Any]:
        c = load_checkpoint(path).get("config")
        return dict(c) if isinstance(c, dict) else {}

    def _load(self, path: Path) -> None:
        state = load_checkpoint(path)
        model = load_checkpoint(self._model_path(path))
        enc = {k[len("encoder."):]: v for k, v in model["state_dict"].items()
               if k.startswith("encoder.")}
        self.encoder.load_state_dict(enc)
        if model.get("latent_avg") is not None and self.inverter.latent_avg is not None:
            self.inverter.latent_avg.copy_(model["latent_avg"].to(self.device))
        self._load_opt(self.optimizer, state.get("optimizer"))
        if self.w_discriminator is not None and "discriminator_state_dict" in state:
            self.w_discriminator.load_state_dict(state["discriminator_state_dict"])
            self._load_opt(self.w_optimizer,  # type: ignore[arg-type]
                           state.get("discriminator_optimizer_state_dict"))
        self.real_pool.load_state_dict(state.get("real_w_pool", {}), self.device)
        self.fake_pool.load_state_dict(state.get("fake_w_pool", {}), self.device)
        if "rng" in state:
            set_rng_state(state["rng"], self.rng)
        if "data" in state:
            self.data.load_state_dict(state["data"])
        self.step = int(state.get("global_step", 0))


def train_e4e(
    config: E4ETrainConfig,
    data: DataArg = None,
    out_dir: str | os.PathLike = "run",
    resume: bool | str | os.PathLike = False,
    generator: Generator | str | os.PathLike | None = None,
    discriminator: Discriminator | None = None,
) -> E4ETrainer:
    """Build an :class:`E4ETrainer`, train it to ``config.steps`` and return it."""
    trainer = E4ETrainer(config, data, out_dir, resume=resume, generator=generator,
                         discriminator=discriminator)
    trainer.train()
    return trainer
