"""Each module here adds its subcommands to `bot.cli.app`; importing this package registers them all."""

from bot.commands import audit, console, digest, ingest, report, seed, serve  # noqa: F401
