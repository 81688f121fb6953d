"""The one JSON encoder and the one safe JSON reader of img2tab.

:func:`jsonable` turns numpy scalars/arrays, paths, tuples and mappings into plain JSON values
(non-finite floats become the strings ``"nan"``, ``"inf"``, ``"-inf"``, so the output is strict
JSON). :func:`read_json` reads a JSON file and raises a one-line
:class:`~img2tab.errors.Img2TabInputError` naming the file when it is missing, unreadable,
truncated or not JSON.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np

from img2tab.errors import Img2TabInputError

__all__ = ["jsonable", "read_json"]


def jsonable(obj: Any) -> Any:
    """A copy of ``obj`` made of ``dict``/``list``/``str``/``int``/``float``/``bool``/``None``.

    Args:
        obj: nested mappings, lists/tuples, numpy scalars and arrays, paths and JSON scalars.

    Returns:
        The plain JSON value; non-finite floats as ``"nan"``/``"inf"``/``"-inf"`` strings.

    Raises:
        TypeError: an object of another type (named in the message).
    """
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"{type(obj).__name__} value {obj!r} is not JSON serialisable")


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """Parse the JSON file ``path``; every failure is one line naming the file.

    Args:
        path: the file.
        what: what the file is, for the message (e.g. ``"classifier header"``).

    Returns:
        The parsed value.

    Raises:
        Img2TabInputError: missing, unreadable, not UTF-8, truncated or invalid JSON.
    """
    p = os.fspath(path)
    try:
        with open(p, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError as exc:
        raise Img2TabInputError(f"{what} {p} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        msg = " ".join(str(exc).split())
        raise Img2TabInputError(f"cannot read {what} {p}: {msg}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:  # JSONDecodeError and recursion/size errors
        msg = " ".join(str(exc).split())
        raise Img2TabInputError(f"{what} {p} is not valid JSON (corrupt or truncated): {msg}") from exc
