"""`tokenwise report`: metrics for a person, a team or the organisation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlmodel import Session

from bot.cli.root import UserError, app, database, out, print_json, resolve_period, settings, today_utc
from bot.config import Settings
from bot.numbers import money, number, share, trend
from bot.periods import Period, PeriodError, date_range, parse_date, require_whole_weeks, zone
from bot.reports import (
    BY_RUN,
    Disclosure,
    Figures,
    Report,
    build_report,
    change,
    coverage_note,
    group_weeks,
    group_zone,
    report_json,
    shown_or_why,
)
from storage.audit import record_event
from storage.metrics import Scope, unpriced_models
from storage.models import id_of
from storage.people import find_person, find_team

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
    by: Annotated[
        str,
        typer.Option("--by", help="Breakdown: day, week, project or branch (a team or the organisation: week only)."),
    ] = "week",
    tz: Annotated[
        str | None,
        typer.Option("--tz", help="Time zone of a person's days (a group's is its own). Default: UTC."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    reconcile: Annotated[
        bool,
        typer.Option(
            "--reconcile",
            help="Estimated against billed, per vendor and UTC day (JSON rows: vendor, day, estimated_usd, "
            "billed_usd, difference_usd, sources). Default: the last 30 days.",
        ),
    ] = False,
) -> None:
    """Metrics for a person (--person), a team (--team) or, with neither, the whole organisation.

    A person's default is the last 28 days. A team or the organisation is shown in whole weeks (Monday to
    Sunday) in its own time zone, by default its last four, each passing the disclosure rules on its own.
    Every report is recorded in the audit trail."""
    config = settings()
    if reconcile:
        _reconcile(config, person, team, since, until)
        return
    with database(config) as session:
        if person and team:
            raise UserError("Give --person or --team, not both.")
        if by not in {"day", "week", *BY_RUN}:
            raise UserError(f"Unknown --by '{by}'; use day, week, project or branch.")
        if by in BY_RUN and not person:
            raise UserError(f"--by {by} is for a person's own report (--person): a group's could single someone out.")
        if tz:
            try:
                zone(tz)
            except PeriodError as error:
                raise UserError(str(error)) from error
        if person:
            found = find_person(session, email=person)
            scope = Scope.person(id_of(found), found.email or person)
            period = resolve_period(since, until, tz or "UTC")
        else:
            if team:
                found_team = find_team(session, team)
                scope = Scope.team(id_of(found_team), found_team.name)
            else:
                scope = Scope.org()
            period = _group_period(session, scope, since, until, tz, config.timezone)
        try:
            result = build_report(session, scope, period, Disclosure.of(config), by=by)
        except PeriodError as error:
            raise UserError(str(error)) from error
        record_event(session, actor="cli", action="report", scope=scope.label(), detail=period.label())
        metrics = result.totals.metrics
        unpriced = (
            unpriced_models(session, scope, period.start, period.end)
            if metrics is not None and metrics.cost_unknown_records and not as_json
            else []
        )
    if as_json:
        print_json(report_json(result))
    else:
        render_report(out, result)
        for item in unpriced:  # for operators: what to do about unknown cost
            # a group's counts would include weeks its figures leave out: name the model, not how much
            much = f"{item.records:,} records of " if not scope.is_group else ""
            out.print(
                f"Unknown cost: {much}{item.agent} on model '{item.model}', which genai-prices does not price; "
                "have that source send cost_usd, or a model name genai-prices knows.",
                highlight=False,
            )


def _reconcile(config: Settings, person: str | None, team: str | None, since: str | None, until: str | None) -> None:
    """`tokenwise report --reconcile`: the organisation's rows, as JSON."""
    from bot.reconcile import reconcile

    with database(config) as session:
        if person or team:
            raise UserError("--reconcile is for the organisation: vendors bill the organisation, not a team.")
        last = parse_date(until, "--until date") if until else today_utc()
        first = parse_date(since, "--since date") if since else last - timedelta(days=29)
        try:
            rows = reconcile(session, first, last, config.min_group_size)
        except ValueError as error:
            raise UserError(f"{error} (--since, --until).") from error
        record_event(session, actor="cli", action="report", scope="org:reconcile", detail=f"{first} to {last}")
    print_json([row.as_json() for row in rows])


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


