"""`tokenwise report`: metrics for a person, a team or the organisation."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.cli import UserError, app, database, out, print_json, resolve_period, settings
from bot.render_text import render_report
from bot.reports import build_report, report_json
from storage.directory import find_person, find_team
from storage.metrics import Scope


@app.command()
def report(
    person: Annotated[str | None, typer.Option("--person", help="A person's email.")] = None,
    team: Annotated[str | None, typer.Option("--team", help="A team's name.")] = None,
    since: Annotated[
        str | None, typer.Option(help="First day, YYYY-MM-DD (inclusive). Default: 27 days before --until.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Last day, YYYY-MM-DD (inclusive). Default: today.")] = None,
    by: Annotated[str, typer.Option("--by", help="Breakdown: day or week.")] = "week",
    tz: Annotated[str, typer.Option("--tz", help="Time zone for day and week boundaries.")] = "UTC",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Metrics for a person (--person), a team (--team) or, with neither, the whole organisation."""
    config = settings()
    with database(config) as session:
        if person and team:
            raise UserError("Give --person or --team, not both.")
        if by not in {"day", "week"}:
            raise UserError(f"Unknown --by '{by}'; use day or week.")
        period = resolve_period(since, until, tz)
        if person:
            found = find_person(session, email=person)
            scope = Scope.person(found.id or 0, found.email or person)
        elif team:
            found_team = find_team(session, team)
            scope = Scope.team(found_team.id or 0, found_team.name)
        else:
            scope = Scope.org()
        result = build_report(session, scope, period, config.min_group_size, by=by)
    if as_json:
        print_json(report_json(result))
    else:
        render_report(out, result)
