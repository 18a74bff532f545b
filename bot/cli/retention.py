"""`tokenwise retention`: data past TOKENWISE_RETENTION_DAYS."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from bot.cli.digest import parse_now
from bot.cli.root import app, database, out, settings
from storage.audit import record_event
from storage.retention import purge_expired

retention_app = typer.Typer(help="Data retention (TOKENWISE_RETENTION_DAYS).", no_args_is_help=True)
app.add_typer(retention_app, name="retention")


@retention_app.command("purge")
def purge_command(
    now: Annotated[str | None, typer.Option("--now", help="Act as if it were this ISO time.")] = None,
) -> None:
    """Delete usage, runs and outcomes older than TOKENWISE_RETENTION_DAYS (the scheduler does this daily)."""
    config = settings()
    moment = parse_now(now) if now else datetime.now(UTC)
    with database(config) as session:
        purged = purge_expired(session, moment, config.retention_days)
        record_event(
            session,
            actor="cli",
            action="retention.purge",
            scope="organisation",
            detail=f"{purged.total} rows older than {config.retention_days} days",
        )
    out.print(
        f"Purged {purged.usage_records} usage records, {purged.runs} runs, {purged.outcomes} outcomes, "
        f"{purged.annotations} annotations older than {config.retention_days} days."
    )
