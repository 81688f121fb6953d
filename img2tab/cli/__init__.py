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
import copy
import errno
import importlib
import logging
import re
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from .._version import __version__

__all__ = ["HelpFormatter", "build_parser", "main"]

# Modules that contribute subcommands, in the order they appear in ``--help``.
_COMMAND_MODULES = ("_tabular", "_networks", "_training", "_demo", "_benchmark")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with every option's default: ``(default: X)`` is appended unless the help text
    already says its default, or the default is None / False (flags, and options whose default
    is stated in words because a config fills it)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if _STATES_DEFAULT.search(text) or not _has_default(action):
            return action.help
        return f"{text} (default: %(default)s)".strip()

    def _format_action(self, action: argparse.Action) -> str:
        if action.help is None and _has_default(action):  # no help text: still show the default
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)


# "default" as a word of the help text, not the quoted value 'default' (e.g. --model 'default')
_STATES_DEFAULT = re.compile(r"(?<!['\"])\bdefault\b(?!['\"])", re.IGNORECASE)


def _has_default(action: argparse.Action) -> bool:
    """True for an option whose default is worth showing (not None, False or suppressed)."""
    if action.default is None or action.default is False or action.default == argparse.SUPPRESS:
        return False
    return bool(action.option_strings) or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose help (its own and its subcommands') uses :class:`HelpFormatter`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every available subcommand (``--help`` shows defaults)."""
    parser = _Parser(
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
