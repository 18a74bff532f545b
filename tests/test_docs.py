"""The docs keep up with the product: every CLI command and every `/tokenwise` subcommand is documented,
and every `tokenwise ...` invocation the README shows names a real command (in the spirit of
sqlite-utils' test_commands_are_documented)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from bot.cli import commands  # noqa: F401  (registers every command group)
from bot.cli.root import app
from handlers.slack import slash  # noqa: F401  (fills the subcommand table)
from handlers.slack.slash.registry import SUBCOMMANDS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = README + "\n".join(path.read_text() for path in sorted((ROOT / "docs").glob("*.md")))
CLI = typer.main.get_command(app)


def command_paths(group: Any = CLI, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every runnable command, as the words after `tokenwise`."""
    if getattr(group, "commands", None) is None:  # a command, not a group
        return [prefix]
    found: list[tuple[str, ...]] = []
    for name, command in sorted(group.commands.items()):
        found += command_paths(command, (*prefix, name))
    return found


def test_the_cli_has_the_commands_this_test_walks() -> None:
    paths = command_paths()
    assert ("report",) in paths and ("source", "create") in paths and len(paths) > 20


@pytest.mark.parametrize("path", command_paths(), ids=" ".join)
def test_every_cli_command_is_documented(path: tuple[str, ...]) -> None:
    assert f"tokenwise {' '.join(path)}" in DOCS, f"`tokenwise {' '.join(path)}` is not in README.md or docs/"


@pytest.mark.parametrize("name", sorted({s.name for s in SUBCOMMANDS.values()}))
def test_every_slash_subcommand_is_documented(name: str) -> None:
    assert re.search(rf"/tokenwise {re.escape(name)}\b", DOCS), f"`/tokenwise {name}` is not in README.md or docs/"


def readme_invocations() -> list[tuple[str, ...]]:
    """The command path of each `tokenwise ...` the README shows in code (words up to the first option,
    argument or placeholder)."""
    found: set[tuple[str, ...]] = set()
    for code in re.findall(r"```[a-z]*\n(.*?)```|`([^`\n]+)`", README, flags=re.S):
        for text in code:
            for line in text.splitlines():
                for match in re.finditer(r"(?:^|[\s(])tokenwise((?: [a-z][a-z-]*)+)", line):
                    words = tuple(match.group(1).split())
                    found.add(words)
    return sorted(found)


def _path_of(words: tuple[str, ...]) -> tuple[str, ...]:
    """The longest prefix of `words` that names a command or group (the rest are its arguments)."""
    command: Any = CLI
    path: list[str] = []
    for word in words:
        if word not in (getattr(command, "commands", None) or {}):
            break
        command = command.commands[word]
        path.append(word)
    return tuple(path)


def test_the_readme_shows_cli_invocations() -> None:
    assert len(readme_invocations()) > 15


@pytest.mark.parametrize("words", readme_invocations(), ids=" ".join)
def test_every_cli_invocation_in_the_readme_parses(words: tuple[str, ...]) -> None:
    path = _path_of(words)
    assert path, f"`tokenwise {' '.join(words)}` in README.md names no command"
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
