"""Buttons: review a run (Useful / Partly / Not useful), open the note modal, list runs to review.

A click updates the message it came from in place (through its response_url) or, from the Home tab,
republishes the Home tab. A person can only review their own runs; a run id that is not theirs gets one
sentence, the same whether that run exists or not, and nothing is written.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from slack_bolt import App, BoltContext, Respond
from slack_sdk import WebClient

from handlers.slack import blocks
from handlers.slack.caller import resolved_caller
from handlers.slack.home import publish_home
from handlers.slack.middleware import ack_only, apologetic, tell, workspace_of
from handlers.slack.slash.personal import forget
from storage.github import remove_link
from storage.runs import (
    NOT_YOURS,
    AnnotationError,
    NotYourRun,
    RunNotFound,
    annotate_run,
    own_run,
    unreviewed_runs,
)

if TYPE_CHECKING:
    from bot.services import Services

ACTIONS = blocks.ACTIONS
VERDICT_OF = {action_id: verdict for verdict, action_id in blocks.ACTION_VERDICT.items()}
RUNS_SHOWN = 5
STALE = "That button is out of date; run `/tokenwise runs` for a fresh list."
REFUSED = (NotYourRun, RunNotFound)


def refusal() -> blocks.Message:
    """The one answer to a run id that is not the caller's, whether or not that run exists."""
    return blocks.error_message(NOT_YOURS)


def register(app: App) -> None:
    for action_id in blocks.ACTION_VERDICT.values():
        app.action(action_id)(ack=ack_only, lazy=[record_verdict])
    app.action(blocks.ACTION_NOTE)(ack=ack_only, lazy=[open_note])
    app.action(blocks.ACTION_UNLINK)(ack=ack_only, lazy=[unlink_pull_request])
    app.action(blocks.ACTION_REVIEW)(ack=ack_only, lazy=[show_runs])
    app.action(blocks.ACTION_FORGET_ME)(ack=ack_only, lazy=[forget_me_pressed])


def run_id_of(action: dict[str, Any]) -> int | None:
    value = str(action.get("value") or "")
    return int(value) if value.isdigit() and len(value) < 19 else None


def from_home(body: dict[str, Any]) -> bool:
    return (body.get("container") or {}).get("type") == "view" or (body.get("view") or {}).get("type") == "home"


@apologetic
def record_verdict(
    body: dict[str, Any],
    action: dict[str, Any],
    respond: Respond,
    client: WebClient,
    context: BoltContext,
    services: Services,
) -> None:
    run_id, verdict = run_id_of(action), VERDICT_OF.get(str(action.get("action_id")))
    if run_id is None or verdict is None:
        tell(body, client, blocks.error_message(STALE))
        return
    user_id = body["user"]["id"]
    try:
        with resolved_caller(services, client, user_id, workspace_of(context)) as caller:
            annotate_run(caller.session, run_id, caller.person_id, verdict, keep_details=True)
            reviewed = own_run(caller.session, run_id, caller.person_id)
            remaining = unreviewed_runs(caller.session, caller.person_id, RUNS_SHOWN)
    except REFUSED:
        tell(body, client, refusal())
        return
    except AnnotationError as error:
        tell(body, client, blocks.error_message(str(error)))
        return
    if from_home(body):
        publish_home(services, client, user_id, workspace_of(context))
    else:
        respond(replace_original=True, **blocks.runs_message(remaining, caller.tz, reviewed).as_kwargs())


@apologetic
def unlink_pull_request(
    body: dict[str, Any],
    action: dict[str, Any],
    respond: Respond,
    client: WebClient,
    context: BoltContext,
    services: Services,
) -> None:
    """The run's owner says a merged pull request is not their run's: the link goes, and stays gone whatever
    GitHub sends again; the run's spend is no longer verified by it. Only the owner can; anyone else gets the
    same sentence as for a run that does not exist."""
    outcome, _, run = str(action.get("value") or "").partition(":")
    if not (outcome.isdigit() and run.isdigit() and len(outcome) < 19 and len(run) < 19):
        tell(body, client, blocks.error_message(STALE))
        return
    user_id = body["user"]["id"]
    with resolved_caller(services, client, user_id, workspace_of(context)) as caller:
        removed = remove_link(caller.session, int(outcome), int(run), caller.person_id, services.settings.link_rules())
        if removed:
            caller.audit("run.unlink", f"run:{run}", f"outcome {outcome}")
            remaining = unreviewed_runs(caller.session, caller.person_id, RUNS_SHOWN)
    if not removed:
        tell(body, client, refusal())
        return
    if from_home(body):
        publish_home(services, client, user_id, workspace_of(context))
        return
    message = blocks.runs_message(remaining, caller.tz)
    notice = "Removed: that pull request no longer counts for your run."
    respond(replace_original=True, text=f"{notice} {message.text}", blocks=[blocks.section(notice), *message.blocks])


@apologetic
def open_note(
    body: dict[str, Any], action: dict[str, Any], client: WebClient, context: BoltContext, services: Services
) -> None:
    run_id = run_id_of(action)
    if run_id is None:
        tell(body, client, blocks.error_message(STALE))
        return
    try:
        with resolved_caller(services, client, body["user"]["id"], workspace_of(context)) as caller:
            run = own_run(caller.session, run_id, caller.person_id)
    except REFUSED:
        tell(body, client, refusal())
        return
    origin = {"run_id": run.id, "home": from_home(body), "response_url": body.get("response_url")}
    client.views_open(trigger_id=body["trigger_id"], view=blocks.note_modal(run, origin))


@apologetic
def show_runs(
    body: dict[str, Any], respond: Respond, client: WebClient, context: BoltContext, services: Services
) -> None:
    with resolved_caller(services, client, body["user"]["id"], workspace_of(context)) as caller:
        runs = unreviewed_runs(caller.session, caller.person_id, RUNS_SHOWN)
    message = blocks.runs_message(runs, caller.tz)
    if body.get("response_url"):
        respond(response_type="ephemeral", replace_original=False, **message.as_kwargs())
    else:
        client.chat_postMessage(channel=body["user"]["id"], **message.as_kwargs())


def metadata_of(view: dict[str, Any]) -> dict[str, Any]:
    try:
        data = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


@apologetic
def forget_me_pressed(
    body: dict[str, Any], respond: Respond, client: WebClient, context: BoltContext, services: Services
) -> None:
    """The forget-me button, pressed after Slack's confirmation dialog: only ever the presser's data."""
    with resolved_caller(services, client, body["user"]["id"], workspace_of(context)) as caller:
        done = forget(caller.session, caller.person_id, caller.actor)
    respond(response_type="ephemeral", replace_original=True, **done.as_kwargs())
