"""`/tokenwise digest | summary | nudges | forget-me`: thin handlers over the digest and summary domain.

Each takes the caller and the parsed request, calls one domain function and renders with bot.blocks.
They run after the ack (lazy), so a model call for a summary never holds up Slack's 3 seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from slack_bolt import BoltContext, Respond
from slack_sdk import WebClient
from sqlmodel import Session

from bot import blocks
from bot.commands_parser import COMMAND, CommandRequest
from bot.digest import build_digest, scope_for
from bot.reports import Disclosure, group_weeks
from bot.subscriptions import parse_digest
from bot.summaries import request_summary
from handlers.bolt import apologetic, workspace_of
from storage.audit import record_event
from storage.db import session_scope
from storage.digests import (
    SubscriptionError,
    count_annotations,
    forget_annotations,
    list_subscriptions,
    next_occurrence,
    schedule_of,
    set_nudges,
    subscribe,
    unsubscribe,
)
from storage.directory import find_team, team_names, teams_of
from storage.models import Team

if TYPE_CHECKING:
    from bot.app import Services
    from handlers.commands import Caller


def _channel(caller: Caller) -> str:
    channel = str(caller.command.get("channel_id") or "")
    if not channel:
        raise SubscriptionError("Run this in the channel that should get the digest.")
    return channel


def _team_or_mine(caller: Caller, name: str | None) -> Team:
    if name:
        return find_team(caller.session, name)
    mine = sorted(teams_of(caller.session, caller.person_id), key=lambda t: t.name)
    if not mine:
        known = ", ".join(team_names(caller.session)) or "none yet"
        raise SubscriptionError(f"You are not in a team; name one: `{COMMAND} digest subscribe TEAM`. Teams: {known}.")
    return mine[0]


def digest(caller: Caller, request: CommandRequest) -> blocks.Message:
    wanted = parse_digest(request.options.get("digest", ""), caller.tz)
    session = caller.session
    workspace = caller.command.get("team_id") or None
    if wanted.action == "list":
        rows = []
        now = datetime.now(UTC)
        for subscription, name in list_subscriptions(session, channel_id=_channel(caller)):
            schedule = schedule_of(subscription)
            when = next_occurrence(schedule, now).astimezone(schedule.zone_info()).strftime("%a %b %d %H:%M")
            rows.append((name, schedule.label(), when))
        return blocks.digest_list_message(rows)
    if wanted.action == "preview":
        team = _team_or_mine(caller, wanted.team)
        caller.audit("digest.preview", f"team:{team.name}")
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
    assert wanted.schedule is not None
    channel = _channel(caller)
    team = _team_or_mine(caller, wanted.team)
    subscription, created = subscribe(
        session,
        channel_id=channel,
        team_id=team.id,
        schedule=wanted.schedule,
        slack_team_id=workspace,
        enterprise_id=caller.command.get("enterprise_id") or None,
        created_by=caller.person_id,
    )
    caller.audit("digest.subscribe", f"team:{team.name}", f"channel {channel}, {wanted.schedule.label()}")
    verb = "This channel will get" if created else "Rescheduled: this channel gets"
    return blocks.notice_message(
        f"{verb} the {team.name} digest every {wanted.schedule.label()}. Team figures only, never a ranking; "
        f"teams under the minimum size are withheld. Subscription #{subscription.id}."
    )


def summary(caller: Caller, request: CommandRequest) -> blocks.Message:
    result = request_summary(
        caller.session,
        requester=caller.person,
        actor=caller.actor,
        team_name=request.options.get("team"),
        writer=caller.services.summary_writer,
        settings=caller.services.settings,
    )
    return blocks.summary_message(result)


def nudges(caller: Caller, request: CommandRequest) -> blocks.Message:
    enabled = bool(request.options.get("value"))
    set_nudges(caller.session, caller.person_id, enabled)
    if enabled:
        return blocks.notice_message("Nudges are on: each Monday you get a private reminder of runs to review.")
    return blocks.notice_message("Nudges are off. `/tokenwise nudges on` turns them back on.")


def forget_me(caller: Caller, request: CommandRequest) -> blocks.Message:
    if not request.options.get("value"):
        return blocks.forget_me_prompt(count_annotations(caller.session, caller.person_id))
    return _forget(caller.session, caller.person_id, caller.actor)


def _forget(session: Session, person_id: int, actor: str) -> blocks.Message:
    deleted = forget_annotations(session, person_id)
    record_event(
        session,
        actor=actor,
        action="forget-me",
        scope=f"person:{person_id}",
        actor_person_id=person_id,
        detail=f"{deleted} annotations deleted",
    )
    noun = "annotation" if deleted == 1 else "annotations"
    return blocks.notice_message(f"Done: deleted your {deleted:,} {noun}, with their notes and links.")


@apologetic
def forget_me_pressed(
    body: dict[str, Any], respond: Respond, client: WebClient, context: BoltContext, services: Services
) -> None:
    """The forget-me button, pressed after Slack's confirmation dialog: only ever the presser's data."""
    user_id = body["user"]["id"]
    with session_scope(services.engine) as session:
        person, _profile = services.people.resolve(session, client, user_id, workspace_of(context))
        done = _forget(session, person.id or 0, f"slack:{user_id}")
    respond(response_type="ephemeral", replace_original=True, **done.as_kwargs())


HANDLERS: dict[str, Callable[[Caller, CommandRequest], blocks.Message]] = {
    "digest": digest,
    "summary": summary,
    "nudges": nudges,
    "forget-me": forget_me,
}
