"""Shared machinery of the trainers: run directories, seeding, logging, checkpoints, grids, EMA."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import _atomic

__all__ = [
    "RunLog",
    "accumulate",
    "atomic_save",
    "checkpoint_steps",
    "config_to_dict",
    "default_channels",
    "get_rng_state",
    "parse_channels",
    "plain",
    "progressive_stage",
    "progressive_steps",
    "prune_checkpoints",
    "requires_grad",
    "resolve_device",
    "save_grid",
    "scalar",
    "set_rng_state",
]

logger = logging.getLogger("img2tab.training")

# Fields of every training config that only control how long / how verbosely a run goes; a
# resumed run takes these from the new config and everything else from the checkpoint.
RUN_FIELDS = ("steps", "device", "sample_every", "save_every", "log_every", "keep_checkpoints",
              "progress")


# ---------------------------------------------------------------------------- configs
def plain(obj: Any) -> Any:
    """Convert tuples / dataclasses / paths to JSON- and ``weights_only``-friendly plain types."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {k: plain(v) for k, v in asdict(obj).items()}
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    return obj


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A frozen training config as a plain dict (lists instead of tuples)."""
    return {f.name: plain(getattr(cfg, f.name)) for f in fields(cfg)}


def _tuplify(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_tuplify(x) for x in v)
    return v


def config_from_dict(cls: type, d: Mapping[str, Any]) -> Any:
    """Inverse of :func:`config_to_dict`; unknown keys are ignored, lists become tuples."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: _tuplify(v) for k, v in d.items() if k in names})


