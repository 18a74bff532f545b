"""`tokenwise audit`, `tokenwise team add-manager|set-timezone`, `tokenwise summary`, `tokenwise retention purge`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from bot.cli import UserError, app, database, out, print_json, settings
from bot.commands.digest import parse_now
from bot.periods import PeriodError, next_week_start, zone
from storage.audit import list_events, record_event
from storage.digests import purge_expired
from storage.directory import find_person, find_team, get_or_create_person
from storage.roles import add_manager

team_app = typer.Typer(help="Teams and their managers.", no_args_is_help=True)
app.add_typer(team_app, name="team")
retention_app = typer.Typer(help="Data retention (TOKENWISE_RETENTION_DAYS).", no_args_is_help=True)
app.add_typer(retention_app, name="retention")


@app.command("audit")
def audit_command(
    limit: Annotated[int, typer.Option(help="How many events, newest first.", min=1, max=10_000)] = 100,
    action: Annotated[str | None, typer.Option(help="Only actions starting with this, e.g. summary.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Who looked at which scope, and when: summaries, team views, previews, forget-me."""
    with database() as session:
        events = list_events(session, limit=limit, action=action)
    rows = [
        {
            "at": e.occurred_at.isoformat(),
            "actor": e.actor,
            "action": e.action,
            "scope": e.scope,
            "detail": e.detail,
        }
        for e in events
    ]
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("No audit events yet.")
    for row in rows:
        detail = f" — {row['detail']}" if row["detail"] else ""
        out.print(f"{row['at']}  {row['actor']}  {row['action']}  {row['scope']}{detail}", highlight=False)


@team_app.command("set-timezone")
def set_timezone_command(
    team: Annotated[str, typer.Argument(help="The team's name.")],
    zone_name: Annotated[str, typer.Argument(metavar="ZONE", help="An IANA time zone, e.g. Europe/Berlin.")],
) -> None:
    """Cut a team's weeks in its own time zone (default: TOKENWISE_TIMEZONE), the same for every viewer."""
    config = settings()
    try:
        zone(zone_name)
    except PeriodError as error:
        raise UserError(str(error)) from error
    with database(config) as session:
        found = find_team(session, team)
        before = found.timezone or config.timezone
        found.timezone = zone_name
        session.add(found)
        record_event(session, actor="cli", action="team.set-timezone", scope=f"team:{found.name}", detail=zone_name)
    out.print(f"Team {found.name}: weeks now run Monday to Sunday in {zone_name} (was {before}).", highlight=False)


@team_app.command("add-manager")
def add_manager_command(
    team: Annotated[str, typer.Argument(help="The team's name.")],
    email: Annotated[str, typer.Argument(help="The manager's email (linked to Slack by email).")],
) -> None:
    """Make someone a manager of a team: they may then ask for its summary."""
    config = settings()
    with database(config) as session:
        found = find_team(session, team)
        if "@" not in email:
            raise UserError(f"'{email}' is not an email address.")
        person = get_or_create_person(session, email=email)
        since = next_week_start(datetime.now(UTC), found.timezone or config.timezone)
        changed = add_manager(session, found.id or 0, person.id or 0, since)
        record_event(
            session, actor="cli", action="team.add-manager", scope=f"team:{found.name}", detail=person.email or email
        )
    if changed:
        out.print(f"{email} is now a manager of {found.name}.", highlight=False)
    else:
        out.print(f"{email} was already a manager of {found.name}.", highlight=False)


@app.command("summary")
def summary_command(
    team: Annotated[str, typer.Option(help="The team's name.")],
    as_manager: Annotated[str, typer.Option("--as", help="The manager's email (the request is audited as theirs).")],
) -> None:
    """A manager's summary of their team, as `/tokenwise summary` would answer it."""
    from bot.blocks import plain_lines, summary_message
    from bot.summaries import build_summary_writer, request_summary

    config = settings()
    with database(config) as session:
        person = find_person(session, email=as_manager)
        result = request_summary(
            session,
            requester=person,
            actor=f"cli:{person.email}",
            team_name=team,
            writer=build_summary_writer(config),
            settings=config,
        )
    for line in plain_lines(summary_message(result).blocks):
        out.print(line, highlight=False)
    if result.refused:
        raise typer.Exit(2)


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
