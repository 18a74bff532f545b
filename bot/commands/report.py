"""`tokenwise report`: metrics for a person, a team or the organisation."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from sqlmodel import Session

from bot.cli import UserError, app, database, out, print_json, resolve_period, settings
from bot.periods import Period, PeriodError, date_range, parse_date, require_whole_weeks, zone
from bot.render_text import render_report
from bot.reports import Disclosure, build_report, group_weeks, group_zone, report_json
from storage.audit import record_event
from storage.directory import find_person, find_team
from storage.metrics import Scope

GROUP_WEEKS = 4  # a group's default: its last four whole weeks


@app.command()
def report(
    person: Annotated[str | None, typer.Option("--person", help="A person's email.")] = None,
    team: Annotated[str | None, typer.Option("--team", help="A team's name.")] = None,
    since: Annotated[
        str | None,
        typer.Option(help="First day, YYYY-MM-DD (inclusive); a Monday for a team or the organisation."),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Last day, YYYY-MM-DD (inclusive); a Sunday for a team or the organisation.")
    ] = None,
    by: Annotated[str, typer.Option("--by", help="Breakdown: day or week (groups: week only).")] = "week",
    tz: Annotated[
        str | None,
        typer.Option("--tz", help="Time zone of a person's days (a group's is its own). Default: UTC."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Metrics for a person (--person), a team (--team) or, with neither, the whole organisation.

    A person's default is the last 28 days. A team or the organisation is shown in whole weeks (Monday to
    Sunday) in its own time zone, by default its last four, each passing the disclosure rules on its own.
    Every report is recorded in the audit trail."""
    config = settings()
    with database(config) as session:
        if person and team:
            raise UserError("Give --person or --team, not both.")
        if by not in {"day", "week"}:
            raise UserError(f"Unknown --by '{by}'; use day or week.")
        if tz:
            try:
                zone(tz)
            except PeriodError as error:
                raise UserError(str(error)) from error
        if person:
            found = find_person(session, email=person)
            scope = Scope.person(found.id or 0, found.email or person)
            period = resolve_period(since, until, tz or "UTC")
        else:
            if team:
                found_team = find_team(session, team)
                scope = Scope.team(found_team.id or 0, found_team.name)
            else:
                scope = Scope.org()
            period = _group_period(session, scope, since, until, tz, config.timezone)
        try:
            result = build_report(session, scope, period, Disclosure.of(config), by=by if person else "week")
        except PeriodError as error:
            raise UserError(str(error)) from error
        record_event(session, actor="cli", action="report", scope=scope.label(), detail=period.label())
    if as_json:
        print_json(report_json(result))
    else:
        render_report(out, result)


def _group_period(
    session: Session, scope: Scope, since: str | None, until: str | None, tz: str | None, org_tz: str
) -> Period:
    """Whole weeks in the group's own time zone: the same windows whoever asks (docs/metrics.md)."""
    zone_name = group_zone(session, scope, org_tz)
    if tz and tz != zone_name:
        raise UserError(
            f"{scope.label()} is shown in its own time zone, {zone_name}, for everyone; leave out --tz "
            "(`tokenwise team set-timezone` changes a team's)."
        )
    if not since and not until:
        return group_weeks(session, scope, org_tz, GROUP_WEEKS)
    span = timedelta(days=7 * GROUP_WEEKS - 1)
    try:
        if since and until:
            first, last = parse_date(since, "--since date"), parse_date(until, "--until date")
        elif since:
            first = parse_date(since, "--since date")
            last = first + span
        else:
            last = parse_date(until or "", "--until date")
            first = last - span
        period = date_range(first, last, zone_name)
        require_whole_weeks(period)
    except PeriodError as error:
        raise UserError(str(error)) from error
    ended = group_weeks(session, scope, org_tz)
    if period.until > ended.until:
        raise UserError(
            f"The week ending {period.until.isoformat()} has not ended yet in {zone_name}; team and organisation "
            f"figures are shown for weeks that have, the latest ending {ended.until.isoformat()}."
        )
    return period