# -- the terminal --------------------------------------------------------------------------------
def headline_rows(item: Figures) -> list[tuple[str, str]]:
    m = item.metrics
    if m is None:
        return []

    def shown(key: str, show: Callable[[Any], str]) -> str:
        return shown_or_why(item, key, show)

    cost = shown("cost_usd", money)
    if note := coverage_note(m):
        cost += f" ({note})"
    outcomes = ", ".join(f"{kind} {count}" for kind, count in sorted(m.outcomes_by_kind.items())) or "none"
    tokens = (
        "withheld"
        if "total_tokens" in item.hidden
        else f"{m.input_tokens:,} / {m.output_tokens:,} / {m.cache_read_tokens:,} / {m.cache_write_tokens:,}"
    )
    self_reported = ", ".join(f"{kind} {count}" for kind, count in sorted(m.self_reported_by_kind.items()))
    return [
        ("Verified-spend share", shown("verified_spend_share", share)),
        ("Cost per merged PR", shown("cost_per_merged_pr", money)),
        ("Cost per outcome value", shown("cost_per_outcome", money)),
        ("Outcome value", number(m.outcome_value)),
        ("Outcomes (evidence)", outcomes),
        ("Self-reported, not counted", self_reported or "none"),
        ("Runs (volume, not value)", number(m.runs)),  # anyone can start more runs
        ("Reviewed share (owners' verdicts)", shown("reviewed_share", share)),
        ("Useful runs (owners' verdicts)", shown("useful_runs", number)),
        ("Useful rate (of reviewed)", shown("useful_rate", share)),
        ("Cost per useful run", shown("cost_per_useful_run", money)),
        ("Known cost", cost),
        ("Tokens (in / out / cache read / cache write)", tokens),
    ]


def render_report(console: Console, report: Report) -> None:
    console.print(f"[bold]{report.scope.label()}[/bold]  {report.period.label()} ({report.period.tz})")
    if not report.totals.shown:
        console.print(report.totals.withheld or "Withheld.")
        return
    changes = change(report.totals, report.previous)
    keys = {
        "Verified-spend share": "verified_spend_share",
        "Cost per merged PR": "cost_per_merged_pr",
        "Cost per useful run": "cost_per_useful_run",
        "Cost per outcome value": "cost_per_outcome",
        "Outcome value": "outcome_value",
        "Runs (volume, not value)": "runs",
        "Reviewed share (owners' verdicts)": "reviewed_share",
        "Useful runs (owners' verdicts)": "useful_runs",
    }
    table = Table(show_header=True, header_style="bold")
    table.add_column("Metric")
    table.add_column("Value", justify="right")
    table.add_column("vs previous", justify="right")
    for label, value in headline_rows(report.totals):
        table.add_row(label, value, trend(changes.get(keys.get(label, ""))))
    console.print(table)
    reasons = sorted(set(report.totals.hidden.values()))
    if reasons:
        console.print(" ".join(reasons))
    loose = report.unattributed
    if loose is not None and loose.records:
        cost = f", known cost {money(loose.cost_usd)}" if loose.cost_usd is not None else ""
        console.print(
            f"Not in these figures: {loose.records:,} usage records naming no known person ({loose.tokens:,} tokens"
            f"{cost}). `tokenwise source status` lists their identities; `tokenwise people link` attributes them."
        )
    metrics = report.totals.metrics
    if not report.scope.is_group and metrics is not None and metrics.priced_cost_usd:
        console.print(
            f"Of the known cost, {money(metrics.priced_cost_usd)} was priced by Tokenwise from token counts "
            f"(genai-prices); {money(metrics.cost_usd - metrics.priced_cost_usd)} was reported by the sources."
        )
    if report.totals.withheld_weeks:
        weeks = ", ".join(week.isoformat() for week in report.totals.withheld_weeks)
        console.print(f"Left out of these totals, withheld on their own: the weeks of {weeks}.")
    if report.by in BY_RUN:
        render_slices(console, report)
    if report.periods:
        by_period = Table(show_header=True, header_style="bold", title="By period")
        for column in ("Start", "Runs", "Known cost", "Merged PRs", "Outcome value", "Verified share"):
            by_period.add_column(column, justify="right")
        partial = False
        for item in report.periods:
            m = item.metrics
            start = item.period.since.isoformat()
            days = (item.period.until - item.period.since).days + 1
            if report.by == "week" and days < 7:  # the range began or ended mid-week
                start += f" ({item.period.since:%a} to {item.period.until:%a})*"
                partial = True
            if m is None:
                by_period.add_row(start, "withheld", "", "", "", "")
                continue
            by_period.add_row(
                start,
                number(m.runs),
                "withheld" if "cost_usd" in item.hidden else money(m.cost_usd),
                number(m.merged_prs),
                number(m.outcome_value),
                shown_or_why(item, "verified_spend_share", share),
            )
        console.print(by_period)
        if partial:
            console.print("* A partial week: the range starts or ends mid-week (`--since` a Monday gives whole weeks).")


def render_slices(console: Console, report: Report) -> None:
    """A person's usage per project or branch (the runs' own, from Claude Code's logs)."""
    title = f"By {report.by}"
    if not report.slices:
        console.print(f"{title}: no usage in this period.")
        return
    table = Table(show_header=True, header_style="bold", title=title)
    table.add_column(str(report.by).capitalize())
    for column in ("Runs", "Tokens", "Known cost"):
        table.add_column(column, justify="right")
    for item in report.slices:
        cost = money(item.cost_usd) + (
            f" (+{item.cost_unknown_records:,} unknown)" if item.cost_unknown_records else ""
        )
        table.add_row(item.key or f"(no {report.by} recorded)", number(item.runs), f"{item.total_tokens:,}", cost)
    console.print(table)
