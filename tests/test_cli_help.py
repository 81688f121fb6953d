"""``--help`` of every subcommand shows each option's default."""

from __future__ import annotations

import argparse

import pytest

from img2tab.cli import HelpFormatter, build_parser, main


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_option_with_a_default_says_it():
    subs = _subparsers()
    assert {"fit", "relevance", "concepts", "debug", "encode", "demo", "benchmark"} <= set(subs)
    missing = []
    for name, sub in subs.items():
        assert sub.formatter_class is HelpFormatter, name
        for action in sub._actions:
            shows = action.default not in (None, False, argparse.SUPPRESS) and (
                action.option_strings or action.nargs in ("?", "*"))
            if not shows:
                continue
            text = sub._get_formatter()._format_action(action)
            if "default" not in text.lower():
                missing.append(f"{name} {'/'.join(action.option_strings)}")
    assert not missing, missing


@pytest.mark.parametrize("cmd, expected", [
    ("debug", "(default: 0.2)"),
    ("relevance", "(default: one-vs-rest)"),
    ("encode", "(default: 1024)"),
    ("benchmark", "(default: benchmark_report)"),
    ("demo", "(default: default)"),  # --model's value 'default' is shown, not mistaken for the word
])
def test_help_text_shows_values(cmd, expected, capsys):
    with pytest.raises(SystemExit) as exc:
        main([cmd, "--help"])
    assert exc.value.code == 0
    assert expected in " ".join(capsys.readouterr().out.split())
