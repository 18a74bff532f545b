"""`tokenwise retention`: data past TOKENWISE_RETENTION_DAYS."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from bot.cli.digest import parse_now
from bot.cli.root import app, err, open_engine, out, settings, user_errors
from storage.audit import record_event
from storage.db import session_scope
from storage.retention import purge_in_batches

retention_app = typer.Typer(help="Data retention (TOKENWISE_RETENTION_DAYS).", no_args_is_help=True)
app.add_typer(retention_app, name="retention")


@retention_app.command("purge")
def purge_command(
    now: Annotated[str | None, typer.Option("--now", help="Act as if it were this ISO time.")] = None,
) -> None:
    """Delete usage, runs and outcomes older than TOKENWISE_RETENTION_DAYS (the scheduler does this daily).

    It deletes in short transactions, a commit after each, so Slack commands and ingest keep being answered
    while it runs; stopped part way, it leaves whole rows and the next purge finishes the work."""
    config = settings()
    moment = parse_now(now) if now else datetime.now(UTC)
    engine = open_engine(config)
    try:
        with user_errors():
            with Progress(
                TextColumn("[bold]Purging {task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            ) as bar:
                tasks: dict[str, TaskID] = {}

                def advance(label: str, done: int, total: int) -> None:
                    if label not in tasks:
                        tasks[label] = bar.add_task(label, total=total)
                    bar.update(tasks[label], completed=done)

                purged = purge_in_batches(engine, moment, config.retention_days, progress=advance)
            with session_scope(engine) as session:
                record_event(
                    session,
                    actor="cli",
                    action="retention.purge",
                    scope="organisation",
                    detail=f"{purged.total} rows older than {config.retention_days} days",
                )
    finally:
        engine.dispose()
    out.print(
        f"Purged {purged.usage_records} usage records, {purged.runs} runs, {purged.outcomes} outcomes, "
        f"{purged.annotations} annotations older than {config.retention_days} days."
    )
