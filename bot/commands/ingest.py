"""`tokenwise source ...` and `tokenwise import ...`: ingest tokens and one-off imports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bot.cli import UserError, app, database, fail, open_engine, out, settings, today_utc, user_errors
from bot.importers.claude_code import LogsNotFound, import_logs, total_bytes
from bot.importers.csv_files import CsvInvalid, import_org, import_usage_csv
from bot.importers.openai_usage import build_admin_client, pull_usage
from bot.periods import parse_date
from storage.directory import normalize_email
from storage.sources import (
    SOURCE_KINDS,
    SourceError,
    create_source,
    list_sources,
    revoke_source,
    source_people,
)

source_app = typer.Typer(help="Ingest sources and their bearer tokens.", no_args_is_help=True)
import_app = typer.Typer(help="Import usage from files and APIs (safe to run again).", no_args_is_help=True)
app.add_typer(source_app, name="source")
app.add_typer(import_app, name="import")


@source_app.command("create")
def source_create(
    name: Annotated[str, typer.Argument(help="A name for the sender, e.g. claude-code-otel or ci.")],
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help=f"One of: {', '.join(SOURCE_KINDS)}. api: /v1/usage and /v1/runs; otlp: /v1/otlp/v1/*.",
        ),
    ] = "api",
    person: Annotated[
        str | None,
        typer.Option("--person", help="Limit the token to this person's data (their email); others are refused."),
    ] = None,
    outcomes: Annotated[
        bool,
        typer.Option("--outcomes", help="May send outcomes (/v1/outcomes; OTLP commit and pull-request counts)."),
    ] = False,
) -> None:
    """Create a source and print its bearer token (shown once; only a hash is stored)."""
    with database() as session:
        try:
            created = create_source(session, name, kind, person_email=person, outcomes=outcomes)
        except SourceError as error:
            raise UserError(str(error)) from error
        scope = f", only {normalize_email(person)}'s data" if person else ""
        scope += ", outcomes too" if outcomes else ""
    out.print(
        f"Created source '{created.source.name}' ({created.source.kind}{scope}). Its token, shown only this once:"
    )
    print(created.token)
    out.print("Send it as 'Authorization: Bearer <token>'. Lost it? Revoke the source and create another.")


@source_app.command("list")
def source_list() -> None:
    """Every source: its kind, whose data it may send, whether it may send outcomes and whether its token works
    (tokens are never shown). Personal tokens from `/tokenwise connect` are listed too."""
    with database() as session:
        sources = list_sources(session)
        people = source_people(session, sources)
    if not sources:
        out.print("No sources yet. Create one with `tokenwise source create NAME --kind KIND`.")
        return
    table = Table("name", "kind", "person", "personal", "outcomes", "created", "status")
    for source in sources:
        if source.token_hash is None:
            status = "importer (no token)"
        elif source.revoked_at:
            status = f"revoked {source.revoked_at:%Y-%m-%d %H:%M} UTC"
        else:
            status = "active"
        owner = people.get(source.person_id) if source.person_id is not None else None
        who = (owner.email or f"slack:{owner.slack_user_id}") if owner else "anyone"
        table.add_row(
            source.name,
            source.kind,
            who,
            "yes" if source.personal else "no",
            "yes" if source.outcomes else "no",
            f"{source.created_at:%Y-%m-%d}",
            status,
        )
    out.print(table)


@source_app.command("revoke")
def source_revoke(name: Annotated[str, typer.Argument(help="The source's name (personal tokens too).")]) -> None:
    """Revoke a source's token at once (its data stays)."""
    with database() as session:
        source = revoke_source(session, name)
    out.print(f"Revoked '{source.name}'; requests with its token now get 401.")


@import_app.command("claude-code")
def import_claude_code(
    path: Annotated[Path, typer.Argument(help="~/.claude (or its projects folder).")],
    email: Annotated[str, typer.Option("--email", help="Whose logs these are.")],
) -> None:
    """Claude Code's local session logs: one run per session, one usage record per API call."""
    config = settings()
    if "@" not in email:
        fail(f"'{email}' is not an email address; pass --email you@company.com.")
    engine = open_engine(config)
    try:
        with user_errors():
            try:
                size = total_bytes(path)
            except LogsNotFound as error:
                raise UserError(str(error)) from error
            columns = (TextColumn("Reading logs"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
            with Progress(*columns, console=out, transient=True) as progress:
                task = progress.add_task("logs", total=size)
                summary = import_logs(engine, path, email, config.weight_for, lambda n: progress.advance(task, n))
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
