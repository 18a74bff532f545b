"""docs/deploy.md stays true: its systemd units parse, each `ExecStart` is a real `tokenwise` command with
real options, and its environment file names only Tokenwise settings."""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path

import click
import pytest
import typer

from bot.cli import commands  # noqa: F401  (registers every command group)
from bot.cli.root import app
from bot.config import Settings

DEPLOY = (Path(__file__).resolve().parent.parent / "docs" / "deploy.md").read_text()
BLOCKS = re.findall(r"```ini\n(.*?)```", DEPLOY, flags=re.S)
UNITS = [block for block in BLOCKS if "[Service]" in block]
ENVIRONMENT = [block for block in BLOCKS if "[Service]" not in block]


def test_the_deploy_guide_shows_a_replica_unit_a_scheduler_unit_and_an_environment_file() -> None:
    assert len(UNITS) == 2 and len(ENVIRONMENT) == 1
    assert "deploy.md" in (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.mark.parametrize("unit", UNITS, ids=["serve", "scheduler"])
def test_each_unit_parses_and_starts_a_real_tokenwise_command(unit: str) -> None:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(unit)
    assert parser.sections() == ["Unit", "Service", "Install"]
    words = shlex.split(parser["Service"]["ExecStart"].replace("%i", "3001"))
    assert words[0].endswith("/tokenwise")
    command: click.Command = typer.main.get_command(app)
    args = words[1:]
    while isinstance(command, click.Group):  # walk down the group to the command named
        name, args = args[0], args[1:]
        found = command.get_command(click.Context(command), name)
        assert found is not None, f"`tokenwise {name}` is not a command"
        command = found
    command.make_context(command.name or "", list(args))  # unknown options and bad values raise here


def test_the_environment_file_names_only_tokenwise_settings() -> None:
    known = {
        str(name)
        for field in Settings.model_fields.values()
        for name in getattr(field.validation_alias, "choices", [field.validation_alias])
        if name
    }
    names = re.findall(r"^([A-Z_]+)=", ENVIRONMENT[0], flags=re.M)
    assert names and set(names) <= known, sorted(set(names) - known)
