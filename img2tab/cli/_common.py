"""Helpers shared by several subcommands: loading an inverter, checking devices and output paths
before any work starts."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from img2tab.errors import Img2TabInputError

__all__ = [
    "add_cluster", "add_overwrite", "check_device", "check_output", "cluster_client", "load_inverter_spec"
]


def load_inverter_spec(spec: str, device: str = "cpu") -> Any:
    """``"default"`` -> the embedded default inverter; anything else -> ``load_inverter(spec)``."""
    check_device(device)
    if spec == "default":
        from img2tab.default import load_default

        return load_default(device=device)
    from img2tab import load_inverter

    return load_inverter(spec, device=device)


def check_device(device: str | None, what: str = "--device", allow_auto: bool = False) -> None:
    """Raise :class:`Img2TabInputError` unless ``device`` is usable here (None passes;
    ``"auto"`` passes when ``allow_auto``)."""
    if device is None or (allow_auto and device == "auto"):
        return
    from img2tab import resolve_device

    resolve_device(device, what)


def add_overwrite(p: Any) -> None:
    """Add ``--overwrite`` to a subparser."""
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")


def check_output(path: str | os.PathLike | None, kind: str, overwrite: bool = False,
                 what: str = "--output", existing_dir_ok: bool = False) -> None:
    """Check that ``path`` can be written before any work starts.

    Args:
        path: the output (None or ``"-"`` = stdout, always fine).
        kind: ``"file"`` or ``"dir"``.
        overwrite: an existing output may be replaced.
        what: the option's name, used in messages.
        existing_dir_ok: a ``"dir"`` output may already exist (report folders, resumable runs).

    Raises:
        Img2TabInputError: the output is a directory where a file is wanted (or the reverse),
            exists without ``overwrite``, or its nearest existing parent is not a writable folder.
    """
    if path is None or str(path) == "-":
        return
    p = Path(path).expanduser()
    if p.exists():
        if kind == "file" and p.is_dir():
            raise Img2TabInputError(f"{what} {str(path)!r} is a directory; give a file name")
        if kind == "dir" and not p.is_dir():
            raise Img2TabInputError(f"{what} {str(path)!r} is an existing file; give a folder name")
        if not overwrite and not (kind == "dir" and (existing_dir_ok or not any(p.iterdir()))):
            raise Img2TabInputError(f"{what} {str(path)!r} already exists (add --overwrite to replace it)")
        if not os.access(p, os.W_OK):
            raise Img2TabInputError(f"{what} {str(path)!r} is not writable (permission denied)")
        return
    parent = p.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise Img2TabInputError(f"{what} {str(path)!r}: {str(parent)!r} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise Img2TabInputError(f"{what} {str(path)!r}: cannot write in {str(parent)!r} (permission denied)")


def add_cluster(p: Any) -> None:
    """Add ``--scheduler ADDRESS`` / ``--workers N`` (run on a Dask cluster; needs img2tab[distributed])."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="run on this Dask scheduler (e.g. tcp://host:8786); needs img2tab[distributed]")
    g.add_argument("--workers", type=int, metavar="N", default=None,
                   help="run on a local Dask cluster of N worker processes; needs img2tab[distributed]")


@contextlib.contextmanager
def cluster_client(args: Any) -> Iterator[Any]:
    """A Dask client for ``--scheduler`` / ``--workers`` (None when neither is given); closed after."""
    if getattr(args, "scheduler", None) is None and getattr(args, "workers", None) is None:
        yield None
        return
    from img2tab.distributed import get_client

    client = get_client(args.scheduler, args.workers)
    try:
        yield client
    finally:
        cluster = client.cluster if args.workers is not None else None
        client.close()
        if cluster is not None:
            cluster.close()
