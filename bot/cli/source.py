"""`tokenwise source`: ingest sources and their bearer tokens (shown once, stored as a hash)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from bot.cli.root import UserError, app, database, out
from storage.people import normalize_email
from storage.sources import (
    SOURCE_KINDS,
    SourceError,
    create_source,
    list_sources,
    revoke_source,
    source_people,
)

source_app = typer.Typer(help="Ingest sources and their bearer tokens.", no_args_is_help=True)
app.add_typer(source_app, name="source")


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
