"""Helpers shared by several subcommands."""

from __future__ import annotations

from typing import Any

__all__ = ["load_inverter_spec"]


def load_inverter_spec(spec: str, device: str = "cpu") -> Any:
    """``"default"`` -> the embedded default inverter; anything else -> ``load_inverter(spec)``."""
    if spec == "default":
        from img2tab.default import load_default

        return load_default(device=device)
    from img2tab.checkpoints import load_inverter

    return load_inverter(spec, device=device)
