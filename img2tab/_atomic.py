"""The one atomic writer of img2tab: files and folders appear complete or not at all.

Every writer puts its data in a temporary sibling (same folder, so the final rename stays on one
file system), flushes and fsyncs it, then renames it over the target with :func:`os.replace`.
A failure (an exception, a full disk, Ctrl-C) at any point before the rename leaves the
previous file or folder untouched and removes the temporary.

* :func:`atomic_path` -- a context manager yielding a temporary path to write by any means
  (``booster.save_model(tmp)``); it keeps the target's suffix, so writers that pick a format from
  the extension still work.
* :func:`atomic_write_bytes`, :func:`atomic_write_text`, :func:`atomic_write_json`,
  :func:`atomic_save_npz` -- the common cases.
* :func:`atomic_dir` -- a context manager yielding a temporary folder; on success an existing
  folder at the target is renamed aside, the new one renamed into place and the old one removed,
  so at every instant the target is absent, the complete old folder or the complete new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from img2tab._json import jsonable

__all__ = [
    "atomic_dir",
    "atomic_path",
    "atomic_save_npz",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_dir",
]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a folder's entries to disk (best effort: not every platform can open folders)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: Path) -> None:
    with contextlib.suppress(OSError), open(path, "rb+") as f:
        os.fsync(f.fileno())


def _tmp_name(target: Path, kind: str) -> Path:
    token = uuid.uuid4().hex[:12]
    return target.with_name(f".{target.stem}.{kind}-{token}{target.suffix}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; rename it over ``path`` on success.

    Args:
        path: the target file (its folder must exist; it is not created).

    Yields:
        The temporary path (same folder, same suffix). Write the whole file there.

    Raises:
        IsADirectoryError: ``path`` is an existing folder.
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"{target} is a directory; cannot write a file there")
    tmp = _tmp_name(target, "tmp")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written for {target}")
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise
    fsync_dir(target.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically. Returns the path."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically. Returns the path."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` (through :func:`~img2tab._json.jsonable`) as strict JSON, atomically."""
    text = json.dumps(jsonable(obj), indent=indent, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def atomic_savefig(fig: Any, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Save a matplotlib figure atomically (format from the suffix of ``path``). Returns the path."""
    target = Path(path)
    fmt = kwargs.pop("format", None) or (target.suffix.lstrip(".") or "png")
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format=fmt, **kwargs)
    return target


def atomic_save_npz(path: str | os.PathLike[str], **arrays: Any) -> Path:
    """Save arrays to an ``.npz`` file atomically, never as pickles.

    Args:
        path: target file (``.npz`` is not appended).
        **arrays: name -> array-like; object arrays are refused.

    Returns:
        The path.

    Raises:
        ValueError: an array has dtype object (it would need a pickle).
    """
    clean = {}
    for name, value in arrays.items():
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise ValueError(f"array {name!r} has dtype object; img2tab never saves pickles")
        clean[name] = arr
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, allow_pickle=False, **clean)
    return Path(path)


@contextlib.contextmanager
def atomic_dir(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = True,
    replaceable: Callable[[Path], bool] | None = None,
) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; swap it in for ``path`` on success.

    Args:
        path: the target folder (parents are created).
        overwrite: replace an existing folder at ``path``.
        replaceable: called with an existing ``path``; return False to refuse replacing it
            (e.g. a folder that is not an img2tab artifact). None accepts any folder.

    Yields:
        The temporary folder (empty). Write every file of the artifact into it.

    Raises:
        FileExistsError: ``path`` exists and may not be replaced (a file, ``overwrite=False``,
            or ``replaceable`` said no). Nothing is written then.
    """
    target = Path(path)
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise FileExistsError(f"{target} exists and is not a directory; refusing to replace it")
        if not overwrite:
            raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
        if replaceable is not None and not replaceable(target):
            raise FileExistsError(
                f"{target} exists and is not a folder img2tab wrote; refusing to replace it"
            )
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
    old = parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        yield tmp
        for child in tmp.iterdir():
            if child.is_file():
                _fsync_file(child)
        fsync_dir(tmp)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        fsync_dir(parent)
    except BaseException:
        _remove(tmp)
        if old.exists() and not target.exists():
            os.replace(old, target)  # put the previous folder back
        raise
    _remove(old)
