"""`/tokenwise me | runs | connect | nudges | forget-me`: the caller's own numbers and settings, only theirs.

Each entry is parse + handle: the arguments are parsed once in the ack (pure), the handler runs after it
with the resolved caller, calls one domain function and renders with handlers.slack.blocks.
"""

from __future__ import annotations

from sqlmodel import Session

from bot.reports import Disclosure, personal_view
from handlers.slack import blocks
from handlers.slack.caller import Caller
from handlers.slack.slash.registry import (
    CommandRequest,
    Subcommand,
    add_subcommand,
    checked,
    no_arguments,
    period_argument,
)
from handlers.slack.slash.subscriptions import parse_forget_me, parse_nudges
from storage.audit import record_event
from storage.nudges import set_nudges
from storage.retention import count_annotations, forget_annotations
from storage.runs import unreviewed_runs
from storage.sources import create_personal_source

RUNS_SHOWN = 5


def me(caller: Caller, request: CommandRequest) -> blocks.Message:
    """The caller's own numbers for the period they asked for, in their own time zone."""
    period = request.options["period"].resolve(caller.today, caller.tz)
    rules = Disclosure.of(caller.services.settings)  # TOKENWISE_MIN_COST_COVERAGE applies to one's own view too
    view = personal_view(caller.session, caller.person_id, caller.person.email or "", period, True, rules)
    metrics = view.report.totals.metrics
    coaching = None
    if metrics is not None:
        settings = caller.services.settings
        coaching = blocks.coaching_note(
            metrics.total_tokens, metrics.outcomes, metrics.reviewed_runs, settings.coaching_min_tokens
        )
    caller.looked("slack_me", f"person:{caller.person_id}")
    return blocks.me_message(view.report, view.unreviewed, coaching, view.projects, view.edits)


def runs(caller: Caller, _request: CommandRequest) -> blocks.Message:
    return blocks.runs_message(unreviewed_runs(caller.session, caller.person_id, RUNS_SHOWN), caller.tz)


def connect(caller: Caller, _request: CommandRequest) -> blocks.Message:
    """A new personal OTLP token for the caller, limited to their data; their earlier ones are revoked."""
    made = create_personal_source(caller.session, caller.person_id)
    caller.audit("source.personal", f"source:{made.source.name}", f"revoked {made.revoked} earlier personal token(s)")
    settings = caller.services.settings
    return blocks.connect_message(settings.public_url, made.token, made.revoked, caller.person.email)


def nudges(caller: Caller, request: CommandRequest) -> blocks.Message:
    enabled = bool(request.options.get("value"))
    set_nudges(caller.session, caller.person_id, enabled)
    if enabled:
        return blocks.notice_message("Nudges are on: each Monday you get a private reminder of runs to review.")
    return blocks.notice_message("Nudges are off. `/tokenwise nudges on` turns them back on.")


def forget_me(caller: Caller, request: CommandRequest) -> blocks.Message:
    if not request.options.get("value"):
        return blocks.forget_me_prompt(count_annotations(caller.session, caller.person_id))
    return forget(caller.session, caller.person_id, caller.actor)


def forget(session: Session, person_id: int, actor: str) -> blocks.Message:
    """Delete a person's own annotations (also the forget-me button's work), recorded in the audit trail."""
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


ME = add_subcommand(
    Subcommand(
        "me",
        "me [this week|last week|30d|YYYY-MM-DD..YYYY-MM-DD]",
        "Your own numbers, privately, against the period before.",
        period_argument,
        me,
        order=10,
    )
)
RUNS = add_subcommand(
    Subcommand(
        "runs", "runs", "Your latest unreviewed runs, to mark useful or not.", no_arguments("runs"), runs, order=20
    )
)
CONNECT = add_subcommand(
    Subcommand(
        "connect",
        "connect",
        "Your own ingest token (replaces the last one) and how to send usage.",
        no_arguments("connect"),
        connect,
        order=40,
    )
)
NUDGES = add_subcommand(
    Subcommand(
        "nudges",
        "nudges on|off",
        "Your private Monday reminder to review runs.",
        checked(parse_nudges, "value"),
        nudges,
        order=70,
    )
)
FORGET_ME = add_subcommand(
    Subcommand(
        "forget-me",
        "forget-me [confirm]",
        "Delete all your annotations and notes (asks to confirm first).",
        checked(parse_forget_me, "value"),
        forget_me,
        order=80,
    )
)
