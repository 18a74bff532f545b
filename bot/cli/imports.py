"""`tokenwise import`: one-off imports from files and vendor APIs (safe to run again)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from bot.cli.root import UserError, app, database, fail, open_engine, out, settings, today_utc, user_errors
from bot.periods import parse_date
from bot.sources.claude_code import LogsNotFound, default_folders, import_logs, total_bytes
from bot.sources.csv_files import CsvInvalid, import_org, import_usage_csv
from bot.sources.openai_usage import build_admin_client, pull_usage

import_app = typer.Typer(help="Import usage from files and APIs (safe to run again).", no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("claude-code")
def import_claude_code(
    email: Annotated[str, typer.Option("--email", help="Whose logs these are.")],
    path: Annotated[
        Path | None,
        typer.Argument(
            help="~/.claude or its projects folder; default: CLAUDE_CONFIG_DIR, ~/.config/claude, ~/.claude."
        ),
    ] = None,
) -> None:
    """Claude Code's local session logs: one run per session, one usage record per API call."""
    config = settings()
    if "@" not in email:
        fail(f"'{email}' is not an email address; pass --email you@company.com.")
    engine = open_engine(config)
    try:
        with user_errors():
            try:
                folders = [path] if path else default_folders()
                size = total_bytes(folders)
            except LogsNotFound as error:
                raise UserError(str(error)) from error
            columns = (TextColumn("Reading logs"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
            with Progress(*columns, console=out, transient=True) as progress:
                task = progress.add_task("logs", total=size)
                summary = import_logs(engine, folders, email, config.weight_for, lambda n: progress.advance(task, n))
    finally:
        engine.dispose()
    out.print(
        f"Imported {summary.written} new usage records from {summary.files} files ({summary.sessions} sessions); "
        f"{summary.duplicates} already known or streamed repeats; {summary.malformed} malformed lines skipped."
    )


@import_app.command("openai-usage")
def import_openai_usage(
    since: Annotated[str, typer.Option("--since", help="First day, YYYY-MM-DD.")],
    until: Annotated[str | None, typer.Option("--until", help="Last day, YYYY-MM-DD. Default: today.")] = None,
) -> None:
    """OpenAI's organisation Usage API (needs OPENAI_ADMIN_KEY; OPENAI_BASE_URL to point elsewhere)."""
    import openai

    config = settings()
    client = build_admin_client(config)
    if client is None:
        fail("Set OPENAI_ADMIN_KEY to an OpenAI admin key (Settings > Organization > Admin keys).")
    engine = open_engine(config)
    try:
        with user_errors():
            first = parse_date(since, "--since date")
            last = parse_date(until, "--until date") if until else today_utc()
            if last < first:
                raise UserError("--until is before --since.")
            try:
                summary = pull_usage(client, engine, first, last, config.weight_for)
            except openai.OpenAIError as error:
                raise UserError(f"OpenAI's Usage API failed: {error}") from error
    finally:
        engine.dispose()
    out.print(
        f"Imported {summary.records} (day, user, model) buckets from {summary.pages} pages; "
        f"{summary.unattributed} results had no known user and were skipped."
    )


@import_app.command("csv")
def import_csv(
    file: Annotated[Path, typer.Argument(help="A CSV of usage records (columns in docs/ingest.md).")],
) -> None:
    """Usage records from a CSV file: all lines or none."""
    with database() as session:
        try:
            result = import_usage_csv(session, file)
        except CsvInvalid as error:
            raise UserError(str(error)) from error
    out.print(f"Imported {result.accepted} usage records; {result.duplicates} were already there.")


@import_app.command("org")
def import_org_csv(
    file: Annotated[Path, typer.Argument(help="A CSV with columns email, team, role.")],
    with_history: Annotated[
        bool,
        typer.Option(
            "--with-history",
            help="Members of teams this file creates count with their whole history (first set-up only).",
        ),
    ] = False,
) -> None:
    """People, teams and roles (member or manager) from a CSV file: all lines or none.

    New members count for their team from next Monday in its time zone, so no week already shown changes."""
    config = settings()
    with database(config) as session:
        try:
            summary = import_org(session, file, config.timezone, with_history)
        except CsvInvalid as error:
            raise UserError(str(error)) from error
    out.print(
        f"{summary.people} people; {summary.teams_created} new teams, {summary.memberships_added} new memberships, "
        f"{summary.roles_changed} roles changed."
    )
