"""`/tokenwise`: help and errors are answered in the ack; everything else lazily, through respond().

A handler that waits on a model (a summary) returns a `Later`: its "working on it" message is sent as soon
as the caller's transaction has ended, and replaced by the answer (response_url, `replace_original`).

Each subcommand is one entry (parse + handle + its place in the help) in the module of its area, which
adds it to the table when imported: personal.py, team.py and digest.py, imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient

from bot.periods import PeriodError
from handlers.slack import blocks
from handlers.slack.caller import resolved_caller
from handlers.slack.middleware import apologetic, workspace_of
from handlers.slack.slash import digest, personal, team  # noqa: F401  (each adds its subcommands)
from handlers.slack.slash.registry import (
    COMMAND,
    SUBCOMMANDS,
    CommandRequest,
    Later,
    help_lines,
    parse_command,
)
from storage.people import NotFound
from storage.schedules import SubscriptionError

if TYPE_CHECKING:
    from bot.services import Services

COMMANDS = (COMMAND,)


def register(app: App) -> None:
    app.command(COMMAND)(ack=acknowledge, lazy=[answer])


PARSED = "tokenwise_command_request"  # where the ack leaves the parsed request for the lazy answer


def acknowledge(ack: Ack, command: dict[str, Any], context: BoltContext) -> None:
    """Help and mistakes answer at once (pure, microseconds); anything else is acked empty. The text is
    parsed here, once: Bolt hands a copy of this context to the lazy answer."""
    request = parse_command(command.get("text"))
    context[PARSED] = request
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
    parsed = context.get(PARSED)
    request = parsed if isinstance(parsed, CommandRequest) else parse_command(command.get("text"))
    if request.answers_at_once:
        return  # already answered in the ack
    handle = SUBCOMMANDS[request.name].handle
    assert handle is not None
    with resolved_caller(services, client, command["user_id"], workspace_of(context), command) as caller:
        try:
            reply = handle(caller, request)
        except (NotFound, PeriodError, SubscriptionError) as error:
            reply = blocks.error_message(str(error))
    if isinstance(reply, Later):  # the transaction has ended: say it is working, then wait on the far side
        respond(response_type="ephemeral", replace_original=False, **reply.working.as_kwargs())
        respond(response_type="ephemeral", replace_original=True, **reply.finish().as_kwargs())
        return
    respond(response_type="ephemeral", replace_original=False, **reply.as_kwargs())
