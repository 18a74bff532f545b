"""The note modal: validated in the ack (so Slack shows errors under the fields), saved lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient

from handlers.slack import blocks
from handlers.slack.actions import REFUSED, RUNS_SHOWN, metadata_of, refusal
from handlers.slack.caller import resolved_caller
from handlers.slack.home import publish_home
from handlers.slack.middleware import apologetic, tell, workspace_of
from storage.runs import AnnotationError, annotate_run, clean_link, clean_note, own_run, unreviewed_runs

if TYPE_CHECKING:
    from bot.services import Services

VIEWS = blocks.VIEWS


def register(app: App) -> None:
    app.view(blocks.VIEW_NOTE)(ack=validate_note, lazy=[save_note])


def validate_note(ack: Ack, view: dict[str, Any]) -> None:
    """Pure checks only, so the ack stays fast; Slack shows each error under its field."""
    values = blocks.note_values(view.get("state") or {})
    errors: dict[str, str] = {}
    if values["verdict"] not in blocks.ACTION_VERDICT:
        errors["verdict"] = "Pick whether the run was useful."
    for block_id, check in (("note", clean_note), ("link", clean_link)):
        try:
            check(values[block_id])
        except AnnotationError as error:
            errors[block_id] = str(error)
    if not isinstance(metadata_of(view).get("run_id"), int):
        errors["verdict"] = "This form is out of date; close it and press Add note again."
    if errors:
        ack(response_action="errors", errors=errors)
    else:
        ack()


@apologetic
def save_note(
    body: dict[str, Any], view: dict[str, Any], client: WebClient, context: BoltContext, services: Services
) -> None:
    values = blocks.note_values(view.get("state") or {})
    origin = metadata_of(view)
    user_id = body["user"]["id"]
    try:
        with resolved_caller(services, client, user_id, workspace_of(context)) as caller:
            annotate_run(caller.session, origin["run_id"], caller.person_id, **values)
            reviewed = own_run(caller.session, origin["run_id"], caller.person_id)
            remaining = unreviewed_runs(caller.session, caller.person_id, RUNS_SHOWN)
    except REFUSED:  # metadata carrying a run id that is not the caller's: the same answer as a button's
        tell(body, client, refusal())
        return
    except AnnotationError as error:
        tell(body, client, blocks.error_message(str(error)))
        return
    if origin.get("home"):
        publish_home(services, client, user_id, workspace_of(context))
    elif origin.get("response_url"):
        message = blocks.runs_message(remaining, caller.tz, reviewed)
        WebhookClient(origin["response_url"], timeout=10).send(**message.as_kwargs(), replace_original=True)
