"""Lazy, cached builds of img2tab's CUDA extensions.

Nothing here runs at import time: :func:`get_plugin` builds an extension with
``torch.utils.cpp_extension.load`` (ninja + nvcc) the first time a CUDA tensor reaches an op, and
caches the outcome for the life of the process. A failed build emits one warning and the ops use
their pure-PyTorch reference from then on (an explicit ``impl="cuda"`` raises instead).

Each build lives in ``$TORCH_EXTENSIONS_DIR/img2tab_<op>_<hash>`` (torch's default cache root when
the variable is unset), where the hash covers every source and header of the op plus the Python,
torch and CUDA versions. Edited sources therefore always get a fresh directory, and the extension
names (``img2tab_upfirdn2d``, ``img2tab_fused_act``) cannot collide with other projects' builds.
Sources are copied into a temporary directory and moved into place with an atomic rename, so
concurrent processes are safe.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from types import ModuleType

import torch

__all__ = ["CUDA_DIR", "OPS", "build_directory", "build_plugin", "get_plugin", "source_files"]

logger = logging.getLogger(__name__)

CUDA_DIR = Path(__file__).resolve().parent / "cuda"

# op name -> (sources handed to the compiler, headers they include)
OPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "upfirdn2d": (("upfirdn2d.cpp", "upfirdn2d.cu"), ("common.h", "binding.h", "upfirdn2d.h")),
    "fused_act": (("fused_act.cpp", "fused_act.cu"), ("common.h", "binding.h", "fused_act.h")),
}

# Outcome cache: op -> loaded module, or None once its build failed (error kept in _ERRORS).
_PLUGINS: dict[str, ModuleType | None] = {}
_ERRORS: dict[str, BaseException] = {}
_LOCK = threading.Lock()


def _check_op(op: str) -> None:
    if op not in OPS:
        raise ValueError(f"unknown CUDA op {op!r}; expected one of {sorted(OPS)}")


def source_files(op: str) -> list[Path]:
    """All files of an op's extension: sources first, then headers.

    Args:
        op: ``"upfirdn2d"`` or ``"fused_act"``.

    Returns:
        Absolute paths inside ``img2tab/ops/cuda``.
    """
    _check_op(op)
    sources, headers = OPS[op]
    return [CUDA_DIR / name for name in (*sources, *headers)]


def _digest(op: str) -> str:
    h = hashlib.sha256()
    for path in source_files(op):
        h.update(path.name.encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    versions = f"py{sys.version_info[0]}.{sys.version_info[1]}|torch{torch.__version__}"
    h.update(f"{versions}|cuda{torch.version.cuda}".encode())
    return h.hexdigest()[:16]


def build_directory(op: str) -> Path:
    """Directory the op's extension is built in (not created here).

    Args:
        op: ``"upfirdn2d"`` or ``"fused_act"``.

    Returns:
        ``<root>/img2tab_<op>_<hash>``, root being ``$TORCH_EXTENSIONS_DIR`` or torch's default.
    """
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if not root:
        from torch.utils.cpp_extension import get_default_build_root

        root = get_default_build_root()
    return Path(root) / f"img2tab_{op}_{_digest(op)}"


def _stage_sources(op: str, target: Path) -> None:
    """Copies the op's files into ``target`` atomically (no-op when already there)."""
    if all((target / p.name).is_file() for p in source_files(op)):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for path in source_files(op):
            shutil.copyfile(path, tmp / path.name)
        try:
            os.replace(tmp, target)  # atomic; fails if another process got there first
        except OSError:
            if not all((target / p.name).is_file() for p in source_files(op)):
                for path in source_files(op):
                    shutil.copyfile(path, target / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_plugin(op: str) -> ModuleType:
    """Builds (or reuses a previous build of) an op's extension and imports it. Not cached.

    Args:
        op: ``"upfirdn2d"`` or ``"fused_act"``.

    Returns:
        The extension module (``img2tab_<op>``).

    Raises:
        Exception: whatever ``torch.utils.cpp_extension.load`` raises (no nvcc, compiler error).
    """
    from torch.utils import cpp_extension

    target = build_directory(op)
    _stage_sources(op, target)
    sources, _ = OPS[op]
    logger.info("img2tab: building/loading CUDA extension %r in %s", op, target)
    module = cpp_extension.load(
        name=f"img2tab_{op}",
        sources=[str(target / name) for name in sources],
        extra_cflags=["-O3"],
        extra_cuda_cflags=["-O3"],
        build_directory=str(target),
        verbose=logger.isEnabledFor(logging.DEBUG),
        with_cuda=True,
    )
    logger.info("img2tab: loaded CUDA extension %r", op)
    return module


def get_plugin(op: str, *, strict: bool = False) -> ModuleType | None:
    """The op's extension module, built on first use; the outcome is cached per process.

    Args:
        op: ``"upfirdn2d"`` or ``"fused_act"``.
        strict: raise instead of returning ``None`` when the build failed.

    Returns:
        The module, or ``None`` when it cannot be built (one ``RuntimeWarning`` per op and
        process, at the first failure).

    Raises:
        RuntimeError: ``strict`` and the build failed (the build error is chained).
    """
    _check_op(op)
    with _LOCK:
        if op not in _PLUGINS:
            try:
                _PLUGINS[op] = build_plugin(op)
            except Exception as exc:  # any build failure means "use the reference"
                _PLUGINS[op] = None
                _ERRORS[op] = exc
                logger.debug("img2tab: CUDA extension %r failed to build", op, exc_info=True)
                warnings.warn(
                    f"img2tab: could not build the CUDA extension for {op!r} "
                    f"({type(exc).__name__}: {_first_line(exc)}); using the PyTorch reference "
                    "implementation instead. Set IMG2TAB_OPS=ref to skip the build.",
                    RuntimeWarning,
                    stacklevel=4,  # get_plugin <- select_plugin <- op <- caller
                )
        module = _PLUGINS[op]
    if module is None and strict:
        raise RuntimeError(
            f"img2tab: impl='cuda' was requested but the CUDA extension for {op!r} could not be "
            "built; see the chained error, or use impl='auto' / 'ref'"
        ) from _ERRORS.get(op)
    return module


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else "no message"


def _reset_cache() -> None:
    """Forgets cached build outcomes (for tests)."""
    with _LOCK:
        _PLUGINS.clear()
        _ERRORS.clear()
