"""`tokenwise digest ...`: weekly digests from the command line."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from bot.cli.root import UserError, app, database, fail, open_engine, out, print_json, settings
from bot.config import Settings
from bot.digest import build_digest, scope_for
from handlers.slack.digest_posts import send_due, summary_line
from handlers.slack.slash.subscriptions import parse_time, parse_weekday
from storage.audit import record_event
from storage.digest_posts import recent_posts
from storage.models import DigestSubscription
from storage.people import find_team
from storage.schedules import Schedule, SubscriptionError
from storage.subscriptions import list_subscriptions, subscribe, unsubscribe

digest_app = typer.Typer(help="Weekly team digests: subscriptions, sending, preview.", no_args_is_help=True)
app.add_typer(digest_app, name="digest")


def parse_now(text: str | None) -> datetime:
    """An ISO time for --now; a time without an offset is taken as UTC."""
    if not text:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        fail(f"Bad --now '{text}'; use an ISO time such as 2026-03-30T07:00:00Z.")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def check_slack(config: Settings) -> None:
    if not (config.slack_bot_token or config.slack_oauth_enabled):
        fail(
            "Set SLACK_BOT_TOKEN (or SLACK_CLIENT_ID and SLACK_CLIENT_SECRET for OAuth installs) so digests can be "
            "posted; SLACK_API_URL points at a stand-in."
        )


@digest_app.command("send-due")
def send_due_command(
    now: Annotated[str | None, typer.Option("--now", help="Act as if it were this ISO time (default: now).")] = None,
) -> None:
    """Send every digest that is due (for cron-style deployments); exit 1 if any failed."""
    from bot.app import build_services
    from bot.jobs import digest_slack_for

    config = settings()
    moment = parse_now(now)
    check_slack(config)
    engine = open_engine(config)
    try:
        results = send_due(engine, config, digest_slack_for(build_services(config, engine)), moment)
    finally:
        engine.dispose()
    for result in results:
        out.print(summary_line(result), highlight=False)
    if not results:
        out.print("Nothing due.")
    if any(result.status == "failed" for result in results):
        raise typer.Exit(1)


@digest_app.command("subscribe")
def subscribe_command(
    channel: Annotated[str, typer.Option(help="Slack channel id, e.g. C0123456.")],
    team: Annotated[str | None, typer.Option(help="Team name; omit for the whole organisation.")] = None,
    weekday: Annotated[str, typer.Option(help="Day of the week.")] = "monday",
    at: Annotated[str, typer.Option("--time", help="Local time, HH:MM (24 h).")] = "09:00",
    tz: Annotated[str, typer.Option("--tz", help="IANA time zone.")] = "UTC",
    slack_team: Annotated[str | None, typer.Option(help="Slack workspace id (multi-workspace installs).")] = None,
) -> None:
    """Subscribe a channel to a team's weekly digest (subscribing again reschedules)."""
    with database() as session:
        team_id = find_team(session, team).id if team else None
        try:
            hour, minute = parse_time(at)
            schedule = Schedule(parse_weekday(weekday), hour, minute, tz)
        except SubscriptionError as error:
            raise UserError(str(error)) from error
        _subscription, created = subscribe(
            session, channel_id=channel, team_id=team_id, schedule=schedule, slack_team_id=slack_team
        )
        verb = "Subscribed" if created else "Rescheduled"
        out.print(f"{verb} {channel} to the {team or 'organisation'} digest: {schedule.label()}.", highlight=False)


@digest_app.command("unsubscribe")
def unsubscribe_command(
    channel: Annotated[str, typer.Option(help="Slack channel id.")],
    team: Annotated[str | None, typer.Option(help="Team name; omit for the organisation digest.")] = None,
    every: Annotated[bool, typer.Option("--all", help="Every digest in the channel.")] = False,
) -> None:
    """Stop a channel's digest."""
    with database() as session:
        team_id = find_team(session, team).id if team else None
        removed = unsubscribe(session, channel_id=channel, team_id=team_id, every=every)
        if not removed:
            raise UserError(f"{channel} has no such digest; see `tokenwise digest list`.")
        out.print(f"Removed {removed} subscription(s) from {channel}.")


@digest_app.command("list")
def list_command(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every subscription, with its schedule and the next time it fires."""
    from storage.schedules import next_occurrence
    from storage.subscriptions import schedule_of

    now = datetime.now(UTC)
    with database() as session:
        rows = [
            {
                "id": s.id,
                "channel": s.channel_id,
                "team": name,
                "schedule": schedule_of(s).label(),
                "next": next_occurrence(schedule_of(s), now).isoformat(),
            }
            for s, name in list_subscriptions(session)
        ]
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("No digest subscriptions yet; add one with `tokenwise digest subscribe`.")
    for row in rows:
        out.print(
            f"#{row['id']} {row['channel']} {row['team']}: {row['schedule']} (next {row['next']})", highlight=False
        )


@digest_app.command("status")
def status_command(limit: Annotated[int, typer.Option(help="How many recent digests.")] = 20) -> None:
    """Recent digest posts: posted, failed (with the error) or claimed."""
    with database() as session:
        posts = recent_posts(session, limit)
        for post in posts:
            error = f" — {post.last_error}" if post.last_error else ""
            subscription = session.get(DigestSubscription, post.subscription_id)
            tz = subscription.timezone if subscription else "UTC"
            monday = post.period_start.replace(tzinfo=UTC).astimezone(ZoneInfo(tz)).date()  # as send-due says it
            out.print(
                f"#{post.id} subscription {post.subscription_id} week of {monday} ({tz}): "
                f"{post.status} after {post.attempts} attempt(s){error}",
                highlight=False,
            )
        if not posts:
            out.print("No digests sent yet.")


@digest_app.command("preview")
def preview_command(
    team: Annotated[str | None, typer.Option(help="Team name; omit for the organisation.")] = None,
) -> None:
    """Print last week's digest for a team without posting it (recorded in the audit trail).

    The week runs Monday to Sunday in the team's time zone, as in every team view."""
    from bot.reports import Disclosure, group_weeks
    from handlers.slack.blocks import digest_message
    from handlers.slack.terminal import terminal_lines

    config = settings()
    with database(config) as session:
        found = find_team(session, team) if team else None
        scope = scope_for(session, found.id if found else None)
        period = group_weeks(session, scope, config.timezone)
        tz = period.tz
        digest = build_digest(session, scope, period, Disclosure.of(config))
        # A team view, like `/tokenwise digest preview` in Slack: recorded in the same transaction.
        record_event(
            session,
            actor="cli",
            action="digest.preview",
            scope=f"team:{found.name}" if found else "organisation",
            detail=f"week {period.label()} ({tz})",
        )
    for line in terminal_lines(digest_message(digest).blocks):
        out.print(line, highlight=False)
