"""`/tokenwise team | summary`: a team's figures, for its last whole week or (managers) its last four.

Team figures pass the disclosure rules of docs/metrics.md; a team is named, or it is the caller's own.
"""

from __future__ import annotations

from bot.reports import Disclosure, build_report, group_weeks
from bot.summaries import Summary, draft_summary, finish_summary
from handlers.slack import blocks
from handlers.slack.caller import Caller
from handlers.slack.slash.registry import COMMAND, CommandRequest, Later, Subcommand, add_subcommand, team_argument
from storage.metrics import Scope
from storage.models import Team, id_of
from storage.people import NotFound, find_team, team_names, teams_of


def named_or_mine(caller: Caller, name: str | None, example: str) -> Team:
    """The team named, or the caller's own (the first by name); NotFound says what to type instead."""
    if name:
        return find_team(caller.session, name)
    mine = sorted(teams_of(caller.session, caller.person_id), key=lambda t: t.name)
    if not mine:
        known = ", ".join(team_names(caller.session)) or "none yet"
        raise NotFound(f"You are not in a team; name one: `{COMMAND} {example}`. Teams: {known}.")
    return mine[0]


def team(caller: Caller, request: CommandRequest) -> blocks.Message:
    found = named_or_mine(caller, request.options.get("team"), "team NAME")
    settings = caller.services.settings
    scope = Scope.team(id_of(found), found.name)
    period = group_weeks(caller.session, scope, settings.timezone)  # the same window for every caller
    report = build_report(caller.session, scope, period, Disclosure.of(settings))
    caller.looked("slack_team", f"team:{found.name}", period.label())
    return blocks.team_message(report)


def summary(caller: Caller, request: CommandRequest) -> blocks.Message | Later:
    """Refusals, withheld teams and the template answer at once; the model's summary is written after the
    caller's transaction, with "Writing the summary…" shown meanwhile."""
    services = caller.services
    writer = services.summary_writer
    draft = draft_summary(
        caller.session,
        requester_id=caller.person_id,
        actor=caller.actor,
        team_name=request.options.get("team"),
        writer=writer,
        settings=services.settings,
    )
    if isinstance(draft, Summary):
        return blocks.summary_message(draft)
    assert writer is not None  # only a configured model leaves a draft to write
    return Later(
        blocks.summary_working(), lambda: blocks.summary_message(finish_summary(services.engine, draft, writer))
    )


TEAM = add_subcommand(
    Subcommand(
        "team",
        "team [name]",
        "A team's totals for last week (never anyone's own numbers).",
        team_argument,
        team,
        order=30,
    )
)
SUMMARY = add_subcommand(
    Subcommand(
        "summary",
        "summary [team]",
        "For a team's managers: its aggregates with a short summary.",
        team_argument,
        summary,
        order=60,
    )
)
