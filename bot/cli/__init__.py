"""The `tokenwise` command line: `root` holds the Typer app and what every command shares; each other
module is one command group, named after it, and registers its commands on the root app when imported."""

from __future__ import annotations

import sys

# Command groups started often enough for their start-up to count, registered alone when they are the
# command: `tokenwise import claude-code` then imports neither the web app nor the Slack and OpenAI clients.
ALONE = {"import": "bot.cli.imports"}


def main() -> None:
    import importlib

    from bot.cli.root import app

    group = ALONE.get(sys.argv[1]) if len(sys.argv) > 1 else None
    importlib.import_module(group or "bot.cli.commands")  # registers the command groups on the root app
    app()
