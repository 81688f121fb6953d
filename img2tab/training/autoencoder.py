"""Joint reconstruction autoencoder: an e4e encoder and a StyleGAN2 generator trained together.

This is img2tab's fallback recipe for small compute budgets (a CPU): adversarial StyleGAN2
training followed by e4e inversion does not converge in about an hour on two CPU cores, whereas
an encoder and a generator trained jointly to reconstruct images do. The result is a genuine
rosinality-layout generator with an e4e encoder, so StyleSpace Ψ, concept edits and every loader
work exactly as with the official networks; only the way the pair was obtained differs.

Per iteration (``W+ = encoder(x) + latent_avg``, ``y = G.synthesize(G.styles(W+))`` with the fixed
noise buffers by default)::

    mse_lambda * MSE(y, x) + l1_lambda * L1(y, x) + msssim_lambda * (1 - MS-SSIM(y, x))
    + delta_norm_lambda * sum_i mean ||w_i - w_0||          # e4e regulariser: keeps W+ near W
    + adv_lambda * softplus(-D(y))                          # light adversarial term, from adv_start
    + cycle_lambda * cycle loss                             # optional, see below

Cycle regularisation (``cycle_lambda > 0``, every ``cycle_every`` steps, on the first
``cycle_batch`` share of the batch), with the batch codes ``w`` detached:

* ``cycle_mode="mix"`` (style mixing): ``w_mix`` takes the W+ rows before a random cut from one
  image and the rows from the cut on from another; the loss is
  ``mean (E(G(w_mix)) + latent_avg - w_mix)^2 / var(w)``: the generator must render every
  layer's code so that the encoder can read it back layer by layer.
* ``cycle_mode="style"`` (StyleSpace edits): ``cycle_channels`` random Ψ channels of every image
  are moved by ``±cycle_sd`` batch standard deviations; the loss is the squared error between
  the Ψ re-encoded from the edited render and the edited Ψ, in units of each channel's standard
  deviation (floored at a tenth of the mean): single-channel edits must change the image in a
  way the encoder reads back, which is what an edit's round trip (render, re-encode, classify)
  needs.

With ``cycle_adv`` the adversarial term also applies to the cycle's renders.

``color="gray"`` ties the three output rows of every toRGB layer (weights and bias, at
initialisation and after every step), so the generator renders R = G = B exactly while keeping
the rosinality RGB layout; toRGB StyleSpace channels then change brightness only, never a tint.
``color="auto"`` chooses gray when every training image has R = G = B.

The discriminator (a small rosinality ``Discriminator``) sees real images against
reconstructions, with lazy R1. ``latent_avg`` is fixed: the mean mapping output of the initial
generator.

The mapping network receives no gradient from reconstruction (images are rendered from W+). With
``mapping_lambda > 0`` it is fitted separately, by a sliced Wasserstein distance between
``mapping(z)`` and the (detached) encoder codes of the batch, so that ``G([z])`` draws
approximately from the distribution of encoded images and ``mean_latent`` is meaningful. With
``mapping_lambda = 0`` the mapping stays at its random initialisation and only the W+ path is
meaningful.

An optional EMA (``ema_decay``) of both encoder and generator is what gets exported.

Checkpoints: ``checkpoints/iteration_<step>.pt`` in e4e layout (encoder + decoder + latent_avg +
opts, loads with :func:`img2tab.checkpoints.load_inverter`) and ``iteration_<step>_train.pt`` in
rosinality layout (``g_ema`` = exported generator, ``g``, ``d``, ``latent_avg``, ``args``,
``step`` and the optimiser / encoder / RNG state; loads with
:func:`img2tab.checkpoints.load_generator` and :func:`~img2tab.checkpoints.load_discriminator`),
written last so that it marks a complete checkpoint. The run's final exports are ``inverter.pt``
(e4e layout) and ``generator.pt`` (rosinality layout with ``d``).
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..checkpoints import load_checkpoint, save_e4e, save_rosinality
from ..networks.e4e import EncoderConfig, build_encoder
from ..networks.inverter import Inverter
from ..networks.layout import generator_channels
from ..networks.stylegan2 import Discriminator, Generator, GeneratorConfig
from ._base import DataArg, Trainer
from ._common import (
    accumulate,
    config_to_dict,
    get_rng_state,
    parse_channels,
    requires_grad,
    scalar,
    set_rng_state,
)
from .losses import d_logistic_loss, d_r1_loss, delta_loss, ms_ssim, sliced_wasserstein

__all__ = ["AutoencoderTrainConfig", "AutoencoderTrainer", "mix_codes", "source_is_gray", "tie_gray",
           "train_autoencoder"]

logger = logging.getLogger("img2tab.training")


@dataclass(frozen=True)
class AutoencoderTrainConfig:
    """Configuration of :class:`AutoencoderTrainer`.

    Attributes:
        size: image / generator resolution.
        style_dim, n_mlp, lr_mlp: generator latent width, mapping depth and lr multiplier.
        channels: generator widths ``((res, width), ...)``, ``"narrow"`` (4:32, 8:32, then 16;
            the default: single-channel edits stay visible), ``"small"`` (4:256, 8:256, 16:128,
            32:64, 64:32, ...) or ``"standard"`` (rosinality, ``channel_multiplier`` 2).
        encoder_type, input_size, widths, units, stem, mode: e4e encoder (``input_size`` 0 =
            ``min(256, size)``).
        steps, batch: iterations and minibatch size.
        lr: Adam learning rate of the generator; ``encoder_lr`` (0 = ``lr``) of the encoder.
        lr_decay_start: fraction of ``steps`` after which the generator and encoder learning
            rates decay linearly to ``lr_final`` times their value at the last step (1.0 = constant).
        lr_final: final learning-rate ratio of that decay.
        beta1, beta2: Adam betas of generator, encoder and mapping.
        mse_lambda, l1_lambda, msssim_lambda: reconstruction losses.
        delta_norm, delta_norm_lambda: e4e delta regulariser (all deltas, every step).
        adv_lambda: weight of the non-saturating adversarial term (0 = none).
        adv_start: step from which the adversarial term (and discriminator training) runs; a
            value below 1 is a fraction of ``steps``.
        adv_every: apply the adversarial term and train the discriminator only every this many
            steps (lazy; an adversarial step roughly doubles the cost of a step on a CPU).
        d_channels: discriminator widths (same forms as ``channels``; None = the generator's).
        d_lr: discriminator learning rate (0 = ``lr``), with lazy-R1 scaling.
        r1, d_reg_every: R1 weight and interval.
        mapping_lambda: weight of the sliced-Wasserstein fit of the mapping network (0 = leave
            the mapping untrained).
        mapping_lr: Adam learning rate of the mapping (the layers' ``lr_mlp`` still applies).
        swd_projections: random directions of the sliced Wasserstein distance.
        ema_decay: EMA of encoder and generator (exported); 0 = export the raw networks.
        latent_avg_samples: samples averaged for ``latent_avg`` at initialisation.
        noise_mode: generator noise in training, ``"const"`` (fixed buffers) or ``"random"``.
        color: ``"rgb"``, ``"gray"`` (toRGB output rows tied: R = G = B) or ``"auto"`` (gray
            when every training image is gray).
        cycle_lambda: weight of the cycle regulariser (0 = off).
        cycle_mode: ``"mix"`` (W+ style mixing) or ``"style"`` (sparse Ψ edits).
        cycle_every: apply it every this many steps.
        cycle_batch: share of the batch it uses (at least 2 images).
        cycle_sd: edit size of the ``"style"`` mode, in batch standard deviations.
        cycle_channels: channels edited per image in the ``"style"`` mode.
        cycle_adv: while the adversarial term runs, apply it to the cycle's renders too (and
            show them to the discriminator as fakes): mixed or edited codes must render
            realistic images, so an edit moves an image along the data, not off it.
        mirror, data, seed, device, sample_every, save_every, log_every, n_sample,
        keep_checkpoints, progress: as in
        :class:`~img2tab.training.stylegan2.StyleGAN2TrainConfig`.
    """

    size: int = 32
    style_dim: int = 32
    n_mlp: int = 8
    lr_mlp: float = 0.01
    channels: tuple[tuple[int, int], ...] | str = "narrow"
    encoder_type: str = "Encoder4Editing"
    input_size: int = 0
    widths: tuple[int, int, int, int] = (32, 48, 64, 128)
    units: tuple[int, int, int, int] = (1, 2, 2, 1)
    stem: int = 32
    mode: str = "ir_se"
    steps: int = 6_000
    batch: int = 32
    lr: float = 2e-3
    encoder_lr: float = 0.0
    lr_decay_start: float = 0.6
    lr_final: float = 0.05
    beta1: float = 0.0
    beta2: float = 0.99
    mse_lambda: float = 1.0
    l1_lambda: float = 0.5
    msssim_lambda: float = 0.2
    delta_norm: float = 2.0
    delta_norm_lambda: float = 2e-4
    adv_lambda: float = 0.01
    adv_start: float = 0.6
    adv_every: int = 4
    d_channels: tuple[tuple[int, int], ...] | str | None = None
    d_lr: float = 0.0
    r1: float = 1.0
    d_reg_every: int = 16
    mapping_lambda: float = 1.0
    mapping_lr: float = 0.01
    swd_projections: int = 64
    ema_decay: float = 0.999
    latent_avg_samples: int = 4096
    noise_mode: str = "const"
    color: str = "auto"
    cycle_lambda: float = 0.0
    cycle_mode: str = "mix"
    cycle_every: int = 1
    cycle_batch: float = 0.5
    cycle_sd: float = 3.0
    cycle_channels: int = 4
    cycle_adv: bool = True
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

    def __post_init__(self) -> None:
        if self.color not in ("rgb", "gray", "auto"):
            raise ValueError(f"color must be 'rgb', 'gray' or 'auto', got {self.color!r}")
        if self.cycle_mode not in ("mix", "style"):
            raise ValueError(f"cycle_mode must be 'mix' or 'style', got {self.cycle_mode!r}")
        if not 0.0 < self.cycle_batch <= 1.0:
            raise ValueError(f"cycle_batch must be in (0, 1], got {self.cycle_batch}")

    def generator_config(self) -> GeneratorConfig:
        """The generator architecture."""
        return GeneratorConfig(self.size, self.style_dim, self.n_mlp, 2, self.lr_mlp,
                               parse_channels(self.channels, self.size))

    def encoder_config(self) -> EncoderConfig:
        """The encoder architecture."""
        return EncoderConfig(
            encoder_type=self.encoder_type,
            stylegan_size=self.size,
            style_dim=self.style_dim,
            input_size=int(self.input_size or min(256, self.size)),
            widths=tuple(self.widths),  # type: ignore[arg-type]
            units=tuple(self.units),  # type: ignore[arg-type]
            stem=self.stem,
            mode=self.mode,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields (lists instead of tuples)."""
        return config_to_dict(self)


class AutoencoderTrainer(Trainer):
    """Joint encoder + generator reconstruction training (see the module docstring).

    Attributes:
        encoder, generator, discriminator: the raw networks being optimised.
        encoder_ema, generator_ema: their EMA copies (the raw networks when ``ema_decay`` is 0).
        inverter: raw encoder + generator + latent_avg; :meth:`export_inverter` gives the
            exported (EMA) pair.
        latent_avg: ``[n_latent, style_dim]`` fixed average latent.
    """

    config_cls = AutoencoderTrainConfig
    ckpt_pattern = r"iteration_(\d+)_train\.pt"
    ckpt_companions = ("iteration_{step:06d}.pt",)

    def _build(self) -> None:
        cfg: AutoencoderTrainConfig = self.config
        dev = self.device
        G = Generator(cfg.generator_config()).to(dev).train()
        E = build_encoder(cfg.encoder_config()).to(dev).train()
        self.gray = cfg.color == "gray" or (cfg.color == "auto" and source_is_gray(self.data))
        if self.gray:
            tie_gray(G)
            logger.info("gray generator: toRGB output rows tied (R = G = B)")
        with torch.no_grad():
            avg = G.mean_latent(cfg.latent_avg_samples, seed=cfg.seed)[0]
        G.latent_avg = avg
        self.latent_avg = avg.expand(G.n_latent, -1).clone()
        self.generator, self.encoder = G, E
        self.inverter = Inverter(E, G, self.latent_avg).to(dev)
        if cfg.ema_decay > 0:
            self.generator_ema = copy.deepcopy(G).eval()
            self.encoder_ema = copy.deepcopy(E).eval()
            requires_grad(self.generator_ema, False)
            requires_grad(self.encoder_ema, False)
            self.generator_ema.latent_avg = avg
            self._ema_inverter = Inverter(self.encoder_ema, self.generator_ema,
                                          self.latent_avg).to(dev)
        else:
            self.generator_ema, self.encoder_ema = G, E
            self._ema_inverter = self.inverter
        betas = (cfg.beta1, cfg.beta2)
        synth = [p for n, p in G.named_parameters() if not n.startswith("style.")]
        self.g_optim = torch.optim.Adam(synth, lr=cfg.lr, betas=betas, foreach=True)
        self.e_optim = torch.optim.Adam(E.parameters(), lr=cfg.encoder_lr or cfg.lr, betas=betas,
                                        foreach=True)
        self.m_optim = torch.optim.Adam(G.style.parameters(), lr=cfg.mapping_lr, betas=betas)
        if cfg.d_channels is None:
            dch = {int(r): int(c) for r, c in G.channels.items()}
        else:
            parsed = parse_channels(cfg.d_channels, cfg.size)
            dch = dict(parsed) if parsed is not None else {
                r: c for r, c in generator_channels(2).items() if r <= cfg.size}
        self.discriminator = Discriminator(cfg.size, channels=dch).to(dev).train()
        d_ratio = cfg.d_reg_every / (cfg.d_reg_every + 1) if cfg.r1 > 0 else 1.0
        self.d_optim = torch.optim.Adam(self.discriminator.parameters(),
                                        lr=(cfg.d_lr or cfg.lr) * d_ratio,
                                        betas=(cfg.beta1**d_ratio, cfg.beta2**d_ratio),
                                        foreach=True)
        self.sample_x = self.data.fixed(cfg.n_sample, dev)

    # ------------------------------------------------------------------ one iteration
    def _ema_decay(self, i: int) -> float:
        return min(self.config.ema_decay, (1.0 + i) / (10.0 + i))

    def _lr_ratio(self, i: int) -> float:
        """Learning-rate multiplier at step ``i`` (linear decay after ``lr_decay_start``)."""
        cfg: AutoencoderTrainConfig = self.config
        start = cfg.lr_decay_start * cfg.steps
        if cfg.lr_decay_start >= 1.0 or i < start:
            return 1.0
        frac = min(1.0, (i - start) / max(1.0, cfg.steps - start))
        return 1.0 - (1.0 - cfg.lr_final) * frac

    def adv_start_step(self) -> int:
        """First adversarial step (``adv_start``, or that fraction of ``steps`` when below 1)."""
        cfg: AutoencoderTrainConfig = self.config
        return int(round(cfg.adv_start * cfg.steps)) if cfg.adv_start < 1 else int(cfg.adv_start)

    def _step(self, i: int) -> dict[str, float]:
        cfg: AutoencoderTrainConfig = self.config
        G, E, D = self.generator, self.encoder, self.discriminator
        G.train()
        E.train()
        x = self._batch()
        adv_every = max(1, cfg.adv_every)
        start = self.adv_start_step()
        adv_k = (i - start) // adv_every  # index of this adversarial step
        adv_on = cfg.adv_lambda > 0 and i >= start and (i - start) % adv_every == 0
        losses: dict[str, float] = {}

        w = self.inverter.encode(x)  # [B, L, D]
        y = G.synthesize(G.styles(w), noise=cfg.noise_mode)
        total = x.new_zeros(())
        mse = F.mse_loss(y, x)
        losses["mse"] = scalar(mse)
        if cfg.mse_lambda:
            total = total + cfg.mse_lambda * mse
        if cfg.l1_lambda:
            l1 = F.l1_loss(y, x)
            total = total + cfg.l1_lambda * l1
            losses["l1"] = scalar(l1)
        if cfg.msssim_lambda:
            ms = 1 - ms_ssim(y, x).mean()
            total = total + cfg.msssim_lambda * ms
            losses["msssim"] = scalar(ms)
        if cfg.delta_norm_lambda:
            dl = delta_loss(w, None, cfg.delta_norm)
            total = total + cfg.delta_norm_lambda * dl
            losses["delta"] = scalar(dl)
        if adv_on:
            requires_grad(D, False)
            adv = F.softplus(-D(y)).mean()
            total = total + cfg.adv_lambda * adv
            losses["g_adv"] = scalar(adv)
        y_cyc = None
        if cfg.cycle_lambda > 0 and i % max(1, cfg.cycle_every) == 0:
            cyc, y_cyc = self._cycle_loss(w.detach())
            total = total + cfg.cycle_lambda * cyc
            losses["cycle"] = scalar(cyc)
            if adv_on and cfg.cycle_adv:
                adv_c = F.softplus(-D(y_cyc)).mean()
                total = total + cfg.adv_lambda * adv_c
                losses["g_adv_cycle"] = scalar(adv_c)
            else:
                y_cyc = None
        self.g_optim.zero_grad(set_to_none=True)
        self.e_optim.zero_grad(set_to_none=True)
        total.backward()
        ratio = self._lr_ratio(i)
        for opt, base in ((self.g_optim, cfg.lr), (self.e_optim, cfg.encoder_lr or cfg.lr)):
            for group in opt.param_groups:
                group["lr"] = base * ratio
        self.g_optim.step()
        self.e_optim.step()
        if self.gray:
            tie_gray(G)
        losses["loss"] = scalar(total)
        losses["psnr"] = scalar(10 * torch.log10(4.0 / mse.detach().clamp_min(1e-10)))

        if adv_on:
            requires_grad(D, True)
            fake = y.detach() if y_cyc is None else torch.cat([y.detach(), y_cyc.detach()])
            d_loss = d_logistic_loss(D(x), D(fake))
            self.d_optim.zero_grad(set_to_none=True)
            d_loss.backward()
            self.d_optim.step()
            losses["d"] = scalar(d_loss)
            if cfg.r1 > 0 and adv_k % cfg.d_reg_every == 0:
                real = x.detach().requires_grad_(True)
                r1 = d_r1_loss(D(real), real)
                self.d_optim.zero_grad(set_to_none=True)
                (cfg.r1 / 2 * r1 * cfg.d_reg_every).backward()
                self.d_optim.step()
                losses["r1"] = scalar(r1)

        if cfg.mapping_lambda > 0:
            target = w.detach().reshape(-1, w.shape[-1])
            wm = G.mapping(self._randn(target.shape[0], w.shape[-1]))
            swd = sliced_wasserstein(wm, target, cfg.swd_projections, generator=self.rng)
            self.m_optim.zero_grad(set_to_none=True)
            (cfg.mapping_lambda * swd).backward()
            self.m_optim.step()
            losses["mapping_swd"] = scalar(swd)

        if cfg.ema_decay > 0:
            decay = self._ema_decay(i)
            accumulate(self.generator_ema, G, decay)
            accumulate(self.encoder_ema, E, decay)
        return losses

    def _encode_render(self, y: torch.Tensor) -> torch.Tensor:
        """W+ of rendered images ``y`` [B, 3, S, S] (not clamped to [-1, 1], not checked)."""
        s = self.inverter.input_size
        if y.shape[-1] != s:
            y = F.interpolate(y, size=(s, s), mode="bilinear", align_corners=False,
                              antialias=True)
        return self.encoder(y) + self.latent_avg

    def _cycle_loss(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The cycle regulariser on detached codes ``w`` [B, L, D] (see the module docstring)
        and the renders it used."""
        cfg: AutoencoderTrainConfig = self.config
        G = self.generator
        n = max(2, int(round(cfg.cycle_batch * w.shape[0])))
        w = w[:n]
        if cfg.cycle_mode == "mix":
            cut = int(torch.randint(1, G.n_latent, (1,), generator=self.rng))
            w_mix = mix_codes(w, cut)
            y = G.synthesize(G.styles(w_mix), noise=cfg.noise_mode)
            w_rec = self._encode_render(y)
            var = w.var(dim=0).mean().clamp_min(1e-8)
            return ((w_rec - w_mix) ** 2).mean() / var, y
        with torch.no_grad():
            styles = G.styles(w)
            flat = torch.cat(styles, dim=1)  # [n, C]
            sd = flat.std(dim=0)
            sd = sd.clamp_min(0.1 * sd.mean())
            C = flat.shape[1]
            k = min(cfg.cycle_channels, C)
            chans = torch.rand(n, C, generator=self.rng).argsort(dim=1)[:, :k].to(flat.device)
            signs = (torch.randint(0, 2, (n, k), generator=self.rng) * 2 - 1).to(flat)
            edited = flat.clone()
            edited.scatter_add_(1, chans, signs * cfg.cycle_sd * sd[chans])
        sizes = [s.shape[1] for s in styles]
        y = G.synthesize(list(edited.split(sizes, dim=1)), noise=cfg.noise_mode)
        rec = torch.cat(G.styles(self._encode_render(y)), dim=1)
        return (((rec - edited) / sd) ** 2).mean(), y

    # ------------------------------------------------------------------ outputs
    def export_inverter(self) -> Inverter:
        """The exported pair (EMA encoder + EMA generator + latent_avg)."""
        return self._ema_inverter

    def export_generator(self) -> Generator:
        """The exported generator (EMA), with ``latent_avg`` [style_dim] set."""
        return self.generator_ema

    def _samples(self) -> torch.Tensor:
        inv = self.export_inverter()
        was = inv.training
        inv.eval()
        try:
            y = inv.reconstruct(self.sample_x, noise=self.config.noise_mode)
        finally:
            inv.train(was)
        return torch.cat([self.sample_x, y])

    def _grid_nrow(self) -> int:
        return self.sample_x.shape[0]

    def opts(self) -> dict[str, Any]:
        """``opts`` of the e4e-layout files: the config plus the encoder architecture."""
        d = self._config_dict()
        d.update(self.config.encoder_config().to_dict())
        d.update({
            "exp_dir": str(self.out_dir),
            "dataset_type": "img2tab",
            "start_from_latent_avg": True,
            "global_step": self.step,
            "trainer": "img2tab.training.autoencoder",
            "concept_world": str(d.get("data", "")).startswith("world"),
            "generator": self.generator.config.to_dict(),
        })
        return d

    def _save(self, step: int) -> Path:
        inv = self.export_inverter()
        save_e4e(inv, self.ckpt_dir / f"iteration_{step:06d}.pt", opts=self.opts())
        extra: dict[str, Any] = {
            "g": self.generator.state_dict(),
            "d": self.discriminator.state_dict(),
            "e": self.encoder.state_dict(),
            "g_optim": self.g_optim.state_dict(),
            "e_optim": self.e_optim.state_dict(),
            "m_optim": self.m_optim.state_dict(),
            "d_optim": self.d_optim.state_dict(),
            "args": self._config_dict(),
            "step": int(step),
            "rng": get_rng_state(self.rng),
            "data": self.data.state_dict(),
        }
        return save_rosinality(self.export_generator(),
                               self.ckpt_dir / f"iteration_{step:06d}_train.pt",
                               latent_avg=self.latent_avg[0], extra=extra)

    def _export(self) -> None:
        save_e4e(self.export_inverter(), self.out_dir / "inverter.pt", opts=self.opts())
        save_rosinality(self.export_generator(), self.out_dir / "generator.pt",
                        latent_avg=self.latent_avg[0],
                        extra={"d": self.discriminator.state_dict(),
                               "args": self._config_dict(), "step": self.step})

    def _stored_config(self, path: Path) -> dict[str, Any]:
        args = load_checkpoint(path).get("args")
        stored = dict(args) if isinstance(args, dict) else {}
        if stored:
            stored.setdefault("color", "rgb")  # runs from before the color option were RGB
        return stored

    def _load(self, path: Path) -> None:
        st = load_checkpoint(path)
        self.generator.load_state_dict(st["g"])
        self.encoder.load_state_dict(st["e"])
        self.discriminator.load_state_dict(st["d"])
        avg = st["latent_avg"].to(self.device).float()
        self.latent_avg.copy_(avg.expand_as(self.latent_avg))
        for inv in (self.inverter, self._ema_inverter):
            inv.latent_avg.copy_(self.latent_avg)
        self.generator.latent_avg = avg
        if self.config.ema_decay > 0:
            self.generator_ema.load_state_dict(st["g_ema"])
            self.generator_ema.latent_avg = avg
            model = load_checkpoint(path.with_name(path.name.replace("_train.pt", ".pt")))
            enc = {k[len("encoder."):]: v for k, v in model["state_dict"].items()
                   if k.startswith("encoder.")}
            self.encoder_ema.load_state_dict(enc)
        for opt, key in ((self.g_optim, "g_optim"), (self.e_optim, "e_optim"),
                         (self.m_optim, "m_optim"), (self.d_optim, "d_optim")):
            self._load_opt(opt, st.get(key))
        if "rng" in st:
            set_rng_state(st["rng"], self.rng)
        if "data" in st:
            self.data.load_state_dict(st["data"])
        self.step = int(st.get("step", 0))


def mix_codes(w: torch.Tensor, cut: int) -> torch.Tensor:
    """Style mixing of a batch of W+ codes ``[B, L, D]``: rows ``< cut`` of image ``i``, rows
    ``>= cut`` of image ``i - 1`` (cyclically)."""
    if not 0 < cut < w.shape[1]:
        raise ValueError(f"cut must lie in [1, {w.shape[1] - 1}], got {cut}")
    return torch.cat([w[:, :cut], w.roll(1, 0)[:, cut:]], dim=1)


def source_is_gray(source: Any, n_check: int = 256) -> bool:
    """True when the first ``n_check`` images of an :class:`ImageSource` have R = G = B."""
    idx = torch.arange(min(len(source), n_check))
    x = source._get(idx)  # uint8 [n, 3, S, S]
    return bool((x[:, 0] == x[:, 1]).all() and (x[:, 1] == x[:, 2]).all())


def tie_gray(G: Generator) -> None:
    """Set every toRGB layer's three output rows (weight and bias) to their mean: R = G = B."""
    with torch.no_grad():
        for m in [G.to_rgb1, *G.to_rgbs]:
            w = m.conv.weight  # [1, 3, in, 1, 1]
            w.copy_(w.mean(dim=1, keepdim=True).expand_as(w))
            m.bias.copy_(m.bias.mean(dim=1, keepdim=True).expand_as(m.bias))


def train_autoencoder(
    config: AutoencoderTrainConfig,
    data: DataArg = None,
    out_dir: str | os.PathLike = "run",
    resume: bool | str | os.PathLike = False,
) -> AutoencoderTrainer:
    """Build an :class:`AutoencoderTrainer`, train it to ``config.steps`` and return it."""
    trainer = AutoencoderTrainer(config, data, out_dir, resume=resume)
    trainer.train()
    return trainer
