"""The `tokenwise` command line: `root` holds the Typer app and what every command shares; each other
module is one command group, named after it, and registers its commands on the root app when imported."""

from __future__ import annotations


def main() -> None:
    from bot.cli import commands  # noqa: F401  (registers every command group on the root app)
    from bot.cli.root import app

    app()
