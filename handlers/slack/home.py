"""Events: opening the App Home publishes this week at a glance, runs to review and shared wins."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient

from bot.periods import this_week
from bot.reports import Disclosure, personal_view
from handlers.slack import blocks
from handlers.slack.caller import resolved_caller
from handlers.slack.middleware import ack_only, apologetic, workspace_of
from storage.runs import shared_wins, unreviewed_runs

if TYPE_CHECKING:
    from bot.services import Services

EVENTS = ("app_home_opened",)
HOME_RUNS = 5
HOME_WINS = 5


def register(app: App) -> None:
    app.event("app_home_opened")(ack=ack_only, lazy=[home_opened])


@apologetic
def home_opened(event: dict[str, Any], client: WebClient, context: BoltContext, services: Services) -> None:
    if event.get("tab", "home") != "home":
        return  # the Messages tab: nothing to publish
    publish_home(services, client, event["user"], workspace_of(context))


def publish_home(services: Services, client: WebClient, user_id: str, workspace: str = "") -> None:
    """Build and publish the Home tab of one user (also after they review a run from it)."""
    with resolved_caller(services, client, user_id, workspace) as caller:
        period = this_week(caller.today, caller.tz)
        rules = Disclosure.of(caller.services.settings)
        mine = personal_view(caller.session, caller.person_id, caller.person.email or "", period, rules=rules)
        view = blocks.home_view(
            mine.report,
            mine.unreviewed,
            unreviewed_runs(caller.session, caller.person_id, HOME_RUNS),
            shared_wins(caller.session, caller.person_id, HOME_WINS),
            caller.tz,
        )
    client.views_publish(user_id=user_id, view=view)
