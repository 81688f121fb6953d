"""Deprecated alias of :mod:`img2tab.world` (the concept world moved there); removed in the next release."""

from __future__ import annotations

import warnings

from ..world import *  # noqa: F403
from ..world import __all__  # noqa: F401

warnings.warn(
    "img2tab.data is deprecated and will be removed in the next release; import from img2tab.world instead",
    DeprecationWarning,
    stacklevel=2,
)
