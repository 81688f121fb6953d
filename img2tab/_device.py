"""Checking a torch device request before any work starts."""

from __future__ import annotations

import torch

from .errors import Img2TabInputError

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None, what: str = "device") -> torch.device:
    """A usable :class:`torch.device` for ``device`` (None -> cpu), or a one-line error.

    Raises:
        Img2TabInputError: naming ``what`` when the string is not a device (``"gpu0"``), asks for
            CUDA / MPS where none is available, or names a CUDA index beyond the visible devices.
    """
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise Img2TabInputError(
            f"{what} {str(device)!r} is not a torch device (use cpu, cuda, cuda:1, mps)"
        ) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise Img2TabInputError(f"{what} {str(device)!r} asks for CUDA, but no CUDA GPU is available "
                                    "(use cpu)")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise Img2TabInputError(f"{what} {str(device)!r}: only {n} CUDA device(s) visible")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise Img2TabInputError(f"{what} {str(device)!r} asks for MPS, which is not available here")
    elif dev.type != "cpu":
        raise Img2TabInputError(f"{what} {str(device)!r}: img2tab runs on cpu, cuda or mps")
    return dev
