"""`tokenwise db`: the database schema."""

from __future__ import annotations

import typer

from bot.cli.root import app, open_engine, out

db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the schema to the current version."""
    engine = open_engine()
    engine.dispose()
    out.print("Database is up to date.")
