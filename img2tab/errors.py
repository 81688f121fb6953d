"""Exceptions raised by img2tab for bad input."""

from __future__ import annotations

__all__ = ["CheckpointError", "Img2TabInputError"]


class Img2TabInputError(ValueError):
    """Input data is unusable (NaN, wrong shape, single class, ...). The message says what to fix."""


class CheckpointError(ValueError):
    """A checkpoint file does not match the expected architecture or layout."""
