"""Choice between the CUDA kernels and the pure-PyTorch reference.

``impl`` is ``"auto"`` (the default), ``"ref"`` or ``"cuda"``:

* ``"auto"`` defers to the environment variable ``IMG2TAB_OPS`` (``auto`` | ``ref`` | ``cuda``,
  default ``auto``). Resolved ``auto`` runs the CUDA kernel when the tensor is on a CUDA device and
  the lazy build succeeds; a failed build warns once and the reference runs from then on.
* ``"ref"`` always runs the reference (the semantic specification).
* ``"cuda"`` runs the CUDA kernel for CUDA tensors and raises ``RuntimeError`` if it cannot be
  built. CPU tensors still run the reference: the kernels are CUDA-only and the setting may come
  from the environment for a whole program that also works on CPU.
"""

from __future__ import annotations

import os
from types import ModuleType

import torch

from ._plugin import get_plugin

__all__ = ["ENV_VAR", "IMPLS", "resolve_impl", "select_plugin"]

ENV_VAR = "IMG2TAB_OPS"
IMPLS: tuple[str, ...] = ("auto", "ref", "cuda")


def resolve_impl(impl: str) -> str:
    """Applies ``IMG2TAB_OPS`` to ``impl`` and validates both.

    Args:
        impl: ``"auto"``, ``"ref"`` or ``"cuda"``.

    Returns:
        ``"auto"``, ``"ref"`` or ``"cuda"``; ``"auto"`` only if the environment says so too.

    Raises:
        ValueError: ``impl`` or the environment variable is not one of :data:`IMPLS`.
    """
    if not isinstance(impl, str) or impl not in IMPLS:
        raise ValueError(f"impl={impl!r} is not valid; expected one of {', '.join(IMPLS)}")
    if impl == "auto":
        env = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
        if env not in IMPLS:
            raw = os.environ[ENV_VAR]
            raise ValueError(f"{ENV_VAR}={raw!r} is not valid; expected one of {', '.join(IMPLS)}")
        impl = env
    return impl


def select_plugin(impl: str, x: torch.Tensor, op: str) -> ModuleType | None:
    """The CUDA extension to run ``op`` on ``x`` with, or ``None`` for the reference.

    Args:
        impl: ``"auto"``, ``"ref"`` or ``"cuda"``.
        x: the op's input; only its device matters.
        op: ``"upfirdn2d"`` or ``"fused_act"``.

    Returns:
        The loaded extension module, or ``None`` when the reference should run.

    Raises:
        ValueError: invalid ``impl`` / ``IMG2TAB_OPS``.
        RuntimeError: ``impl`` resolved to ``"cuda"``, ``x`` is on CUDA and the build failed.
    """
    resolved = resolve_impl(impl)
    if resolved == "ref" or x.device.type != "cuda":
        return None
    return get_plugin(op, strict=resolved == "cuda")
