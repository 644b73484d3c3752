"""Every command and every option says what it is for in `--help`."""

from __future__ import annotations

import argparse

import pytest

from bootstrap.cli import _parser


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = {"": parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def test_every_command_has_help() -> None:
    parser = _parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helped = {choice.dest for choice in sub._choices_actions if choice.help}
    assert helped == set(sub.choices) >= {"run", "status", "runs", "stop", "cancel", "trade", "backtest"}


@pytest.mark.parametrize("command", sorted(_commands(_parser())))
def test_every_option_of_every_command_has_help(command: str) -> None:
    parser = _commands(_parser())[command]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help and action.help != argparse.SUPPRESS, f"{command or 'gridbot'} {name} has no help"


def test_help_shows_the_new_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["stop", "--help"])
    out = capsys.readouterr().out
    assert "--cancel-orders" in out and "--yes" in out
