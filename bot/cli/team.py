"""`tokenwise team`: teams' time zones and managers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from bot.cli.root import UserError, app, database, out, settings
from bot.periods import PeriodError, next_week_start, zone
from storage.audit import record_event
from storage.models import id_of
from storage.people import find_team, get_or_create_person
from storage.roles import add_manager

team_app = typer.Typer(help="Teams: their time zones and managers.", no_args_is_help=True)
app.add_typer(team_app, name="team")


@team_app.command("set-timezone")
def set_timezone_command(
    team: Annotated[str, typer.Argument(help="The team's name.")],
    zone_name: Annotated[str, typer.Argument(metavar="ZONE", help="An IANA time zone, e.g. Europe/Berlin.")],
) -> None:
    """Cut a team's weeks in its own time zone (default: TOKENWISE_TIMEZONE), the same for every viewer."""
    config = settings()
    with database(config) as session:
        try:
            zone(zone_name)
        except PeriodError as error:
            raise UserError(str(error)) from error
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
        changed = add_manager(session, id_of(found), id_of(person), since)
        record_event(
            session, actor="cli", action="team.add-manager", scope=f"team:{found.name}", detail=person.email or email
        )
    if changed:
        out.print(f"{email} is now a manager of {found.name}.", highlight=False)
    else:
        out.print(f"{email} was already a manager of {found.name}.", highlight=False)
