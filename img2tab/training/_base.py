"""The training loop shared by the three trainers (run dir, resume, logging, samples, saving)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._common import (
    RUN_FIELDS,
    RunLog,
    atomic_write_text,
    checkpoint_steps,
    config_from_dict,
    config_to_dict,
    prune_checkpoints,
    resolve_device,
)
from .data import ImageSource, open_source

__all__ = ["Trainer"]

logger = logging.getLogger("img2tab.training")

DataArg = ImageSource | str | os.PathLike | np.ndarray | torch.Tensor | None


class Trainer:
    """Base class: subclasses build models in :meth:`_build`, run one iteration in
    :meth:`_step`, and read / write checkpoints in :meth:`_save` / :meth:`_load`.

    Args:
        config: the trainer's frozen config dataclass.
        data: training images (see :func:`~img2tab.training.data.open_source`); None uses
            ``config.data``.
        out_dir: run directory (created): checkpoints, samples, ``log.jsonl``, ``config.json``.
        resume: False; True for the latest checkpoint in ``out_dir`` (a fresh start when there is
            none); or a checkpoint path. Starting a new run in a directory that already holds
            checkpoints raises ``ValueError``. A resumed run keeps the stored configuration except for
            the run-length fields (steps, device, sample/save/log intervals, progress).
    """

    config_cls: type
    #: regex (one group = step) of the file that marks a complete checkpoint in ``ckpt_dir``
    ckpt_pattern: str = r"(\d+)\.pt"
    #: templates of files deleted together with a pruned checkpoint
    ckpt_companions: tuple[str, ...] = ()

    def __init__(self, config: Any, data: DataArg = None, out_dir: str | os.PathLike = "run",
                 resume: bool | str | os.PathLike = False) -> None:
        if not isinstance(config, self.config_cls):
            raise TypeError(f"config must be a {self.config_cls.__name__}, got {type(config)}")
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.sample_dir = self.out_dir / "samples"
        resume_path = self._find_resume(resume)
        if resume_path is None and checkpoint_steps(self.ckpt_dir, self.ckpt_pattern):
            raise ValueError(f"{self.ckpt_dir} holds checkpoints of an earlier run: pass "
                             "resume=True (--resume) to continue it, or choose another run "
                             "directory")
        if resume_path is not None:
            stored = self._stored_config(resume_path)
            if stored:
                run = {k: getattr(config, k) for k in RUN_FIELDS}
                config = replace(config_from_dict(self.config_cls, stored), **run)
        self.config = config
        self.device = resolve_device(config.device)
        self._prepare(resume_path)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.step = 0
        # The trainer's global-RNG stream (weight init, noise, dropout) lives in self._torch_state and
        # is swapped in only while the trainer runs, so the caller's global RNG is never reseeded.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self._torch_state = torch.random.get_rng_state()
        #: private RNG for latent samples and other per-step randomness (CPU)
        self.rng = torch.Generator().manual_seed(config.seed + 1)
        if data is None:
            if not getattr(config, "data", ""):
                raise ValueError("no training data given (data argument or config.data)")
            data = config.data
        self.data = open_source(data, self.image_size, seed=config.seed,
                                mirror=getattr(config, "mirror", False))
        with self._own_rng():
            self._build()
        if resume_path is not None:
            self._load(resume_path)
            logger.info("resumed from %s at step %d", resume_path, self.step)
        self.log = RunLog(self.out_dir, config.log_every,
                          resume_step=self.step if resume_path is not None else None)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json.dumps(self._config_dict(), indent=2), self.out_dir / "config.json")
        self._last_saved = self.step if resume_path is not None else -1

    # ------------------------------------------------------------------ subclass hooks
    @property
    def image_size(self) -> int:
        """Side of the training images."""
        return int(self.config.size)

    def _prepare(self, resume_path: Path | None) -> None:
        """Work needed before the data is opened (e.g. loading a frozen generator)."""

    def _build(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _step(self, i: int) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _save(self, step: int) -> Path:  # pragma: no cover - abstract
        raise NotImplementedError

    def _load(self, path: Path) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _stored_config(self, path: Path) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _samples(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _export(self) -> None:
        """Write the final models (called at the end of :meth:`train`)."""

    # ------------------------------------------------------------------ helpers
    def _config_dict(self) -> dict[str, Any]:
        d = config_to_dict(self.config)
        if not d.get("data") and isinstance(self.data, ImageSource):
            d["data"] = self.data.name
        return d

    def _find_resume(self, resume: bool | str | os.PathLike) -> Path | None:
        if resume is False or resume is None:
            return None
        if resume is True:
            found = checkpoint_steps(self.ckpt_dir, self.ckpt_pattern)
            if not found:
                logger.info("no checkpoint in %s: starting a new run", self.ckpt_dir)
                return None
            return found[-1][1]
        p = Path(resume)
        if not p.exists():
            raise FileNotFoundError(f"checkpoint to resume from {str(p)!r} not found")
        return p

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint in the run directory, or None."""
        found = checkpoint_steps(self.ckpt_dir, self.ckpt_pattern)
        return found[-1][1] if found else None

    def _batch(self) -> torch.Tensor:
        return self.data.next_batch(self.config.batch, self.device)

    def _randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self.rng).to(self.device)

    # ------------------------------------------------------------------ public
    def train_step(self) -> dict[str, float]:
        """Run one training iteration, log it and advance :attr:`step`. Returns its losses."""
        losses = self._step(self.step)
        self.step += 1
        self.log.log(self.step, losses)
        return losses

    def save(self) -> Path:
        """Write a checkpoint for the current step (atomically) and prune old ones."""
        path = self._save(self.step)
        self._last_saved = self.step
        prune_checkpoints(self.ckpt_dir, self.ckpt_pattern, self.config.keep_checkpoints,
                          self.ckpt_companions)
        logger.info("saved checkpoint %s", path)
        return path

    def save_samples(self) -> Path:
        """Write the sample grid of the current step to ``samples/<step>.png``."""
        from ._common import save_grid

        with torch.no_grad():
            images = self._samples()
        return save_grid(images, self.sample_dir / f"{self.step:06d}.png",
                         nrow=self._grid_nrow())

    def _grid_nrow(self) -> int:
        return 8

    def train(self, steps: int | None = None) -> list[dict[str, float]]:
        """Train until ``steps`` (default ``config.steps``) iterations in total have run.

        Samples are written every ``sample_every`` steps, checkpoints every ``save_every``
        steps and at the end; the final models are exported at the end.

        Returns:
            The loss records of this call (``{"step", "time", ...}`` per iteration).
        """
        from tqdm.auto import tqdm

        cfg = self.config
        target = int(cfg.steps if steps is None else steps)
        start = len(self.log.history)
        bar = tqdm(total=target, initial=min(self.step, target), disable=not cfg.progress,
                   desc=type(self).__name__, dynamic_ncols=True)
        with self._own_rng():
            try:
                while self.step < target:
                    losses = self.train_step()
                    bar.update(1)
                    if cfg.progress:
                        bar.set_postfix({k: f"{v:.3g}" for k, v in list(losses.items())[:4]})
                    if cfg.sample_every and self.step % cfg.sample_every == 0:
                        self.save_samples()
                    if cfg.save_every and self.step % cfg.save_every == 0:
                        self.save()
            finally:
                bar.close()
        if self._last_saved != self.step:
            self.save()
        self._export()
        return self.log.history[start:]

    @contextlib.contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Run with the trainer's own global-RNG state swapped in (the caller's is restored after)."""
        with torch.random.fork_rng(devices=[]):
            torch.random.set_rng_state(self._torch_state)
            try:
                yield
            finally:
                self._torch_state = torch.random.get_rng_state()

    @staticmethod
    def _opt_state(opt: torch.optim.Optimizer) -> dict[str, Any]:
        return opt.state_dict()

    def _load_opt(self, opt: torch.optim.Optimizer, state: Mapping[str, Any] | None) -> None:
        if state:
            opt.load_state_dict(state)  # tensors follow the params' device
