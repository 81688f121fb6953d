"""The ``img2tab`` command line.

Each group of subcommands lives in its own private module exposing
``register(subparsers) -> None``; every subcommand sets ``func(args) -> int``, and imports only
public img2tab names.

Error behaviour: bad input (:class:`img2tab.errors.Img2TabInputError`,
:class:`img2tab.errors.CheckpointError`, other ``ValueError`` / ``IndexError`` / ``KeyError`` raised
for input), OS errors (missing file, file exists, is a directory, permission denied, disk full) and
unusable devices end the program with exit code 2 and ONE line on stderr,
``img2tab COMMAND: error: ...``; Ctrl-C ends it with exit code 130 and one line. Any other exception
is a bug and shows its traceback. With ``-v`` the traceback is always printed (before the line).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys
import traceback
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
    except KeyboardInterrupt:
        if args.verbose:
            traceback.print_exc()
        print(f"img2tab {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"img2tab {args.command}: error: {_os_message(exc)}", file=sys.stderr)
        return 2
    except (ValueError, IndexError, KeyError) as exc:  # Img2TabInputError, CheckpointError, ...
        if args.verbose:
            traceback.print_exc()
        print(f"img2tab {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


_OS_REASONS = {
    errno.ENOSPC: "no space left on device (disk full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EEXIST: "already exists",
    errno.EISDIR: "is a directory",
    errno.ENOTDIR: "not a directory",
    errno.ENOENT: "no such file or directory",
    errno.EROFS: "read-only file system",
}


def _os_message(exc: OSError) -> str:
    """``'path': reason`` for an OS error (the path it names, when it names one)."""
    reason = _OS_REASONS.get(exc.errno or -1) or exc.strerror
    if exc.filename is not None and reason:
        return f"{str(exc.filename)!r}: {reason}"
    return reason or _one_line(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