def default_channels(size: int) -> tuple[tuple[int, int], ...]:
    """Small channel table ``((res, width), ...)``: ``min(256, max(16, 2048 // res))``.

    At 64 px this is 4:256, 8:256, 16:128, 32:64, 64:32 (the CPU-sized decoder of the
    calibration notes).
    """
    out = []
    r = 4
    while r <= size:
        out.append((r, min(256, max(16, 2048 // r))))
        r *= 2
    return tuple(out)


def narrow_channels(size: int) -> tuple[tuple[int, int], ...]:
    """Narrow channel table for concepts that explain: 32 at 4 and 8 px, 16 from 16 px up.

    With few channels per layer every StyleSpace channel carries a larger share of the image, so
    a single-channel edit changes it visibly (benchmarks/RESULTS.md, "A recipe that explains").
    """
    out = []
    r = 4
    while r <= size:
        out.append((r, 32 if r <= 8 else 16))
        r *= 2
    return tuple(out)


def parse_channels(
    spec: str | Mapping[int, int] | Sequence[Sequence[int]] | None, size: int
) -> tuple[tuple[int, int], ...] | None:
    """Parse ``"4:256,8:256,16:128"`` (or a dict / pairs) into sorted ``((res, width), ...)``.

    ``None`` or ``"small"`` gives :func:`default_channels`, ``"narrow"`` :func:`narrow_channels`;
    ``"standard"`` gives None (the rosinality table of the channel multiplier). Every resolution
    4 .. size must be present.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "small"):
        return default_channels(size)
    if isinstance(spec, str) and spec.strip().lower() == "narrow":
        return narrow_channels(size)
    if isinstance(spec, str):
        if spec.strip().lower() in ("standard", "rosinality", "default"):
            return None
        pairs = []
        for item in spec.replace(" ", "").split(","):
            if not item:
                continue
            if ":" not in item:
                raise ValueError(f"channel spec items look like RES:WIDTH, got {item!r} in {spec!r}")
            r, c = item.split(":", 1)
            pairs.append((int(r), int(c)))
    elif isinstance(spec, Mapping):
        pairs = [(int(r), int(c)) for r, c in spec.items()]
    else:
        pairs = [(int(r), int(c)) for r, c in spec]
    table = dict(pairs)
    need = [2**i for i in range(2, int(math.log2(size)) + 1)]
    missing = [r for r in need if r not in table]
    if missing:
        raise ValueError(f"channel spec lacks resolutions {missing} (size {size}): {spec!r}")
    if any(c <= 0 for c in table.values()):
        raise ValueError(f"channel widths must be positive: {spec!r}")
    return tuple((r, table[r]) for r in need)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"`` / None -> cuda if available else cpu."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ---------------------------------------------------------------------------- modules
def scalar(t: torch.Tensor | float) -> float:
    """A loss value as a python float (detached)."""
    return float(t.detach()) if isinstance(t, torch.Tensor) else float(t)


def requires_grad(module: nn.Module, flag: bool) -> None:
    """Set ``requires_grad`` of every parameter of ``module``."""
    for p in module.parameters():
        p.requires_grad_(flag)


@torch.no_grad()
def accumulate(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """EMA update ``ema <- decay * ema + (1 - decay) * model`` of parameters; buffers copied."""
    ema_params = dict(ema.named_parameters())
    for name, p in model.named_parameters():
        ema_params[name].lerp_(p.detach(), 1.0 - decay)
    ema_bufs = dict(ema.named_buffers())
    for name, b in model.named_buffers():
        if name in ema_bufs and ema_bufs[name] is not None:
            ema_bufs[name].copy_(b)


# ---------------------------------------------------------------------------- progressive e4e
def progressive_steps(n_styles: int, start: int | None, every: int) -> list[int] | None:
    """e4e stage boundaries ``[0, start, start + every, ...]`` (``n_styles`` entries), or None."""
    if start is None:
        return None
    return [0] + [int(start) + i * int(every) for i in range(n_styles - 1)]


def progressive_stage(step: int, steps: list[int] | None) -> int:
    """Stage (number of active deltas) at ``step``; 18 (``Inference``) without progression."""
    if steps is None:
        return 18
    stage = 0
    for i, s in enumerate(steps):
        if step >= s:
            stage = i
    return stage


# ---------------------------------------------------------------------------- RNG
def get_rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Global torch (and CUDA) RNG state plus an optional private generator's state."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def set_rng_state(state: Mapping[str, Any], generator: torch.Generator | None = None) -> None:
    """Restore what :func:`get_rng_state` returned (CUDA states only when devices match)."""
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"].cpu())


# ---------------------------------------------------------------------------- files
def atomic_save(obj: object, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same directory, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    """Write a text file atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _atomic.atomic_write_text(path, text)


def checkpoint_steps(directory: str | os.PathLike, pattern: str) -> list[tuple[int, Path]]:
    """``(step, path)`` of files in ``directory`` whose name matches ``pattern`` (one group = the
    step), sorted by step."""
    d = Path(directory)
    if not d.is_dir():
        return []
    rx = re.compile(pattern)
    out = []
    for p in d.iterdir():
        m = rx.fullmatch(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def prune_checkpoints(directory: str | os.PathLike, pattern: str, keep: int,
                      companions: Iterable[str] = ()) -> None:
    """Delete all but the ``keep`` newest checkpoints matching ``pattern`` (0 keeps all).

    ``companions`` are name templates with ``{step:06d}`` deleted alongside each checkpoint.
    """
    if keep <= 0:
        return
    found = checkpoint_steps(directory, pattern)
    for step, path in found[:-keep]:
        for name in companions:
            c = Path(directory) / name.format(step=step)
            if c.exists():
                c.unlink()
        if path.exists():
            path.unlink()


def save_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int = 8) -> Path:
    """Save images ``[N, 3, H, W]`` in [-1, 1] as one PNG grid (``nrow`` images per row)."""
    from PIL import Image

    x = images.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    n, c, h, w = x.shape
    nrow = max(1, min(nrow, n))
    rows = math.ceil(n / nrow)
    grid = torch.zeros(c, rows * (h + 2) + 2, nrow * (w + 2) + 2, dtype=torch.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        grid[:, 2 + r * (h + 2): 2 + r * (h + 2) + h, 2 + k * (w + 2): 2 + k * (w + 2) + w] = x[i]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(path)
    return path


# ---------------------------------------------------------------------------- logging
class RunLog:
    """Loss log of a run: python logging every ``log_every`` steps and one JSON line per step in
    ``<run>/log.jsonl`` (``{"step", "time", **losses}``).

    Args:
        run_dir: the run directory.
        log_every: how often to emit a logging line (0 = never).
        resume_step: when resuming, lines with a step beyond it are dropped from the file.
    """

    def __init__(self, run_dir: str | os.PathLike, log_every: int = 50,
                 resume_step: int | None = None) -> None:
        self.path = Path(run_dir) / "log.jsonl"
        self.log_every = log_every
        self.history: list[dict[str, float]] = []
        self._t0 = time.time()
        if resume_step is not None and self.path.exists():
            kept = []
            for line in self.path.read_text().splitlines():
                try:
                    if int(json.loads(line).get("step", 0)) <= resume_step:
                        kept.append(line)
                except (ValueError, json.JSONDecodeError):
                    continue
            atomic_write_text("".join(x + "\n" for x in kept), self.path)
        elif resume_step is None and self.path.exists():
            self.path.unlink()

    def log(self, step: int, losses: Mapping[str, float]) -> None:
        """Record the losses of (1-based) ``step``."""
        rec = {"step": int(step), "time": round(time.time() - self._t0, 3),
               **{k: float(v) for k, v in losses.items()}}
        self.history.append(rec)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.log_every and step % self.log_every == 0:
            msg = " ".join(f"{k}={v:.4g}" for k, v in losses.items())
            logger.info("step %d: %s", step, msg)
