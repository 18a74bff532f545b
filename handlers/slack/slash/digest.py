"""`/tokenwise digest subscribe | unsubscribe | list | preview`: this channel's weekly team digest.

The text is parsed once in the ack into a `DigestRequest`; a schedule without a time zone takes the
caller's. Team figures only, never a ranking (docs/digests.md).
"""

from __future__ import annotations

from datetime import UTC, datetime

from bot.digest import build_digest, scope_for
from bot.reports import Disclosure, group_weeks
from handlers.slack import blocks
from handlers.slack.caller import Caller
from handlers.slack.slash.registry import CommandRequest, Subcommand, add_subcommand, checked
from handlers.slack.slash.subscriptions import DigestRequest, parse_digest
from handlers.slack.slash.team import named_or_mine
from storage.people import find_team
from storage.schedules import SubscriptionError, next_occurrence
from storage.subscriptions import list_subscriptions, schedule_of, subscribe, unsubscribe


def _channel(caller: Caller) -> str:
    channel = str(caller.command.get("channel_id") or "")
    if not channel:
        raise SubscriptionError("Run this in the channel that should get the digest.")
    return channel


def digest(caller: Caller, request: CommandRequest) -> blocks.Message:
    wanted: DigestRequest = request.options["digest"]
    session = caller.session
    workspace = caller.command.get("team_id") or None
    if wanted.action == "list":
        rows = []
        now = datetime.now(UTC)
        for subscription, name in list_subscriptions(session, channel_id=_channel(caller)):
            existing = schedule_of(subscription)
            when = next_occurrence(existing, now).astimezone(existing.zone_info()).strftime("%a %b %d %H:%M")
            rows.append((name, existing.label(), when))
        return blocks.digest_list_message(rows)
    if wanted.action == "preview":
        team = named_or_mine(caller, wanted.team, "digest subscribe TEAM")
        caller.looked("digest.preview", f"team:{team.name}")
        settings = caller.services.settings
        scope = scope_for(session, team.id)
        built = build_digest(session, scope, group_weeks(session, scope, settings.timezone), Disclosure.of(settings))
        return blocks.digest_message(built)
    if wanted.action == "unsubscribe":
        channel = _channel(caller)
        team_id = find_team(session, wanted.team).id if wanted.team else None
        removed = unsubscribe(session, channel_id=channel, team_id=team_id, every=team_id is None)
        if not removed:
            return blocks.notice_message("This channel has no such digest. `/tokenwise digest list` shows what it has.")
        caller.audit("digest.unsubscribe", f"channel:{channel}", wanted.team)
        return blocks.notice_message(f"Done: this channel will no longer get {removed} digest(s).")
    schedule = wanted.schedule_in(caller.tz)
    assert schedule is not None
    channel = _channel(caller)
    team = named_or_mine(caller, wanted.team, "digest subscribe TEAM")
    subscription, created = subscribe(
        session,
        channel_id=channel,
        team_id=team.id,
        schedule=schedule,
        slack_team_id=workspace,
        enterprise_id=caller.command.get("enterprise_id") or None,
        created_by=caller.person_id,
    )
    caller.audit("digest.subscribe", f"team:{team.name}", f"channel {channel}, {schedule.label()}")
    verb = "This channel will get" if created else "Rescheduled: this channel gets"
    return blocks.notice_message(
        f"{verb} the {team.name} digest every {schedule.label()}. Team figures only, never a ranking; "
        f"teams under the minimum size are withheld. Subscription #{subscription.id}."
    )


DIGEST = add_subcommand(
    Subcommand(
        "digest",
        "digest subscribe [team] [weekday HH:MM] [time zone] | unsubscribe [team] | list | preview [team]",
        "This channel's weekly team digest (team figures only, never a ranking).",
        checked(parse_digest, "digest"),
        digest,
        order=50,
    )
)
