"""Training: StyleGAN2 (adversarial), e4e (encoder on a frozen generator) and the joint
reconstruction autoencoder (encoder + generator together, img2tab's CPU-budget recipe).

Every trainer takes a frozen config dataclass, training images (a folder, an array / tensor, the
concept world ``"world:N:SEED"`` or an :class:`ImageSource`) and a run directory; it writes
checkpoints that the public loaders read (:func:`img2tab.checkpoints.load_generator`,
:func:`~img2tab.checkpoints.load_inverter`, :func:`~img2tab.checkpoints.load_discriminator`),
``log.jsonl``, ``config.json`` and sample grids, and resumes from its latest checkpoint with
``resume=True``.

Example::

    from img2tab.training import AutoencoderTrainConfig, train_autoencoder

    cfg = AutoencoderTrainConfig(size=64, steps=5000, device="auto")
    trainer = train_autoencoder(cfg, "world:20000:0", "runs/ae")
    inverter = trainer.export_inverter().eval()       # or load_inverter("runs/ae/inverter.pt")
"""

from __future__ import annotations

from ._common import default_channels, parse_channels
from .autoencoder import AutoencoderTrainConfig, AutoencoderTrainer, train_autoencoder
from .data import ImageSource, open_source
from .e4e import E4ETrainConfig, E4ETrainer, train_e4e
from .losses import LatentCodesDiscriminator, ms_ssim, ssim
from .stylegan2 import StyleGAN2TrainConfig, StyleGAN2Trainer, train_stylegan2

__all__ = [
    "AutoencoderTrainConfig",
    "AutoencoderTrainer",
    "E4ETrainConfig",
    "E4ETrainer",
    "ImageSource",
    "LatentCodesDiscriminator",
    "StyleGAN2TrainConfig",
    "StyleGAN2Trainer",
    "default_channels",
    "ms_ssim",
    "open_source",
    "parse_channels",
    "ssim",
    "train_autoencoder",
    "train_e4e",
    "train_stylegan2",
]
