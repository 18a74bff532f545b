"""`/tokenwise`: help and errors are answered in the ack; everything else lazily, through respond().

`HANDLERS` maps each subcommand of `bot.commands_parser.SUBCOMMANDS` to a function that takes the
caller and the parsed request and returns a Message. Adding a subcommand: docs/slack.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient
from sqlmodel import Session

from bot import blocks
from bot.commands_parser import COMMAND, CommandRequest, help_lines, parse_command
from bot.people import SlackProfile
from bot.periods import PeriodError, parse_period, zone
from bot.reports import Disclosure, build_report, group_weeks
from handlers import digest_commands
from handlers.bolt import apologetic, workspace_of
from storage.audit import record_event
from storage.db import session_scope
from storage.digests import SubscriptionError
from storage.directory import NotFound, find_team, team_names, teams_of
from storage.metrics import Scope
from storage.models import Person
from storage.runs import count_unreviewed, unreviewed_runs
from storage.sources import create_personal_source

if TYPE_CHECKING:
    from bot.app import Services

COMMANDS = (COMMAND,)
RUNS_SHOWN = 5


@dataclass
class Caller:
    """Who ran the command, with what they need to be answered: a session, their profile, the services."""

    session: Session
    person: Person
    profile: SlackProfile
    services: Services
    client: WebClient
    workspace: str = ""
    command: dict[str, Any] = field(default_factory=dict)  # the slash command payload (channel_id, team_id...)

    @property
    def person_id(self) -> int:
        assert self.person.id is not None
        return self.person.id

    @property
    def tz(self) -> str:
        return self.profile.tz

    @property
    def today(self) -> date:
        return datetime.now(zone(self.tz)).date()

    @property
    def actor(self) -> str:
        return f"slack:{self.profile.user_id}"

    def audit(self, action: str, scope: str, detail: str | None = None) -> None:
        """Record who looked at or changed what, in this request's transaction."""
        record_event(
            self.session, actor=self.actor, action=action, scope=scope, actor_person_id=self.person_id, detail=detail
        )


Handler = Callable[[Caller, CommandRequest], blocks.Message]


def register(app: App) -> None:
    app.command(COMMAND)(ack=acknowledge, lazy=[answer])


def acknowledge(ack: Ack, command: dict[str, Any]) -> None:
    """Help and mistakes answer at once (pure, microseconds); anything else is acked empty."""
    request = parse_command(command.get("text"))
    if request.answers_at_once:
        ack(response_type="ephemeral", **immediate_reply(request).as_kwargs())
    else:
        ack()


def immediate_reply(request: CommandRequest) -> blocks.Message:
    if request.name == "help" and request.error is None:
        return blocks.help_message(help_lines())
    return blocks.help_message(help_lines(), error=request.error)


@apologetic
def answer(
    command: dict[str, Any], respond: Respond, client: WebClient, context: BoltContext, services: Services
) -> None:
    request = parse_command(command.get("text"))
    if request.answers_at_once:
        return  # already answered in the ack
    with session_scope(services.engine) as session:
        person, profile = services.people.resolve(session, client, command["user_id"], workspace_of(context))
        caller = Caller(session, person, profile, services, client, workspace_of(context), command)
        try:
            reply = HANDLERS[request.name](caller, request)
        except (NotFound, PeriodError, SubscriptionError) as error:
            reply = blocks.error_message(str(error))
    respond(response_type="ephemeral", replace_original=False, **reply.as_kwargs())


def me(caller: Caller, request: CommandRequest) -> blocks.Message:
    settings = caller.services.settings
    period = parse_period(request.options.get("period") or "", caller.today, caller.tz)
    scope = Scope.person(caller.person_id, caller.person.email or "")
    report = build_report(caller.session, scope, period, settings.min_group_size)
    unreviewed = count_unreviewed(caller.session, caller.person_id, period.start, period.end)
    metrics = report.totals.metrics
    coaching = None
    if metrics is not None:
        coaching = blocks.coaching_note(
            metrics.total_tokens, metrics.outcomes, metrics.reviewed_runs, settings.coaching_min_tokens
        )
    caller.audit("slack_me", f"person:{caller.person_id}")
    return blocks.me_message(report, unreviewed, coaching)


def runs(caller: Caller, _request: CommandRequest) -> blocks.Message:
    return blocks.runs_message(unreviewed_runs(caller.session, caller.person_id, RUNS_SHOWN), caller.tz)


def team(caller: Caller, request: CommandRequest) -> blocks.Message:
    name = request.options.get("team")
    if name:
        found = find_team(caller.session, name)
    else:
        mine = sorted(teams_of(caller.session, caller.person_id), key=lambda t: t.name)
        if not mine:
            known = ", ".join(team_names(caller.session)) or "none yet"
            raise NotFound(f"You are not in a team; name one: `{COMMAND} team NAME`. Teams: {known}.")
        found = mine[0]
    settings = caller.services.settings
    scope = Scope.team(found.id or 0, found.name)
    period = group_weeks(caller.session, scope, settings.timezone)  # the same window for every caller
    report = build_report(caller.session, scope, period, Disclosure.of(settings))
    caller.audit("slack_team", f"team:{found.name}", period.label())
    return blocks.team_message(report)


def connect(caller: Caller, _request: CommandRequest) -> blocks.Message:
    """A new personal OTLP token for the caller, limited to their data; their earlier ones are revoked."""
    made = create_personal_source(caller.session, caller.person_id)
    caller.audit("source.personal", f"source:{made.source.name}", f"revoked {made.revoked} earlier personal token(s)")
    settings = caller.services.settings
    return blocks.connect_message(settings.public_url, made.token, made.revoked, caller.person.email)


def show_help(_caller: Caller, _request: CommandRequest) -> blocks.Message:
    return blocks.help_message(help_lines())


HANDLERS: dict[str, Handler] = {
    "help": show_help,
    "me": me,
    "runs": runs,
    "team": team,
    "connect": connect,
    **digest_commands.HANDLERS,
}
