"""The ``img2tab`` command line.

Each group of subcommands lives in its own private module exposing
``register(subparsers) -> None``; every subcommand sets ``func(args) -> int``.
Errors that come from bad input (:class:`img2tab.errors.Img2TabInputError`, ``FileNotFoundError``,
``ValueError``) end the program with exit code 2 and a one-line reason.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from .._version import __version__

__all__ = ["build_parser", "main"]

# Modules that contribute subcommands, in the order they appear in ``--help``.
_COMMAND_MODULES = ("_tabular", "_networks", "_training", "_demo", "_benchmark")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="img2tab",
        description="Img2Tab: explainable image classification by StyleGAN2 StyleSpace concepts.",
    )
    parser.add_argument("--version", action="version", version=f"img2tab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:  # a command group not present in this build
            if exc.name != f"{__name__}.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``img2tab`` console script. Returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, IndexError, KeyError, TypeError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"img2tab {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
