"""Deprecated alias of :mod:`img2tab.world.evaluation`; removed in the next release."""

from __future__ import annotations

import warnings

from .world.evaluation import *  # noqa: F403
from .world.evaluation import __all__  # noqa: F401

warnings.warn(
    "img2tab.evaluation is deprecated and will be removed in the next release; import from "
    "img2tab.world.evaluation (and encode with Inverter.encode_psi) instead",
    DeprecationWarning,
    stacklevel=2,
)
